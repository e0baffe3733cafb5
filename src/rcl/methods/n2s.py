"""``n2s`` — Noise2Self (Batson & Royer, 2019, "Noise2Self: Blind Denoising by Self-Supervision",
ICML): J-invariant grid masking (period ``grid``, random phase, zero-centre interpolation;
:func:`rcl.losses.noise2self.n2s_loss`) on ``batch_size`` noisy crops (B, C, crop, crop).

A denoiser usable with 0 labels, through its own prediction (:func:`n2s_predict`, the method's
:meth:`N2S.predictor`): a residual network trained with a deterministic replacement passes a
pixel's own value through, so the plain forward pass returns ≈ the noisy input.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..losses.noise2self import n2s_loss, n2s_mask
from .base import CropConfig, CropLossMethod, Predictor, register_method


class N2SConfig(CropConfig):
    """Noise2Self pre-training: the :class:`~rcl.methods.base.CropConfig` fields (steps,
    batch_size, crop_size, lr; ``seed`` seeds crops, phases and initial weights) and its own.

    Attributes:
        grid: grid period g ≥ 2 (1/g² of the pixels masked per step).
    """

    grid: int = Field(4, ge=2)


@torch.no_grad()
def n2s_predict(model: nn.Module, x: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """J-invariant inference (Batson & Royer, 2019, Sec. 4; ``Masker.infer_full_image``): run the
    network once per grid phase and keep each output only on that phase's masked pixels.

    Needed when the network can pass a pixel's own value through — notably a *residual* network
    f(x) = x − g(x): N2S training with a deterministic replacement lets g learn
    "replacement − clean", so the plain forward pass on an unmasked image returns ≈ the noisy input.
    Costs g² forward passes.

    Args:
        model: f_θ (put in eval mode here and restored afterwards).
        x: (C, H, W) or (B, C, H, W) noisy image(s), H, W ≥ 2.
        grid: the training grid period g.

    Returns:
        Same shape as ``x``: every pixel predicted from an input in which it was masked.
    """
    from ..evaluation.inference import inference_layout, to_layout

    single = x.ndim == 3
    xb = x.unsqueeze(0) if single else x
    origin = xb.device
    p = next(iter(model.parameters()), None)
    xb = xb.to(p.device) if p is not None else xb
    with inference_layout(model):
        out = torch.zeros_like(xb)
        for dy in range(min(grid, xb.shape[-2])):
            for dx in range(min(grid, xb.shape[-1])):
                masked, mask = n2s_mask(xb, grid, phase=(dy, dx))
                out = torch.where(mask, model(to_layout(masked)), out)
    out = out.contiguous().to(origin)
    return out[0] if single else out


@register_method
class N2S(CropLossMethod, criterion=n2s_loss, parameter="grid"):
    """Noise2Self. Raises (constructor) ValueError if an image is smaller than the crop."""

    name = "n2s"
    Config = N2SConfig

    @classmethod
    def predictor(cls, model: nn.Module, cfg: N2SConfig | None = None) -> Predictor:
        """:func:`n2s_predict` with the training grid (``cfg.grid``; default 4)."""
        grid = cfg.grid if cfg is not None else N2SConfig().grid
        return lambda noisy, sigma: n2s_predict(model, noisy, grid=grid)

    predictor_name = "n2s_predict"

    @classmethod
    def predictor_id(cls, cfg: N2SConfig | None = None) -> str:
        """``n2s_predict(grid=G)``: the J-invariant inference with the training grid."""
        grid = cfg.grid if cfg is not None else N2SConfig().grid
        return f"n2s_predict(grid={grid})"
