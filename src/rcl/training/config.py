"""Validated training configurations (pydantic, strict: see :mod:`rcl.configs`). Errors name the
field and the allowed range."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..configs import Seed, StrictConfig


class PretrainConfig(StrictConfig):
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


class FinetuneConfig(StrictConfig):
    """Supervised fine-tuning on a label fraction of clean images.

    Attributes:
        steps: optimisation steps.
        batch_size: crops per step.
        crop_size: crop side in pixels.
        lr: Adam learning rate (cosine-decayed).
        loss: l2 or l1.
        label_fraction: fraction 0 < f ≤ 1 of the training images that have clean targets
            (at least one image is always used).
        resample_noise: draw fresh synthetic noise for every crop (the usual synthetic protocol);
            False keeps one fixed noisy realisation per labelled image.
        seed: seeds the labelled subset, crops and noise (0 ≤ seed ≤ MAX_SEED).
    """

    steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(5e-4, gt=0, le=1)
    loss: Literal["l2", "l1"] = "l2"
    label_fraction: float = Field(1.0, gt=0, le=1)
    resample_noise: bool = True
    seed: Seed = 0
