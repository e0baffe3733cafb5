"""``n2v`` — Noise2Void (Krull, Buchholz & Jug, 2019, "Noise2Void — Learning Denoising from Single
Noisy Images", CVPR): masked-pixel MSE with random-neighbour replacement
(:func:`rcl.losses.noise2void.n2v_loss`) on ``batch_size`` noisy crops (B, C, crop, crop);
independent masks per channel. A blind-spot denoiser usable with 0 labels.
"""

from __future__ import annotations

from pydantic import Field

from ..losses.noise2void import n2v_loss
from .base import CropConfig, CropLossMethod, register_method


class N2VConfig(CropConfig):
    """Noise2Void pre-training: the :class:`~rcl.methods.base.CropConfig` fields (steps,
    batch_size, crop_size, lr; ``seed`` seeds crops, masks and initial weights) and its own.

    Attributes:
        mask_ratio: masked pixel fraction, 0 < r < 1.
    """

    mask_ratio: float = Field(0.03, gt=0, lt=1)


@register_method
class N2V(CropLossMethod, criterion=n2v_loss, parameter="mask_ratio"):
    """Noise2Void. Raises (constructor) ValueError if an image is smaller than the crop."""

    name = "n2v"
    Config = N2VConfig
