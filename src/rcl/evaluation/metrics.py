"""PSNR and SSIM on quantised images, computed by scikit-image.

Protocol (docs/protocol.md): both images are clamped to [0, 1] and quantised to uint8 before
the metric; PSNR uses peak 255; SSIM uses the settings of Wang et al. (2004): Gaussian window
σ = 1.5, K1 = 0.01, K2 = 0.03, population covariance, computed per channel and averaged.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..data.io import quantize


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) float tensor in [0, 1] → (H, W, C) uint8; uint8 arrays pass through."""
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise ValueError(f"expected uint8 array, got {img.dtype}")
        return img if img.ndim == 3 else img[:, :, None]
    return quantize(img, 8)


def psnr(pred, target) -> float:
    """PSNR in dB (peak 255) between two images: (C, H, W) float tensors in [0, 1] or (H, W, C) uint8.

    Returns ``inf`` for identical images.

    Raises:
        ValueError: shapes differ.
    """
    a, b = to_uint8(pred), to_uint8(target)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(b, a, data_range=255))


def ssim(pred, target) -> float:
    """SSIM (Wang et al., 2004) with a Gaussian window σ = 1.5, per channel, averaged.

    Inputs as for :func:`psnr`; each side must be at least 11 pixels (the window's support).

    Raises:
        ValueError: shapes differ or the image is smaller than 11×11.
    """
    a, b = to_uint8(pred), to_uint8(target)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11×11 pixels, got {a.shape[1]}×{a.shape[0]}")
    return float(structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, channel_axis=2))
