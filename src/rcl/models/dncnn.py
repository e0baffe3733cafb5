"""DnCNN (Zhang et al., 2017, "Beyond a Gaussian Denoiser", IEEE TIP): conv-BN-ReLU stack with
residual learning, f(x) = x − g(x)."""

from __future__ import annotations

import torch
from torch import nn


class DnCNN(nn.Module):
    """DnCNN f_θ: (B, C, H, W) → (B, C, H, W), any H, W (no down-sampling).

    Args:
        in_channels: 1 or 3 (out_channels equals in_channels).
        width: feature channels (64 in the paper).
        depth: number of conv layers (17 in the paper for σ-specific models).
    """

    tile_align = 1  # no down-sampling: tiles may start anywhere

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, width: int = 32,
                 depth: int = 8, residual: bool = True):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if out_channels != in_channels or not residual:
            raise ValueError("DnCNN is a residual denoiser: out_channels == in_channels, residual=True")
        if depth < 2:
            raise ValueError(f"DnCNN depth must be >= 2, got {depth}")
        self.in_channels = self.out_channels = in_channels
        self.depth, self.residual = 0, True  # no down-sampling: no size constraint
        layers = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, in_channels, 3, padding=1)
        self.feature_channels = width

    @property
    def receptive_field(self) -> int:
        """Full width of the receptive field in input pixels: 2·(number of 3×3 convs) + 1."""
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        return 2 * sum(m.dilation[0] * (m.kernel_size[0] // 2) for m in convs) + 1

    def features(self, x: torch.Tensor):
        """Last hidden features (B, width, H, W) and no skips (for feature-level pre-training)."""
        return self.body(x), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.head(self.body(x))
