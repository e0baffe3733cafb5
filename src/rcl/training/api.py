"""``pretrain`` and ``finetune``: the denoising entry points of the README's Python example, thin
wrappers over :func:`rcl.training.fit.fit` with :class:`rcl.tasks.DenoiseTask`."""

from __future__ import annotations

import os

from torch import nn

from ..data.datasets import ImageSet
from ..data.noise import NoiseModel
from ..methods.rcl import PretrainConfig
from ..methods.supervised import FinetuneConfig
from ..models.factory import ModelConfig
from ..tasks.denoise import DenoiseTask
from .fit import fit


def pretrain(noisy: ImageSet, model_cfg: ModelConfig, cfg: PretrainConfig,
             log_path: str | os.PathLike | None = None, progress: bool = True,
             model: nn.Module | None = None) -> tuple[nn.Module, list[dict]]:
    """RCL pre-training of a new network (or of a copy of ``model``) on noisy images only.

    Args:
        noisy: the noisy images (C, H, W), values ~[0, 1] plus noise; no clean target is used.
        model_cfg: architecture; its channel counts must match the images.
        cfg: :class:`PretrainConfig` (= :class:`rcl.methods.RCLConfig`).

    Returns:
        ``(model, history)``.

    Raises:
        ValueError: channel mismatch, fewer than 2 images, or images smaller than the crop.
    """
    res = fit(DenoiseTask(), "rcl", noisy, cfg, model_cfg, init=model, log_path=log_path, progress=progress,
              desc="pretrain (RCL)")
    return res.model, res.history


def finetune(clean: ImageSet, noise: NoiseModel | None, cfg: FinetuneConfig, model_cfg: ModelConfig,
             init: nn.Module | None = None, noisy: ImageSet | None = None,
             log_path: str | os.PathLike | None = None, progress: bool = True,
             desc: str = "finetune") -> tuple[nn.Module, list[dict], list[str]]:
    """Supervised denoising fine-tuning on a label fraction of the clean images.

    Args:
        clean: all training images with clean targets; a fraction ``cfg.label_fraction`` is used.
        noise: synthetic noise model (or None when ``noisy`` pairs are given).
        init: network to start from (a copy is trained); None trains from scratch.
        noisy: optional real noisy counterparts of ``clean`` (same order and sizes).

    Returns:
        ``(model, history, labelled_names)``.

    Raises:
        ValueError: channel mismatch, no synthetic noise and no pairs, images smaller than the crop.
    """
    res = fit(DenoiseTask(), "supervised", clean, cfg, model_cfg, init=init, noise=noise, noisy=noisy,
              log_path=log_path, progress=progress, desc=desc)
    return res.model, res.history, res.labelled
