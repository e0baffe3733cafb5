"""``supervised`` — supervised training on (degraded, clean) crops: fine-tuning on a label fraction
of clean images, for every task (denoising as in DnCNN, Zhang et al., 2017; SR and JDD with the
task's degradation). The batch is the task's (:meth:`rcl.tasks.Task.training_batch`): fresh
synthetic noise per crop, or aligned crops of fixed inputs (real pairs or one fixed realisation);
the loss is :func:`rcl.losses.supervised.reconstruction_loss` (L2 or L1).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..configs import MAX_STEPS, Seed, StrictConfig, check_batch_pixels
from ..data.datasets import as_source
from ..losses.supervised import reconstruction_loss
from .base import Method, check_crop, register_method


def fraction_for_label_count(count: int, n_images: int) -> float:
    """The ``label_fraction`` that selects exactly ``count`` of ``n_images`` labelled images.

    The labelled subset has one definition, :func:`rcl.training.labelled_subset`: ``k = max(1,
    round(fraction · n))`` images by a seeded permutation. A count goes through it as the fraction
    ``count / n``, for which ``round((count / n) · n) == count`` exactly in float64 (the relative
    error of the product is below 2⁻⁵², far under the 0.5 that rounding absorbs), so a count and
    its equivalent fraction select the same images for the same seed.

    Args:
        count: the number of labelled images, 1 ≤ count ≤ n_images.
        n_images: the number of training images (or noisy/clean pairs), ≥ 1.

    Returns:
        the fraction in (0, 1] (1.0 when ``count == n_images``).

    Raises:
        ValueError: ``count`` not in 1..``n_images`` (the message gives the range).
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n_images:
        raise ValueError(f"the number of labelled images must be 1 to {n_images}, got {count!r}")
    return count / n_images


class FinetuneConfig(StrictConfig):
    """Supervised fine-tuning on a label fraction of clean images (a number of labelled images is
    given as its fraction, :func:`fraction_for_label_count`).

    The defaults (2,000 steps of 8 crops of 64², Adam 1e-3, validation every 250 steps) were chosen
    by validation PSNR per CPU-minute (docs/benchmarks.md, "Schedule sweep"); the `rcl finetune`
    command takes its defaults from here.

    Attributes:
        steps: optimisation steps.
        batch_size: crops per step.
        crop_size: crop side in pixels (of the clean target; SR: the HR crop).
        lr: Adam learning rate (cosine-decayed).
        loss: l2 or l1.
        label_fraction: fraction 0 < f ≤ 1 of the training images that have clean targets
            (at least one image is always used).
        resample_noise: draw fresh synthetic noise for every crop (the usual synthetic protocol);
            False keeps one fixed noisy realisation per labelled image.
        seed: seeds the labelled subset, crops and noise (0 ≤ seed ≤ MAX_SEED).
        val_every: validate every this many steps (and after the last) on a validation split held
            out of the labelled images, and keep the weights of the best validation PSNR
            (:mod:`rcl.training.validation`); 0 turns it off, and so does a run shorter than two
            intervals (``2 · val_every > steps``: nothing to select from).
        val_fraction: the share (at most half) of the labelled images held out for validation (at
            least one).
        val_min_labels: validate only when at least this many images are labelled (fewer: no
            validation, the last step's weights are kept, every label trains).
    """

    steps: int = Field(2000, ge=1, le=MAX_STEPS)
    batch_size: int = Field(8, ge=1)
    crop_size: int = Field(64, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    loss: Literal["l2", "l1"] = "l2"
    label_fraction: float = Field(1.0, gt=0, le=1)
    resample_noise: bool = True
    seed: Seed = 0
    val_every: int = Field(250, ge=0)
    val_fraction: float = Field(0.1, gt=0, le=0.5)
    val_min_labels: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _batch_fits(self):
        check_batch_pixels(self.batch_size, self.crop_size, "batch_size × crop_size²")
        return self


@register_method
class Supervised(Method):
    """Supervised regression of the clean crop from the task's degraded crop.

    Args: see :class:`rcl.methods.Method`; ``data`` are the labelled clean targets, ``inputs``
    optional fixed inputs aligned with them (one per image), ``noise`` the synthetic noise applied
    on the fly otherwise.

    Raises (constructor):
        ValueError: a labelled image smaller than the crop, or ``inputs`` not one per image.
    """

    name = "supervised"
    Config = FinetuneConfig
    supervised = True

    def __init__(self, data, cfg: FinetuneConfig, **kw):
        check_crop(data, cfg.crop_size, "a labelled image")
        super().__init__(data, cfg, **kw)
        if self.inputs is not None and len(self.inputs) != len(data):
            raise ValueError(f"{len(self.inputs)} fixed inputs for {len(data)} labelled images")
        self.input_source = as_source(self.inputs, self.device) if self.inputs is not None else None

    def batch(self, draws):
        """``(x, y)`` from :meth:`rcl.tasks.Task.training_batch` (the synthetic noise is drawn here,
        on the training device)."""
        return self.task.training_batch(self.source, self.input_source, self.noise, self.cfg.batch_size,
                                        self.cfg.crop_size, draws)

    def objective(self, model: nn.Module, batch, draws):
        x, y = batch
        loss = reconstruction_loss(model(x), y, self.cfg.loss)
        return loss, {"loss": loss.detach()}
