"""Downstream fine-tuning methods (super-resolution, joint demosaicking + denoising) and the data
helpers of RCL pre-training on Bayer mosaics.

The methods plug into :func:`rcl.training.trainer.train` like :class:`SupervisedTraining`: each
step draws ``cfg.batch_size`` random HR crops of side ``cfg.crop_size`` (dihedral-augmented) from the
clean images, degrades them on the fly (fresh noise per crop, ``cfg.resample_noise=True``) and
regresses the clean crop. With fixed noisy inputs (``noisy=...``, or ``resample_noise=False`` in
:func:`finetune_sr` / :func:`finetune_jdd`) input and target crops are cut at aligned positions.

RCL pre-training for JDD needs no new method: pack noisy mosaics into (4, H/2, W/2) images with
:func:`packed_noisy_mosaics` and train a residual UNet(4, 4) with ``RCLPretraining`` (or
:func:`rcl.training.pretrain` with ``ModelConfig(in_channels=4, out_channels=4)``); its weights fit
``JDDNet.body`` exactly (:func:`rcl.models.sr.transfer_weights`). Packing keeps the pixel-wise
noise independent and each channel one colour, so the residual statistics RCL contrasts are
those of the sensor noise.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from ..data.datasets import ImageSet, add_noise_per_image, crop_batch, random_dihedral
from ..data.degradations import (PATTERNS, bayer_mosaic, bicubic_downscale, check_pattern, crop_image_set,
                                 jdd_pair, pack_bayer, sr_pair, unpack_bayer)
from ..data.noise import NoiseModel, PoissonGaussianNoise
from ..losses.supervised import reconstruction_loss
from ..models.factory import ModelConfig
from ..models.sr import JDDNet, SRNet, build_jdd_model, build_sr_model, transfer_weights
from ..models.unet import UNet
from .config import FinetuneConfig
from .methods import labelled_subset
from .trainer import seed_everything, train


# --------------------------------------------------------------------------------------------
# fixed degraded sets (evaluation, fixed training realisations, RCL pre-training data)
# --------------------------------------------------------------------------------------------

def noisy_lr_images(clean_hr: ImageSet, scale: int, noise: NoiseModel | None,
                    seed: int) -> tuple[ImageSet, ImageSet]:
    """Fixed noisy LR images of a clean HR set: crop to a multiple of ``scale`` (warning per image),
    bicubic down-scale, then one noise realisation per image seeded by ``seed`` and its name.

    Returns ``(noisy_lr, clean_hr_cropped)``.
    """
    hr = crop_image_set(clean_hr, scale, f"is not divisible by the SR scale {scale}")
    lr = ImageSet([bicubic_downscale(im.unsqueeze(0), scale)[0] for im in hr.images], list(hr.names))
    if noise is not None:
        lr, _ = add_noise_per_image(lr, noise, seed)
    return lr, hr


def noisy_mosaics(clean_rgb: ImageSet, pattern: str, noise: NoiseModel | None,
                  seed: int) -> tuple[ImageSet, ImageSet]:
    """Fixed noisy (1, H, W) mosaics of clean RGB images (odd sides cropped, with a warning); noise
    None means Poisson-Gaussian with random per-image parameters. Returns ``(mosaics, clean_rgb_cropped)``."""
    if clean_rgb.channels != 3:
        raise ValueError(f"Bayer mosaics are made from RGB images, got {clean_rgb.channels} channel(s)")
    rgb = crop_image_set(clean_rgb, 2, "has an odd side; Bayer mosaics need whole 2×2 tiles")
    mos = ImageSet([bayer_mosaic(im.unsqueeze(0), pattern)[0] for im in rgb.images], list(rgb.names))
    noisy, _ = add_noise_per_image(mos, noise if noise is not None else PoissonGaussianNoise(), seed)
    return noisy, rgb


def packed_noisy_mosaics(clean_rgb: ImageSet, pattern: str = "RGGB", noise: NoiseModel | None = None,
                         seed: int = 0) -> ImageSet:
    """RCL pre-training data for JDD: noisy mosaics (see :func:`noisy_mosaics`) packed to (4, H/2, W/2)."""
    mos, _ = noisy_mosaics(clean_rgb, pattern, noise, seed)
    return ImageSet([pack_bayer(m.unsqueeze(0))[0] for m in mos.images], list(mos.names))


def _aligned_crops(inputs: ImageSet, targets: ImageSet, batch: int, crop_in: int, factor: int,
                   generator: torch.Generator, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of side ``crop_in`` from ``inputs`` and the aligned crops of side ``crop_in·factor``
    from ``targets`` (target = input size × factor), with one shared dihedral transform."""
    xs, ys = [], []
    for _ in range(batch):
        i = int(torch.randint(0, len(inputs), (1,), generator=generator))
        x, y = inputs.images[i], targets.images[i]
        _, h, w = x.shape
        if y.shape[-2:] != (h * factor, w * factor):
            raise ValueError(f"{inputs.names[i]}: target {tuple(y.shape[-2:])} is not {factor}× the input {(h, w)}")
        top = int(torch.randint(0, h - crop_in + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - crop_in + 1, (1,), generator=generator))
        x = x[:, top:top + crop_in, left:left + crop_in]
        y = y[:, top * factor:(top + crop_in) * factor, left * factor:(left + crop_in) * factor]
        if augment:
            state = generator.get_state()
            x = random_dihedral(x, generator)
            generator.set_state(state)
            y = random_dihedral(y, generator)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------

class SRTraining:
    """Supervised noisy SR: clean HR crops → bicubic ×1/scale → noise → model → HR loss.

    Args:
        clean: clean HR training images.
        noise: noise added to the LR crops (fresh per crop); None for noise-free SR.
        scale: integer SR factor; ``cfg.crop_size`` (the HR crop) must be a multiple of it.
        cfg: batch size, crop size, loss (``steps``/``lr`` are used by the caller).
        noisy: optional fixed noisy LR images, (C, H/scale, W/scale) for each (C, H, W) in ``clean``
            (see :func:`noisy_lr_images`); the crops are then aligned cuts of both.
    """

    name = "sr"

    def __init__(self, clean: ImageSet, noise: NoiseModel | None, scale: int, cfg: FinetuneConfig,
                 noisy: ImageSet | None = None):
        scale = int(scale)
        if scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale}")
        if cfg.crop_size % scale:
            raise ValueError(f"the HR crop size ({cfg.crop_size}) must be a multiple of the scale ({scale})")
        if clean.min_side() < cfg.crop_size:
            raise ValueError(f"a labelled image is smaller ({clean.min_side()} px) than the crop size {cfg.crop_size}")
        if noise is not None and not noise.synthetic:
            raise ValueError("SR training synthesises the LR input: give a synthetic noise model (or None)")
        if noisy is not None and len(noisy) != len(clean):
            raise ValueError(f"{len(noisy)} noisy LR images for {len(clean)} clean HR images")
        self.clean, self.noise, self.scale, self.cfg, self.noisy = clean, noise, scale, cfg, noisy

    def loss(self, model: nn.Module, generator: torch.Generator):
        if self.noisy is not None:
            x, y = _aligned_crops(self.noisy, self.clean, self.cfg.batch_size, self.cfg.crop_size // self.scale,
                                  self.scale, generator, augment=True)
        else:
            y, _ = crop_batch(self.clean, self.cfg.batch_size, self.cfg.crop_size, generator)
            x, y = sr_pair(y, self.scale, self.noise, generator)
        loss = reconstruction_loss(model(x), y, self.cfg.loss)
        return loss, {"loss": float(loss.detach())}


class JDDTraining:
    """Supervised joint demosaicking + denoising: clean RGB crops (dihedral-augmented *before*
    mosaicking, so the CFA phase is right) → Bayer mosaic → noise → model → RGB loss.

    Args:
        clean: clean RGB training images.
        noise: noise on the mosaic; None = Poisson-Gaussian with random per-image parameters.
        pattern: CFA pattern ("RGGB", "BGGR", "GRBG", "GBRG").
        cfg: ``cfg.crop_size`` must be even.
        noisy: optional fixed noisy (1, H, W) mosaics of ``clean`` (see :func:`noisy_mosaics`);
            crops then start at even offsets and are not augmented (a flip/rotation would change
            the pattern).
    """

    name = "jdd"

    def __init__(self, clean: ImageSet, noise: NoiseModel | None, pattern: str, cfg: FinetuneConfig,
                 noisy: ImageSet | None = None):
        if clean.channels != 3:
            raise ValueError(f"JDD targets are RGB images, got {clean.channels} channel(s)")
        if cfg.crop_size % 2:
            raise ValueError(f"the crop size ({cfg.crop_size}) must be even (whole 2×2 Bayer tiles)")
        if clean.min_side() < cfg.crop_size:
            raise ValueError(f"a labelled image is smaller ({clean.min_side()} px) than the crop size {cfg.crop_size}")
        noise = noise if noise is not None else PoissonGaussianNoise()
        if not noise.synthetic:
            raise ValueError("JDD training synthesises the mosaic: give a synthetic noise model")
        if noisy is not None and len(noisy) != len(clean):
            raise ValueError(f"{len(noisy)} noisy mosaics for {len(clean)} clean images")
        self.clean, self.noise, self.pattern, self.cfg = clean, noise, check_pattern(pattern), cfg
        self.packed = None
        if noisy is not None:
            self.packed = ImageSet([pack_bayer(m.unsqueeze(0))[0] for m in noisy.images], list(noisy.names))

    def loss(self, model: nn.Module, generator: torch.Generator):
        if self.packed is not None:
            xp, y = _aligned_crops(self.packed, self.clean, self.cfg.batch_size, self.cfg.crop_size // 2, 2,
                                   generator, augment=False)
            x = unpack_bayer(xp)
        else:
            y, _ = crop_batch(self.clean, self.cfg.batch_size, self.cfg.crop_size, generator)
            x, y = jdd_pair(y, self.pattern, self.noise, generator)
        loss = reconstruction_loss(model(x), y, self.cfg.loss)
        return loss, {"loss": float(loss.detach())}


# --------------------------------------------------------------------------------------------
# entry points (like rcl.training.finetune)
# --------------------------------------------------------------------------------------------

def _init_model(init: nn.Module | None, fresh, kind: type) -> nn.Module:
    if init is None:
        return fresh()
    if isinstance(init, kind):
        return copy.deepcopy(init)
    if isinstance(init, UNet):
        model = fresh()
        transfer_weights(model.body, init)
        return model
    raise TypeError(f"init must be a {kind.__name__}, a U-Net denoiser or None, got {type(init).__name__}")


def finetune_sr(clean: ImageSet, noise: NoiseModel | None, scale: int, cfg: FinetuneConfig,
                body_cfg: ModelConfig, init: nn.Module | None = None,
                log_path: str | os.PathLike | None = None, progress: bool = True,
                desc: str = "finetune (SR)") -> tuple[SRNet, list[dict], list[str]]:
    """Fine-tune an SRNet on a label fraction of clean HR images.

    Args:
        init: None (fresh), a U-Net (e.g. RCL pre-trained; its weights initialise the body, the
            tail starts at zero = bicubic) or an SRNet (a copy is trained).

    Returns ``(model, history, labelled_names)``.
    """
    if clean.channels != body_cfg.in_channels:
        raise ValueError(f"images have {clean.channels} channel(s) but the model takes {body_cfg.in_channels}")
    labelled = clean.subset(labelled_subset(len(clean), cfg.label_fraction, cfg.seed))
    pairs = None
    if not cfg.resample_noise:
        pairs, labelled = noisy_lr_images(labelled, scale, noise, cfg.seed)
    gen = seed_everything(cfg.seed)
    model = _init_model(init, lambda: build_sr_model(body_cfg, scale), SRNet)
    method = SRTraining(labelled, noise, scale, cfg, noisy=pairs)
    history = train(model, method, cfg.steps, cfg.lr, gen, log_path, progress, desc=desc)
    return model, history, labelled.names


def finetune_jdd(clean: ImageSet, noise: NoiseModel | None, pattern: str, cfg: FinetuneConfig,
                 body_cfg: ModelConfig, init: nn.Module | None = None,
                 log_path: str | os.PathLike | None = None, progress: bool = True,
                 desc: str = "finetune (JDD)") -> tuple[JDDNet, list[dict], list[str]]:
    """Fine-tune a JDDNet on a label fraction of clean RGB images (``body_cfg.in_channels`` = 4).

    Args:
        init: None, a UNet(4, ·) pre-trained on packed noisy mosaics, or a JDDNet (copied).

    Returns ``(model, history, labelled_names)``.
    """
    labelled = clean.subset(labelled_subset(len(clean), cfg.label_fraction, cfg.seed))
    pairs = None
    if not cfg.resample_noise:
        pairs, labelled = noisy_mosaics(labelled, pattern, noise, cfg.seed)
    gen = seed_everything(cfg.seed)
    model = _init_model(init, lambda: build_jdd_model(body_cfg, pattern), JDDNet)
    if isinstance(model, JDDNet) and model.pattern != check_pattern(pattern):
        raise ValueError(f"init was trained for the {model.pattern} pattern, not {pattern}")
    method = JDDTraining(labelled, noise, pattern, cfg, noisy=pairs)
    history = train(model, method, cfg.steps, cfg.lr, gen, log_path, progress, desc=desc)
    return model, history, labelled.names


__all__ = ["JDDTraining", "PATTERNS", "SRTraining", "finetune_jdd", "finetune_sr", "noisy_lr_images",
           "noisy_mosaics", "packed_noisy_mosaics"]
