"""Noisy super-resolution (scale s): noisy LR (C, H/s, W/s) → clean HR (C, H, W).

* degradation = the clean HR image cropped to a multiple of s (bottom/right, with a
  :class:`rcl.data.degradations.CropWarning`), bicubic down-scaled with MATLAB's ``imresize``
  convention (the "BI" model of the SR literature), then noised on the LR image (noise level on
  the LR intensity scale);
* reference row = bicubic up-sampling of the noisy LR input; PSNR/SSIM on the Y channel
  (ITU-R BT.601) with an s-pixel border cropped, as in the SR literature, plus RGB PSNR (same
  border) for colour images;
* network = :class:`rcl.models.sr.SRNet`: the U-Net body at LR resolution, a sub-pixel tail
  (ESPCN, Shi et al., 2016) and a global bicubic skip (VDSR, Kim et al., 2016).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.datasets import ImageSet, as_bank, crop_batch, crop_geometry
from ..data.draws import as_draws
from ..data.degradations import bicubic_downscale, bicubic_upscale, crop_image_set, sr_pair
from ..data.noise import NoiseModel
from ..models.factory import ModelConfig
from ..models.sr import SRNet, build_sr_model
from .base import (Task, TaskFieldError, check_channels, check_synthesised_training, init_with_body, meta_pattern,
                   noisy_copies, short_repr, unet_body_only)

SR_SCALES = (2, 3, 4, 8)
"""Scales a checkpoint may record (and the CLI accepts)."""


def aligned_crops(inputs, targets, batch: int, crop_in: int, factor: int, draws,
                  augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of side ``crop_in`` from ``inputs`` and the aligned crops of side ``crop_in·factor``
    from ``targets`` (target = input size × factor), with one shared dihedral transform when
    ``augment``; this rank's share of ``batch`` (images drawn with replacement).

    Args:
        inputs, targets: ImageSets or :class:`rcl.data.datasets.ImageBank` objects, one target per input.
        draws: a :class:`rcl.data.draws.Draws` or a torch.Generator.

    Returns:
        ``(x (b, C_in, crop_in, crop_in), y (b, C_t, crop_in·factor, crop_in·factor))``.

    Raises:
        ValueError: a target is not ``factor``× its input (names the image).
    """
    draws = as_draws(draws)
    src, tgt = as_bank(inputs), as_bank(targets)
    tgt = as_bank(targets, src.device)
    for name, (h, w), t in zip(src.names, src.sizes_hw, tgt.sizes_hw):  # host-side sizes: no device sync
        if tuple(t) != (h * factor, w * factor):
            raise ValueError(f"{name}: target {tuple(t)} is not {factor}× the input {(h, w)}")
    idx = draws.randint(len(src), batch).to(src.device)
    top, left, code = crop_geometry(src, idx, crop_in, draws, batch, dihedral=augment)
    return (src.crops(idx, top, left, crop_in, code),
            tgt.crops(idx, top * factor, left * factor, crop_in * factor, code))


class SRTask(Task):
    """Super-resolution ×``scale`` of noisy LR images.

    Args:
        scale: integer factor ≥ 2.
        skip: the SRNet's bicubic skip (checkpoint field ``skip``).

    Raises:
        ValueError: scale < 2.
    """

    name = "sr"
    train_noise = "gaussian:5-50"
    eval_noise = "gaussian:25"
    reference_name = "bicubic (noisy LR)"

    def __init__(self, scale: int = 2, skip: bool = True):
        if int(scale) < 2:
            raise ValueError(f"SR scale must be >= 2, got {scale}")
        self.scale = self.input_multiple = int(scale)
        self.skip = bool(skip)

    def describe(self) -> str:
        return f"super-resolution ×{self.scale}"

    def metadata(self) -> dict:
        return {"task": self.name, "scale": self.scale, "skip": self.skip}

    @classmethod
    def from_metadata(cls, meta: dict) -> "SRTask":
        scale = meta.get("scale")
        if scale is None:
            scale = 2  # checkpoints always record it; kept as the historical default
        if type(scale) is not int or scale not in SR_SCALES:
            raise TaskFieldError("scale", f"must be one of {', '.join(map(str, SR_SCALES))} (got {short_repr(scale)})")
        meta_pattern(meta, None)
        skip = meta.get("skip")
        skip = True if skip is None else skip
        if not isinstance(skip, bool):
            raise TaskFieldError("skip", f"must be true or false for task sr (got {short_repr(skip)})")
        return cls(scale, skip)

    def check_body(self, body: ModelConfig) -> None:
        unet_body_only(body, self.name)

    def describe_network(self, body: str) -> str:
        return f"SR ×{self.scale} on {body}" + ("" if self.skip else " (no skip)")

    def build_model(self, body: ModelConfig, meta: dict | None = None) -> SRNet:
        task = self if meta is None else self.from_metadata(meta)
        return build_sr_model(body, task.scale, skip=task.skip)

    def init_model(self, body: ModelConfig, init: nn.Module | None) -> SRNet:
        """Fresh SRNet; a copy of an SRNet ``init``; or a fresh SRNet whose body gets a U-Net
        denoiser's weights (its tail starts at zero: the bicubic baseline)."""
        return init_with_body(self, body, init, SRNet)

    # ------------------------------------------------------------------ data

    def degrade(self, clean: ImageSet, noise: NoiseModel | None, seed: int):
        """Crop HR to a multiple of the scale (warning per image), bicubic ×1/scale, then one noise
        realisation per LR image (``noise`` None: noise-free SR, σ = 0)."""
        hr = crop_image_set(clean, self.scale, f"is not divisible by the SR scale {self.scale}")
        lr = ImageSet([bicubic_downscale(im.unsqueeze(0), self.scale)[0] for im in hr.images], list(hr.names))
        noisy, sigmas = noisy_copies(lr, noise, seed)
        return noisy, hr, sigmas

    def training_batch(self, clean, inputs, noise, batch, crop, generator):
        """HR crops of side ``crop`` (a multiple of the scale) → bicubic ×1/scale → noise (None: none);
        with fixed LR ``inputs``: aligned LR/HR crops with one shared dihedral transform."""
        if inputs is not None:
            return aligned_crops(inputs, clean, batch, crop // self.scale, self.scale, generator, augment=True)
        y, _ = crop_batch(clean, batch, crop, generator)
        return sr_pair(y, self.scale, noise, generator)

    def check_training(self, clean, body, cfg, noise=None, inputs=None) -> None:
        check_channels(clean, body.in_channels)
        check_synthesised_training(
            self, clean, cfg, noise, inputs, crop=("HR crop size", f"a multiple of the scale ({self.scale})"),
            no_real="SR training synthesises the LR input: give a synthetic noise model (or None)",
            pairs=("noisy LR images", "clean HR images"))

    # ------------------------------------------------------------------ protocol

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        return bicubic_upscale(inp.unsqueeze(0), self.scale)[0]

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        from ..evaluation.sr_metrics import psnr_rgb, psnr_y, ssim_y  # lazy: scikit-image is slow to import

        res = {"psnr": psnr_y(out, target, self.scale), "ssim": ssim_y(out, target, self.scale)}
        if target.shape[0] == 3:
            res["psnr_rgb"] = psnr_rgb(out, target, self.scale)
        return res

    # ------------------------------------------------------------------ benchmark hooks

    reference_id = "bicubic"

    def min_test_size(self) -> tuple[int, str | None]:
        """11 px (SSIM's window) left after the crop to a multiple of the scale (up to scale − 1 px)
        and the ``scale``-px border on both sides of the SR metrics: 11 + 3·scale − 1."""
        n = 11 + 3 * self.scale - 1
        return n, f"{n} px (SSIM's 11×11 window after the {self.scale}-px border); drop the file"

    # ------------------------------------------------------------------ command-line hooks

    summary = "noisy low-res → clean high-res, ×--scale"
    protocol_help = "Y-channel PSNR/SSIM with a border of `scale` px beside bicubic up-sampling"
    score_note = " (Y channel)"
    cli_options = {"scale": f"SR scale factor ({', '.join(map(str, SR_SCALES[:-1]))} or {SR_SCALES[-1]})"}

    @classmethod
    def from_options(cls, **options) -> "SRTask":
        scale = options.get("scale")
        if scale is not None and scale not in SR_SCALES:
            raise ValueError(f"--scale must be {', '.join(map(str, SR_SCALES[:-1]))} or {SR_SCALES[-1]}, got {scale}")
        return super().from_options(**options)

    def check_crop_size(self, crop: int) -> None:
        if crop % self.scale:
            raise ValueError(f"--crop-size {crop} must be a multiple of --scale {self.scale}")

    def checkpoint_metadata(self, model: nn.Module) -> dict:
        return {"task": self.name, "scale": self.scale, "skip": bool(getattr(model, "skip", self.skip))}

    def check_init_task(self, other: Task, pretrained: bool = False) -> None:
        if other.scale != self.scale:
            raise ValueError(f"an SR ×{other.scale} checkpoint, not ×{self.scale}")
