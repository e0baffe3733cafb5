"""NT-Xent / InfoNCE over a batch of 2B views (Chen et al., 2020, SimCLR, Eq. 1; Oord et al., 2018).

Views i and i+B (mod 2B) are a positive pair; all other views except i itself are negatives:

    ℓ_i = −log( exp(s_{i,p(i)}) / Σ_{k≠i} exp(s_{i,k}) ),   L = mean_i ℓ_i,

where s is a (2B, 2B) logit matrix (already divided by the temperature τ).

Under torch.distributed (``gather_distributed=True``, the default) the negatives are gathered from
every rank with autograd (:func:`rcl.distributed.all_gather_with_grad`): a rank holds the two views
of its own b images, computes the rows of its 2b anchors against all 2B views, indexes positives by
their *global* position, and returns its contribution Σ_{local i} ℓ_i / 2B to the global mean.

Precision: the similarities are computed in float32 with autocast off. The EMD is a mean of
differences between nearly equal sorted values, which bf16/fp16's 8/11-bit mantissas round away,
and the logits are divided by a small τ and exponentiated, which magnifies rounding errors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import all_gather_with_grad, world_size


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def nt_xent_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """NT-Xent loss of a (2B, 2B) logit matrix whose positive of row i is column (i + B) mod 2B.

    Raises:
        ValueError: the matrix is not square with an even size ≥ 4 (at least two instances).
    """
    n = logits.shape[0]
    if logits.ndim != 2 or logits.shape[1] != n or n % 2 or n < 4:
        raise ValueError(f"need a square logit matrix of even size >= 4, got {tuple(logits.shape)}")
    return nt_xent_rows(logits, torch.arange(n, device=logits.device)) / n


def nt_xent_rows(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Σ ℓ_i over some anchors: ``logits`` (m, 2B) are the rows of anchors with global indices
    ``rows`` (m,) against all 2B views; the positive of anchor i is view (i + B) mod 2B and i itself
    is excluded. Returns the sum (divide by 2B for the mean)."""
    n = logits.shape[1]
    if n % 2 or n < 4 or logits.shape[0] != rows.shape[0]:
        raise ValueError(f"need (m, 2B) logits with 2B even >= 4 and m row indices, got {tuple(logits.shape)}")
    rows = rows.to(logits.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(len(rows), device=logits.device), rows] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    target = (rows + n // 2) % n
    return F.cross_entropy(logits, target, reduction="sum")


def gather_views(x: torch.Tensor, gather_distributed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of views from this rank's (2b, ...) ``[view 1 of its b images, view 2]``.

    Returns:
        ``(all_views (2B, ...), rows (2b,))``: every rank's views in the global order [view 1 of
        images 0..B−1, view 2 of them] (gathered with autograd), and the global indices of this
        rank's views in it. One rank (or ``gather_distributed=False``): ``(x, arange(2b))``.
    """
    if x.shape[0] % 2:
        raise ValueError(f"need an even number of views (two per image), got {x.shape[0]}")
    if not gather_distributed or world_size() == 1:
        return x, torch.arange(x.shape[0], device=x.device)
    parts = all_gather_with_grad(x)
    from ..distributed import rank

    halves = [p.shape[0] // 2 for p in parts]
    big_b = sum(halves)
    first = torch.cat([p[:h] for p, h in zip(parts, halves)])
    second = torch.cat([p[h:] for p, h in zip(parts, halves)])
    off = sum(halves[:rank()])
    b = halves[rank()]
    rows = torch.cat([torch.arange(off, off + b), torch.arange(big_b + off, big_b + off + b)]).to(x.device)
    return torch.cat([first, second]), rows


class ResidualNTXent(nn.Module):
    """RCL's instance-discrimination loss on residuals (Dong et al., 2022, arXiv 2106.10070).

    Logits s_ij = −EMD(n̂_i, n̂_j)/τ between residual crops; NT-Xent over the 2B crops.

    Args:
        temperature: τ > 0.
        similarity: "emd" (RCL), or the ablations "l2" (negative mean squared pixel difference) and
            "cosine" (cosine similarity of the flattened residuals, SimCLR-style).
        normalize: divide all residuals by the batch's residual std before comparing, which makes
            the loss invariant to a global rescaling of the residuals (our choice; without it the
            loss rewards inflating the residuals, see docs/design.md).
        gather_distributed: under torch.distributed, use every rank's residuals as negatives (and
            the global batch's std); False keeps each rank's own batch.
        center: subtract each residual crop's per-channel mean first (the EMD then compares the
            shapes of the distributions, not their offsets; our option, off by default).

    Forward: residuals (2b, C, p, p) of this rank, crop i and i + b from the same image → scalar
    loss (the mean over the global batch's 2B anchors; under torch.distributed this rank's
    contribution to it). Raises ValueError for fewer than two images in all.
    """

    def __init__(self, temperature: float = 0.1, similarity: str = "emd", normalize: bool = True,
                 gather_distributed: bool = True, center: bool = False):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if similarity not in ("emd", "l2", "cosine"):
            raise ValueError(f"similarity must be emd, l2 or cosine, got {similarity!r}")
        self.temperature, self.similarity, self.normalize = temperature, similarity, normalize
        self.gather_distributed, self.center = gather_distributed, center

    def _features(self, residuals: torch.Tensor) -> torch.Tensor:
        if self.center:
            residuals = residuals - residuals.mean(dim=(-2, -1), keepdim=True)
        if self.similarity == "emd":
            return residuals.flatten(2).sort(dim=-1).values.flatten(1)  # sorted per channel
        return residuals.flatten(1)

    def rows(self, residuals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits (2b, 2B), rows (2b,), global_std)``: this rank's anchors against all views."""
        with torch.autocast(residuals.device.type, enabled=False):
            feats, rows = gather_views(self._features(_at_least_fp32(residuals)), self.gather_distributed)
            std = feats.std()
            if self.normalize:
                feats = feats / (std + 1e-8)
            anchors = feats[rows]
            if self.similarity == "emd":  # mean over channels and samples of |s_i − s_j|
                sim = -torch.cdist(anchors.unsqueeze(0), feats.unsqueeze(0), p=1)[0] / feats.shape[1]
            elif self.similarity == "l2":
                sim = -torch.cdist(anchors.unsqueeze(0), feats.unsqueeze(0))[0] ** 2 / feats.shape[1]
            else:
                sim = F.normalize(anchors, dim=1) @ F.normalize(feats, dim=1).T
            return sim / self.temperature, rows, std.detach()

    def logits(self, residuals: torch.Tensor) -> torch.Tensor:
        """The (2B, 2B) logit matrix s/τ of one rank's batch."""
        if residuals.shape[0] < 4:
            raise ValueError(f"need at least two images (four crops), got {residuals.shape[0]} crops")
        old, self.gather_distributed = self.gather_distributed, False
        try:
            return self.rows(residuals)[0]
        finally:
            self.gather_distributed = old

    def forward(self, residuals: torch.Tensor) -> torch.Tensor:
        return self.forward_with_std(residuals)[0]

    def forward_with_std(self, residuals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, std)``: the loss and the global batch's residual std (before normalisation)."""
        logits, rows, std = self.rows(residuals)
        if logits.shape[1] < 4:
            raise ValueError(f"need at least two images (four crops), got {logits.shape[1]} crops")
        return nt_xent_rows(logits, rows) / logits.shape[1], std


class FeatureNTXent(nn.Module):
    """SimCLR's NT-Xent on feature vectors (Chen et al., 2020, Eq. 1): cosine similarity / τ.

    Args:
        temperature: τ > 0.
        gather_distributed: under torch.distributed, negatives from every rank (see the module).

    Forward: projections (2b, D) of this rank, rows i and i + b are two views of one image →
    scalar loss (the mean over the global batch's anchors; this rank's contribution under
    torch.distributed).
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):
            z = F.normalize(_at_least_fp32(z), dim=1)
            feats, rows = gather_views(z, self.gather_distributed)
            logits = feats[rows] @ feats.T / self.temperature
            if logits.shape[1] < 4:
                raise ValueError(f"need at least two images (four views), got {logits.shape[1]} views")
            return nt_xent_rows(logits, rows) / logits.shape[1]
