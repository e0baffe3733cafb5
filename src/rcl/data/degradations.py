"""Degradations of the downstream tasks: bicubic down-scaling (super-resolution, SR) and Bayer
mosaicking (joint demosaicking + denoising, JDD), plus the classical reference methods.

Conventions (all tensors float, images in [0, 1], nothing is clipped):

* **Bicubic resizing** follows MATLAB's ``imresize(x, s, 'bicubic')``, the degradation of the SR
  literature (Set5/Set14/DIV2K "BI" models): Keys' cubic kernel with a = −0.5, the kernel stretched
  by the scale factor when down-scaling (antialiasing), pixel centres aligned (align_corners=False)
  and a *symmetric* (half-sample) extension at the borders. torch's
  ``interpolate(mode="bicubic", antialias=True)`` uses the same kernel and grid but, at the borders,
  truncates the kernel and renormalises its weights (Pillow's behaviour) instead of mirroring the
  image. :func:`bicubic_resize` therefore mirror-pads the image (torch has no "symmetric" padding
  mode, so the padding is an index gather) by a multiple of the scale, resizes and crops: the
  result equals MATLAB's to float32 precision everywhere (tests/data/test_degradations.py checks
  this against a NumPy transcription of MATLAB's ``imresize``). What remains different from MATLAB:
  arithmetic is float32, and the output is not rounded/saturated to uint8 (MATLAB does so for uint8
  inputs) — bicubic overshoot outside [0, 1] is kept. (Plain ``interpolate(mode="bicubic")``
  without antialias uses a = −0.75 and replicates borders; it is *not* used here.)
* **SR pairs**: the clean HR image is bicubically down-scaled, then the noise model is applied to
  the LR image (noisy SR; the noise level is on the LR image's intensity scale).
* **Bayer**: ``pattern`` names the colours of the 2×2 tile read row by row from the top-left pixel
  (``"RGGB"``: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)); the same strings and meaning as
  colour-demosaicing's ``masks_CFA_Bayer``. Packing (:func:`pack_bayer`) is *positional*: channel k
  holds the pixels at offset (k // 2, k % 2) of each tile, whatever the pattern, so a network
  trained on packed mosaics is specific to one pattern.
* **JDD pairs**: mosaic the clean RGB image first, then add noise to the mosaic (by default the
  heteroscedastic Poisson-Gaussian model with random per-image parameters), as on a raw sensor.
* **Demosaicking references**: :func:`demosaic_classical` calls colour-demosaicing (Malvar 2004,
  bilinear) on one mosaic; :func:`malvar_demosaic` / :func:`bilinear_demosaic` are differentiable
  batched torch versions that give the same numbers (tested), used as the skip of ``JDDNet``.
* **Cropping**: sizes that do not fit (HR size not divisible by the scale, odd sizes for Bayer) are
  cropped at the bottom/right (MATLAB's ``modcrop``) and a :class:`CropWarning` names the size
  before and after.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import ImageSet
from .noise import NoiseModel, PoissonGaussianNoise

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
_CHANNEL = {"R": 0, "G": 1, "B": 2}


class CropWarning(UserWarning):
    """An image was cropped at the bottom/right to fit the scale factor or the 2×2 Bayer tile."""


# --------------------------------------------------------------------------------------------
# cropping
# --------------------------------------------------------------------------------------------

def crop_to_multiple(img: torch.Tensor, multiple: int) -> tuple[torch.Tensor, bool]:
    """Crop a (..., H, W) image at the bottom/right to H, W divisible by ``multiple``.

    Returns ``(img, cropped)``; the caller warns when ``cropped`` (see :func:`crop_message`).

    Raises:
        ValueError: ``multiple`` < 1 or the image is smaller than ``multiple``.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = img.shape[-2:]
    if h < multiple or w < multiple:
        raise ValueError(f"image {w}×{h} (W×H) is smaller than {multiple} px; nothing would be left after cropping")
    h2, w2 = h - h % multiple, w - w % multiple
    if (h2, w2) == (h, w):
        return img, False
    return img[..., :h2, :w2], True


def crop_message(before: tuple[int, int], after: tuple[int, int], reason: str, name: str | None = None) -> str:
    """Warning text for a crop; sizes are (H, W) and are printed W×H like the rest of rcl."""
    who = f"{name}: " if name else ""
    return (f"{who}image of {before[1]}×{before[0]} px (W×H) {reason}; "
            f"cropped to {after[1]}×{after[0]} (bottom rows / right columns dropped)")


def _crop_warn(img: torch.Tensor, multiple: int, reason: str, name: str | None = None,
               stacklevel: int = 3) -> torch.Tensor:
    out, cropped = crop_to_multiple(img, multiple)
    if cropped:
        warnings.warn(crop_message(tuple(img.shape[-2:]), tuple(out.shape[-2:]), reason, name),
                      CropWarning, stacklevel=stacklevel)
    return out


def crop_hr(img: torch.Tensor, scale: int, name: str | None = None) -> torch.Tensor:
    """Crop an HR image (or batch) to a multiple of ``scale``, with a :class:`CropWarning` if needed."""
    return _crop_warn(img, scale, f"is not divisible by the SR scale {scale}", name)


def crop_even(img: torch.Tensor, name: str | None = None) -> torch.Tensor:
    """Crop an image (or batch) to even H, W (whole 2×2 Bayer tiles), warning if needed."""
    return _crop_warn(img, 2, "has an odd side; Bayer mosaics need whole 2×2 tiles", name)


def crop_image_set(images: ImageSet, multiple: int, reason: str | None = None) -> ImageSet:
    """Crop every image of a set to a multiple of ``multiple``; one warning per cropped image (named)."""
    reason = reason or f"is not divisible by {multiple}"
    return ImageSet([_crop_warn(im, multiple, reason, n) for im, n in zip(images.images, images.names)],
                    list(images.names))


# --------------------------------------------------------------------------------------------
# bicubic resizing (MATLAB imresize convention)
# --------------------------------------------------------------------------------------------

def _symmetric_index(n: int, pad_before: int, pad_after: int) -> torch.Tensor:
    """Indices of a half-sample symmetric extension (… b a | a b … y z | z y …), any pad size."""
    i = torch.arange(-pad_before, n + pad_after)
    m = torch.remainder(i, 2 * n)
    return torch.where(m < n, m, 2 * n - 1 - m)


def symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two axes by ``pad`` on every side with MATLAB's 'symmetric' extension."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    x = x.index_select(-2, _symmetric_index(h, pad, pad).to(x.device))
    return x.index_select(-1, _symmetric_index(w, pad, pad).to(x.device))


def _check_batch(x: torch.Tensor, what: str = "image batch") -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) {what}, got shape {tuple(x.shape)}")


def bicubic_resize(x: torch.Tensor, factor: int, down: bool) -> torch.Tensor:
    """MATLAB-style bicubic resize of (B, C, H, W) by an integer ``factor`` (down or up).

    Down-scaling needs H, W divisible by ``factor`` (use :func:`crop_hr` first).
    """
    _check_batch(x)
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"scale must be an integer >= 1, got {factor}")
    if factor == 1:
        return x.clone()
    h, w = x.shape[-2:]
    if down:
        if h % factor or w % factor:
            raise ValueError(f"HR size {w}×{h} (W×H) is not divisible by the scale {factor}; "
                             f"crop it first (rcl.data.degradations.crop_hr)")
        pad_in, crop_out = 3 * factor, 3  # kernel half-width is 2·factor HR pixels
        size = ((h + 2 * pad_in) // factor, (w + 2 * pad_in) // factor)
    else:
        pad_in, crop_out = 3, 3 * factor  # kernel half-width is 2 LR pixels
        size = ((h + 2 * pad_in) * factor, (w + 2 * pad_in) * factor)
    xp = symmetric_pad(x, pad_in)
    y = F.interpolate(xp, size=size, mode="bicubic", align_corners=False, antialias=True)
    return y[..., crop_out:y.shape[-2] - crop_out, crop_out:y.shape[-1] - crop_out]


def bicubic_downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H/scale, W/scale), MATLAB ``imresize(x, 1/scale, 'bicubic')``.

    Raises:
        ValueError: H or W not divisible by ``scale`` (crop with :func:`crop_hr` first).
    """
    return bicubic_resize(x, scale, down=True)


def bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, h, w) → (B, C, h·scale, w·scale), MATLAB ``imresize(x, scale, 'bicubic')``."""
    return bicubic_resize(x, scale, down=False)


def sr_pair(clean: torch.Tensor, scale: int, noise_model: NoiseModel | None,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy LR input and clean HR target from a clean HR batch (B, C, H, W).

    The HR batch is cropped to a multiple of ``scale`` (with a :class:`CropWarning`), bicubically
    down-scaled, then ``noise_model`` (None: no noise) is applied to the LR batch.

    Returns:
        ``(noisy_lr (B, C, H/scale, W/scale), clean_hr (B, C, H, W))``.
    """
    _check_batch(clean, "clean HR batch")
    clean = _crop_warn(clean, scale, f"is not divisible by the SR scale {scale}", stacklevel=3)
    lr = bicubic_downscale(clean, scale)
    if noise_model is not None:
        lr, _ = noise_model(lr, generator)
    return lr, clean


# --------------------------------------------------------------------------------------------
# Bayer colour filter array
# --------------------------------------------------------------------------------------------

def check_pattern(pattern: str) -> str:
    """The pattern in upper case; ValueError naming the accepted patterns otherwise."""
    p = str(pattern).upper()
    if p not in PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; use one of {', '.join(PATTERNS)}")
    return p


def bayer_masks(h: int, w: int, pattern: str = "RGGB") -> torch.Tensor:
    """(3, H, W) bool masks: ``masks[c, y, x]`` is True where the CFA samples colour c (R, G, B)."""
    pattern = check_pattern(pattern)
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    for colour, (dy, dx) in zip(pattern, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        masks[_CHANNEL[colour], dy::2, dx::2] = True
    return masks


def bayer_mosaic(rgb: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """(B, 3, H, W) RGB → (B, 1, H, W) mosaic holding at each pixel the colour its CFA filter passes.

    Any H, W (the tile is simply cut at odd borders); use :func:`crop_even` before packing.
    """
    _check_batch(rgb, "RGB batch")
    if rgb.shape[1] != 3:
        raise ValueError(f"Bayer mosaicking needs 3 channels (RGB), got {rgb.shape[1]}")
    masks = bayer_masks(*rgb.shape[-2:], pattern).to(device=rgb.device)
    return (rgb * masks.to(rgb.dtype)).sum(dim=1, keepdim=True)


def pack_bayer(mosaic: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mosaic → (B, 4, H/2, W/2); channel k = tile offset (k // 2, k % 2).

    Odd sizes are cropped to even with a :class:`CropWarning`.
    """
    _check_batch(mosaic, "mosaic batch")
    if mosaic.shape[1] != 1:
        raise ValueError(f"a Bayer mosaic has 1 channel, got {mosaic.shape[1]}")
    mosaic = _crop_warn(mosaic, 2, "has an odd side; Bayer mosaics need whole 2×2 tiles")
    return F.pixel_unshuffle(mosaic, 2)


def unpack_bayer(packed: torch.Tensor) -> torch.Tensor:
    """(B, 4, h, w) → (B, 1, 2h, 2w), the inverse of :func:`pack_bayer`."""
    _check_batch(packed, "packed mosaic batch")
    if packed.shape[1] != 4:
        raise ValueError(f"a packed Bayer mosaic has 4 channels, got {packed.shape[1]}")
    return F.pixel_shuffle(packed, 2)


def jdd_pair(clean_rgb: torch.Tensor, pattern: str = "RGGB", noise_model: NoiseModel | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy mosaic and clean RGB target from a clean RGB batch (B, 3, H, W).

    Odd sizes are cropped to even (:class:`CropWarning`); the clean image is mosaicked, then the
    noise is added to the mosaic. ``noise_model`` None means heteroscedastic Poisson-Gaussian noise
    with the default random per-image parameters (:class:`rcl.data.noise.PoissonGaussianNoise`).

    Returns:
        ``(noisy_mosaic (B, 1, H, W), clean_rgb (B, 3, H, W))``.
    """
    _check_batch(clean_rgb, "clean RGB batch")
    clean_rgb = _crop_warn(clean_rgb, 2, "has an odd side; Bayer mosaics need whole 2×2 tiles", stacklevel=3)
    noise_model = noise_model if noise_model is not None else PoissonGaussianNoise()
    noisy, _ = noise_model(bayer_mosaic(clean_rgb, pattern), generator)
    return noisy, clean_rgb


# --------------------------------------------------------------------------------------------
# demosaicking references
# --------------------------------------------------------------------------------------------

_H_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
_H_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4


def _check_mosaic(mosaic: torch.Tensor, min_side: int, what: str) -> tuple[int, int]:
    """Validate a (B, 1, H, W) mosaic batch with H, W >= min_side; return (H, W)."""
    _check_batch(mosaic, "mosaic batch")
    if mosaic.shape[1] != 1:
        raise ValueError(f"a Bayer mosaic has 1 channel, got {mosaic.shape[1]}")
    h, w = mosaic.shape[-2:]
    if h < min_side or w < min_side:
        raise ValueError(f"{what} needs at least {min_side}×{min_side} pixels, got {w}×{h}")
    return h, w


def bilinear_demosaic(mosaic: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Differentiable bilinear demosaicking, (B, 1, H, W) → (B, 3, H, W).

    The kernels of colour-demosaicing's ``demosaicing_CFA_Bayer_bilinear`` (Losson et al., 2010);
    the border is handled by a CFA-consistent reflection (see :func:`demosaic_classical`), so the
    result equals ``demosaic_classical(m, pattern, "bilinear")``. H, W ≥ 2.
    """
    h, w = _check_mosaic(mosaic, 2, "demosaicking")
    masks = bayer_masks(h, w, pattern).to(device=mosaic.device, dtype=mosaic.dtype)
    planes = F.pad(mosaic * masks.unsqueeze(0), (1, 1, 1, 1), mode="reflect")
    k = torch.stack([_H_RB, _H_G, _H_RB]).unsqueeze(1).to(device=mosaic.device, dtype=mosaic.dtype)
    return F.conv2d(planes, k, groups=3)


# Malvar, He & Cutler (2004) 5×5 kernels, as in colour-demosaicing's demosaicing_CFA_Bayer_Malvar2004
_M_G = torch.tensor([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0],
                     [0, 0, -1, 0, 0]], dtype=torch.float64) / 8
_M_ROW = torch.tensor([[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0],
                       [0, 0, 0.5, 0, 0]], dtype=torch.float64) / 8
_M_DIAG = torch.tensor([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0],
                        [0, 0, -1.5, 0, 0]], dtype=torch.float64) / 8


def malvar_demosaic(mosaic: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Differentiable Malvar-He-Cutler (2004) demosaicking, (B, 1, H, W) → (B, 3, H, W), H, W ≥ 3.

    Gradient-corrected linear interpolation with the kernels of colour-demosaicing; borders by a
    CFA-consistent 2-px reflection, so it equals ``demosaic_classical(m, pattern, "malvar")``.
    """
    h, w = _check_mosaic(mosaic, 3, "Malvar demosaicking")
    k = torch.stack([_M_G, _M_ROW, _M_ROW.T, _M_DIAG]).unsqueeze(1).to(device=mosaic.device, dtype=mosaic.dtype)
    g_at_rb, row, col, diag = F.conv2d(F.pad(mosaic, (2, 2, 2, 2), mode="reflect"), k).unbind(1)
    r_m, g_m, b_m = bayer_masks(h, w, pattern).to(mosaic.device)
    r_row, r_col = r_m.any(dim=1, keepdim=True), r_m.any(dim=0, keepdim=True)  # rows / columns holding R
    b_row, b_col = b_m.any(dim=1, keepdim=True), b_m.any(dim=0, keepdim=True)
    m = mosaic[:, 0]
    g = torch.where(g_m, m, g_at_rb)
    r = torch.where(r_m, m, torch.where(r_row & b_col, row, torch.where(b_row & r_col, col,
                                                                           torch.where(b_row & b_col, diag, m))))
    b = torch.where(b_m, m, torch.where(b_row & r_col, row, torch.where(r_row & b_col, col,
                                                                           torch.where(r_row & r_col, diag, m))))
    return torch.stack([r, g, b], dim=1)


def demosaic_classical(mosaic: torch.Tensor, pattern: str = "RGGB", method: str = "malvar",
                       clip: bool = False) -> torch.Tensor:
    """Classical demosaicking of one mosaic (1, H, W) (or (H, W)) → (3, H, W) float32.

    ``method``: "malvar" (Malvar, He & Cutler, 2004, gradient-corrected linear interpolation) or
    "bilinear", both from colour-demosaicing (``demosaicing_CFA_Bayer_Malvar2004`` /
    ``demosaicing_CFA_Bayer_bilinear``, patterns as :data:`PATTERNS`). The library filters with
    ``scipy.ndimage.convolve``'s half-sample reflection, which at the border mixes in samples of
    the wrong colour; here the mosaic is first padded by 2 px with a whole-sample reflection
    (row −1 ← row 1, which has the same CFA colours), demosaicked and cropped back, so border pixels
    are interpolated from correct neighbours. Noise is not removed.

    The output is not clipped unless ``clip`` (metrics clamp to [0, 1] themselves; unclipped
    values keep the noise statistics, like the noisy images of rcl.data.noise).
    """
    pattern = check_pattern(pattern)
    m = torch.as_tensor(mosaic)
    if m.ndim == 3:
        if m.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) mosaic, got shape {tuple(m.shape)}")
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"expected a (1, H, W) or (H, W) mosaic, got shape {tuple(m.shape)}")
    if min(m.shape) < 2:
        raise ValueError(f"demosaicking needs at least 2×2 pixels, got {m.shape[1]}×{m.shape[0]}")
    with warnings.catch_warnings():  # colour-demosaicing 0.2.x imports scipy.ndimage.filters (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        from colour_demosaicing import demosaicing_CFA_Bayer_bilinear, demosaicing_CFA_Bayer_Malvar2004
    fns = {"malvar": demosaicing_CFA_Bayer_Malvar2004, "bilinear": demosaicing_CFA_Bayer_bilinear}
    if method not in fns:
        raise ValueError(f"unknown demosaicking method {method!r}; use one of {', '.join(fns)}")
    arr = np.pad(m.detach().cpu().to(torch.float64).numpy(), 2, mode="reflect")
    rgb = fns[method](arr, pattern)[2:-2, 2:-2]
    out = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).to(torch.float32)
    return out.clamp(0, 1) if clip else out
