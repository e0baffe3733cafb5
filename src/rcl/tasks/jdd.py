"""Joint demosaicking + denoising (JDD): noisy Bayer mosaic (1, H, W) → clean RGB (3, H, W).

* degradation = the clean RGB image, odd sides cropped (bottom/right, with a
  :class:`rcl.data.degradations.CropWarning`), mosaicked with the CFA ``pattern``, then noised on
  the mosaic as on a raw sensor (by default heteroscedastic Poisson-Gaussian noise with random
  per-image parameters; Foi et al., 2008);
* reference row = bilinear demosaicking of the noisy mosaic; PSNR/SSIM on RGB;
* network = :class:`rcl.models.jdd.JDDNet`: the U-Net body on the packed (4, H/2, W/2) mosaic, a
  sub-pixel tail and a classical demosaic skip (Malvar-He-Cutler, 2004, by default);
* self-supervised pre-training runs on *packed* noisy mosaics (4, H/2, W/2) with a residual
  UNet(4, 4), whose weights fit ``JDDNet.body`` exactly. Packing keeps the pixel-wise noise
  independent and each channel one colour, so the residual statistics RCL contrasts are those of
  the sensor noise.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data.datasets import ImageSet, add_noise_per_image, crop_batch
from ..data.degradations import (bayer_mosaic, check_pattern, crop_image_set, demosaic_classical, jdd_pair,
                                 pack_bayer)
from ..data.noise import NoiseModel, PoissonGaussianNoise
from ..models.factory import ModelConfig, transfer_weights
from ..models.jdd import JDD_SKIPS, JDDNet, build_jdd_model
from ..models.unet import UNet
from .base import Task, TaskFieldError, meta_pattern, short_repr, unet_body_only, unit_scale


def mosaic_crops(mosaics: ImageSet, targets: ImageSet, batch: int, crop: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned crops of side ``crop`` (even) of fixed mosaics (1, H, W) and their RGB targets
    (3, H, W), starting at even offsets (whole 2×2 tiles, so the CFA phase is kept) and not
    flipped or rotated (that would change the pattern).

    The crop is drawn on the packed (H/2, W/2) grid: the same draws and pixels as cutting
    :func:`rcl.data.degradations.pack_bayer` images and unpacking the crop.

    Returns:
        ``(x (B, 1, crop, crop), y (B, 3, crop, crop))``.

    Raises:
        ValueError: a target's size is not its mosaic's (even) size (names the image).
    """
    c = crop // 2
    xs, ys = [], []
    for _ in range(batch):
        i = int(torch.randint(0, len(mosaics), (1,), generator=generator))
        m, y = mosaics.images[i], targets.images[i]
        h, w = m.shape[-2] // 2, m.shape[-1] // 2
        if y.shape[-2:] != (h * 2, w * 2):
            raise ValueError(f"{mosaics.names[i]}: target {tuple(y.shape[-2:])} is not 2× the input {(h, w)}")
        top = int(torch.randint(0, h - c + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - c + 1, (1,), generator=generator))
        xs.append(m[:, 2 * top:2 * (top + c), 2 * left:2 * (left + c)])
        ys.append(y[:, 2 * top:2 * (top + c), 2 * left:2 * (left + c)])
    return torch.stack(xs), torch.stack(ys)


class JDDTask(Task):
    """Joint demosaicking + denoising of Bayer mosaics.

    Args:
        pattern: CFA pattern ("RGGB", "BGGR", "GRBG", "GBRG"; any case).
        skip: the JDDNet's classical demosaic skip ("malvar", "bilinear" or None).

    Raises:
        ValueError: unknown pattern or skip.
    """

    name = "jdd"
    train_noise = "poisson-gaussian"
    eval_noise = "poisson-gaussian"
    reference_name = "bilinear demosaic (noisy)"
    input_multiple = 2

    def __init__(self, pattern: str = "RGGB", skip: str | None = "malvar"):
        self.pattern = check_pattern(pattern)
        if skip is not None and skip not in JDD_SKIPS:
            raise ValueError(f"skip must be one of {', '.join(JDD_SKIPS)} or None, got {skip!r}")
        self.skip = skip

    def describe(self) -> str:
        return f"joint demosaicking + denoising ({self.pattern})"

    def metadata(self) -> dict:
        return {"task": self.name, "scale": 1, "pattern": self.pattern, "skip": self.skip}

    @classmethod
    def from_metadata(cls, meta: dict) -> "JDDTask":
        unit_scale(meta, cls.name)
        pattern = meta_pattern(meta, "RGGB")
        skip = "malvar" if "skip" not in meta else meta["skip"]
        if skip is not None and (not isinstance(skip, str) or skip not in JDD_SKIPS):
            raise TaskFieldError("skip", f"must be one of {', '.join(JDD_SKIPS)} or null for task jdd "
                                         f"(got {short_repr(skip)})")
        return cls(pattern, skip)

    def check_body(self, body: ModelConfig) -> None:
        unet_body_only(body, self.name)
        if body.in_channels != 4:
            raise TaskFieldError("model.in_channels", f"task jdd needs 4 (the packed mosaic), got {body.in_channels}")

    def describe_network(self, body: str) -> str:
        return f"JDD {self.pattern} on {body} (skip {self.skip})"

    def build_model(self, body: ModelConfig, meta: dict | None = None) -> JDDNet:
        task = self if meta is None else self.from_metadata(meta)
        return build_jdd_model(body, task.pattern, task.skip)

    def init_model(self, body: ModelConfig, init: nn.Module | None) -> JDDNet:
        """Fresh JDDNet; a copy of a JDDNet ``init`` of the same pattern; or a fresh JDDNet whose
        body gets the weights of a UNet(4, 4) pre-trained on packed mosaics.

        Raises:
            TypeError: another kind of ``init``. ValueError: a JDDNet of another pattern.
        """
        if init is None:
            return self.build_model(body)
        if isinstance(init, JDDNet):
            if init.pattern != self.pattern:
                raise ValueError(f"init was trained for the {init.pattern} pattern, not {self.pattern}")
            return copy.deepcopy(init)
        if isinstance(init, UNet):
            model = self.build_model(body)
            transfer_weights(model.body, init)
            return model
        raise TypeError(f"init must be a JDDNet, a U-Net denoiser or None, got {type(init).__name__}")

    def pretrain_model_config(self, body: ModelConfig) -> ModelConfig:
        """``body`` with 4 input and output channels: the residual UNet(4, 4) on packed mosaics."""
        if body.in_channels == 4 and body.out_channels == 4:
            return body
        return ModelConfig(**{**body.model_dump(), "in_channels": 4, "out_channels": 4})

    # ------------------------------------------------------------------ data

    def degrade(self, clean: ImageSet, noise: NoiseModel | None, seed: int):
        """Fixed noisy (1, H, W) mosaics of clean RGB images (odd sides cropped, with a warning);
        ``noise`` None means Poisson-Gaussian with random per-image parameters.

        Raises:
            ValueError: the images are not RGB.
        """
        if clean.channels != 3:
            raise ValueError(f"Bayer mosaics are made from RGB images, got {clean.channels} channel(s)")
        rgb = crop_image_set(clean, 2, "has an odd side; Bayer mosaics need whole 2×2 tiles")
        mos = ImageSet([bayer_mosaic(im.unsqueeze(0), self.pattern)[0] for im in rgb.images], list(rgb.names))
        noisy, sigmas = add_noise_per_image(mos, noise if noise is not None else PoissonGaussianNoise(), seed)
        return noisy, rgb, sigmas

    def pretraining_data(self, images: ImageSet, noise: NoiseModel | None, seed: int) -> ImageSet:
        """Noisy mosaics of clean RGB ``images`` (:meth:`degrade`) packed to (4, H/2, W/2).

        Raises:
            ValueError: real noise (mosaics are synthesised from clean images), or not RGB.
        """
        if noise is not None and not noise.synthetic:
            raise ValueError("JDD pre-training synthesises noisy mosaics from clean RGB images: "
                             "give a synthetic noise model")
        mos, _, _ = self.degrade(images, noise, seed)
        return ImageSet([pack_bayer(m.unsqueeze(0))[0] for m in mos.images], list(mos.names))

    def training_batch(self, clean, inputs, noise, batch, crop, generator):
        """Clean RGB crops (dihedral-augmented *before* mosaicking, so the CFA phase is right) →
        mosaic → noise (None: Poisson-Gaussian); with fixed ``inputs`` mosaics:
        :func:`mosaic_crops`."""
        if inputs is not None:
            return mosaic_crops(inputs, clean, batch, crop, generator)
        y, _ = crop_batch(clean, batch, crop, generator)
        return jdd_pair(y, self.pattern, noise if noise is not None else PoissonGaussianNoise(), generator)

    def check_training(self, clean, body, cfg, noise=None, inputs=None) -> None:
        if clean.channels != 3:
            raise ValueError(f"JDD targets are RGB images, got {clean.channels} channel(s)")
        if body.in_channels != 4:
            raise ValueError(f"the JDD body takes packed mosaics: body_cfg.in_channels must be 4, "
                             f"got {body.in_channels}")
        if cfg.crop_size % 2:
            raise ValueError(f"the crop size ({cfg.crop_size}) must be even (whole 2×2 Bayer tiles)")
        if noise is not None and not noise.synthetic:
            raise ValueError("JDD training synthesises the mosaic: give a synthetic noise model")
        if inputs is not None and len(inputs) != len(clean):
            raise ValueError(f"{len(inputs)} noisy mosaics for {len(clean)} clean images")

    # ------------------------------------------------------------------ protocol

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        return demosaic_classical(inp, self.pattern, "bilinear")

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        from ..evaluation.metrics import psnr, ssim  # lazy: scikit-image is slow to import

        return {"psnr": psnr(out, target), "ssim": ssim(out, target)}

    def check_model_input(self, channels: int, model_channels: int, what: str,
                          size: tuple[int, int] | None = None) -> None:
        if channels != 1:
            raise ValueError(f"{what}: a JDD model takes a one-channel Bayer mosaic ({self.pattern}), "
                             f"not a {channels}-channel image")
        if size is not None and min(size) < 2:
            raise ValueError(f"{what}: a Bayer mosaic needs at least 2×2 pixels, got {size[1]}×{size[0]}")
