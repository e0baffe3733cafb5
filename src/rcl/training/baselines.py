"""Baseline pre-training methods on noisy images only (issue "Baselines").

Each method follows the trainer's protocol (:class:`rcl.training.trainer.Method`): ``name`` and
``loss(model, generator) -> (loss, logs)`` drawing its own batch of noisy crops
(B, C, crop, crop), values in [0, 1] plus unclipped noise.

* ``n2v``  — Noise2Void (Krull et al., 2019, CVPR): :func:`rcl.losses.noise2void.n2v_loss`.
* ``n2s``  — Noise2Self (Batson & Royer, 2019, ICML): :func:`rcl.losses.noise2self.n2s_loss`.
* ``ne2ne`` — Neighbor2Neighbor (Huang et al., 2021, CVPR): :func:`rcl.losses.neighbor2neighbor.ne2ne_loss`.
* ``simclr`` — SimCLR (Chen et al., 2020, ICML) on the network's bottleneck features with a
  projection head (:class:`rcl.models.projection.ProjectionHead`).
* ``rcl`` — RCL itself (:func:`rcl.training.api.pretrain`); ``none`` — no pre-training.

:func:`run_pretraining` runs any of them by name.
"""

from __future__ import annotations

import os

import torch
from pydantic import Field
from torch import nn

from ..configs import Seed, StrictConfig
from ..data.datasets import ImageSet, contrastive_batch, crop_batch
from ..losses.neighbor2neighbor import ne2ne_loss
from ..losses.noise2self import n2s_loss
from ..losses.noise2void import n2v_loss
from ..losses.ntxent import FeatureNTXent
from ..models.factory import ModelConfig, build_model
from ..models.projection import ProjectionHead, project
from .api import pretrain
from .config import PretrainConfig
from .methods import RCLPretraining
from .trainer import seed_everything, train

# SimCLR's colour jitter, kept mild: per view, x' = (x − mean(x))·c + mean(x) + b with
# c ~ U[1 − CONTRAST_JITTER, 1 + CONTRAST_JITTER] and b ~ U[−BRIGHTNESS_JITTER, BRIGHTNESS_JITTER].
CONTRAST_JITTER = 0.2
BRIGHTNESS_JITTER = 0.1


class BaselineConfig(StrictConfig):
    """Configuration shared by the baseline pre-training methods (fields unused by a method are ignored).

    Attributes:
        steps: optimisation steps (also the length of Ne2Ne's γ ramp).
        batch_size: crops per step (n2v, n2s, ne2ne).
        crop_size: side of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % by the trainer).
        seed: seeds crops, masks and initial weights (0 ≤ seed ≤ MAX_SEED = 2**63 − 1).
        mask_ratio: masked pixel fraction of Noise2Void.
        grid: grid period g of Noise2Self (1/g² of the pixels masked per step).
        gamma: final weight γ of Neighbor2Neighbor's regulariser (ramped linearly from 0).
        temperature: τ of SimCLR's NT-Xent.
        batch_images: distinct images per SimCLR batch (two views each).
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


def _check_size(noisy: ImageSet, crop: int) -> None:
    if noisy.min_side() < crop:
        raise ValueError(f"an image is smaller ({noisy.min_side()} px) than the crop size {crop}")


class N2VPretraining:
    """Noise2Void (Krull et al., 2019): masked-pixel MSE with random-neighbour replacement on
    ``batch_size`` noisy crops (B, C, crop, crop); independent masks per channel."""

    name = "n2v"

    def __init__(self, noisy: ImageSet, cfg: BaselineConfig):
        _check_size(noisy, cfg.crop_size)
        self.noisy, self.cfg = noisy, cfg

    def loss(self, model: nn.Module, generator: torch.Generator):
        x, _ = crop_batch(self.noisy, self.cfg.batch_size, self.cfg.crop_size, generator)
        return n2v_loss(model, x, self.cfg.mask_ratio, generator)


class N2SPretraining:
    """Noise2Self (Batson & Royer, 2019): J-invariant grid masking (period ``grid``, random phase,
    zero-centre interpolation) on ``batch_size`` noisy crops (B, C, crop, crop)."""

    name = "n2s"

    def __init__(self, noisy: ImageSet, cfg: BaselineConfig):
        _check_size(noisy, cfg.crop_size)
        self.noisy, self.cfg = noisy, cfg

    def loss(self, model: nn.Module, generator: torch.Generator):
        x, _ = crop_batch(self.noisy, self.cfg.batch_size, self.cfg.crop_size, generator)
        return n2s_loss(model, x, self.cfg.grid, generator)


class Ne2NePretraining:
    """Neighbor2Neighbor (Huang et al., 2021) on ``batch_size`` noisy crops (B, C, crop, crop);
    the network sees (B, C, crop//2, crop//2) sub-images.

    γ ramps linearly, γ_t = gamma · t / steps at the t-th call of :meth:`loss` (t = 1..steps; the
    reference code sets γ = epoch / n_epoch · 2). The method counts its own calls, so use a fresh
    instance per run.
    """

    name = "ne2ne"

    def __init__(self, noisy: ImageSet, cfg: BaselineConfig):
        _check_size(noisy, cfg.crop_size)
        self.noisy, self.cfg = noisy, cfg
        self.calls = 0

    def current_gamma(self) -> float:
        """γ for the step about to be taken (``calls + 1``)."""
        return self.cfg.gamma * min(self.calls + 1, self.cfg.steps) / self.cfg.steps

    def loss(self, model: nn.Module, generator: torch.Generator):
        gamma = self.current_gamma()
        self.calls += 1
        x, _ = crop_batch(self.noisy, self.cfg.batch_size, self.cfg.crop_size, generator)
        return ne2ne_loss(model, x, gamma, generator)


def color_jitter(x: torch.Tensor, generator: torch.Generator | None = None,
                 contrast: float = CONTRAST_JITTER, brightness: float = BRIGHTNESS_JITTER) -> torch.Tensor:
    """Mild per-image brightness/contrast jitter of a batch (N, C, H, W) (values ~[0, 1], not clipped);
    a weak form of SimCLR's colour distortion (Chen et al., 2020, Sec. 3 and App. A).

    x' = (x − mean) · c + mean + b, with c ~ U[1 − contrast, 1 + contrast] and b ~ U[−brightness,
    brightness] drawn per image (shared by its channels); the mean is over the image's pixels.
    """
    n = x.shape[0]
    c = 1 + contrast * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
    b = brightness * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
    c, b = c.to(x), b.to(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean + b


class SimCLRPretraining:
    """SimCLR (Chen et al., 2020) on the network's encoder.

    Each step draws ``batch_images`` images and two views of each (random crop + dihedral transform +
    :func:`color_jitter`), 2B crops (2B, C, crop, crop); the bottleneck features
    ``model.features(·)[0]`` are average-pooled and projected to 64 dims by a
    :class:`ProjectionHead`, and :class:`rcl.losses.FeatureNTXent` (cosine / τ) contrasts them.

    The head is owned by the method: pass :meth:`extra_parameters` to
    ``train(..., extra_params=...)`` so that it is optimised with the network.

    Args:
        noisy: noisy images, at least 2.
        cfg: uses batch_images, crop_size, temperature.
        feature_channels: channels of ``model.features`` (``model.feature_channels``).
        proj_dim: projection size (64).
    """

    name = "simclr"

    def __init__(self, noisy: ImageSet, cfg: BaselineConfig, feature_channels: int, proj_dim: int = 64):
        if len(noisy) < 2:
            raise ValueError("SimCLR pre-training needs at least 2 noisy images (negatives come from other images)")
        _check_size(noisy, cfg.crop_size)
        self.noisy, self.cfg = noisy, cfg
        self.head = ProjectionHead(feature_channels, proj_dim)
        self.criterion = FeatureNTXent(cfg.temperature)

    def extra_parameters(self) -> list[nn.Parameter]:
        """The projection head's parameters (train them together with the model)."""
        return list(self.head.parameters())

    def loss(self, model: nn.Module, generator: torch.Generator):
        crops, _ = contrastive_batch(self.noisy, self.cfg.batch_images, self.cfg.crop_size, generator)
        views = color_jitter(crops, generator)
        z = project(model, self.head, views)
        loss = self.criterion(z)
        return loss, {"loss": float(loss.detach())}


PRETRAINING_METHODS: dict[str, type | None] = {
    "rcl": RCLPretraining,  # run through rcl.training.api.pretrain with a PretrainConfig
    "simclr": SimCLRPretraining,
    "n2v": N2VPretraining,
    "n2s": N2SPretraining,
    "ne2ne": Ne2NePretraining,
    "none": None,
}


def run_pretraining(name: str, noisy: ImageSet, model_cfg: ModelConfig, cfg_dict: dict | None = None,
                    log_path: str | os.PathLike | None = None, progress: bool = True
                    ) -> tuple[nn.Module, list[dict]]:
    """Pre-train a new network with the method ``name`` on noisy images (C, H, W) only.

    Args:
        name: a key of :data:`PRETRAINING_METHODS`.
        noisy: the noisy training images (values ~[0, 1] plus noise, unclipped).
        model_cfg: architecture; its input channels must match the images.
        cfg_dict: fields of :class:`rcl.training.config.PretrainConfig` for "rcl", of
            :class:`BaselineConfig` otherwise (validated; unknown fields raise).
        log_path: optional per-step CSV log.

    Returns:
        ``(model, history)``; for "none" the freshly initialised network (seeded by ``seed``) and an
        empty history.

    Raises:
        ValueError: unknown method, channel mismatch, too few or too small images.
    """
    if name not in PRETRAINING_METHODS:
        raise ValueError(f"unknown pre-training method {name!r}; use one of {sorted(PRETRAINING_METHODS)}")
    cfg_dict = dict(cfg_dict or {})
    if name == "rcl":
        return pretrain(noisy, model_cfg, PretrainConfig(**cfg_dict), log_path=log_path, progress=progress)
    if noisy.channels != model_cfg.in_channels:
        raise ValueError(f"images have {noisy.channels} channel(s) but the model takes {model_cfg.in_channels}")
    cfg = BaselineConfig(**cfg_dict)
    gen = seed_everything(cfg.seed)
    model = build_model(model_cfg)
    if name == "none":
        model.eval()
        return model, []
    cls = PRETRAINING_METHODS[name]
    extra: list[nn.Parameter] = []
    if cls is SimCLRPretraining:
        method = SimCLRPretraining(noisy, cfg, model.feature_channels)
        device = next(model.parameters()).device
        method.head.to(device)
        extra = method.extra_parameters()
    else:
        method = cls(noisy, cfg)
    history = train(model, method, cfg.steps, cfg.lr, gen, log_path, progress, desc=f"pretrain ({name})",
                    extra_params=extra)
    return model, history
