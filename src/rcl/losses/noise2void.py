"""Noise2Void loss (Krull, Buchholz & Jug, 2019, "Noise2Void – Learning Denoising from Single Noisy
Images", CVPR, Sec. 3).

A random fraction of the pixels is replaced by the value of a random neighbour in a 5×5 window
(:func:`rcl.losses.masking.n2v_mask`; for RGB every channel has its own mask, so noise that is
independent across channels stays unseen), and the network is scored only on those pixels:

    L = mean_{masked (b, c, y, x)} ( f(mask(y))_{b,c,y,x} − y_{b,c,y,x} )².
"""

from __future__ import annotations

import torch
from torch import nn

from ..distributed import masked_mean
from .masking import n2v_mask


def n2v_loss(model: nn.Module, x: torch.Tensor, ratio: float = 0.03,
             generator: torch.Generator | None = None, radius: int = 2) -> tuple[torch.Tensor, dict]:
    """Noise2Void self-supervised loss on a noisy batch.

    Args:
        model: f_θ, (B, C, H, W) → (B, C, H, W).
        x: (B, C, H, W) noisy crops (values unconstrained; typically ~[0, 1] plus noise).
        ratio: masked fraction in (0, 1) (N2V uses ≈ 0.2–3 %; 0.03 here).
        radius: neighbourhood radius of the replacement (2 → N2V's 5×5 window).

    Returns:
        ``(loss, logs)``: the mean squared error over masked pixels (scalar tensor; under
        torch.distributed this rank's contribution to the global batch's mean) and
        ``{"loss": detached tensor}``.
    """
    masked, mask = n2v_mask(x, ratio, generator, radius)
    out = model(masked)
    loss = masked_mean((out - x) ** 2, mask)
    return loss, {"loss": loss.detach()}
