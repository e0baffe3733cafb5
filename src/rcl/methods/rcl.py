"""``rcl`` — Residual Contrastive Learning (Dong et al., 2022, arXiv 2106.10070), the pretext task
this package is about.

Each step draws B distinct noisy images and two random crops of each (dihedral-augmented,
(2B, C, p, p)); the loss is a residual NT-Xent with EMD similarity between the residuals
n̂ = c − f_θ(c) (crops of the same image are positives) plus a consistency term
(:class:`rcl.losses.RCLLoss`). A network trained this way is a usable denoiser with 0 labels.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_serializer, model_validator
from torch import nn

from ..configs import MAX_STEPS, Seed, StrictConfig, check_batch_pixels
from ..data.datasets import contrastive_batch
from ..evaluation.inference import MAX_PD_STRIDE
from ..losses.masking import check_pd_crop
from ..losses.rcl import RCLLoss
from .base import Method, Predictor, check_crop, register_method

# The largest loss weight accepted: far above any useful value (the defaults are 0.01 and 1); much
# larger weights overflow float32 in the loss or in Adam's squared gradients.
MAX_LOSS_WEIGHT = 1e6
# The smallest positive float32 (denormal): a weight below it is 0 where the loss is computed.
FLOAT32_TINY = float(torch.finfo(torch.float32).smallest_normal) * 2.0 ** -23

PD_FIELDS = ("pd_stride", "pd_stride_inference")


class PDConfig(StrictConfig):
    """Pixel-shuffle down-sampling (PD) for blind-spot training on spatially correlated (real)
    noise (Zhou et al., AAAI 2020; Lee, Son, Lee, AP-BSN, CVPR 2022), shared by the configs of the
    blind-spot methods (rcl, n2v); see docs/design.md, "Pixel-shuffle down-sampling for real noise".

    Attributes:
        pd_stride: training stride s (1 to 16; 1: no PD): each crop is split into its s² sub-images
            before masking and the network (:func:`rcl.losses.masking.pd_blindspot_forward`).
            ``crop_size`` must be a multiple of s with sub-images of at least 8 px (and at least
            the U-Net's 2**depth, checked when the method is built).
        pd_stride_inference: stride (1 to 16) at which the trained network restores an image
            (:func:`rcl.evaluation.inference.predict`'s ``pd_stride``; written to the checkpoint as
            ``pd_stride_inference``). 1 (default): the network sees the full-resolution image.

    For a config with a ``crop_size`` field. Both fields are left out of :meth:`model_dump` when they are 1, so a config without PD dumps
    (and hashes, e.g. in the benchmark's cells) exactly as before these fields existed.
    """

    pd_stride: int = Field(1, ge=1, le=MAX_PD_STRIDE)
    pd_stride_inference: int = Field(1, ge=1, le=MAX_PD_STRIDE)

    DROP_AT_DEFAULT: ClassVar[dict] = {k: 1 for k in PD_FIELDS}
    """Fields left out of :meth:`model_dump` at these values (added after the first benchmarks: a
    config that does not use them dumps, and hashes, as before they existed)."""

    @model_serializer(mode="wrap")
    def _drop_default_pd(self, handler):
        d = handler(self)
        if isinstance(d, dict):
            for k, v in self.DROP_AT_DEFAULT.items():
                if k in d and d[k] == v and type(d[k]) is type(v):
                    d.pop(k)
        return d

    @model_validator(mode="after")
    def _crop_suits_stride(self):
        check_pd_crop(self.crop_size, self.pd_stride)
        return self


def check_pd_network(cfg: PDConfig, model: nn.Module) -> None:
    """Raise ValueError if ``cfg.crop_size`` / ``cfg.pd_stride`` is below the network's minimum
    input (8 px, or the U-Net's 2**depth: :func:`rcl.evaluation.inference.tile_alignment`)."""
    from ..evaluation.inference import tile_alignment

    check_pd_crop(cfg.crop_size, cfg.pd_stride, max(8, tile_alignment(model)))


class PDPredictor:
    """Mixin of the methods with a :class:`PDConfig`: the trained network restores an image with
    :func:`rcl.evaluation.inference.predict` at ``cfg.pd_stride_inference``."""

    @classmethod
    def predictor(cls, model: nn.Module, cfg=None) -> Predictor:
        from ..evaluation.inference import predict

        s = getattr(cfg, "pd_stride_inference", 1)
        if s == 1:
            return super().predictor(model, cfg)
        return lambda noisy, sigma: predict(model, noisy, pd_stride=s)

    @classmethod
    def predictor_id(cls, cfg=None) -> str | None:
        """None (the plain forward pass) at ``pd_stride_inference`` 1, else ``predict(pd_stride=S)``."""
        s = getattr(cfg, "pd_stride_inference", 1)
        return None if s == 1 else f"predict(pd_stride={s})"


class RCLConfig(PDConfig):
    """RCL pre-training on noisy images (defaults: see docs/design.md for how they were chosen).

    Attributes:
        steps: optimisation steps.
        batch_images: B distinct images per batch; each gives two crops (2B crops in all).
        crop_size: side p of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % over the run).
        temperature: τ of the residual NT-Xent (0.001 to 1000: smaller values overflow the logits;
            at τ = 1e30 every logit rounds to the same value and the gradient is exactly 0).
        contrastive_weight: weight w_c of the contrastive term (0 to MAX_LOSS_WEIGHT = 1e6, far
            above any useful value; a positive weight that is 0 in float32, e.g. 1e-50, is refused).
        consistency: consistency variant (blindspot, fidelity, recorruption, neighbor, none; see
            :mod:`rcl.losses.consistency`).
        consistency_weight: λ (0 to 1e6).
        neighbor_gamma: final γ of the ``neighbor`` term's regulariser (ramped linearly from 0 over
            the run, as in Neighbor2Neighbor).
        contrastive_warmup: fraction of the run over which the contrastive weight ramps linearly
            from 0 to ``contrastive_weight`` (0: the full weight from the first step).
        center_residuals: subtract each residual crop's per-channel mean before the similarity, so
            the EMD compares the shapes of the residual distributions, not their offsets.
        similarity: emd (RCL) or the ablations l2 / cosine.
        normalize: divide residuals by the batch residual std before the similarity.
        mask_ratio: masked pixel fraction for the blind-spot term.
        seed: seeds crops, masks and initial weights (0 ≤ seed ≤ MAX_SEED = 2**63 − 1).
        pd_stride, pd_stride_inference: see :class:`PDConfig` (PD needs the blindspot consistency).
    """

    steps: int = Field(2000, ge=1, le=MAX_STEPS)
    batch_images: int = Field(16, ge=2)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    temperature: float = Field(0.1, ge=1e-3, le=1e3)
    contrastive_weight: float = Field(0.01, ge=0, le=MAX_LOSS_WEIGHT)
    consistency: Literal["blindspot", "fidelity", "recorruption", "neighbor", "none"] = "blindspot"
    consistency_weight: float = Field(1.0, ge=0, le=MAX_LOSS_WEIGHT)
    neighbor_gamma: float = Field(2.0, ge=0, le=MAX_LOSS_WEIGHT)
    contrastive_warmup: float = Field(0.0, ge=0, le=1)
    center_residuals: bool = False
    similarity: Literal["emd", "l2", "cosine"] = "emd"
    normalize: bool = True
    mask_ratio: float = Field(0.03, gt=0, lt=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _batch_fits(self):
        check_batch_pixels(2 * self.batch_images, self.crop_size, "2 × batch_images × crop_size²")
        return self

    DROP_AT_DEFAULT: ClassVar[dict] = {**PDConfig.DROP_AT_DEFAULT, "neighbor_gamma": 2.0,
                                       "contrastive_warmup": 0.0, "center_residuals": False}

    @model_validator(mode="after")
    def _neighbor_needs_even_crops(self):
        if self.consistency == "neighbor" and self.crop_size % 2:
            raise ValueError(f"the neighbor consistency term sub-samples 2×2 cells: crop_size must be even, "
                             f"got {self.crop_size}")
        return self

    @field_validator("contrastive_weight", "consistency_weight", "neighbor_gamma")
    @classmethod
    def _not_lost_in_float32(cls, v: float) -> float:
        if v != 0 and abs(v) < FLOAT32_TINY:
            raise ValueError(f"{v:g} is 0 in float32 (below {FLOAT32_TINY:.3g}, where training computes); "
                             "give 0 to turn the term off")
        return v

    @model_validator(mode="after")
    def _some_term_is_on(self):
        if self.contrastive_weight == 0 and (self.consistency == "none" or self.consistency_weight == 0):
            raise ValueError("the contrastive weight is 0 and the consistency term is off (consistency none or "
                             "weight 0): the loss would be 0 and training would change nothing")
        return self

    @model_validator(mode="after")
    def _pd_needs_blindspot(self):
        if self.pd_stride != 1 and self.consistency != "blindspot":
            raise ValueError(f"pd_stride {self.pd_stride} needs the blindspot consistency term "
                             f"(got {self.consistency!r})")
        return self


PretrainConfig = RCLConfig
"""The historical name of :class:`RCLConfig` (``rcl pretrain``, the README's example)."""


@register_method
class RCL(PDPredictor, Method):
    """RCL pretext task on noisy images: :class:`RCLLoss` on :func:`rcl.data.datasets.contrastive_batch`.

    Raises (constructor):
        ValueError: fewer than 2 images (negatives come from other images), an image smaller
            than the crop, or PD sub-images smaller than the network's minimum input.
    """

    name = "rcl"
    Config = RCLConfig
    zero_label = True
    min_images = 2

    def __init__(self, data, cfg: RCLConfig, **kw):
        if len(data) < 2:
            raise ValueError("RCL pre-training needs at least 2 noisy images (negatives come from other images)")
        check_crop(data, cfg.crop_size)
        check_pd_network(cfg, kw["model"])
        super().__init__(data, cfg, **kw)
        self.criterion = RCLLoss(cfg.temperature, cfg.contrastive_weight, cfg.consistency, cfg.consistency_weight,
                                 cfg.similarity, cfg.normalize, cfg.mask_ratio, pd_stride=cfg.pd_stride,
                                 neighbor_gamma=cfg.neighbor_gamma, contrastive_warmup=cfg.contrastive_warmup,
                                 center=cfg.center_residuals)

    def layout(self) -> tuple[int, int]:
        """Two views of ``min(batch_images, len(data))`` images."""
        return 2, min(self.cfg.batch_images, len(self.source))

    def batch(self, draws):
        return (contrastive_batch(self.source, self.cfg.batch_images, self.cfg.crop_size, draws)[0],)

    def objective(self, model: nn.Module, batch, draws):
        step = getattr(draws, "step", None)
        return self.criterion(model, batch[0], draws,
                              progress=min(1.0, step / self.cfg.steps) if step is not None else None)

    summed_logs = ("loss", "contrastive", "consistency")

    claim_role = "ours"
