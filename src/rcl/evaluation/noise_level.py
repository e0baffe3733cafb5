"""Noise levels: the oracle σ of a real (noisy, clean) pair, σ estimated from a noisy image alone,
and σ read from a pre-trained network's residual through a calibration on synthetic noise.

σ here is the standard deviation of the noise on the **[0, 1] scale** (multiply by 255 for the
0–255 scale of the command line). Images are (C, H, W) float tensors (or arrays), C = 1 or 3,
values about [0, 1] plus noise.

**Oracle.** :func:`oracle_sigma` is std(noisy − clean) over all pixels and channels: the noise level
of a real pair when the clean reference is known (the upper bound a σ estimator can reach; note
that noisy − clean of a real pair also holds the reference's own residual noise and any
shot-to-shot mismatch, see docs/real-noise/README.md).

**Estimators from the noisy image alone** (:data:`ESTIMATORS`, the default :data:`DEFAULT_ESTIMATOR`
chosen by mean absolute error against the oracle on the PolyU training scenes; the measurement is
in docs/real-noise/README.md, "Noise-level estimators on PolyU (training scenes)"):

* ``wavelet``: scikit-image's ``estimate_sigma`` (Donoho & Johnstone, "Ideal spatial adaptation
  by wavelet shrinkage", Biometrika 1994: median absolute deviation of the finest diagonal
  wavelet sub-band / 0.6745), averaged over the channels. It reads only the finest frequency band,
  which JPEG coding and in-camera processing remove from real sRGB noise: on the PolyU training
  crops it reads 0.13× the oracle on average.
* ``pca``: Chen, Zhu, Heng, "An Efficient Statistical Method for Image Noise Level Estimation",
  ICCV 2015 (:func:`estimate_sigma_pca`): the eigenvalues of the covariance of the image's
  overlapping patches; the noise variance is the mean of the smallest eigenvalues, taken over the
  largest tail whose mean equals its median (the eigenvalues that are noise alone). On the PolyU
  training crops it reads 0.06× the oracle: the weakest patch directions of a JPEG-coded image
  hold almost no noise.
* ``…-boxK`` (K = 2, 3, 4): the same on the image down-sampled K× by K×K box averaging
  (:func:`box_downsample`), times K (the factor for white noise). Averaging makes correlated
  noise closer to white at the new pixel pitch and moves the band the estimator reads to
  frequencies that JPEG keeps; for positively correlated noise the factor K over-corrects, so on
  real noise the two errors partly cancel: which K fits is an empirical matter.
* ``…-pdS`` (S = 2, 3, 4): the same on the S² pixel-shuffle (PD, stride S) sub-images, combined
  as the root mean square; PD keeps each pixel's noise (and its std) but puts neighbours S px
  apart, where real noise is less correlated (:mod:`rcl.data.pd`).

**From a pre-trained network** (``rcl estimate-noise``): the residual n̂ = y − f(y) of a denoiser f
(RCL, Dong et al., IJCAI 2022, arXiv 2106.10070: the residual should carry the image's noise) has a
std that grows with σ, but not as σ itself (f removes part of the noise and leaves some image
detail). :func:`calibrate` measures that relation on clean images with additive white Gaussian
noise at a fixed, seeded grid of σ, and :class:`SigmaCalibration` inverts it (piecewise-linear
interpolation of the monotone (isotonic) means).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.noise import SCALE

__all__ = ["CALIBRATION_SIGMAS", "DEFAULT_ESTIMATOR", "ESTIMATORS", "SigmaCalibration", "box_downsample", "calibrate",
           "estimate_sigma", "estimate_sigma_pca", "estimate_sigma_wavelet", "image_residual_std", "oracle_sigma"]

PCA_PATCH = 8
"""Patch side of :func:`estimate_sigma_pca` (the d = C·8² dimensional patch covariance)."""
PCA_MAX_STRIDE = 3
"""Largest step between the patches of :func:`estimate_sigma_pca` (stride 1 takes every patch;
3 is about 9× faster on large images)."""
PCA_MIN_PATCHES_PER_DIM = 100
"""The automatic stride is the largest (≤ :data:`PCA_MAX_STRIDE`) that leaves at least this many
patches per dimension d: with fewer samples the smallest eigenvalues of the sample covariance fall
below σ² (measured: σ = 25 white noise on a smooth 128² RGB image reads 22.7 at stride 3 with 9
patches per dimension, 24.9 at stride 1)."""


def _as_array(image) -> np.ndarray:
    """(C, H, W) float64 array of a tensor or array; 2-D arrays are taken as one channel."""
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with C = 1 or 3, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("the image holds non-finite values (nan or inf)")
    return arr


def oracle_sigma(noisy, clean) -> float:
    """std(noisy − clean) over all pixels and channels (population std), on the [0, 1] scale.

    Args:
        noisy, clean: (C, H, W) images of one shape (tensors or arrays), [0, 1] scale.

    Raises:
        ValueError: shapes differ.
    """
    a, b = _as_array(noisy), _as_array(clean)
    if a.shape != b.shape:
        raise ValueError(f"noisy {a.shape} and clean {b.shape} shapes differ")
    return float(np.std(a - b))


def estimate_sigma_wavelet(image) -> float:
    """scikit-image's ``estimate_sigma`` (wavelet MAD; Donoho & Johnstone 1994), channels averaged.

    Args:
        image: (C, H, W), C = 1 or 3, [0, 1] scale; at least 2×2.

    Returns:
        σ̂ on the [0, 1] scale (≥ 0).
    """
    from skimage.restoration import estimate_sigma as sk_estimate_sigma

    arr = _as_array(image)
    with warnings.catch_warnings():  # a flat channel: no non-zero detail coefficient, the median of none
        warnings.simplefilter("ignore", RuntimeWarning)
        sig = sk_estimate_sigma(arr.transpose(1, 2, 0), channel_axis=-1, average_sigmas=False)
    # scikit-image takes the MAD of the non-zero finest-scale detail coefficients; a channel with
    # none (constant, or piecewise constant at the finest scale) has no measurable noise: σ̂ = 0
    return float(np.mean([0.0 if math.isnan(v) else v for v in np.atleast_1d(sig)]))


def _patches(arr: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """(N, C·patch²) overlapping patches of a (C, H, W) array, every ``stride`` px."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(arr, (patch, patch), axis=(1, 2))[:, ::stride, ::stride]  # C, h, w, p, p
    c, h, w = win.shape[:3]
    return np.ascontiguousarray(win.transpose(1, 2, 0, 3, 4)).reshape(h * w, c * patch * patch)


def _auto_stride(shape: tuple[int, ...], patch: int) -> int:
    c, h, w = shape
    d = c * patch * patch
    for s in range(PCA_MAX_STRIDE, 1, -1):
        if ((h - patch) // s + 1) * ((w - patch) // s + 1) >= PCA_MIN_PATCHES_PER_DIM * d:
            return s
    return 1


def estimate_sigma_pca(image, patch: int = PCA_PATCH, stride: int | None = None) -> float:
    """Noise level from the eigenvalues of the patch covariance (Chen, Zhu, Heng, "An Efficient
    Statistical Method for Image Noise Level Estimation", ICCV 2015).

    The overlapping ``patch``×``patch`` patches (all channels in one vector of d = C·patch² values,
    every ``stride`` px) give a covariance whose eigenvalues λ₁ ≤ … ≤ λ_d are σ² for directions that
    hold noise alone and larger for directions that also hold image content. Starting from all d,
    the largest eigenvalue is dropped until the mean τ of those left equals their median (as many
    above τ as below); σ̂ = √τ. For white Gaussian noise on a smooth image this is σ; for spatially
    correlated noise it measures the noise in the weakest (highest-frequency) directions, i.e. less
    than its std.

    Args:
        image: (C, H, W), C = 1 or 3, [0, 1] scale; each side at least ``patch``.
        patch: an integer ≥ 1. stride: an integer ≥ 1, or None (automatic).

    Returns:
        σ̂ on the [0, 1] scale (≥ 0).

    Raises:
        ValueError: a side shorter than ``patch``, a bad shape, non-finite values.
    """
    arr = _as_array(image)
    if min(arr.shape[1:]) < patch:
        raise ValueError(f"the PCA noise estimator needs images of at least {patch}×{patch} px, "
                         f"got {arr.shape[2]}×{arr.shape[1]}")
    x = _patches(arr, patch, stride if stride is not None else _auto_stride(arr.shape, patch))
    x = x - x.mean(axis=0, keepdims=True)
    lam = np.sort(np.clip(np.linalg.eigvalsh(x.T @ x / len(x)), 0, None))  # ascending
    for k in range(len(lam), 0, -1):
        tail = lam[:k]
        tau = tail.mean()
        if np.count_nonzero(tail > tau) == np.count_nonzero(tail < tau):
            return float(math.sqrt(tau))
    return float(math.sqrt(lam[0]))  # not reached: one eigenvalue is its own mean and median


def box_downsample(image, k: int) -> np.ndarray:
    """(C, H, W) → (C, ⌊H/k⌋, ⌊W/k⌋): the mean of each k×k block (the last rows / columns that do not
    fill a block are dropped). White noise of std σ becomes white noise of std σ/k."""
    arr = _as_array(image)
    c, h, w = arr.shape[0], arr.shape[1] // k * k, arr.shape[2] // k * k
    return arr[:, :h, :w].reshape(c, h // k, k, w // k, k).mean(axis=(2, 4))


def _box_estimator(base: Callable, k: int) -> Callable:
    def est(image) -> float:
        return k * base(box_downsample(image, k))  # k×k averaging divides the std of white noise by k
    est.__doc__ = f"{k} × σ̂ of the {k}×{k} box-averaged image"
    return est


def _pd_estimator(base: Callable, s: int) -> Callable:
    def est(image) -> float:
        arr = _as_array(image)
        return float(math.sqrt(np.mean([base(arr[:, a::s, b::s]) ** 2 for a in range(s) for b in range(s)])))
    est.__doc__ = f"root mean square of σ̂ over the {s * s} PD (stride {s}) sub-images"
    return est


DOWNSAMPLINGS = (2, 3, 4)
"""The factors k of the ``…-boxK`` and strides s of the ``…-pdS`` estimators."""

# name → fn((C, H, W) image) → σ̂ on the [0, 1] scale (see the module docstring)
ESTIMATORS: dict[str, Callable] = {}
for _name, _base in (("wavelet", estimate_sigma_wavelet), ("pca", estimate_sigma_pca)):
    ESTIMATORS[_name] = _base
    ESTIMATORS.update({f"{_name}-box{k}": _box_estimator(_base, k) for k in DOWNSAMPLINGS})
    ESTIMATORS.update({f"{_name}-pd{k}": _pd_estimator(_base, k) for k in DOWNSAMPLINGS})
del _name, _base

DEFAULT_ESTIMATOR = "wavelet-box3"
"""The estimator with the smallest mean absolute error against the oracle σ on the PolyU training
scenes: 0.74/255 on 44 crops whose oracle σ averages 4.03/255 (``wavelet``: 3.51; the table is in
docs/real-noise/README.md, "Noise-level estimators on PolyU (training scenes)"). It was chosen for
real sRGB camera noise: on white Gaussian noise it reads textured images high (BSD68, σ ∈ [5, 50]:
mean error +6.6/255, against +0.7 for ``wavelet``; docs/real-noise/README.md, "rcl estimate-noise")."""


def estimate_sigma(image, method: str = DEFAULT_ESTIMATOR) -> float:
    """σ̂ of a noisy image on the [0, 1] scale with one of :data:`ESTIMATORS`.

    Raises:
        ValueError: an unknown ``method`` (the known ones are listed), or what the estimator raises.
    """
    try:
        fn = ESTIMATORS[method]
    except KeyError:
        raise ValueError(f"unknown noise-level estimator {method!r}; choose one of {', '.join(ESTIMATORS)}") from None
    return fn(image)


# --------------------------------------------------------------------------- from a network's residual

CALIBRATION_SIGMAS = tuple(range(5, 51, 5))
"""The σ grid of :func:`calibrate`, on the 0–255 scale: 5, 10, …, 50 (RCL's training range)."""


def image_residual_std(model: nn.Module, image: torch.Tensor, per_channel: bool = False,
                       tile: int | None = None) -> float:
    """std of the residual n̂ = y − f(y) of one image over all pixels and channels, on the [0, 1]
    scale (:func:`rcl.evaluation.residual.residual_stds`).

    Args:
        model: a denoiser whose output has the shape of its input.
        image: (C, H, W) noisy image, [0, 1] scale, in the model's channels; or any C with
            ``per_channel``.
        per_channel: run a 1-channel model on each channel as a grayscale image and average the
            channels' residual variances (σ over all channels, as :func:`oracle_sigma`).
        tile: passed to :func:`rcl.evaluation.inference.predict`.
    """
    from ..data.datasets import ImageSet
    from .residual import residual_stds

    if not per_channel:
        return float(residual_stds(model, ImageSet([image], ["image"]), tile=tile)[0])
    planes = ImageSet([image[i:i + 1] for i in range(image.shape[0])], [str(i) for i in range(image.shape[0])])
    return float(np.sqrt(np.mean(residual_stds(model, planes, tile=tile) ** 2)))


def _isotonic(y: Sequence[float]) -> list[float]:
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``y`` in least squares."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in y:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    return [b[0] / b[1] for b in blocks for _ in range(int(b[1]))]


@dataclass(frozen=True)
class SigmaCalibration:
    """The relation between σ and a network's mean residual std, measured on synthetic noise.

    All values on the [0, 1] scale. ``sigmas`` is the grid (increasing), ``residual_stds`` the mean
    residual std of the calibration images at each σ, ``fitted`` its isotonic (non-decreasing,
    pool-adjacent-violators) fit, which must be strictly increasing. Calling the calibration maps a
    residual std to σ̂ by piecewise-linear interpolation of (fitted, sigmas); outside the measured
    range the first / last segment is extended linearly (:meth:`in_range` says whether it was) and
    σ̂ is clipped at 0.
    """

    sigmas: tuple[float, ...]
    residual_stds: tuple[float, ...]
    fitted: tuple[float, ...]
    n_images: int
    seed: int

    def __post_init__(self):
        f = np.asarray(self.fitted)
        if len(f) < 2 or not np.all(np.diff(f) > 0):
            raise ValueError("a calibration needs a residual std that grows strictly with σ")

    def __call__(self, residual_std: float) -> float:
        r, f, s = float(residual_std), self.fitted, self.sigmas
        if r < f[0]:
            i = 0
        elif r > f[-1]:
            i = len(f) - 2
        else:
            return float(np.interp(r, f, s))
        return max(0.0, s[i] + (r - f[i]) * (s[i + 1] - s[i]) / (f[i + 1] - f[i]))

    def in_range(self, residual_std: float) -> bool:
        """Whether ``residual_std`` lies within the measured range (no extrapolation)."""
        return self.fitted[0] <= residual_std <= self.fitted[-1]

    def to_dict(self) -> dict:
        """On the 0–255 scale, for JSON."""
        return {"sigmas": [v * SCALE for v in self.sigmas], "residual_stds": [v * SCALE for v in self.residual_stds],
                "fitted": [v * SCALE for v in self.fitted], "n_images": self.n_images, "seed": self.seed,
                "fit": "isotonic means, piecewise-linear inverse, linear extension outside"}


def calibrate(model: nn.Module, clean, sigmas: Sequence[float] = CALIBRATION_SIGMAS, seed: int = 0,
              tile: int | None = None) -> SigmaCalibration:
    """Measure a denoiser's mean residual std at each σ of a grid on synthetic noise.

    Each clean image gets additive white Gaussian noise of each σ, from a generator seeded by
    ``seed`` and the file name (:func:`rcl.data.datasets.add_noise_per_image`: the same normal draws,
    scaled, at every σ, which keeps the measured curve smooth); the residual std
    (:func:`image_residual_std`) is averaged over the images.

    Args:
        model: a denoiser (output shape = input shape).
        clean: a :class:`rcl.data.datasets.ImageSet` of clean images, [0, 1] scale, in the model's
            channels.
        sigmas: the grid on the **0–255 scale**, at least two distinct positive values
            (default :data:`CALIBRATION_SIGMAS`).
        seed: noise seed (≥ 0).

    Returns:
        :class:`SigmaCalibration` (on the [0, 1] scale).

    Raises:
        ValueError: a bad grid; a network output with NaN or infinite values; a residual std that
            does not grow strictly with σ (the network cannot be calibrated: its isotonic fit has a
            flat step, named by σ).
    """
    from ..data.datasets import add_noise_per_image
    from ..data.noise import GaussianNoise

    grid = sorted({float(s) for s in sigmas})
    if len(grid) < 2 or grid[0] <= 0 or not all(math.isfinite(s) for s in grid):
        raise ValueError(f"the calibration needs at least two distinct positive σ, got {list(sigmas)}")
    means = []
    for s in grid:
        noisy, _ = add_noise_per_image(clean, GaussianNoise(s / SCALE), seed)
        means.append(float(np.mean([image_residual_std(model, y, tile=tile) for y in noisy.images])))
        if not math.isfinite(means[-1]):
            raise ValueError(f"the network's output has NaN or infinite values on the calibration images at "
                             f"σ = {s:g} (weights out of range?): it cannot be calibrated")
    fitted = _isotonic(means)
    for a, b, fa, fb in zip(grid, grid[1:], fitted, fitted[1:]):
        if not fb > fa:
            raise ValueError(f"the residual std of this network does not grow with σ between σ = {a:g} and "
                             f"{b:g} (mean {means[grid.index(a)] * SCALE:.3f} and {means[grid.index(b)] * SCALE:.3f}"
                             f" on the 0–255 scale): it cannot be calibrated")
    return SigmaCalibration(tuple(s / SCALE for s in grid), tuple(means), tuple(fitted), len(clean), seed)
