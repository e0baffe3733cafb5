"""Noise models, separate from networks.

Each model maps a clean batch (B, C, H, W) in [0, 1] to a noisy batch of the same shape and
returns the per-image noise parameters it drew. Randomness comes only from the
``torch.Generator`` passed in, so a seed fixes the noise exactly. Noisy images are *not*
clipped to [0, 1] (the convention of the denoising literature, e.g. DnCNN and BM3D tables).

Noise levels inside the package are on the [0, 1] intensity scale; the CLI takes σ on the
0–255 scale and divides by 255 (see :func:`parse_noise_spec`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .draws import Draws, as_draws

SCALE = 255.0
MAX_SIGMA = 10_000 / SCALE
"""Largest Gaussian σ accepted, on the [0, 1] scale (10 000 on the 0–255 scale, 40× the signal
range): larger values say nothing more and overflow float32 arithmetic."""


def _uniform(lo: float, hi: float, n: int, draws: Draws) -> torch.Tensor:
    return lo + (hi - lo) * draws.sample_rand(n)


def _add_white_gaussian(clean: torch.Tensor, sigma: torch.Tensor, draws: Draws):
    """``clean`` (B, C, H, W) plus white Gaussian noise of σ ``sigma[i]`` (B,) on image i (one
    ``randn`` draw of the batch's shape); returns ``(noisy, {"sigma": sigma})``."""
    b = clean.shape[0]
    noise = draws.sample_randn(*clean.shape, dtype=clean.dtype).to(clean.device)
    return clean + noise * sigma.view(b, 1, 1, 1).to(clean), {"sigma": sigma}


class NoiseModel:
    """Base class. ``model(clean, draws) -> (noisy, params)``; ``draws`` is a
    :class:`rcl.data.draws.Draws` (training: one row per sample of the global batch) or a plain
    ``torch.Generator`` (None: torch's global RNG).

    ``params`` is a dict of per-image tensors of shape (B,); ``params["sigma"]`` is the standard
    deviation of the noise on the [0, 1] scale, averaged over the image for signal-dependent noise.
    """

    name = "base"
    synthetic = True

    def __call__(self, clean: torch.Tensor, generator: "Draws | torch.Generator | None" = None):
        if clean.ndim != 4:
            raise ValueError(f"noise models take a (B, C, H, W) batch, got shape {tuple(clean.shape)}")
        return self.apply(clean, as_draws(generator))

    def apply(self, clean, generator):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise with one fixed σ (σ on the [0, 1] scale)."""

    sigma: float
    name = "gaussian"

    def __post_init__(self):
        if not (math.isfinite(self.sigma) and 0 <= self.sigma <= MAX_SIGMA):
            raise ValueError(f"σ must be in [0, {MAX_SIGMA * SCALE:g}]/255, got {self.sigma * SCALE:g}/255")

    def apply(self, clean, generator):
        return _add_white_gaussian(clean, torch.full((clean.shape[0],), float(self.sigma), device=clean.device), generator)

    def describe(self) -> str:
        return f"gaussian σ={self.sigma * SCALE:g}/255"


@dataclass
class GaussianRangeNoise(NoiseModel):
    """Additive Gaussian noise whose σ is drawn per image from U[sigma_min, sigma_max].

    This is RCL's setting (Dong et al., 2022, arXiv 2106.10070): the noise distribution differs from image
    to image, so the residual carries an image-specific signature. Default U[5, 50]/255.
    """

    sigma_min: float = 5 / SCALE
    sigma_max: float = 50 / SCALE
    name = "gaussian-range"

    def __post_init__(self):
        if not (math.isfinite(self.sigma_min) and math.isfinite(self.sigma_max)
                and 0 <= self.sigma_min <= self.sigma_max <= MAX_SIGMA):
            raise ValueError(f"need 0 <= σ_min <= σ_max <= {MAX_SIGMA * SCALE:g}, got {self.sigma_min * SCALE:g}-"
                             f"{self.sigma_max * SCALE:g} (0-255 scale)")

    def apply(self, clean, generator):
        sigma = _uniform(self.sigma_min, self.sigma_max, clean.shape[0], generator).to(clean.device)  # before the noise
        return _add_white_gaussian(clean, sigma, generator)

    def describe(self) -> str:
        return f"gaussian σ~U[{self.sigma_min * SCALE:g}, {self.sigma_max * SCALE:g}]/255 per image"


@dataclass
class PoissonNoise(NoiseModel):
    """Poisson (shot) noise with peak λ: y = Poisson(λ·x)/λ, so Var[y|x] = x/λ."""

    peak: float
    name = "poisson"

    def __post_init__(self):
        if not (math.isfinite(self.peak) and 0 < self.peak <= 1e9):
            raise ValueError(f"peak λ must be in (0, 1e9] (beyond that Poisson noise is negligible and the rate "
                             f"overflows float32), got {self.peak:g}")

    def apply(self, clean, generator):
        rate = clean.clamp(min=0) * self.peak
        noisy = generator.sample_poisson(rate) / self.peak
        sigma = (clean.clamp(min=0) / self.peak).mean(dim=(1, 2, 3)).sqrt()
        return noisy.to(clean.dtype), {"sigma": sigma}

    def describe(self) -> str:
        return f"poisson peak={self.peak:g}"


@dataclass
class PoissonGaussianNoise(NoiseModel):
    """Heteroscedastic Poisson-Gaussian noise, y = x + n with Var[n|x] = a·x + b².

    The Gaussian approximation of Foi et al. (2008), "Practical Poissonian-Gaussian noise
    modeling and fitting for single-image raw-data". a (shot gain) and b (read noise σ) are drawn
    per image, log-uniformly from [a_min, a_max] and uniformly from [b_min, b_max] ([0, 1] scale).
    """

    a_min: float = 1e-4
    a_max: float = 1e-2
    b_min: float = 2 / SCALE
    b_max: float = 20 / SCALE
    name = "poisson-gaussian"

    def __post_init__(self):
        vals = (self.a_min, self.a_max, self.b_min, self.b_max)
        if not (all(math.isfinite(v) for v in vals) and 0 < self.a_min <= self.a_max
                and 0 <= self.b_min <= self.b_max):
            raise ValueError("need 0 < a_min <= a_max and 0 <= b_min <= b_max")

    def apply(self, clean, generator):
        b = clean.shape[0]
        log_a = _uniform(torch.log(torch.tensor(self.a_min)).item(), torch.log(torch.tensor(self.a_max)).item(),
                         b, generator)
        a = log_a.exp().to(clean.device)
        read = _uniform(self.b_min, self.b_max, b, generator).to(clean.device)
        var = a.view(b, 1, 1, 1) * clean.clamp(min=0) + read.view(b, 1, 1, 1) ** 2
        noise = generator.sample_randn(*clean.shape, dtype=clean.dtype).to(clean.device) * var.sqrt()
        sigma = var.mean(dim=(1, 2, 3)).sqrt()
        return clean + noise, {"sigma": sigma, "a": a, "b": read}

    def describe(self) -> str:
        return (f"poisson-gaussian a~logU[{self.a_min:g}, {self.a_max:g}], "
                f"b~U[{self.b_min * SCALE:g}, {self.b_max * SCALE:g}]/255 per image")


class RealNoise(NoiseModel):
    """The images are already noisy: nothing is added and there is no clean target."""

    name = "real"
    synthetic = False

    def apply(self, clean, generator):
        return clean, {"sigma": torch.full((clean.shape[0],), float("nan"), device=clean.device)}

    def describe(self) -> str:
        return "real (images are already noisy)"


def parse_noise_spec(spec: str) -> NoiseModel:
    """Build a noise model from a CLI string. σ values are on the 0–255 scale.

    Forms: ``gaussian:25`` (fixed σ), ``gaussian:5-50`` (σ ~ U[5, 50] per image),
    ``poisson:30`` (peak λ = 30), ``poisson-gaussian`` (default random per-image parameters),
    ``real`` (already noisy images).

    Raises:
        ValueError: the spec is malformed; the message shows the accepted forms.
    """
    forms = "use gaussian:SIGMA, gaussian:MIN-MAX, poisson:PEAK, poisson-gaussian or real (σ on 0-255)"
    text = spec.strip().lower()
    kind, _, arg = text.partition(":")
    try:
        if kind == "real" and not arg:
            return RealNoise()
        if kind == "poisson-gaussian" and not arg:
            return PoissonGaussianNoise()
        if kind == "poisson" and arg:
            return PoissonNoise(peak=float(arg))
        if kind == "gaussian" and arg:
            num = r"[+]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"
            m = re.fullmatch(rf"({num})\s*-\s*({num})", arg)
            if m:
                lo, hi = float(m.group(1)), float(m.group(2))
                return GaussianRangeNoise(lo / SCALE, hi / SCALE)
            return GaussianNoise(float(arg) / SCALE)
    except ValueError as exc:
        raise ValueError(f"bad noise spec {spec!r}: {exc}; {forms}") from None
    raise ValueError(f"bad noise spec {spec!r}: {forms}")
