"""``rcl`` — Residual Contrastive Learning (Dong et al., 2022, arXiv 2106.10070), the pretext task
this package is about.

Each step draws B distinct noisy images and two random crops of each (dihedral-augmented,
(2B, C, p, p)); the loss is a residual NT-Xent with EMD similarity between the residuals
n̂ = c − f_θ(c) (crops of the same image are positives) plus a consistency term
(:class:`rcl.losses.RCLLoss`). A network trained this way is a usable denoiser with 0 labels.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..configs import Seed, StrictConfig
from ..data.datasets import contrastive_batch
from ..losses.rcl import RCLLoss
from .base import Method, check_crop, register_method


class RCLConfig(StrictConfig):
    """RCL pre-training on noisy images (defaults: see docs/design.md for how they were chosen).

    Attributes:
        steps: optimisation steps.
        batch_images: B distinct images per batch; each gives two crops (2B crops in all).
        crop_size: side p of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % over the run).
        temperature: τ of the residual NT-Xent.
        contrastive_weight: weight w_c of the contrastive term.
        consistency: consistency variant (blindspot, fidelity, recorruption, none).
        consistency_weight: λ.
        similarity: emd (RCL) or the ablations l2 / cosine.
        normalize: divide residuals by the batch residual std before the similarity.
        mask_ratio: masked pixel fraction for the blind-spot term.
        seed: seeds crops, masks and initial weights (0 ≤ seed ≤ MAX_SEED = 2**63 − 1).
    """

    steps: int = Field(800, ge=1)
    batch_images: int = Field(16, ge=2)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    temperature: float = Field(0.1, gt=0)
    contrastive_weight: float = Field(0.01, ge=0)
    consistency: Literal["blindspot", "fidelity", "recorruption", "none"] = "blindspot"
    consistency_weight: float = Field(1.0, ge=0)
    similarity: Literal["emd", "l2", "cosine"] = "emd"
    normalize: bool = True
    mask_ratio: float = Field(0.03, gt=0, lt=1)
    seed: Seed = 0


PretrainConfig = RCLConfig
"""The historical name of :class:`RCLConfig` (``rcl pretrain``, the README's example)."""


@register_method
class RCL(Method):
    """RCL pretext task on noisy images: :class:`RCLLoss` on :func:`rcl.data.datasets.contrastive_batch`.

    Raises (constructor):
        ValueError: fewer than 2 images (negatives come from other images) or an image smaller
            than the crop.
    """

    name = "rcl"
    Config = RCLConfig
    zero_label = True

    def __init__(self, data, cfg: RCLConfig, **kw):
        if len(data) < 2:
            raise ValueError("RCL pre-training needs at least 2 noisy images (negatives come from other images)")
        check_crop(data, cfg.crop_size)
        super().__init__(data, cfg, **kw)
        self.criterion = RCLLoss(cfg.temperature, cfg.contrastive_weight, cfg.consistency, cfg.consistency_weight,
                                 cfg.similarity, cfg.normalize, cfg.mask_ratio)

    def layout(self) -> tuple[int, int]:
        """Two views of ``min(batch_images, len(data))`` images."""
        return 2, min(self.cfg.batch_images, len(self.source))

    def batch(self, draws):
        return (contrastive_batch(self.source, self.cfg.batch_images, self.cfg.crop_size, draws)[0],)

    def objective(self, model: nn.Module, batch, draws):
        return self.criterion(model, batch[0], draws)

    summed_logs = ("loss", "contrastive", "consistency")

    claim_role = "ours"
