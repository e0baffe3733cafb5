"""The super-resolution network built on the (RCL pre-trained) U-Net body.

**SRNet** (noisy LR → clean HR, integer scale s)::

    x (B, C, h, w) ──pad──► UNet.forward_body ──► conv3×3 → C·s² ──► PixelShuffle(s) ──crop──► tail
    output = bicubic_upscale(x, s) + tail          (global bicubic skip, MATLAB convention)

The body runs at LR resolution (cheap) and the sub-pixel convolution (Shi et al., 2016, ESPCN)
up-samples at the very end. The 1×1 ``head`` of the denoising U-Net is not used (it stays in the
module so that a denoiser's state dict loads into ``SRNet.body`` with ``strict=True``). The tail
conv is initialised to zero, so an untrained SRNet *is* the bicubic baseline, the checkerboard
artefacts of a randomly initialised sub-pixel conv (Aitken et al., 2017) never appear, and
fine-tuning only has to learn the residual to bicubic (as VDSR, Kim et al. 2016). With
``skip=False`` (or when in and out channels differ) the tail gets PyTorch's default init.

The joint demosaicking + denoising network is in :mod:`rcl.models.jdd`.

Tiled inference (:func:`rcl.evaluation.predict` with ``tile``) starts every tile at a multiple of
the network's ``tile_align`` (SRNet: 2**depth LR pixels, the body's pooling grid) and overlaps tiles by the
``receptive_field``, so that tiled and whole-image outputs agree up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.degradations import bicubic_upscale
from .factory import ModelConfig, build_unet_body, conv_tail, transfer_weights
from .padding import pad_to_multiple
from .unet import UNet


class SRNet(nn.Module):
    """Super-resolution network: (B, C_in, h, w) → (B, C_out, h·scale, w·scale), any h, w ≥ 1.

    Args:
        body: a U-Net (pre-trained by RCL or fresh); only ``forward_body`` is used.
        scale: integer up-scaling factor (2, 3, 4, …).
        out_channels: output channels (default: the body's input channels).
        skip: add the bicubic up-scaling of the input (needs in == out channels).
    """

    def __init__(self, body: UNet, scale: int, out_channels: int | None = None, skip: bool = True):
        super().__init__()
        if not hasattr(body, "forward_body"):
            raise TypeError(f"SRNet needs a U-Net body with forward_body, got {type(body).__name__}")
        scale = int(scale)
        if scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale}")
        self.body, self.scale = body, scale
        self.in_channels = body.in_channels
        self.out_channels = int(out_channels if out_channels is not None else body.in_channels)
        self.skip = bool(skip) and self.in_channels == self.out_channels
        self.tail = conv_tail(body.head.in_channels, self.out_channels * scale ** 2, zero=self.skip)
        self.shuffle = nn.PixelShuffle(scale)

    @property
    def tile_align(self) -> int:
        """Tile starts (in LR pixels) must be multiples of the body's pooling grid, 2**depth."""
        return 2 ** self.body.depth

    @property
    def receptive_field(self) -> int:
        """Full width of the receptive field in LR input pixels: an HR output pixel at (y, x)
        depends only on LR pixels within radius of (y // scale, x // scale), with radius = the
        body's radius + 1 (3×3 tail conv); the bicubic skip reaches 2 LR pixels only."""
        return 2 * max(self.body.body_radius + 1, 2) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.scale
        feats = self.body.forward_body(pad_to_multiple(x, 2 ** self.body.depth))
        out = self.shuffle(self.tail(feats))[..., :h * s, :w * s]
        return out + bicubic_upscale(x, s) if self.skip else out


def build_sr_model(body_cfg: ModelConfig, scale: int, skip: bool = True) -> SRNet:
    """A fresh SRNet whose body is ``build_model(body_cfg)``; output channels = body_cfg.out_channels."""
    return SRNet(build_unet_body(body_cfg), scale, body_cfg.out_channels, skip=skip)


__all__ = ["SRNet", "build_sr_model", "transfer_weights"]
