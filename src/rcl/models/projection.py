"""SimCLR projection head (Chen, Kornblith, Norouzi & Hinton, 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", ICML, Sec. 2.1: g(h) = W2 σ(W1 h)).

Applied to the globally average-pooled bottleneck features of a restoration network
(``model.features(x)[0]``: (B, width·2**depth, H/2**depth, W/2**depth) for the U-Net,
(B, width, H, W) for DnCNN).
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Global average pool + Linear–ReLU–Linear.

    Args:
        in_channels: channels D of the feature map (``model.feature_channels``).
        out_dim: projection size (64).
        hidden: hidden width (default: ``in_channels``, as in SimCLR).

    Forward: features (B, D, h, w) (any values) or pooled (B, D) → projections (B, out_dim)
    (unnormalised; the NT-Xent normalises them).
    """

    def __init__(self, in_channels: int, out_dim: int = 64, hidden: int | None = None):
        super().__init__()
        hidden = in_channels if hidden is None else hidden
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim == 4:
            feats = feats.mean(dim=(-2, -1))
        return self.mlp(feats)


def project(model: nn.Module, head: ProjectionHead, x: torch.Tensor) -> torch.Tensor:
    """z = head(pool(model.features(x)[0])) for images x (B, C, H, W) → (B, out_dim).

    Note: the U-Net's ``features`` pools by 2 per stage without padding, so H and W should be
    multiples of 2**depth (crops usually are); other sizes are floor-pooled.
    """
    feats, _ = model.features(x)
    return head(feats)
