"""Training methods that plug into :func:`rcl.training.trainer.train`."""

from __future__ import annotations

import torch
from torch import nn

from ..data.datasets import ImageSet, contrastive_batch, crop_batch
from ..data.noise import NoiseModel
from ..losses.rcl import RCLLoss
from ..losses.supervised import reconstruction_loss
from .config import FinetuneConfig, PretrainConfig


class RCLPretraining:
    """RCL pretext task on noisy images (Dong et al., 2022): two crops per image, residual NT-Xent
    with EMD similarity plus a consistency term (see :class:`rcl.losses.RCLLoss`)."""

    name = "rcl"

    def __init__(self, noisy: ImageSet, cfg: PretrainConfig):
        if len(noisy) < 2:
            raise ValueError("RCL pre-training needs at least 2 noisy images (negatives come from other images)")
        if noisy.min_side() < cfg.crop_size:
            raise ValueError(f"an image is smaller ({noisy.min_side()} px) than the crop size {cfg.crop_size}")
        self.noisy, self.cfg = noisy, cfg
        self.criterion = RCLLoss(cfg.temperature, cfg.contrastive_weight, cfg.consistency, cfg.consistency_weight,
                                 cfg.similarity, cfg.normalize, cfg.mask_ratio)

    def loss(self, model: nn.Module, generator: torch.Generator):
        crops, _ = contrastive_batch(self.noisy, self.cfg.batch_images, self.cfg.crop_size, generator)
        return self.criterion(model, crops, generator)


class SupervisedTraining:
    """Supervised denoising on (noisy, clean) crops: synthetic noise on clean crops (fresh per
    crop when ``resample_noise``), or fixed noisy images given as ``noisy``."""

    name = "supervised"

    def __init__(self, clean: ImageSet, noise: NoiseModel | None, cfg: FinetuneConfig,
                 noisy: ImageSet | None = None):
        if noisy is None and (noise is None or not noise.synthetic):
            raise ValueError("supervised training needs a synthetic noise model or noisy/clean pairs")
        if clean.min_side() < cfg.crop_size:
            raise ValueError(f"a labelled image is smaller ({clean.min_side()} px) than the crop size {cfg.crop_size}")
        self.clean, self.noise, self.cfg, self.noisy = clean, noise, cfg, noisy

    def loss(self, model: nn.Module, generator: torch.Generator):
        if self.noisy is not None:
            x, y = crop_batch(self.noisy, self.cfg.batch_size, self.cfg.crop_size, generator, targets=self.clean)
        else:
            y, _ = crop_batch(self.clean, self.cfg.batch_size, self.cfg.crop_size, generator)
            x, _ = self.noise(y, generator)
        loss = reconstruction_loss(model(x), y, self.cfg.loss)
        return loss, {"loss": float(loss.detach())}


def labelled_subset(n_images: int, fraction: float, seed: int) -> list[int]:
    """Indices of the labelled images: ``max(1, round(fraction · n))`` drawn by a seeded permutation.

    The subsets are nested: a larger fraction with the same seed contains every smaller one.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    k = max(1, round(fraction * n_images))
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[:k])
