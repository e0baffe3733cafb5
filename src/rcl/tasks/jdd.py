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

import torch
from torch import nn

from ..data.datasets import ImageSet, add_noise_per_image, as_bank, crop_batch, crop_geometry
from ..data.draws import as_draws
from ..data.degradations import (PATTERNS, bayer_mosaic, check_pattern, crop_image_set, demosaic_classical,
                                 jdd_pair, pack_bayer)
from ..data.noise import NoiseModel, PoissonGaussianNoise
from ..models.factory import ModelConfig
from ..models.jdd import JDD_SKIPS, JDDNet, build_jdd_model
from .base import (Task, TaskFieldError, check_synthesised_training, init_with_body, meta_pattern, short_repr,
                   unet_body_only, unit_scale)


def mosaic_crops(mosaics, targets, batch: int, crop: int, draws) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned crops of side ``crop`` (even) of fixed mosaics (1, H, W) and their RGB targets
    (3, H, W), starting at even offsets (whole 2×2 tiles, so the CFA phase is kept) and not
    flipped or rotated (that would change the pattern); this rank's share of ``batch``.

    Args:
        mosaics, targets: ImageSets or :class:`rcl.data.datasets.ImageBank` objects.
        draws: a :class:`rcl.data.draws.Draws` or a torch.Generator.

    Returns:
        ``(x (b, 1, crop, crop), y (b, 3, crop, crop))``.

    Raises:
        ValueError: a target's size is not its mosaic's (even) size (names the image).
    """
    draws = as_draws(draws)
    src = as_bank(mosaics)
    tgt = as_bank(targets, src.device)
    for name, (h, w), t in zip(src.names, src.sizes_hw, tgt.sizes_hw):  # host-side sizes: no device sync
        if tuple(t) != (h // 2 * 2, w // 2 * 2):
            raise ValueError(f"{name}: target {tuple(t)} is not 2× the input {(h // 2, w // 2)}")
    idx = draws.randint(len(src), batch).to(src.device)
    top, left, _ = crop_geometry(src, idx, crop, draws, batch, multiple=2, dihedral=False)
    return src.crops(idx, top, left, crop), tgt.crops(idx, top, left, crop)


def _refuse_files(images) -> None:
    """JDD pre-training mosaics and packs the whole collection: not from files decoded per batch."""
    from ..data.filebank import FileImageSet

    if isinstance(images, FileImageSet):
        raise ValueError("file-backed collections are not supported for JDD pre-training; use --dataset memory")


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
        return init_with_body(self, body, init, JDDNet, check=self._same_pattern)

    def _same_pattern(self, init: JDDNet) -> None:
        if init.pattern != self.pattern:
            raise ValueError(f"init was trained for the {init.pattern} pattern, not {self.pattern}")

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
            ValueError: a file-backed collection (:class:`rcl.data.filebank.FileImageSet`), real
                noise (mosaics are synthesised from clean images), or not RGB.
        """
        _refuse_files(images)
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
        check_synthesised_training(self, clean, cfg, noise, inputs, crop=("crop size", "even (whole 2×2 Bayer tiles)"),
                                   no_real="JDD training synthesises the mosaic: give a synthetic noise model",
                                   pairs=("noisy mosaics", "clean images"))

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

    # ------------------------------------------------------------------ benchmark hooks

    reference_id = "bilinear"

    def classical_restorer(self, name: str, **options):
        """``"bilinear"`` (the reference) and ``"malvar"``: classical demosaicking of the noisy mosaic
        (:func:`rcl.data.degradations.demosaic_classical`; Malvar, He & Cutler, 2004);
        ``"malvar+bm3d"``: CBM3D (Dabov et al., 2007) on the Malvar output with the σ the protocol
        passes (the noise model's per-image σ on [0, 1], root of the variance averaged over the
        mosaic; option ``profile``, default "np")."""
        pattern = self.pattern
        if name == "malvar":
            return lambda y, sigma: demosaic_classical(y, pattern, "malvar")
        if name == "malvar+bm3d":
            from ..evaluation.bm3d_baseline import bm3d_denoise

            profile = options.get("profile", "np")
            return lambda y, sigma: bm3d_denoise(demosaic_classical(y, pattern, "malvar"), sigma, profile)
        return super().classical_restorer(name, **options)

    def min_test_size(self) -> tuple[int, str | None]:
        """12 px: SSIM's 11×11 window after an odd side is cropped to whole 2×2 Bayer tiles."""
        return 12, "12 px (SSIM's 11×11 window)"

    # ------------------------------------------------------------------ command-line hooks

    summary = "noisy one-channel Bayer mosaic → clean RGB, trained on RGB images"
    protocol_help = "RGB PSNR/SSIM beside bilinear demosaicking"
    pretraining_help = "noisy Bayer mosaics made from RGB images (packed to 4 channels)"
    pretraining_name = "packed Bayer mosaics"
    cli_options = {"pattern": f"Bayer pattern ({', '.join(PATTERNS[:-1])} or {PATTERNS[-1]})"}
    starts_from_denoiser = False

    PACKED_DATA = "packed-bayer"
    """The ``data`` field of a checkpoint pre-trained on packed mosaics (:meth:`pretraining_metadata`)."""

    def check_crop_size(self, crop: int) -> None:
        if crop % 2:
            raise ValueError(f"--crop-size {crop} must be even for --task {self.name} (whole Bayer tiles)")

    def check_tile(self, tile: int) -> None:
        if tile % 2:
            raise ValueError(f"--tile must be even for a JDD model (Bayer phase), got {tile}")

    def body_channels(self, image_channels: int) -> int:
        """4, the packed mosaic, from clean RGB images."""
        if image_channels != 3:
            raise ValueError(f"--task {self.name} needs clean RGB images, got {image_channels} channel(s)")
        return 4

    def output_channels(self, in_channels: int) -> int:
        return 3

    def check_pretraining(self, images: ImageSet, noise: NoiseModel, crop: int, what: str) -> None:
        _refuse_files(images)
        if not noise.synthetic:
            raise ValueError(f"--task {self.name} pre-trains on mosaics synthesised from clean RGB images; "
                             "--noise real is not supported here")
        if images.channels != 3:
            raise ValueError(f"{what}: --task {self.name} needs RGB images to mosaic, got {images.channels} channel(s)")
        side = images.min_side() // 2
        if side < crop:
            raise ValueError(f"packed mosaics are half the image size ({side} px), smaller than "
                             f"--crop-size {crop}; use --crop-size {side} or less")

    def pretraining_metadata(self) -> dict:
        return {"data": self.PACKED_DATA, "pattern": self.pattern}

    @classmethod
    def pretrained_for(cls, meta: dict) -> "JDDTask | None":
        if meta.get("data") != cls.PACKED_DATA:
            return None
        return cls(meta_pattern(meta, "RGGB"))

    def checkpoint_metadata(self, model: nn.Module) -> dict:
        return {"task": self.name, "pattern": self.pattern, "skip": getattr(model, "skip", self.skip)}

    def check_init_task(self, other: Task, pretrained: bool = False) -> None:
        if other.pattern != self.pattern:
            what = f"pre-trained on {other.pattern} mosaics" if pretrained else f"a JDD {other.pattern} checkpoint"
            raise ValueError(f"{what}, not --pattern {self.pattern}")
