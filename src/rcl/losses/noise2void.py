"""Noise2Void loss (Krull, Buchholz & Jug, 2019, "Noise2Void – Learning Denoising from Single Noisy
Images", CVPR, Sec. 3).

A random fraction of the pixels is replaced by the value of a random neighbour in a 5×5 window
(:func:`rcl.losses.masking.n2v_mask`; for RGB every channel has its own mask, so noise that is
independent across channels stays unseen), and the network is scored only on those pixels:

    L = mean_{masked (b, c, y, x)} ( f(mask(y))_{b,c,y,x} − y_{b,c,y,x} )².

With ``pd_stride`` s > 1 the crops are pixel-shuffle down-sampled first (Zhou et al., AAAI 2020;
Lee, Son, Lee, AP-BSN, CVPR 2022): masking and the network work on the s² sub-images of each crop
(:func:`rcl.losses.masking.pd_blindspot_forward`), for spatially correlated (real) noise.
"""

from __future__ import annotations

import torch
from torch import nn

from ..distributed import masked_mean
from .masking import pd_blindspot_forward


def n2v_loss(model: nn.Module, x: torch.Tensor, ratio: float = 0.03,
             generator: torch.Generator | None = None, radius: int = 2,
             pd_stride: int = 1) -> tuple[torch.Tensor, dict]:
    """Noise2Void self-supervised loss on a noisy batch.

    Args:
        model: f_θ, (B, C, H, W) → (B, C, H, W).
        x: (B, C, H, W) noisy crops (values unconstrained; typically ~[0, 1] plus noise).
        ratio: masked fraction in (0, 1) (N2V uses ≈ 0.2–3 %; 0.03 here).
        radius: neighbourhood radius of the replacement (2 → N2V's 5×5 window).
        pd_stride: PD stride s ≥ 1 (1: plain Noise2Void); H and W must be multiples of s.

    Returns:
        ``(loss, logs)``: the mean squared error over masked pixels (scalar tensor; under
        torch.distributed this rank's contribution to the global batch's mean) and
        ``{"loss": detached tensor}``.

    Raises:
        ValueError: ``ratio`` out of (0, 1), a bad ``pd_stride`` or crops not divisible by it.
    """
    out, mask = pd_blindspot_forward(model, x, ratio, generator, pd_stride, radius)
    loss = masked_mean((out - x) ** 2, mask)
    return loss, {"loss": loss.detach()}
