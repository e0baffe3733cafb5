"""High-level entry points shared by the CLI, the demo and the benchmarks."""

from __future__ import annotations

import copy
import os

from torch import nn

from ..data.datasets import ImageSet
from ..data.noise import NoiseModel
from ..models.factory import ModelConfig, build_model
from .config import FinetuneConfig, PretrainConfig
from .methods import RCLPretraining, SupervisedTraining, labelled_subset
from .trainer import seed_everything, train


def pretrain(noisy: ImageSet, model_cfg: ModelConfig, cfg: PretrainConfig,
             log_path: str | os.PathLike | None = None, progress: bool = True,
             model: nn.Module | None = None) -> tuple[nn.Module, list[dict]]:
    """RCL pre-training of a new network (or ``model``) on noisy images only.

    Args:
        noisy: the noisy images (C, H, W); no clean target is used.
        model_cfg: architecture; its channel counts must match the images.

    Raises:
        ValueError: channel mismatch, fewer than 2 images, or images smaller than the crop.
    """
    if noisy.channels != model_cfg.in_channels:
        raise ValueError(f"images have {noisy.channels} channel(s) but the model takes {model_cfg.in_channels}")
    gen = seed_everything(cfg.seed)
    model = model if model is not None else build_model(model_cfg)
    method = RCLPretraining(noisy, cfg)
    history = train(model, method, cfg.steps, cfg.lr, gen, log_path, progress, desc="pretrain (RCL)")
    return model, history


def finetune(clean: ImageSet, noise: NoiseModel | None, cfg: FinetuneConfig, model_cfg: ModelConfig,
             init: nn.Module | None = None, noisy: ImageSet | None = None,
             log_path: str | os.PathLike | None = None, progress: bool = True,
             desc: str = "finetune") -> tuple[nn.Module, list[dict], list[str]]:
    """Supervised fine-tuning on a label fraction of the clean images.

    Args:
        clean: all training images with clean targets; a fraction ``cfg.label_fraction`` is used.
        noise: synthetic noise model (or None when ``noisy`` pairs are given).
        init: network to start from (a copy is trained); None trains from scratch.
        noisy: optional real noisy counterparts of ``clean`` (same order and sizes).

    Returns:
        ``(model, history, labelled_names)``.
    """
    if clean.channels != model_cfg.in_channels:
        raise ValueError(f"images have {clean.channels} channel(s) but the model takes {model_cfg.in_channels}")
    idx = labelled_subset(len(clean), cfg.label_fraction, cfg.seed)
    labelled = clean.subset(idx)
    pairs = noisy.subset(idx) if noisy is not None else None
    if pairs is None and not cfg.resample_noise:
        from ..data.datasets import add_noise_per_image

        pairs, _ = add_noise_per_image(labelled, noise, cfg.seed)
    gen = seed_everything(cfg.seed)
    model = copy.deepcopy(init) if init is not None else build_model(model_cfg)
    method = SupervisedTraining(labelled, noise, cfg, noisy=pairs)
    history = train(model, method, cfg.steps, cfg.lr, gen, log_path, progress, desc=desc)
    return model, history, labelled.names
