"""Super-resolution and JDD fine-tuning and data helpers under their old names.

# transitional: remove when benchmark/cli use rcl.tasks / rcl.methods / fit

Everything here is a thin wrapper over :mod:`rcl.tasks` (:class:`~rcl.tasks.SRTask`,
:class:`~rcl.tasks.JDDTask`: degradations, pre-training data, batches) and
:func:`rcl.training.fit.fit` (method ``supervised``).
"""

from __future__ import annotations

import os

from torch import nn

from ..data.datasets import ImageSet
from ..data.degradations import PATTERNS
from ..data.noise import NoiseModel
from ..methods.supervised import FinetuneConfig
from ..models.factory import ModelConfig
from ..tasks.jdd import JDDTask
from ..tasks.sr import SRTask
from .fit import fit


def noisy_lr_images(clean_hr: ImageSet, scale: int, noise: NoiseModel | None,
                    seed: int) -> tuple[ImageSet, ImageSet]:
    """``SRTask(scale).degrade(clean_hr, noise, seed)`` without the σ: ``(noisy_lr, clean_hr_cropped)``."""
    lr, hr, _ = SRTask(scale).degrade(clean_hr, noise, seed)
    return lr, hr


def noisy_mosaics(clean_rgb: ImageSet, pattern: str, noise: NoiseModel | None,
                  seed: int) -> tuple[ImageSet, ImageSet]:
    """``JDDTask(pattern).degrade(clean_rgb, noise, seed)`` without the σ: ``(mosaics, clean_rgb_cropped)``."""
    mos, rgb, _ = JDDTask(pattern).degrade(clean_rgb, noise, seed)
    return mos, rgb


def packed_noisy_mosaics(clean_rgb: ImageSet, pattern: str = "RGGB", noise: NoiseModel | None = None,
                         seed: int = 0) -> ImageSet:
    """``JDDTask(pattern).pretraining_data(clean_rgb, noise, seed)``: packed (4, H/2, W/2) noisy mosaics."""
    return JDDTask(pattern).pretraining_data(clean_rgb, noise, seed)


def finetune_sr(clean: ImageSet, noise: NoiseModel | None, scale: int, cfg: FinetuneConfig,
                body_cfg: ModelConfig, init: nn.Module | None = None,
                log_path: str | os.PathLike | None = None, progress: bool = True,
                desc: str = "finetune (SR)") -> tuple[nn.Module, list[dict], list[str]]:
    """``fit(SRTask(scale), "supervised", ...)``; returns ``(model, history, labelled_names)``."""
    res = fit(SRTask(scale), "supervised", clean, cfg, body_cfg, init=init, noise=noise, log_path=log_path,
              progress=progress, desc=desc)
    return res.model, res.history, res.labelled


def finetune_jdd(clean: ImageSet, noise: NoiseModel | None, pattern: str, cfg: FinetuneConfig,
                 body_cfg: ModelConfig, init: nn.Module | None = None,
                 log_path: str | os.PathLike | None = None, progress: bool = True,
                 desc: str = "finetune (JDD)") -> tuple[nn.Module, list[dict], list[str]]:
    """``fit(JDDTask(pattern), "supervised", ...)``; returns ``(model, history, labelled_names)``."""
    res = fit(JDDTask(pattern), "supervised", clean, cfg, body_cfg, init=init, noise=noise, log_path=log_path,
              progress=progress, desc=desc)
    return res.model, res.history, res.labelled


__all__ = ["PATTERNS", "finetune_jdd", "finetune_sr", "noisy_lr_images", "noisy_mosaics", "packed_noisy_mosaics"]
