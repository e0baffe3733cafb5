"""Supervised reconstruction losses for fine-tuning."""

from __future__ import annotations

import torch

from ..distributed import global_mean


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean squared ("l2") or mean absolute ("l1") error between (B, C, H, W) tensors (under
    torch.distributed: this rank's contribution to the mean over the global batch).

    Raises:
        ValueError: unknown kind or mismatched shapes.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if kind == "l2":
        return global_mean(((pred - target) ** 2).sum(), pred.numel())
    if kind == "l1":
        return global_mean((pred - target).abs().sum(), pred.numel())
    raise ValueError(f"loss must be l2 or l1, got {kind!r}")
