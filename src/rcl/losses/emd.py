"""Earth Mover's Distance (Wasserstein-1) between residual value distributions.

For one channel, the empirical distributions of two equal-size samples a, b of n values have
W1(a, b) = (1/n) Σ_k |a_(k) − b_(k)|, with a_(k) the k-th order statistic (the 1-D optimal
transport plan matches sorted values). For unequal sizes the integral of |F_a^{-1} − F_b^{-1}| is
taken exactly over the merged breakpoints k/n and k/m of the two step quantile functions. The
distance of multi-channel tensors (C, ...) is the mean of the per-channel distances. Sorting is differentiable almost everywhere, so
the EMD can drive training (RCL, Dong et al., 2022, arXiv 2106.10070, compares residuals by their EMD).
"""

from __future__ import annotations

import torch


def _w1_sorted(sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    """Exact W1 between per-row empirical distributions of sorted samples (R, n) and (R, m).

    W1 = ∫_0^1 |F_a^{-1}(t) − F_b^{-1}(t)| dt, with step quantile functions whose breakpoints are
    k/n and k/m; on each interval between consecutive breakpoints both are constant.
    """
    n, m = sa.shape[-1], sb.shape[-1]
    if n == m:
        return (sa - sb).abs().mean(dim=-1)
    ta = torch.arange(1, n + 1, dtype=torch.float64) / n
    tb = torch.arange(1, m + 1, dtype=torch.float64) / m
    t = torch.unique(torch.cat([torch.zeros(1, dtype=torch.float64), ta, tb]))
    width = (t[1:] - t[:-1]).to(sa.dtype).to(sa.device)
    mid = (t[1:] + t[:-1]) / 2
    ia = (mid * n).floor().long().clamp(max=n - 1).to(sa.device)
    ib = (mid * m).floor().long().clamp(max=m - 1).to(sa.device)
    return ((sa[..., ia] - sb[..., ib]).abs() * width).sum(dim=-1)


def sorted_channels(x: torch.Tensor) -> torch.Tensor:
    """Sort the values of each channel: (B, C, H, W) or (B, C, N) → (B, C, H·W) ascending."""
    return x.flatten(2).sort(dim=-1).values


def emd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Wasserstein-1 distance between the value distributions of a and b, per channel, averaged.

    Args:
        a: (C, ...) values; every trailing element of a channel is one sample.
        b: (C, ...) with the same C; may hold a different number of samples per channel.

    Returns:
        A scalar tensor, in the units of the inputs.

    Raises:
        ValueError: different channel counts or an empty channel.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"channel counts differ: {a.shape[0]} vs {b.shape[0]}")
    sa = a.reshape(a.shape[0], -1).sort(dim=-1).values
    sb = b.reshape(b.shape[0], -1).sort(dim=-1).values
    if sa.shape[-1] == 0 or sb.shape[-1] == 0:
        raise ValueError("empty sample")
    return _w1_sorted(sa, sb).mean()


def pairwise_emd(x: torch.Tensor) -> torch.Tensor:
    """EMD between every pair of a batch of equal-size tensors.

    Args:
        x: (N, C, H, W) (or (N, C, M)) residual crops.

    Returns:
        (N, N) symmetric matrix D with D[i, j] = emd(x[i], x[j]) and a zero diagonal.
    """
    s = sorted_channels(x)  # (N, C, M)
    n, c, m = s.shape
    flat = s.reshape(n, c * m)
    # mean over channels and samples of |s_i - s_j|: cdist with p=1 divided by C·M
    return torch.cdist(flat.unsqueeze(0), flat.unsqueeze(0), p=1)[0] / (c * m)
