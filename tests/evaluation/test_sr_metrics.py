"""Y-channel PSNR/SSIM of the SR literature (BT.601 studio-swing luma, border crop, uint8 quantisation)."""

import math

import numpy as np
import pytest
import torch

from rcl.evaluation import psnr
from rcl.evaluation.sr_metrics import crop_border, psnr_rgb, psnr_y, rgb_to_y, ssim_y


def _const_u8(h, w, rgb):
    return np.broadcast_to(np.asarray(rgb, dtype=np.uint8), (h, w, 3)).copy()


def test_rgb_to_y_known_values():
    y = rgb_to_y(_const_u8(2, 2, (255, 255, 255)))
    assert y.dtype == np.float64 and y.shape == (2, 2)
    np.testing.assert_allclose(y, 235.0, atol=1e-9)  # 16 + 65.481 + 128.553 + 24.966
    np.testing.assert_allclose(rgb_to_y(_const_u8(1, 1, (0, 0, 0))), 16.0)
    # (100, 150, 200): 16 + (65.481·100 + 128.553·150 + 24.966·200) / 255
    np.testing.assert_allclose(rgb_to_y(_const_u8(1, 1, (100, 150, 200))), 136.87941176470588, atol=1e-9)
    t = torch.tensor([100, 150, 200], dtype=torch.float64).view(3, 1, 1) / 255
    out = rgb_to_y(t)
    assert out.shape == (1, 1, 1)
    assert float(out) == pytest.approx(136.87941176470588 / 255)
    with pytest.raises(ValueError, match="3"):
        rgb_to_y(torch.rand(1, 4, 4))


def test_rgb_to_y_matches_skimage_rgb2ycbcr():
    from skimage.color import rgb2ycbcr

    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(img), rgb2ycbcr(img)[..., 0], atol=1e-9)


def test_psnr_y_hand_computation_constant_images():
    """Constant images differing by 10 in R: ΔY = 65.481·10/255, MSE = ΔY², PSNR = 10·log10(255²/MSE)."""
    pred = _const_u8(16, 16, (100, 150, 200))
    target = _const_u8(16, 16, (110, 150, 200))
    dy = 65.481 * 10 / 255  # 2.56788…
    expected = 10 * math.log10(255 ** 2 / dy ** 2)  # 39.9393… dB
    assert expected == pytest.approx(39.93930115406725)
    assert psnr_y(pred, target) == pytest.approx(expected, abs=1e-9)
    assert psnr_y(pred, target, border=4) == pytest.approx(expected, abs=1e-9)
    # the same images as float tensors in [0, 1] (quantised back to the same uint8 values)
    tp = torch.from_numpy(pred).permute(2, 0, 1).float() / 255
    tt = torch.from_numpy(target).permute(2, 0, 1).float() / 255
    assert psnr_y(tp, tt, border=2) == pytest.approx(expected, abs=1e-9)
    # MATLAB's rounded uint8 Y: 137 vs 139 → MSE 4
    assert psnr_y(pred, target, round_y=True) == pytest.approx(10 * math.log10(255 ** 2 / 4))


def test_border_crop_ignores_the_frame():
    target = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    pred = target.clone()
    pred[:, :3] = 0  # top 3 rows wrong
    pred[:, :, -2:] = 1
    assert psnr_y(pred, target, border=3) == float("inf")
    assert psnr_y(pred, target, border=2) < 40
    assert psnr_rgb(pred, target, border=3) == float("inf")
    assert psnr_rgb(pred, target, border=1) == pytest.approx(psnr(pred[:, 1:-1, 1:-1], target[:, 1:-1, 1:-1]))
    with pytest.raises(ValueError, match="too small"):
        crop_border(target, 10)


def test_grayscale_used_as_is_and_clamped():
    target = torch.full((1, 12, 12), 0.5)
    pred = torch.full((1, 12, 12), 0.5 + 10 / 255)
    assert psnr_y(pred, target) == pytest.approx(10 * math.log10(255 ** 2 / 100), abs=1e-6)
    # values outside [0, 1] are clamped before quantisation: 1.7 counts as 1.0
    assert psnr_y(torch.full((1, 12, 12), 1.7), torch.ones(1, 12, 12)) == float("inf")


def test_ssim_y():
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert ssim_y(img, img, border=2) == pytest.approx(1.0)
    noisy = (img + 0.1 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert 0 < ssim_y(noisy, img, border=2) < 0.99
    with pytest.raises(ValueError, match="11×11"):
        ssim_y(img[:, :14, :14], img[:, :14, :14], border=2)
    with pytest.raises(ValueError, match="differ"):
        psnr_y(img, img[:, :30])
