"""PSNR / SSIM against scikit-image and the closed-form PSNR."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rcl.evaluation.metrics import psnr, ssim, to_uint8


def _pair(c, h=31, w=45, seed=0, noise=12):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _to_tensor(arr):
    return torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("c", [1, 3])
def test_psnr_matches_formula_and_skimage(c):
    a, b = _pair(c, seed=c)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    formula = 10 * math.log10(255 ** 2 / mse)
    assert psnr(a, b) == pytest.approx(formula, abs=1e-9)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-9)
    # tensors in [0, 1] give the same number (quantised exactly back)
    assert psnr(_to_tensor(a), _to_tensor(b)) == pytest.approx(formula, abs=1e-9)
    assert psnr(_to_tensor(a), b) == pytest.approx(formula, abs=1e-9)
    assert psnr(b, a) == pytest.approx(formula, abs=1e-9)


def test_psnr_quantises_and_clamps_float_inputs():
    target = torch.full((1, 4, 4), 0.5)
    pred = target.clone()
    pred[0, 0, 0] = 2.0  # clamped to 1.0 → 255 vs 128
    diff = 255 - 128
    expected = 10 * math.log10(255 ** 2 / (diff ** 2 / 16))
    assert psnr(pred, target) == pytest.approx(expected, abs=1e-9)
    # sub-quantum differences vanish after quantisation
    assert psnr(target + 0.1 / 255, target) == math.inf


def test_psnr_known_value():
    a = np.zeros((4, 4, 1), np.uint8)
    b = np.full((4, 4, 1), 255, np.uint8)
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-12)
    b2 = np.zeros((4, 4, 1), np.uint8)
    b2[0, 0, 0] = 16  # MSE = 16
    assert psnr(a, b2) == pytest.approx(10 * math.log10(255 ** 2 / 16), abs=1e-9)


def test_identical_images_infinite_psnr_unit_ssim():
    a, _ = _pair(3)
    assert psnr(a, a.copy()) == math.inf
    assert ssim(a, a.copy()) == pytest.approx(1.0)
    t = torch.rand(1, 12, 12)
    assert psnr(t, t.clone()) == math.inf


@pytest.mark.parametrize("c", [1, 3])
def test_ssim_matches_skimage(c):
    a, b = _pair(c, seed=10 + c, noise=30)
    ref = structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, channel_axis=2)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-12)
    assert ssim(_to_tensor(a), _to_tensor(b)) == pytest.approx(ref, abs=1e-12)
    assert 0 < ssim(a, b) < 1


def test_ssim_gray_equals_2d_skimage():
    a, b = _pair(1, seed=20, noise=40)
    ref = structural_similarity(b[:, :, 0], a[:, :, 0], data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-12)
    assert ssim(a[:, :, 0], b[:, :, 0]) == pytest.approx(ref, abs=1e-12)  # 2-D uint8 arrays accepted


def test_ssim_rgb_is_mean_of_channels():
    a, b = _pair(3, seed=30, noise=50)
    per = [ssim(a[:, :, k:k + 1], b[:, :, k:k + 1]) for k in range(3)]
    assert ssim(a, b) == pytest.approx(float(np.mean(per)), abs=1e-12)
    assert len(set(np.round(per, 6))) == 3


def test_ssim_symmetric_and_monotone():
    a, _ = _pair(1, seed=40)
    rng = np.random.default_rng(1)
    b_small = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
    b_big = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b_small) == pytest.approx(ssim(b_small, a), abs=1e-12)
    assert ssim(a, b_small) > ssim(a, b_big)
    assert psnr(a, b_small) > psnr(a, b_big)


def test_size_errors():
    a = np.zeros((12, 12, 1), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, np.zeros((12, 13, 1), np.uint8))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, np.zeros((12, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((10, 30, 1), np.uint8), np.zeros((10, 30, 1), np.uint8))
    assert ssim(np.zeros((11, 11, 1), np.uint8), np.ones((11, 11, 1), np.uint8)) < 1
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(1, 5, 5), torch.zeros(3, 5, 5))


def test_to_uint8():
    with pytest.raises(ValueError, match="uint8"):
        to_uint8(np.zeros((4, 4, 1), np.float32))
    out = to_uint8(torch.tensor([[[0.0, 1.0]]]))
    assert out.dtype == np.uint8 and out.shape == (1, 2, 1) and out.ravel().tolist() == [0, 255]
    assert to_uint8(np.zeros((3, 4), np.uint8)).shape == (3, 4, 1)
