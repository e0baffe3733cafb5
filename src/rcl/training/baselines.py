"""Baseline pre-training by name with one union config for the benchmark's YAML section.

# transitional: remove when benchmark/cli use rcl.tasks / rcl.methods / fit

The methods themselves live in :mod:`rcl.methods` (one module and one config each); this module
only keeps :class:`BaselineConfig`, :func:`run_pretraining` and :data:`PRETRAINING_METHODS` for
the callers that still import them.
"""

from __future__ import annotations

import os

from pydantic import Field
from torch import nn

from ..configs import Seed, StrictConfig
from ..data.datasets import ImageSet
from ..methods import PRETRAINING_METHODS, get_method
from ..models.factory import ModelConfig
from ..tasks.denoise import DenoiseTask
from .fit import fit


class BaselineConfig(StrictConfig):
    """The union of the baselines' config fields (a method uses only its own: see
    :mod:`rcl.methods`); :meth:`for_method` gives the method's config.

    Attributes:
        steps, batch_size, crop_size, lr, seed: as in every method config.
        mask_ratio: Noise2Void. grid: Noise2Self. gamma: Neighbor2Neighbor.
        temperature, batch_images: SimCLR.
    """

    steps: int = Field(800, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    seed: Seed = 0
    mask_ratio: float = Field(0.03, gt=0, lt=1)
    grid: int = Field(4, ge=2)
    gamma: float = Field(2.0, ge=0)
    temperature: float = Field(0.1, gt=0)
    batch_images: int = Field(16, ge=2)

    def for_method(self, name: str):
        """The config of method ``name`` made of this config's fields that it has."""
        cls = get_method(name)
        return cls.Config(**{k: v for k, v in self.model_dump().items() if k in cls.Config.model_fields})


def run_pretraining(name: str, noisy: ImageSet, model_cfg: ModelConfig, cfg_dict: dict | None = None,
                    log_path: str | os.PathLike | None = None, progress: bool = True
                    ) -> tuple[nn.Module, list[dict]]:
    """Pre-train a new network with the method ``name`` on noisy images (C, H, W) only, through
    :func:`rcl.training.fit` with :class:`rcl.tasks.DenoiseTask` (``noisy`` is already the
    pre-training data, e.g. packed mosaics with a 4-channel ``model_cfg``).

    Args:
        cfg_dict: fields of :class:`rcl.training.config.PretrainConfig` for "rcl", of
            :class:`BaselineConfig` otherwise (validated; unknown fields raise).

    Raises:
        ValueError: unknown method, channel mismatch, too few or too small images.
    """
    if name not in PRETRAINING_METHODS:
        raise ValueError(f"unknown pre-training method {name!r}; use one of {sorted(PRETRAINING_METHODS)}")
    cls = get_method(name)
    cfg_dict = dict(cfg_dict or {})
    if noisy.channels != model_cfg.in_channels:
        raise ValueError(f"images have {noisy.channels} channel(s) but the model takes {model_cfg.in_channels}")
    if set(cls.Config.model_fields) <= set(BaselineConfig.model_fields):
        cfg = BaselineConfig(**cfg_dict).for_method(name)
    else:  # a method with fields of its own (rcl: PretrainConfig)
        cfg = cls.Config(**cfg_dict)
    res = fit(DenoiseTask(), cls, noisy, cfg, model_cfg, log_path=log_path, progress=progress)
    return res.model, res.history


__all__ = ["BaselineConfig", "PRETRAINING_METHODS", "run_pretraining"]
