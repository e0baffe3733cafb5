"""Whole-image and tiled inference."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def inference_layout(model: nn.Module):
    """Run ``model`` in eval mode with its 4-D weights in channels-last memory layout; restore both.

    oneDNN's CPU convolutions run faster on channels-last tensors: for the default U-Net on a
    481×321 image, 0.33 → 0.22 s (grayscale) and 0.33 → 0.25 s (RGB) on one thread, measured
    on the development machine; the output values differ only by float rounding (≤ 1e-6).
    The weights are converted back to the contiguous layout on exit, so a model that is
    being trained is left as it was (the ``nn.Parameter`` objects are kept, so an optimizer's
    references stay valid). Feed inputs through :func:`to_layout`.
    """
    was_training = model.training
    model.eval()
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def to_layout(x: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) input in the channels-last layout that :func:`inference_layout` expects."""
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, tile: int | None = None, overlap: int = 16) -> torch.Tensor:
    """Apply ``model`` to a (C, H, W) or (B, C, H, W) image in eval mode.

    With ``tile`` set, the image is processed in tile×tile windows that overlap by ``overlap``
    pixels; each output pixel is taken from the tile where it lies farthest from a tile border
    (the outer ``overlap/2`` pixels of each tile are discarded), which bounds memory on large images.
    Output spatial size = input size × the model's ``scale`` attribute (1 for denoisers).

    Raises:
        ValueError: tile <= 2·overlap.
    """
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    scale = int(getattr(model, "scale", 1))
    if tile is not None and not (x.shape[-2] <= tile and x.shape[-1] <= tile) and tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
    with inference_layout(model):
        x = to_layout(x)
        if tile is None or (x.shape[-2] <= tile and x.shape[-1] <= tile):
            out = model(x)
        else:
            align = int(getattr(model, "tile_align", 1))
            out = _tiled(model, x, tile, overlap, scale, align)
    out = out.contiguous()
    return out[0] if single else out


def _starts(n: int, tile: int, step: int, align: int = 1) -> list[int]:
    """Tile start offsets covering [0, n), each a multiple of ``align`` (e.g. 2 for a Bayer phase)."""
    if n <= tile:
        return [0]
    step = max(align, step - step % align)
    last = (n - tile) - (n - tile) % align
    s = list(range(0, last, step)) + [last]
    return sorted(set(s))


def _tiled(model, x, tile, overlap, scale, align=1):
    b, _, h, w = x.shape
    out = None
    half = overlap // 2
    step = tile - overlap
    tops, lefts = _starts(h, tile, step, align), _starts(w, tile, step, align)
    for top in tops:
        for left in lefts:
            # the last tile runs to the border (it may exceed `tile` by < align pixels)
            th = h - top if top == tops[-1] else min(tile, h - top)
            tw = w - left if left == lefts[-1] else min(tile, w - left)
            y = model(x[..., top:top + th, left:left + tw])
            if out is None:
                out = y.new_zeros(b, y.shape[1], h * scale, w * scale)
            # region of this tile that is kept: drop `half` px on inner borders
            y0 = 0 if top == 0 else half
            x0 = 0 if left == 0 else half
            y1 = th if top + th >= h else th - half
            x1 = tw if left + tw >= w else tw - half
            out[..., (top + y0) * scale:(top + y1) * scale, (left + x0) * scale:(left + x1) * scale] = \
                y[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale]
    return out
