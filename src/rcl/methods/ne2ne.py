"""``ne2ne`` — Neighbor2Neighbor (Huang, Li, Jia, Lu & Liu, 2021, "Neighbor2Neighbor:
Self-Supervised Denoising from Single Noisy Images", CVPR): random neighbour sub-sampling of
``batch_size`` noisy crops (B, C, crop, crop) into two (B, C, crop/2, crop/2) sub-images, MSE
between the network's output on one and the other plus a regulariser weighted by γ
(:func:`rcl.losses.neighbor2neighbor.ne2ne_loss`). A denoiser usable with 0 labels.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..configs import Seed, StrictConfig
from ..data.datasets import crop_batch
from ..losses.neighbor2neighbor import ne2ne_loss
from .base import Method, check_crop, register_method


class Ne2NeConfig(StrictConfig):
    """Neighbor2Neighbor pre-training.

    Attributes:
        steps: optimisation steps (also the length of the γ ramp).
        batch_size: crops per step.
        crop_size: side of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % by the trainer).
        seed: seeds crops, sub-sampling and initial weights (0 ≤ seed ≤ MAX_SEED).
        gamma: final weight γ of the regulariser (ramped linearly from 0).
    """

    steps: int = Field(800, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    seed: Seed = 0
    gamma: float = Field(2.0, ge=0)


@register_method
class Ne2Ne(Method):
    """Neighbor2Neighbor with a linear γ ramp.

    γ_t = gamma · t / steps at the t-th call of :meth:`loss` (t = 1..steps; the reference code sets
    γ = epoch / n_epoch · 2). The method counts its own calls, so use a fresh instance per run.

    Raises (constructor): ValueError if an image is smaller than the crop.
    """

    name = "ne2ne"
    Config = Ne2NeConfig
    zero_label = True

    def __init__(self, data, cfg: Ne2NeConfig, **kw):
        check_crop(data, cfg.crop_size)
        super().__init__(data, cfg, **kw)
        self.calls = 0

    def current_gamma(self) -> float:
        """γ for the step about to be taken (``calls + 1``)."""
        return self.cfg.gamma * min(self.calls + 1, self.cfg.steps) / self.cfg.steps

    def loss(self, model: nn.Module, generator: torch.Generator):
        gamma = self.current_gamma()
        self.calls += 1
        x, _ = crop_batch(self.data, self.cfg.batch_size, self.cfg.crop_size, generator)
        return ne2ne_loss(model, x, gamma, generator)

    claim_role = "self-supervised"
