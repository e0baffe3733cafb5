"""Build a network from a validated config (one place that knows every architecture), plus the
pieces the task networks (:mod:`rcl.models.sr`, :mod:`rcl.models.jdd`) share: the U-Net body, the
zero-initialised output conv and weight transfer between networks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
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
        depth: down-sampling stages (U-Net, 0–8) or conv layers (DnCNN, 2–8).
    """

    arch: Literal["unet", "dncnn"] = "unet"
    in_channels: int = Field(1, ge=1, le=16)
    out_channels: int = Field(1, ge=1, le=16)
    width: int = Field(16, ge=1, le=512)
    depth: int = Field(3, ge=0, le=8)

    @field_validator("depth")
    @classmethod
    def _dncnn_has_two_layers(cls, v: int, info: ValidationInfo) -> int:
        if info.data.get("arch") == "dncnn" and v < 2:
            raise ValueError(f"a DnCNN has at least 2 conv layers (its first and last), got {v}")
        return v


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the network described by ``cfg``."""
    if cfg.arch == "unet":
        return UNet(cfg.in_channels, cfg.out_channels, cfg.width, cfg.depth,
                    residual=cfg.in_channels == cfg.out_channels)
    if cfg.arch == "dncnn":
        return DnCNN(cfg.in_channels, cfg.out_channels, cfg.width, cfg.depth)
    raise ValueError(f"unknown architecture {cfg.arch!r}")  # unreachable after validation


def build_unet_body(cfg: ModelConfig) -> UNet:
    """A fresh U-Net to serve as the body of a task network (SRNet, JDDNet).

    Raises:
        ValueError: ``cfg.arch`` is not "unet".
    """
    if cfg.arch != "unet":
        raise ValueError(f"downstream networks need a U-Net body (arch='unet'), got arch={cfg.arch!r}")
    body = build_model(cfg)
    assert isinstance(body, UNet)
    return body


def conv_tail(cin: int, cout: int, zero: bool) -> nn.Conv2d:
    """The 3×3 output conv of a task network; ``zero`` sets weight and bias to 0 (the network then
    starts as its classical skip). PyTorch's default init is drawn from the global RNG either way."""
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    if zero:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


def transfer_weights(dst: nn.Module, src: nn.Module | dict) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``src`` (module or state dict) whose name and shape match into ``dst``.

    Typical use: ``transfer_weights(srnet.body, pretrained_unet)``. Tensors of ``dst`` without a
    match keep their values (e.g. a first conv whose input channels differ).

    Returns:
        ``(loaded, skipped)``: names copied, and names of ``src`` not copied (missing or other shape).

    Raises:
        ValueError: nothing matched (almost certainly the wrong module was passed).
    """
    state = src.state_dict() if isinstance(src, nn.Module) else dict(src)
    own = dst.state_dict()
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if state and not fit:
        raise ValueError("no tensor of the source fits the destination (wrong module? "
                         "pass the body, e.g. transfer_weights(model.body, denoiser))")
    own.update(fit)
    dst.load_state_dict(own)
    return sorted(fit), sorted(k for k in state if k not in fit)
