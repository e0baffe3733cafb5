"""The one evaluation protocol every number of rcl goes through (docs/protocol.md).

1. Each clean test image gets noise from a generator seeded by (seed, file name), so every
   method sees the very same noisy images and a rerun reproduces them. Real noise: the noisy
   inputs are given (real pairs matched by file name), and each image's σ is the oracle
   std(noisy − clean) (:func:`rcl.evaluation.noise_level.oracle_sigma`).
2. The network sees the noisy image as float (not clipped, as in the DnCNN/BM3D literature).
3. Output and reference are clamped to [0, 1] and quantised to uint8.
4. PSNR (peak 255) and SSIM (Gaussian σ = 1.5, per channel, averaged) per image and as the mean,
   with the noisy input's scores beside them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from ..data.datasets import ImageSet, add_noise_per_image
from ..data.noise import SCALE, NoiseModel
from .inference import predict

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
"""(noisy (C, H, W), σ on [0, 1] or nan) → restored (C, H, W)."""


@dataclass
class ImageScore:
    """Scores of one image. ``psnr_noisy``/``ssim_noisy`` score the task's reference: the noisy
    input (denoising), bicubic up-sampling of the noisy LR input (SR), bilinear demosaicking of
    the noisy mosaic (JDD). For SR, PSNR/SSIM are on the Y channel; ``psnr_rgb`` on RGB (colour)."""

    name: str
    sigma: float  # on the 0–255 scale (real pairs: the oracle std(noisy − clean); nan when unknown)
    psnr_noisy: float
    ssim_noisy: float
    psnr: float
    ssim: float
    psnr_rgb: float | None = None


@dataclass
class EvalResult:
    """Per-image scores and their means (PSNR in dB, SSIM in [0, 1])."""

    method: str
    scores: list[ImageScore] = field(default_factory=list)

    def mean(self, key: str) -> float:
        vals = [getattr(s, key) for s in self.scores]
        return float(sum(vals) / len(vals)) if vals else math.nan

    def summary(self) -> dict:
        return {"method": self.method, "n_images": len(self.scores),
                **{k: self.mean(k) for k in ("psnr_noisy", "ssim_noisy", "psnr", "ssim")}}

    def to_dict(self) -> dict:
        return {**self.summary(), "images": [asdict(s) for s in self.scores]}


def model_denoiser(model: nn.Module, tile: int | None = None, overlap: int | None = None) -> Denoiser:
    """Wrap a network as a :data:`Denoiser` (σ is ignored: rcl networks are blind).

    ``tile``/``overlap`` go to :func:`rcl.evaluation.inference.predict`: by default the whole
    image, or exact tiles when it would exceed the inference memory budget."""
    return lambda noisy, sigma: predict(model, noisy, tile=tile, overlap=overlap)


def make_noisy_test_set(clean: ImageSet, noise: NoiseModel, seed: int = 0) -> tuple[ImageSet, torch.Tensor]:
    """The fixed noisy versions of the test images (step 1 of the protocol) and their σ (N,) on [0, 1]."""
    return add_noise_per_image(clean, noise, seed)


def evaluate(denoisers: dict[str, Denoiser], clean: ImageSet, noise: NoiseModel, seed: int = 0,
             noisy: ImageSet | None = None, sigmas: torch.Tensor | None = None,
             keep_outputs: bool = False, task=None) -> tuple[dict[str, EvalResult], dict[str, list[torch.Tensor]]]:
    """Score every denoiser (restorer) on the same degraded test images.

    Args:
        denoisers: name → denoiser; each gets (noisy (C, H, W), the image's σ on [0, 1]).
        clean: clean test images (C, H, W) in [0, 1].
        noise: the noise model: synthetic (the protocol draws the noisy inputs, unless ``noisy`` is
            given), or :class:`rcl.data.noise.RealNoise` with the real noisy inputs given as ``noisy``.
        seed: noise seed (unused when ``noisy`` is given).
        noisy, sigmas: precomputed noisy images (from :func:`make_noisy_test_set`, or real noisy
            images), one per clean image with the same name and shape, and their σ (N,) on [0, 1],
            optional. For real noise without ``sigmas``, σ is the oracle std(noisy − clean) of each
            pair (:func:`rcl.evaluation.noise_level.oracle_sigma`); for synthetic noise without
            ``sigmas``, nan.
        keep_outputs: also return every restored image.
        task: a :class:`rcl.tasks.Task` (default :class:`rcl.tasks.DenoiseTask`): its
            :meth:`~rcl.tasks.Task.degrade` makes the inputs from the clean images, and it gives
            the reference row and the metrics.

    Returns:
        ``(results, outputs)``: name → :class:`EvalResult` (per image: PSNR in dB and SSIM of the
        restorer and of the task's reference, σ on the 0–255 scale); outputs name → list of (C, H, W).

    Raises:
        ValueError: real noise without ``noisy`` inputs (no clean reference to score against);
            precomputed ``noisy`` inputs for a task whose input is not a noisy copy of the target;
            ``noisy`` images whose names, number or shapes differ from the clean ones (naming
            the image); ``sigmas`` of another length; a restorer whose output has NaN or infinite
            values (naming it and the image).
    """
    from ..tasks.denoise import DenoiseTask  # rcl.tasks imports the metrics of this package

    task = task if task is not None else DenoiseTask()
    if not noise.synthetic and noisy is None:
        raise ValueError("evaluation of real noise needs the noisy images beside the clean ones (real pairs); "
                         "for clean images alone give a synthetic noise model")
    targets = clean
    if noisy is None:
        noisy, targets, sigmas = task.degrade(clean, noise, seed)
    elif not task.input_is_noisy_target:
        raise ValueError("precomputed noisy inputs are only supported for denoising")
    else:
        _check_pairs(noisy, clean)
        if sigmas is None and not noise.synthetic:
            from .noise_level import oracle_sigma

            sigmas = torch.tensor([oracle_sigma(y, x) for y, x in zip(noisy.images, clean.images)],
                                  dtype=torch.float64)
    if sigmas is not None and len(sigmas) != len(noisy):
        raise ValueError(f"{len(sigmas)} σ values for {len(noisy)} noisy images")
    results = {name: EvalResult(name) for name in denoisers}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in denoisers}
    for i, (x, y) in enumerate(zip(targets.images, noisy.images)):
        sigma = float(sigmas[i]) if sigmas is not None else math.nan
        ref = task.score(task.reference(y), x)
        for name, fn in denoisers.items():
            out = fn(y, sigma)
            if out.shape != x.shape:
                raise ValueError(f"{name}: output {tuple(out.shape)} differs from the target {tuple(x.shape)}")
            if not bool(torch.isfinite(out).all()):  # a score of it would be a number of nothing
                raise ValueError(f"{name}: output for {targets.names[i]} is NaN or infinite (weights out of range?)")
            sc = task.score(out, x)
            results[name].scores.append(ImageScore(targets.names[i], sigma * SCALE, ref["psnr"], ref["ssim"],
                                                   sc["psnr"], sc["ssim"], sc.get("psnr_rgb")))
            if keep_outputs:
                outputs[name].append(out)
    return results, outputs


def _check_pairs(noisy: ImageSet, clean: ImageSet) -> None:
    """Given noisy inputs must pair with the clean images one to one: same names, same shapes."""
    if len(noisy) != len(clean):
        raise ValueError(f"{len(noisy)} noisy images for {len(clean)} clean images")
    for a, b, y, x in zip(noisy.names, clean.names, noisy.images, clean.images):
        if a != b:
            raise ValueError(f"{a}: the noisy image is paired with the clean image {b}; names must match")
        if y.shape != x.shape:
            raise ValueError(f"{a}: noisy {tuple(y.shape)} and clean {tuple(x.shape)} shapes differ")
