"""Build a network from a validated config (one place that knows every architecture)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from ..configs import StrictConfig
from .dncnn import DnCNN
from .unet import UNet


class ModelConfig(StrictConfig):
    """Architecture of f_θ (strict: see :mod:`rcl.configs`). Stored in every checkpoint.

    Attributes:
        arch: "unet" (default) or "dncnn".
        in_channels / out_channels: 1 (grayscale) or 3 (RGB).
        width: channels of the first stage (U-Net) or of every layer (DnCNN).
        depth: down-sampling stages (U-Net) or conv layers (DnCNN).
    """

    arch: Literal["unet", "dncnn"] = "unet"
    in_channels: int = Field(1, ge=1, le=16)
    out_channels: int = Field(1, ge=1, le=16)
    width: int = Field(16, ge=1, le=512)
    depth: int = Field(3, ge=0, le=8)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the network described by ``cfg``."""
    if cfg.arch == "unet":
        return UNet(cfg.in_channels, cfg.out_channels, cfg.width, cfg.depth,
                    residual=cfg.in_channels == cfg.out_channels)
    if cfg.arch == "dncnn":
        return DnCNN(cfg.in_channels, cfg.out_channels, cfg.width, max(cfg.depth, 2))
    raise ValueError(f"unknown architecture {cfg.arch!r}")  # unreachable after validation
