"""Supervised reconstruction losses for fine-tuning."""

from __future__ import annotations

import torch


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean squared ("l2") or mean absolute ("l1") error between (B, C, H, W) tensors.

    Raises:
        ValueError: unknown kind or mismatched shapes.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if kind == "l2":
        return ((pred - target) ** 2).mean()
    if kind == "l1":
        return (pred - target).abs().mean()
    raise ValueError(f"loss must be l2 or l1, got {kind!r}")
