"""Neighbor2Neighbor (Huang, Li, Jia, Lu & Liu, 2021, "Neighbor2Neighbor: Self-Supervised Denoising
from Single Noisy Images", CVPR, Sec. 3.2–3.3 and their reference code ``generate_mask_pair``).

Random neighbour sub-sampler: the image is split into 2×2 cells; in every cell two *different,
edge-adjacent* pixels are drawn at random (one of the 8 ordered pairs (0,1), (0,2), (1,0), (1,3),
(2,0), (2,3), (3,1), (3,2) of the cell positions 0=(0,0), 1=(0,1), 2=(1,0), 3=(1,1)); the first
pixels form g1(y), the second g2(y), two (H/2, W/2) images whose noise is independent while their
signal nearly matches. The same cell choice is used for every channel. The loss is

    L = ‖f(g1(y)) − g2(y)‖² + γ · ‖f(g1(y)) − g2(y) − (g1(f(y)) − g2(f(y)))‖²,

(means over pixels), where f(y) in the regulariser is computed without gradient and γ ramps
linearly over training (γ = γ_final · step / total, γ_final = 2 in the reference code).

Odd sizes: a trailing odd row / column is dropped before sub-sampling (the image is cropped to
2·⌊H/2⌋ × 2·⌊W/2⌋), so the sub-images are (⌊H/2⌋, ⌊W/2⌋).
"""

from __future__ import annotations

import torch
from torch import nn

from ..distributed import global_mean

# (first, second) cell positions of the 8 ordered edge-adjacent pairs in a 2×2 cell.
_PAIRS = torch.tensor([[0, 1], [0, 2], [1, 0], [1, 3], [2, 0], [2, 3], [3, 1], [3, 2]])


def _cells(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H//2, W//2, 4): the four pixels of each 2×2 cell (odd edges dropped)."""
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[..., :2 * h2, :2 * w2].reshape(b, c, h2, 2, w2, 2)
    return x.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h2, w2, 4)


def apply_subsample(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Pick cell position ``idx`` (B, H//2, W//2) in 0..3 from each 2×2 cell of x (B, C, H, W).

    Returns (B, C, H//2, W//2); position p is pixel (2i + p // 2, 2j + p % 2) of cell (i, j).
    """
    cells = _cells(x)
    b, c, h2, w2, _ = cells.shape
    if idx.shape != (b, h2, w2):
        raise ValueError(f"index shape {tuple(idx.shape)} does not match the cells {(b, h2, w2)}")
    index = idx.to(x.device).view(b, 1, h2, w2, 1).expand(b, c, h2, w2, 1)
    return torch.gather(cells, 4, index).squeeze(4)


def neighbor_subsample(x: torch.Tensor, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbor2Neighbor's random neighbour sub-sampler.

    Args:
        x: (B, C, H, W), H, W ≥ 2 (values unconstrained).
        generator: draws one of the 8 neighbour pairs per cell (same for all channels).

    Returns:
        ``(g1, g2, idx1, idx2)``: sub-images (B, C, H//2, W//2) and the chosen cell positions
        (B, H//2, W//2), int64 in 0..3 (see :func:`apply_subsample`); idx1 ≠ idx2 and the two
        pixels share an edge.
    """
    if x.ndim != 4:
        raise ValueError(f"neighbor_subsample takes a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"Neighbor2Neighbor needs H, W >= 2, got {h}×{w}")
    from ..data.draws import as_draws

    choice = as_draws(generator).sample_randint(len(_PAIRS), b, h // 2, w // 2).to(x.device)
    pair = _PAIRS.to(x.device)[choice]
    idx1, idx2 = pair[..., 0], pair[..., 1]
    return apply_subsample(x, idx1), apply_subsample(x, idx2), idx1, idx2


def ne2ne_terms(model: nn.Module, x: torch.Tensor, gamma: float, generator: torch.Generator | None = None):
    """``(loss, g1, f(g1))`` of :func:`ne2ne_loss` (for callers that also use the sub-image's residual)."""
    loss, logs, g1, out1 = _ne2ne(model, x, gamma, generator)
    return loss, g1, out1


def ne2ne_loss(model: nn.Module, x: torch.Tensor, gamma: float,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Neighbor2Neighbor loss L_rec + γ·L_reg on a noisy batch.

    Args:
        model: f_θ, (B, C, h, w) → (B, C, h, w) for any size.
        x: (B, C, H, W) noisy crops (values unconstrained).
        gamma: weight γ ≥ 0 of the regulariser at this step (the caller ramps it).

    Returns:
        ``(loss, logs)``: scalar loss and ``{"loss", "rec", "reg", "gamma"}`` as floats.
    """
    loss, logs, _, _ = _ne2ne(model, x, gamma, generator)
    return loss, logs


def _ne2ne(model: nn.Module, x: torch.Tensor, gamma: float, generator):
    g1, g2, idx1, idx2 = neighbor_subsample(x, generator)
    with torch.no_grad():
        fx = model(x)
        exp_diff = apply_subsample(fx, idx1) - apply_subsample(fx, idx2)
    out1 = model(g1)
    diff = out1 - g2
    rec = global_mean((diff ** 2).sum(), diff.numel())
    reg = global_mean(((diff - exp_diff) ** 2).sum(), diff.numel())
    loss = rec + gamma * reg
    return loss, {"loss": loss.detach(), "rec": rec.detach(), "reg": reg.detach(), "gamma": float(gamma)}, g1, out1
