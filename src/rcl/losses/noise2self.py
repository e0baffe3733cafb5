"""Noise2Self J-invariant grid masking (Batson & Royer, 2019, "Noise2Self: Blind Denoising by
Self-Supervision", ICML, Sec. 4 and their reference code ``mask.py``).

A grid of period g partitions the pixels into g² sets J_(dy,dx) = {(y, x): y mod g = dy,
x mod g = dx}. One training step draws a phase (dy, dx), replaces the pixels of J by an
interpolation of their neighbours and scores the network only on J:

    L = mean_{(y,x) ∈ J} ( f(mask_J(y))_{y,x} − y_{y,x} )².

The replacement follows Noise2Self's ``interpolate`` convention: a 3×3 kernel with a **zero
centre**, [[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]] / 6, so a masked pixel's own noisy value
never enters its replacement (a local mean that includes the pixel would let the network see
through the mask). For g ≥ 2 none of the 8 neighbours of a masked pixel is itself masked, so the
replacement is built from unmasked values only. Borders are reflect-padded (the reflected value is
a neighbour, never the pixel itself), where the original code zero-pads, which darkens border
replacements.

The J-invariant inference (one pass per phase) is the n2s method's prediction:
:func:`rcl.methods.n2s.n2s_predict`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import masked_mean

_KERNEL = torch.tensor([[0.5, 1.0, 0.5], [1.0, 0.0, 1.0], [0.5, 1.0, 0.5]]) / 6.0


def interpolate_neighbours(x: torch.Tensor) -> torch.Tensor:
    """Zero-centre 3×3 weighted mean of every pixel's 8 neighbours, per channel.

    Args:
        x: (B, C, H, W), any values (H, W ≥ 2 for the reflect padding).

    Returns:
        (B, C, H, W): at each pixel, Σ k·neighbours with the kernel [[.5,1,.5],[1,0,1],[.5,1,.5]]/6;
        the pixel's own value has weight 0.
    """
    b, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"Noise2Self interpolation needs H, W >= 2, got {h}×{w}")
    k = _KERNEL.to(dtype=x.dtype, device=x.device).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=c)


def grid_mask(shape: tuple[int, ...], grid: int, phase: tuple[int, int],
              device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (B, C, H, W) mask of the pixels with y mod grid = dy and x mod grid = dx (all channels)."""
    b, c, h, w = shape
    dy, dx = phase
    yy = (torch.arange(h, device=device) % grid == dy).view(h, 1)
    xx = (torch.arange(w, device=device) % grid == dx).view(1, w)
    return (yy & xx).view(1, 1, h, w).expand(b, c, h, w)


def n2s_mask(x: torch.Tensor, grid: int = 4, generator: torch.Generator | None = None,
             phase: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise2Self grid masking with the zero-centre interpolation (Batson & Royer, 2019).

    Args:
        x: (B, C, H, W) noisy batch (values unconstrained; typically ~[0, 1] plus noise), H, W ≥ 2.
        grid: period g ≥ 2 of the grid; a fraction 1/g² of the pixels is masked (exactly, when g
            divides H and W).
        generator: draws the phase (dy, dx) uniformly from {0..g−1}²; one phase for the whole batch.
        phase: fix the phase instead of drawing it (tests, deterministic sweeps).

    Returns:
        ``(masked, mask)``: the input with the pixels of J replaced (B, C, H, W), and the boolean mask
        (B, C, H, W) — the same spatial mask for every channel and image (J is a set of pixel
        positions, as in Noise2Self). Unmasked values are unchanged.
    """
    if x.ndim != 4:
        raise ValueError(f"n2s_mask takes a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if grid < 2:
        raise ValueError(f"grid period must be >= 2, got {grid}")
    if phase is None:
        from ..data.draws import as_draws

        dy, dx = as_draws(generator).host_randint(grid, 2)
    else:
        dy, dx = phase
        if not (0 <= dy < grid and 0 <= dx < grid):
            raise ValueError(f"phase {phase} outside [0, {grid})²")
    mask = grid_mask(tuple(x.shape), grid, (dy, dx), x.device)
    if not mask.any():  # image smaller than the phase offset: fall back to phase (0, 0)
        mask = grid_mask(tuple(x.shape), grid, (0, 0), x.device)
    return torch.where(mask, interpolate_neighbours(x), x), mask


def n2s_loss(model: nn.Module, x: torch.Tensor, grid: int = 4,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Noise2Self self-supervised loss on a noisy batch.

    Args:
        model: f_θ, (B, C, H, W) → (B, C, H, W).
        x: (B, C, H, W) noisy crops.
        grid: grid period g.

    Returns:
        ``(loss, logs)``: mean squared error over the masked pixels between f(mask(x)) and x
        (scalar tensor), and ``{"loss": float}``.
    """
    masked, mask = n2s_mask(x, grid, generator)
    out = model(masked)
    loss = masked_mean((out - x) ** 2, mask)
    return loss, {"loss": loss.detach()}

