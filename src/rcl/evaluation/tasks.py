"""Restoration tasks for the evaluation protocol: how a clean test image becomes the network's
input, which classical reference is scored beside the networks, and which metrics are used.

* ``denoise``: input = noisy image; reference = the noisy input; PSNR/SSIM on all channels.
* ``sr`` (scale s): the clean HR image is cropped to a multiple of s (with a warning), bicubic
  down-scaled (MATLAB ``imresize`` convention) and noised; reference = bicubic up-sampling of the
  noisy LR input; PSNR/SSIM on the Y channel (ITU-R BT.601) with an s-pixel border cropped, as in
  the SR literature, plus RGB PSNR (same border) for colour images.
* ``jdd`` (pattern): the clean RGB image (odd sides cropped) is mosaicked (Bayer) and noised
  (Poisson-Gaussian by default); reference = bilinear demosaicking of the noisy mosaic;
  PSNR/SSIM on RGB.
"""

from __future__ import annotations

import torch

from ..data.datasets import ImageSet, add_noise_per_image
from ..data.noise import NoiseModel
from .metrics import psnr, ssim


class DenoiseTask:
    name = "denoise"
    scale = 1
    reference_name = "noisy input"

    def describe(self) -> str:
        return "denoising"

    def prepare(self, clean: ImageSet, noise: NoiseModel, seed: int):
        """(inputs, targets, sigmas (N,) on [0, 1]) with the protocol's fixed-seed noise."""
        noisy, sigmas = add_noise_per_image(clean, noise, seed)
        return noisy, clean, sigmas

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        return inp

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        return {"psnr": psnr(out, target), "ssim": ssim(out, target)}

    def check_model_input(self, channels: int, model_channels: int, what: str,
                          size: tuple[int, int] | None = None) -> None:
        """Raise ValueError naming ``what`` if an input of ``channels`` (and (H, W) ``size``) does
        not fit the model."""
        if channels != model_channels:
            raise ValueError(f"{what}: has {channels} channel(s); the model takes {model_channels}")


class SRTask(DenoiseTask):
    name = "sr"
    reference_name = "bicubic (noisy LR)"

    def __init__(self, scale: int):
        if int(scale) < 2:
            raise ValueError(f"SR scale must be >= 2, got {scale}")
        self.scale = int(scale)

    def describe(self) -> str:
        return f"super-resolution ×{self.scale}"

    def prepare(self, clean: ImageSet, noise: NoiseModel, seed: int):
        from ..data.degradations import bicubic_downscale, crop_image_set

        hr = crop_image_set(clean, self.scale, f"is not divisible by the SR scale {self.scale}")
        lr = ImageSet([bicubic_downscale(im.unsqueeze(0), self.scale)[0] for im in hr.images], list(hr.names))
        noisy, sigmas = add_noise_per_image(lr, noise, seed)
        return noisy, hr, sigmas

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        from ..data.degradations import bicubic_upscale

        return bicubic_upscale(inp.unsqueeze(0), self.scale)[0]

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        from .sr_metrics import psnr_rgb, psnr_y, ssim_y

        res = {"psnr": psnr_y(out, target, self.scale), "ssim": ssim_y(out, target, self.scale)}
        if target.shape[0] == 3:
            res["psnr_rgb"] = psnr_rgb(out, target, self.scale)
        return res


class JDDTask(DenoiseTask):
    name = "jdd"
    reference_name = "bilinear demosaic (noisy)"

    def __init__(self, pattern: str = "RGGB"):
        from ..data.degradations import check_pattern

        self.pattern = check_pattern(pattern)

    def describe(self) -> str:
        return f"joint demosaicking + denoising ({self.pattern})"

    def prepare(self, clean: ImageSet, noise: NoiseModel, seed: int):
        from ..data.degradations import bayer_mosaic, crop_image_set

        if clean.channels != 3:
            raise ValueError(f"JDD evaluation needs RGB test images, got {clean.channels} channel(s)")
        rgb = crop_image_set(clean, 2, "has an odd side; Bayer mosaics need whole 2×2 tiles")
        mos = ImageSet([bayer_mosaic(im.unsqueeze(0), self.pattern)[0] for im in rgb.images], list(rgb.names))
        noisy, sigmas = add_noise_per_image(mos, noise, seed)
        return noisy, rgb, sigmas

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        from ..data.degradations import demosaic_classical

        return demosaic_classical(inp, self.pattern, "bilinear")

    def check_model_input(self, channels: int, model_channels: int, what: str,
                          size: tuple[int, int] | None = None) -> None:
        if channels != 1:
            raise ValueError(f"{what}: a JDD model takes a one-channel Bayer mosaic ({self.pattern}), "
                             f"not a {channels}-channel image")
        if size is not None and min(size) < 2:
            raise ValueError(f"{what}: a Bayer mosaic needs at least 2×2 pixels, got {size[1]}×{size[0]}")


def task_from_metadata(meta: dict):
    """The task a checkpoint was trained for (its metadata's task/scale/pattern)."""
    task = meta.get("task", "denoise")
    try:
        if task == "sr":
            return SRTask(int(meta.get("scale", 2)))
        if task == "jdd":
            return JDDTask(meta.get("pattern", "RGGB"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint metadata: bad {task} record: {exc}") from None
    return DenoiseTask()


__all__ = ["DenoiseTask", "JDDTask", "SRTask", "task_from_metadata"]
