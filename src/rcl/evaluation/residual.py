"""How well the learned residual tracks the true noise level (Dong et al., 2022: the residual
n̂ = y − f(y) should carry the image's noise distribution)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import pearsonr
from torch import nn

from ..data.datasets import ImageSet
from .inference import predict


@torch.no_grad()
def residual_stds(model: nn.Module, noisy: ImageSet, tile: int | None = None) -> np.ndarray:
    """Standard deviation of n̂ = y − f(y) for each noisy image, (N,) on the [0, 1] scale."""
    return np.array([float((y - predict(model, y, tile=tile)).std()) for y in noisy.images])


def sigma_correlation(model: nn.Module, noisy: ImageSet, sigmas: torch.Tensor) -> dict:
    """Pearson r between the per-image residual std and the true σ, plus the mean ratio.

    Raises:
        ValueError: fewer than 3 images or a constant σ (r undefined).
    """
    s = np.asarray(sigmas, dtype=np.float64)
    if len(s) < 3 or np.allclose(s, s[0]):
        raise ValueError("need at least 3 images with different σ to correlate")
    r_std = residual_stds(model, noisy)
    r = float(pearsonr(r_std, s).statistic)
    return {"pearson_r": r, "mean_ratio": float(np.mean(r_std / s)), "n_images": len(s)}
