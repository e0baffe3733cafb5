"""``n2v`` — Noise2Void (Krull, Buchholz & Jug, 2019, "Noise2Void — Learning Denoising from Single
Noisy Images", CVPR): masked-pixel MSE with random-neighbour replacement
(:func:`rcl.losses.noise2void.n2v_loss`) on ``batch_size`` noisy crops (B, C, crop, crop);
independent masks per channel. A blind-spot denoiser usable with 0 labels.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..configs import Seed, StrictConfig
from ..data.datasets import crop_batch
from ..losses.noise2void import n2v_loss
from .base import Method, check_crop, register_method


class N2VConfig(StrictConfig):
    """Noise2Void pre-training.

    Attributes:
        steps: optimisation steps.
        batch_size: crops per step.
        crop_size: side of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % by the trainer).
        seed: seeds crops, masks and initial weights (0 ≤ seed ≤ MAX_SEED).
        mask_ratio: masked pixel fraction, 0 < r < 1.
    """

    steps: int = Field(800, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    seed: Seed = 0
    mask_ratio: float = Field(0.03, gt=0, lt=1)


@register_method
class N2V(Method):
    """Noise2Void. Raises (constructor) ValueError if an image is smaller than the crop."""

    name = "n2v"
    Config = N2VConfig
    zero_label = True

    def __init__(self, data, cfg: N2VConfig, **kw):
        check_crop(data, cfg.crop_size)
        super().__init__(data, cfg, **kw)

    def loss(self, model: nn.Module, generator: torch.Generator):
        x, _ = crop_batch(self.data, self.cfg.batch_size, self.cfg.crop_size, generator)
        return n2v_loss(model, x, self.cfg.mask_ratio, generator)

    claim_role = "self-supervised"
