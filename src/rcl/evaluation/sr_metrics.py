"""Metrics of the super-resolution literature: PSNR / SSIM on the luma (Y) channel with a border crop.

Protocol (as in the EDSR/RCAN/SwinIR evaluation code, from MATLAB's ``rgb2ycbcr``):

1. both images are clamped to [0, 1] and quantised to uint8 (like :mod:`rcl.evaluation.metrics`);
2. ``border`` pixels are cropped on every side (SR papers use ``border = scale``);
3. RGB images are converted to Y (ITU-R BT.601, studio swing):
   Y = 16 + 65.481·R + 128.553·G + 24.966·B for R, G, B in [0, 1], i.e. Y in [16, 235] on the
   0–255 scale; Y is kept as a float (not rounded — the Python convention of BasicSR/SwinIR;
   MATLAB's ``rgb2ycbcr`` on uint8 input rounds, which moves PSNR by ~0.01 dB; ``round_y=True``
   reproduces it). Grayscale images are used as they are (no 16–235 mapping);
4. PSNR with peak 255 on the 0–255 scale; SSIM with the settings of :func:`rcl.evaluation.ssim`
   (Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, population covariance), ``data_range=255``.

RGB PSNR is :func:`rcl.evaluation.psnr` on the border-cropped images (:func:`psnr_rgb`).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

from .metrics import psnr, to_uint8

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(img):
    """BT.601 luma Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]), MATLAB ``rgb2ycbcr``.

    The output scale follows the input, as in MATLAB:

    * NumPy uint8 (H, W, 3) → float64 (H, W) on the 0–255 scale (Y in [16, 235]), not rounded;
    * float (NumPy (H, W, 3) or torch (..., 3, H, W)) in [0, 1] → Y / 255 in [16/255, 235/255],
      same type; torch keeps the channel axis: (..., 1, H, W).

    Raises:
        ValueError: not 3 channels on the expected axis.
    """
    if isinstance(img, torch.Tensor):
        if img.ndim < 3 or img.shape[-3] != 3:
            raise ValueError(f"expected a (..., 3, H, W) RGB tensor, got shape {tuple(img.shape)}")
        w = torch.tensor(_Y_WEIGHTS, dtype=img.dtype, device=img.device).view(3, 1, 1)
        return ((img * w).sum(dim=-3, keepdim=True) + 16.0) / 255.0
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
    w = np.asarray(_Y_WEIGHTS)
    if arr.dtype == np.uint8:
        return 16.0 + arr.astype(np.float64) @ w / 255.0
    return (16.0 + arr.astype(np.float64) @ w) / 255.0


def crop_border(img, border: int):
    """Drop ``border`` pixels on every side of a (C, H, W) tensor or an (H, W[, C]) array."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return img
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2:]
        if h <= 2 * border or w <= 2 * border:
            raise ValueError(f"image {w}×{h} is too small for a {border}-px border crop")
        return img[..., border:h - border, border:w - border]
    h, w = img.shape[:2]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"image {w}×{h} is too small for a {border}-px border crop")
    return img[border:h - border, border:w - border]


def _luma(img, border: int, round_y: bool) -> np.ndarray:
    """uint8-quantised, border-cropped image → float64 (H, W) luma on the 0–255 scale."""
    a = crop_border(to_uint8(img), border)
    if a.shape[2] == 1:
        return a[:, :, 0].astype(np.float64)
    if a.shape[2] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {a.shape[2]}")
    y = rgb_to_y(a)
    return np.round(y) if round_y else y


def _pair(pred, target, border, round_y):
    a, b = _luma(pred, border, round_y), _luma(target, border, round_y)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ after the border crop: {a.shape} vs {b.shape}")
    return a, b


def psnr_y(pred, target, border: int = 0, round_y: bool = False) -> float:
    """PSNR (dB, peak 255) on the Y channel after quantisation and a ``border``-px crop.

    Inputs: (C, H, W) float tensors in [0, 1] or (H, W, C) uint8 arrays, C = 1 or 3. ``inf`` if equal.
    """
    a, b = _pair(pred, target, border, round_y)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim_y(pred, target, border: int = 0, round_y: bool = False) -> float:
    """SSIM on the Y channel after quantisation and a ``border``-px crop (≥ 11×11 left)."""
    a, b = _pair(pred, target, border, round_y)
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11×11 pixels, got {a.shape[1]}×{a.shape[0]}")
    return float(structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def psnr_rgb(pred, target, border: int = 0) -> float:
    """:func:`rcl.evaluation.psnr` (all channels, uint8) on the images cropped by ``border`` px."""
    return psnr(crop_border(pred, border), crop_border(target, border))
