"""Whole-image and tiled inference."""

from __future__ import annotations

import torch
from torch import nn


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
    was_training = model.training
    model.eval()
    scale = int(getattr(model, "scale", 1))
    try:
        if tile is None or (x.shape[-2] <= tile and x.shape[-1] <= tile):
            out = model(x)
        else:
            if tile <= 2 * overlap:
                raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
            out = _tiled(model, x, tile, overlap, scale)
    finally:
        model.train(was_training)
    return out[0] if single else out


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    s = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(s))


def _tiled(model, x, tile, overlap, scale):
    b, _, h, w = x.shape
    out = None
    half = overlap // 2
    step = tile - overlap
    for top in _starts(h, tile, step):
        for left in _starts(w, tile, step):
            th, tw = min(tile, h), min(tile, w)
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
