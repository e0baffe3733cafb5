"""BM3D reference denoiser (bm3d package) behind the Denoiser interface."""

import math

import numpy as np
import pytest
import torch
from skimage import data

from rcl.evaluation import psnr
from rcl.evaluation.bm3d_baseline import bm3d_denoiser

SIGMA = 25 / 255


def _noisy(clean, seed=0):
    return clean + SIGMA * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))


def test_bm3d_gray_beats_noisy_by_4db():
    clean = torch.from_numpy(data.camera()[100:164, 200:264].astype(np.float32) / 255)[None]
    noisy = _noisy(clean)  # unclipped, as in the protocol
    out = bm3d_denoiser()(noisy, SIGMA)
    assert out.shape == clean.shape and out.dtype == torch.float32
    assert psnr(out, clean) > psnr(noisy, clean) + 4


def test_bm3d_rgb_and_sigma_override():
    clean = torch.from_numpy(data.astronaut()[80:112, 200:232].astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    noisy = _noisy(clean, 1)
    out = bm3d_denoiser(sigma_override=SIGMA)(noisy, math.nan)  # real-noise protocol passes σ = nan
    assert out.shape == clean.shape
    assert psnr(out, clean) > psnr(noisy, clean) + 2


def test_bm3d_needs_a_sigma_and_1_or_3_channels():
    with pytest.raises(ValueError):
        bm3d_denoiser()(torch.rand(1, 16, 16), math.nan)
    with pytest.raises(ValueError):
        bm3d_denoiser()(torch.rand(2, 16, 16), SIGMA)
