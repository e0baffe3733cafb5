"""Pixel-shuffle down-sampling (PD) and its exact inverse.

PD splits an image into s² sub-images, each taking every s-th pixel: sub-image (a, b) holds the
pixels x[..., a + s·i, b + s·j]. Neighbouring pixels of a sub-image were s pixels apart in the
image, so noise that is spatially correlated over fewer than s pixels (demosaicking, JPEG,
denoising in the camera pipeline) is close to independent within a sub-image, which is what a
blind-spot network assumes. Sources:

* Zhou, Jiao, Chen, Yang, Zhang, Chen, "When AWGN-based denoiser meets real noises", AAAI 2020
  (arXiv 1904.03485): PD to break the spatial correlation of real noise;
* Lee, Son, Lee, "AP-BSN: Self-supervised denoising for real-world images via asymmetric PD and
  blind-spot network", CVPR 2022 (arXiv 2203.11799): PD before a blind-spot network, with a
  different stride for training and for inference.

Layout: ``pd_down`` maps (B, C, H, W) to (B·s², C, ⌈H/s⌉, ⌈W/s⌉). The output batch is
image-major: index ``n·s² + a·s + b`` is sub-image (a, b) of image n. ``pd_up`` is the exact
inverse (``torch.equal(pd_up(pd_down(x, s), s, (H, W)), x)``, any dtype, any size).

Sizes not divisible by s: the image is padded at the bottom and right to the next multiple of s
by **replicating** its last row / column (an index gather, so it works for every dtype and every
size, even H = 1 < s, where reflection would be impossible). Zero padding is never used: a row of
zeros next to noisy pixels would look like a large noise value and change the sub-images'
statistics. Replicated pixels are copies of real pixels (the same noise distribution), and
``pd_up`` crops them away. A statistic that must not count any pixel twice (e.g.
:func:`rcl.evaluation.noise_corr.noise_autocorrelation`) should crop the image to a multiple of
s instead of padding it.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["pd_down", "pd_up", "pd_size"]


def _check_stride(stride) -> int:
    if isinstance(stride, bool) or not isinstance(stride, int):
        raise ValueError(f"PD stride must be an integer >= 1, got {stride!r}")
    if stride < 1:
        raise ValueError(f"PD stride must be >= 1, got {stride}")
    return stride


def pd_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(⌈H/s⌉, ⌈W/s⌉): the size of each sub-image that :func:`pd_down` makes of an H × W image."""
    s = _check_stride(stride)
    return -(-height // s), -(-width // s)


def pd_down(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel-shuffle down-sampling: split each image into ``stride²`` sub-images.

    Args:
        x: (B, C, H, W), any dtype and device; H, W ≥ 1.
        stride: s ≥ 1; s = 1 returns ``x`` unchanged (the same tensor).

    Returns:
        (B·s², C, ⌈H/s⌉, ⌈W/s⌉), contiguous. Pixel (i, j) of sub-image (a, b) of image n, at batch
        index ``n·s² + a·s + b``, is ``x[n, :, a + s·i, b + s·j]``; positions beyond H − 1 (or
        W − 1) repeat the last row (column) of the image (replicate padding, see the module
        docstring). Differentiable.

    Raises:
        ValueError: ``x`` is not 4-D or is empty in H or W; ``stride`` is not an integer ≥ 1.
    """
    s = _check_stride(stride)
    if x.ndim != 4:
        raise ValueError(f"pd_down takes a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"pd_down: empty image ({h}×{w} px)")
    if s == 1:
        return x
    sh, sw = pd_size(h, w, s)
    hp, wp = sh * s, sw * s
    if hp != h:  # replicate the last row
        rows = torch.arange(hp, device=x.device).clamp_(max=h - 1)
        x = x.index_select(2, rows)
    if wp != w:  # replicate the last column
        cols = torch.arange(wp, device=x.device).clamp_(max=w - 1)
        x = x.index_select(3, cols)
    # x[n, c, s·i + a, s·j + b] -> out[n, a, b, c, i, j]
    y = x.reshape(b, c, sh, s, sw, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b * s * s, c, sh, sw).contiguous()


def pd_up(y: torch.Tensor, stride: int, size: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`pd_down`: put the sub-images back together and crop to ``size``.

    Args:
        y: (B·s², C, h, w), sub-images in :func:`pd_down`'s order.
        stride: s ≥ 1 (the stride ``y`` was made with).
        size: (H, W) of the original image, with ⌈H/s⌉ = h and ⌈W/s⌉ = w.

    Returns:
        (B, C, H, W), contiguous, with ``pd_up(pd_down(x, s), s, x.shape[-2:])`` equal to ``x``
        exactly. Pixels of the padding (positions ≥ H or ≥ W) are dropped. Differentiable.

    Raises:
        ValueError: ``y`` is not 4-D; its batch is not a multiple of s²; ``size`` is not two
            positive integers or does not give h × w sub-images at stride s; a bad stride.
    """
    s = _check_stride(stride)
    if y.ndim != 4:
        raise ValueError(f"pd_up takes a (B·s², C, h, w) tensor, got shape {tuple(y.shape)}")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"pd_up: size must be (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"pd_up: size must be positive, got ({h}, {w})")
    n, c, sh, sw = y.shape
    if n % (s * s):
        raise ValueError(f"pd_up: batch {n} is not a multiple of stride² = {s * s} "
                         f"(pd_down with stride {s} makes {s * s} sub-images per image)")
    if (sh, sw) != pd_size(h, w, s):
        raise ValueError(f"pd_up: sub-images of {sh}×{sw} px do not come from a {h}×{w} image at stride {s} "
                         f"(that gives {pd_size(h, w, s)[0]}×{pd_size(h, w, s)[1]})")
    if s == 1:
        return y
    b = n // (s * s)
    x = y.reshape(b, s, s, c, sh, sw).permute(0, 3, 4, 1, 5, 2).reshape(b, c, sh * s, sw * s)
    return x[..., :h, :w].contiguous()
