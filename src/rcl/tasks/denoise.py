"""Denoising (RCL's own task; Dong et al., 2022, arXiv 2106.10070): noisy (C, H, W) → clean (C, H, W).

* input = the clean image plus noise (not clipped); the protocol's fixed noise is seeded per image
  by (seed, file name) (:func:`rcl.data.datasets.add_noise_per_image`);
* reference row = the noisy input; PSNR/SSIM on all channels (uint8, peak 255);
* network = :func:`rcl.models.build_model` of the body config (U-Net or DnCNN).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data.datasets import ImageSet, add_noise_per_image, crop_batch
from ..data.noise import NoiseModel
from ..models.factory import ModelConfig, build_model
from .base import Task, check_channels, meta_pattern, unit_scale


class DenoiseTask(Task):
    """Blind denoising with the noise model of the run (synthetic or real pairs)."""

    name = "denoise"
    train_noise = "gaussian:5-50"
    eval_noise = "gaussian:25"
    reference_name = "noisy input"
    input_is_noisy_target = True

    def describe(self) -> str:
        return "denoising"

    @classmethod
    def from_metadata(cls, meta: dict) -> "DenoiseTask":
        unit_scale(meta, cls.name)
        meta_pattern(meta, None)  # pre-training on packed mosaics records its pattern: validated, not used
        return cls()

    def build_model(self, body: ModelConfig, meta: dict | None = None) -> nn.Module:
        return build_model(body)

    def init_model(self, body: ModelConfig, init: nn.Module | None) -> nn.Module:
        return copy.deepcopy(init) if init is not None else build_model(body)

    # ------------------------------------------------------------------ data

    def degrade(self, clean: ImageSet, noise: NoiseModel | None, seed: int):
        if noise is None:
            raise ValueError("denoising needs a noise model to degrade clean images")
        noisy, sigmas = add_noise_per_image(clean, noise, seed)
        return noisy, clean, sigmas

    def training_batch(self, clean, inputs, noise, batch, crop, generator):
        if inputs is not None:
            x, y = crop_batch(inputs, batch, crop, generator, targets=clean)
            return x, y
        y, _ = crop_batch(clean, batch, crop, generator)
        x, _ = noise(y, generator)
        return x, y

    def check_training(self, clean, body, cfg, noise=None, inputs=None) -> None:
        check_channels(clean, body.in_channels)
        if inputs is None and (noise is None or not noise.synthetic):
            raise ValueError("supervised training needs a synthetic noise model or noisy/clean pairs")
        if inputs is not None and len(inputs) != len(clean):
            raise ValueError(f"{len(inputs)} noisy images for {len(clean)} clean images")

    # ------------------------------------------------------------------ protocol

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        return inp

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        from ..evaluation.metrics import psnr, ssim  # lazy: scikit-image is slow to import

        return {"psnr": psnr(out, target), "ssim": ssim(out, target)}

    # ------------------------------------------------------------------ benchmark hooks

    reference_id = "noisy"

    def classical_restorer(self, name: str, **options):
        """``"bm3d"``: BM3D/CBM3D with the σ the protocol passes (Dabov et al., 2007;
        :func:`rcl.evaluation.bm3d_baseline.bm3d_denoiser`; option ``profile``, default "np")."""
        if name == "bm3d":
            from ..evaluation.bm3d_baseline import bm3d_denoiser

            return bm3d_denoiser(profile=options.get("profile", "np"))
        return super().classical_restorer(name, **options)

    # ------------------------------------------------------------------ command-line hooks

    summary = "noisy → clean, same size and channels"
    protocol_help = "PSNR/SSIM (uint8, peak 255) beside the noisy input"
    is_body = True

    def checkpoint_metadata(self, model: nn.Module) -> dict:
        """Nothing: a checkpoint without a ``task`` field is a denoiser."""
        return {}
