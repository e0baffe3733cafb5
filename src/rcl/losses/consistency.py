"""Consistency terms for RCL pre-training (our design; the paper's equation is not available).

The residual NT-Xent alone has three collapse modes: f ≡ identity (zero residuals), f ≡ 0
(residual = image content, trivially discriminative) and inflated residuals (sharper logits). A
consistency term must anchor f to the image. Each term maps (model, crops, generator) to
``(loss, residual)`` so that the contrastive term reuses the same forward pass:

* ``fidelity``: λ·mean‖f(c) − c‖² — keeps f close to the input (rules out f ≡ 0).
* ``blindspot``: Noise2Void-style J-invariant masked reconstruction (Krull et al., 2019):
  mean over masked pixels of (f(mask(c)) − c)²; the residual is c − f(mask(c)). With
  ``pd_stride`` s > 1 the crops are pixel-shuffle down-sampled first and masking and f work on
  their s² sub-images (:func:`rcl.losses.masking.pd_blindspot_forward`; for spatially correlated
  noise); f's output is put back together, so the residual keeps the crops' shape and pixel order.
* ``recorruption``: with x̂ = f(c), n̂ = c − x̂ and a random pixel permutation π,
  mean‖f(sg(x̂) + π(sg(n̂))) − sg(x̂)‖² — f must remove a re-shuffled copy of its own residual,
  which punishes residuals that carry image structure (π destroys structure, not the
  value distribution).
* ``neighbor``: Neighbor2Neighbor's sub-sampled consistency (Huang et al., CVPR 2021) in place of
  the blind spot: g1, g2 = two random neighbour sub-images of c,
  ‖f(g1) − g2‖² + γ·‖f(g1) − g2 − (g1(sg f(c)) − g2(sg f(c)))‖² (:func:`rcl.losses.neighbor2neighbor.ne2ne_loss`,
  the same draws); the residual is g1 − f(g1), of half the crops' side.
* ``none``: no consistency (for ablations).
"""

from __future__ import annotations

import torch
from torch import nn

from ..distributed import global_mean, masked_mean
from .masking import pd_blindspot_forward

CONSISTENCY_VARIANTS = ("blindspot", "fidelity", "recorruption", "neighbor", "none")


def permute_pixels(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle the spatial positions of each image of (B, C, H, W) (same permutation for all C)."""
    from ..data.draws import as_draws

    b, c, h, w = x.shape
    perm = torch.argsort(as_draws(generator).sample_rand(b, h * w), dim=1).to(x.device)
    flat = x.reshape(b, c, h * w)
    return torch.gather(flat, 2, perm.unsqueeze(1).expand(b, c, h * w)).reshape(x.shape)


def consistency_forward(variant: str, model: nn.Module, crops: torch.Tensor,
                        generator: torch.Generator | None = None, mask_ratio: float = 0.03,
                        pd_stride: int = 1, gamma: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Run f on ``crops`` (N, C, p, p) and return ``(consistency_loss, residual)``.

    The residual (N, C, p, p) is n̂ = c − f(·) of the pass used by the variant (``neighbor``:
    (N, C, p/2, p/2), g1 − f(g1)). ``pd_stride`` (blindspot only; s ≥ 1, p a multiple of s): PD
    before masking and the network. ``gamma``: γ of the ``neighbor`` regulariser at this step.

    Raises:
        ValueError: unknown variant; ``pd_stride`` > 1 with another variant than blindspot; a bad
            ``pd_stride`` or crops not divisible by it.
    """
    if variant == "blindspot":
        out, mask = pd_blindspot_forward(model, crops, mask_ratio, generator, pd_stride)
        return masked_mean((out - crops) ** 2, mask), crops - out
    if variant not in CONSISTENCY_VARIANTS:
        raise ValueError(f"unknown consistency variant {variant!r}; use one of {CONSISTENCY_VARIANTS}")
    if pd_stride != 1:
        raise ValueError(f"pd_stride {pd_stride} applies to the blindspot consistency term only, not {variant!r}")
    if variant == "neighbor":
        from .neighbor2neighbor import ne2ne_terms

        loss, g1, out1 = ne2ne_terms(model, crops, gamma, generator)
        return loss, g1 - out1
    out = model(crops)
    residual = crops - out
    if variant == "fidelity":
        return global_mean((residual ** 2).sum(), residual.numel()), residual
    if variant == "recorruption":
        xh, nh = out.detach(), residual.detach()
        out2 = model(xh + permute_pixels(nh, generator))
        return global_mean(((out2 - xh) ** 2).sum(), out2.numel()), residual
    return crops.new_zeros(()), residual
