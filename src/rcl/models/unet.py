"""A small U-Net for image-to-image restoration (Ronneberger et al., 2015, MICCAI).

Layout: ``depth`` down-sampling stages (2×2 max-pool), each preceded by two 3×3 conv + LeakyReLU
blocks whose width doubles per stage from ``width``; a mirrored decoder with bilinear upsampling
and skip concatenation; a 1×1 output conv. With ``residual=True`` the network predicts the noise,
f(x) = x − g(x) (residual learning as in DnCNN), which needs in_channels == out_channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .padding import pad_to_multiple


def _dense_grad(z: torch.Tensor) -> torch.Tensor:
    """``z`` unchanged; its gradient is made dense in ``z``'s memory format before it flows on.

    The gradient of an up-sampled tensor reaches it from ``torch.cat``'s backward as a channel
    slice, which is dense in no layout; bilinear up-sampling's backward then takes a generic path,
    4× slower than on a dense channels-last gradient (10 % of a default training step on the CPU,
    measured in docs/benchmarks.md). Values are unchanged."""
    if z.requires_grad:
        fmt = torch.channels_last if z.dim() == 4 and z.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        z.register_hook(lambda g: g.contiguous(memory_format=fmt))
    return z


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


class UNet(nn.Module):
    """U-Net f_θ: (B, C_in, H, W) → (B, C_out, H, W), any H, W ≥ 1.

    Inputs are reflect-padded to a multiple of 2**depth and the output is cropped back.

    Args:
        in_channels, out_channels: 1 (grayscale) or 3 (RGB) typically; 4 for a packed Bayer mosaic.
        width: channels of the first stage (doubled at each down-sampling).
        depth: number of down-sampling stages (0 gives a plain conv net).
        residual: predict the residual, f(x) = x − g(x).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 16, depth: int = 3,
                 residual: bool = True):
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError("residual=True needs in_channels == out_channels")
        self.depth, self.residual = depth, residual
        self.in_channels, self.out_channels = in_channels, out_channels
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.enc = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.enc.append(_block(cin, c))
            cin = c
        self.bottleneck = _block(cin, chans[-1])
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            self.dec.append(_block(chans[i + 1] + chans[i], chans[i]))
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        self.feature_channels = chans[-1]

    @property
    def tile_align(self) -> int:
        """Tile starts must be multiples of this (2**depth): then a tile pools the same pixel
        pairs as the whole image, and its output equals the whole image's away from its borders."""
        return 2 ** self.depth

    @property
    def body_radius(self) -> int:
        """Receptive-field radius of :meth:`forward_body` (and of :meth:`forward`: the head is 1×1),
        in input pixels: an output pixel depends only on inputs at most this far away (per axis).

        Sum of the largest centre-to-centre offsets along the deepest path, with d = depth:
        2·2**i per conv pair at level i (encoder, decoder), 2·2**d in the bottleneck, 2**(i−1)
        per 2×2 max-pool from level i, 1.5·2**i per bilinear ×2 up-sampling to level i:
        6·(2**d − 1) + 2·2**d = 8·2**d − 6 (2, 10, 26, 58, 122 for d = 0…4). It is attained for
        some output positions, so it is not a loose bound.
        """
        return 8 * 2 ** self.depth - 6

    @property
    def receptive_field(self) -> int:
        """Full width (2·radius + 1) of the receptive field in input pixels (117 for depth 3)."""
        return 2 * self.body_radius + 1

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bottleneck features (B, width·2**depth, H/2**depth, W/2**depth) and the skips (padded input)."""
        skips = []
        for blk in self.enc:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return self.bottleneck(x), skips

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for blk, skip in zip(self.dec, reversed(skips)):
            z = _dense_grad(F.interpolate(z, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            z = blk(torch.cat([z, skip], dim=1))
        return z

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        """Last decoder features (B, width, H, W) for an already padded input."""
        z, skips = self.features(x)
        return self.decode(z, skips)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, 2 ** self.depth)
        out = self.head(self.forward_body(xp))[..., :h, :w]
        return x - out if self.residual else out
