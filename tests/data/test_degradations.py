"""SR and Bayer degradations: sizes, crops with warnings, MATLAB bicubic, CFA sampling, demosaicking."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rcl.data import GaussianNoise, ImageSet
from rcl.data.degradations import (PATTERNS, CropWarning, bayer_masks, bayer_mosaic, bicubic_downscale,
                                   bicubic_upscale, bilinear_demosaic, crop_hr, crop_image_set, crop_to_multiple,
                                   demosaic_classical, jdd_pair, malvar_demosaic, pack_bayer, sr_pair,
                                   symmetric_pad, unpack_bayer)

RGB = (0.1, 0.5, 0.9)


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _const_rgb(b, h, w, rgb=RGB):
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(b, 3, h, w).clone()


# ---------------------------------------------------------------- MATLAB imresize, transcribed

def _cubic(x):
    a = np.abs(x)
    return ((1.5 * a ** 3 - 2.5 * a ** 2 + 1) * (a <= 1)
            + (-0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def _contributions(n_in, n_out, scale):
    """MATLAB imresize.m `contributions` for the cubic kernel (antialiasing when scale < 1)."""
    kw = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kw / 2)
    ind = left[:, None] + np.arange(int(np.ceil(kw)) + 2)[None]
    wts = scale * _cubic(scale * (u[:, None] - ind)) if scale < 1 else _cubic(u[:, None] - ind)
    wts = wts / wts.sum(1, keepdims=True)
    aux = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # 'symmetric' boundary
    return wts, aux[np.mod(ind - 1, 2 * n_in).astype(int)]


def matlab_imresize(img, scale):
    h, w = img.shape
    wh, ih = _contributions(h, int(np.ceil(h * scale)), scale)
    out = (img[ih] * wh[:, :, None]).sum(1)
    ww, iw = _contributions(w, int(np.ceil(w * scale)), scale)
    return (out[:, iw] * ww[None]).sum(2)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_matches_matlab_imresize(scale):
    img = _rand(48, 60, dtype=torch.float64)
    down = bicubic_downscale(img[None, None], scale)[0, 0].numpy()
    np.testing.assert_allclose(down, matlab_imresize(img.numpy(), 1 / scale), atol=1e-12)
    small = _rand(7, 9, seed=1, dtype=torch.float64)
    up = bicubic_upscale(small[None, None], scale)[0, 0].numpy()
    np.testing.assert_allclose(up, matlab_imresize(small.numpy(), scale), atol=1e-12)


def test_bicubic_differs_from_plain_torch_only_at_the_border():
    """The documented difference: torch truncates+renormalises the kernel at borders, MATLAB mirrors."""
    x = _rand(1, 1, 48, 64, dtype=torch.float64)
    ours = bicubic_downscale(x, 4)
    plain = F.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True)
    diff = (ours - plain).abs()[0, 0]
    assert diff[2:-2, 2:-2].max() < 1e-12
    assert diff.max() > 1e-4


def test_bicubic_keeps_constants_and_float32():
    x = torch.full((2, 3, 16, 24), 0.3)
    for y in (bicubic_downscale(x, 4), bicubic_upscale(x, 3)):
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, torch.full_like(y, 0.3))


def test_symmetric_pad_any_size():
    x = torch.arange(3.0).view(1, 1, 1, 3)
    out = symmetric_pad(x.expand(1, 1, 3, 3), 4)[0, 0, 0]
    assert out.tolist() == [2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0]


# ---------------------------------------------------------------- SR sizes and crops

@pytest.mark.parametrize("scale", [2, 4])
def test_sr_pair_sizes_divisible(scale):
    hr = _rand(2, 3, 48, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lr, hr2 = sr_pair(hr, scale, GaussianNoise(0.1), torch.Generator().manual_seed(0))
    assert lr.shape == (2, 3, 48 // scale, 64 // scale)
    assert hr2.shape == hr.shape and torch.equal(hr2, hr)


@pytest.mark.parametrize("scale, after", [(2, (50, 66)), (4, (48, 64))])
def test_sr_pair_crops_non_divisible_hr_with_warning(scale, after):
    hr = _rand(1, 1, 51, 67)
    with pytest.warns(CropWarning, match=rf"67×51 px.*scale {scale}.*cropped to {after[1]}×{after[0]}"):
        lr, hr2 = sr_pair(hr, scale, None, None)
    assert hr2.shape[-2:] == after
    assert lr.shape[-2:] == (after[0] // scale, after[1] // scale)
    torch.testing.assert_close(hr2, hr[..., :after[0], :after[1]])
    torch.testing.assert_close(lr, bicubic_downscale(hr2, scale))


def test_crop_to_multiple_flag_and_errors():
    img = _rand(3, 51, 67)
    out, cropped = crop_to_multiple(img, 4)
    assert cropped and out.shape == (3, 48, 64)
    out, cropped = crop_to_multiple(out, 4)
    assert not cropped and out.shape == (3, 48, 64)
    with pytest.raises(ValueError, match="smaller"):
        crop_to_multiple(_rand(1, 3, 9), 4)
    with pytest.warns(CropWarning, match="67×51"):
        assert crop_hr(img, 2).shape == (3, 50, 66)


def test_crop_image_set_names_the_image():
    s = ImageSet([_rand(1, 51, 67), _rand(1, 48, 64)], ["odd.png", "even.png"])
    with pytest.warns(CropWarning, match="odd.png") as rec:
        out = crop_image_set(s, 4)
    assert len(rec) == 1
    assert [im.shape for im in out.images] == [(1, 48, 64), (1, 48, 64)]


def test_downscale_rejects_non_divisible():
    with pytest.raises(ValueError, match="not divisible"):
        bicubic_downscale(_rand(1, 1, 51, 64), 4)


def test_sr_pair_noise_is_on_the_lr_image_and_seeded():
    hr = _rand(2, 1, 32, 32)
    a, _ = sr_pair(hr, 2, GaussianNoise(0.1), torch.Generator().manual_seed(3))
    b, _ = sr_pair(hr, 2, GaussianNoise(0.1), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    std = (a - bicubic_downscale(hr, 2)).std()
    assert 0.08 < float(std) < 0.12


# ---------------------------------------------------------------- Bayer

def _expected_mosaic(pattern, h, w, rgb=RGB):
    out = torch.empty(h, w)
    for y in range(h):
        for x in range(w):
            colour = pattern[(y % 2) * 2 + (x % 2)]
            out[y, x] = rgb["RGB".index(colour)]
    return out


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bayer_mosaic_pixel_by_pixel(pattern):
    h, w = 6, 8
    mos = bayer_mosaic(_const_rgb(2, h, w), pattern)
    assert mos.shape == (2, 1, h, w)
    expected = _expected_mosaic(pattern, h, w)
    for b in range(2):
        for y in range(h):
            for x in range(w):
                assert mos[b, 0, y, x].item() == pytest.approx(expected[y, x].item()), (pattern, y, x)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bayer_masks_partition_and_match_colour_demosaicing(pattern):
    with warnings.catch_warnings():  # colour-demosaicing 0.2.x imports scipy.ndimage.filters
        warnings.simplefilter("ignore", DeprecationWarning)
        from colour_demosaicing import masks_CFA_Bayer

    m = bayer_masks(5, 7, pattern)
    assert m.dtype == torch.bool and m.shape == (3, 5, 7)
    assert torch.equal(m.sum(0), torch.ones(5, 7, dtype=torch.long))
    assert bool(m[1, 0, 0]) == (pattern[0] == "G")
    ref = np.stack(masks_CFA_Bayer((5, 7), pattern))
    assert np.array_equal(m.numpy(), ref)


def test_bayer_unknown_pattern():
    with pytest.raises(ValueError, match="RGGB"):
        bayer_masks(4, 4, "RGBG")
    with pytest.raises(ValueError, match="3 channels"):
        bayer_mosaic(_rand(1, 1, 4, 4))


def test_pack_unpack_round_trip_and_layout():
    mos = _rand(2, 1, 10, 14)
    packed = pack_bayer(mos)
    assert packed.shape == (2, 4, 5, 7)
    assert torch.equal(unpack_bayer(packed), mos)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(packed[:, k], mos[:, 0, dy::2, dx::2])
    p = _rand(1, 4, 3, 5, seed=2)
    assert torch.equal(pack_bayer(unpack_bayer(p)), p)


def test_pack_bayer_odd_size_crops_with_warning():
    with pytest.warns(CropWarning, match=r"15×11 px.*cropped to 14×10"):
        packed = pack_bayer(_rand(1, 1, 11, 15))
    assert packed.shape == (1, 4, 5, 7)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_jdd_pair_mosaic_then_noise(pattern):
    clean = _const_rgb(2, 8, 10)
    noisy, target = jdd_pair(clean, pattern, GaussianNoise(0.0), None)
    assert noisy.shape == (2, 1, 8, 10) and torch.equal(target, clean)
    torch.testing.assert_close(noisy[0, 0], _expected_mosaic(pattern, 8, 10))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, _ = jdd_pair(clean, pattern, None, g1)  # default: Poisson-Gaussian, random per image
    b, _ = jdd_pair(clean, pattern, None, g2)
    assert torch.equal(a, b) and not torch.equal(a, noisy)
    res = (a - noisy).flatten(1).std(dim=1)
    assert res[0] != res[1]  # per-image parameters


def test_jdd_pair_odd_size_crops_with_warning():
    with pytest.warns(CropWarning, match=r"9×7 px.*cropped to 8×6"):
        noisy, clean = jdd_pair(_rand(1, 3, 7, 9), "RGGB", GaussianNoise(0.0), None)
    assert noisy.shape == (1, 1, 6, 8) and clean.shape == (1, 3, 6, 8)


# ---------------------------------------------------------------- demosaicking

@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("method", ["malvar", "bilinear"])
def test_demosaic_constant_colour_exact_up_to_the_border(pattern, method):
    """A constant colour is reconstructed exactly, borders included (CFA-consistent padding)."""
    mos = bayer_mosaic(_const_rgb(1, 10, 12), pattern)[0]
    rgb = demosaic_classical(mos, pattern, method)
    assert rgb.shape == (3, 10, 12) and rgb.dtype == torch.float32
    torch.testing.assert_close(rgb, _const_rgb(1, 10, 12)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_torch_demosaic_equals_colour_demosaicing(pattern):
    mos = _rand(2, 1, 12, 14)
    for fn, method in [(bilinear_demosaic, "bilinear"), (malvar_demosaic, "malvar")]:
        ours = fn(mos, pattern)
        ref = torch.stack([demosaic_classical(m, pattern, method) for m in mos])
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_demosaic_classical_clip_and_errors():
    mos = _rand(1, 12, 12) * 2 - 0.5
    raw = demosaic_classical(mos, "RGGB")
    assert raw.min() < 0 or raw.max() > 1
    clipped = demosaic_classical(mos, "RGGB", clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    with pytest.raises(ValueError, match="method"):
        demosaic_classical(mos, "RGGB", "menon")
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        demosaic_classical(_rand(3, 8, 8), "RGGB")
