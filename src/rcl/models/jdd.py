"""The joint demosaicking + denoising network built on the (RCL pre-trained) U-Net body.

**JDDNet** (noisy Bayer mosaic (B, 1, H, W) → RGB (B, 3, H, W)): the mosaic is packed into
(B, 4, H/2, W/2) (positional packing, :func:`rcl.data.degradations.pack_bayer`), a U-Net with
``in_channels=4`` gives features at half resolution, and a conv3×3 → 12 channels + PixelShuffle(2)
tail returns RGB at full resolution, added to a differentiable classical demosaic of the input —
Malvar-He-Cutler (2004) by default, bilinear as an option — with a zero-initialised tail (as
:class:`rcl.models.sr.SRNet`), so the untrained net *is* that classical method and fine-tuning
learns denoising plus the correction to it. Malvar rather than bilinear because a linear
demosaicker is slow to learn by SGD (image spectra make the least-squares problem
ill-conditioned): in our CPU runs a linear 3×3 packed filter trained from the bilinear start for
600 steps still trailed Malvar by 2.6 dB noise-free.

RCL pre-training for JDD runs on *packed noisy mosaics* with a residual UNet(4, 4) denoiser
(:meth:`rcl.tasks.JDDTask.pretraining_data` and :meth:`rcl.tasks.JDDTask.pretrain_model_config`),
which has exactly the shapes of ``JDDNet.body``, so every pre-trained weight transfers
(:func:`rcl.models.factory.transfer_weights`; the denoiser's 1×1 head is carried but unused). The
pattern is fixed per network (positional packing); ``scale`` is 1 because output and input have
the same spatial size. Odd H or W are handled by a 1-px reflection at the bottom/right, which
keeps the CFA phase.

Tiled inference (:func:`rcl.evaluation.predict` with ``tile``) starts every tile at a multiple of
``tile_align`` = 2·2**depth mosaic pixels (the body's pooling grid in the packed image, and the
CFA phase) and overlaps tiles by the ``receptive_field``, so that tiled and whole-image outputs
agree up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.degradations import bilinear_demosaic, check_pattern, malvar_demosaic
from .factory import ModelConfig, build_unet_body, conv_tail
from .padding import pad_to_multiple
from .unet import UNet

JDD_SKIPS = ("malvar", "bilinear")
"""The classical demosaics a JDDNet may add to its output (besides None)."""


class JDDNet(nn.Module):
    """Joint demosaicking + denoising: Bayer mosaic (B, 1, H, W) → RGB (B, 3, H, W), H, W ≥ 2.

    Args:
        body: a U-Net with ``in_channels == 4`` (packed mosaic); only ``forward_body`` is used.
        pattern: the CFA pattern the network is trained for ("RGGB", "BGGR", "GRBG", "GBRG").
        skip: classical demosaic of the input added to the output: "malvar" (default), "bilinear"
            or None (the tail then gets PyTorch's default init instead of zeros).

    Raises:
        TypeError: ``body`` has no ``forward_body``.
        ValueError: the body does not take 4 channels, unknown pattern or skip.
    """

    scale = 1
    SKIPS = {"malvar": malvar_demosaic, "bilinear": bilinear_demosaic}

    def __init__(self, body: UNet, pattern: str = "RGGB", skip: str | None = "malvar"):
        super().__init__()
        if not hasattr(body, "forward_body"):
            raise TypeError(f"JDDNet needs a U-Net body with forward_body, got {type(body).__name__}")
        if body.in_channels != 4:
            raise ValueError(f"the JDD body takes the packed mosaic (4 channels), got in_channels={body.in_channels}")
        if skip is not None and skip not in self.SKIPS:
            raise ValueError(f"skip must be one of {', '.join(self.SKIPS)} or None, got {skip!r}")
        self.body, self.pattern, self.skip = body, check_pattern(pattern), skip
        self.tail = conv_tail(body.head.in_channels, 3 * 4, zero=skip is not None)
        self.shuffle = nn.PixelShuffle(2)

    @property
    def tile_align(self) -> int:
        """Tile starts (mosaic pixels) must be multiples of 2·2**depth: even (CFA phase) and on
        the body's pooling grid in the packed half-resolution image."""
        return 2 * 2 ** self.body.depth

    @property
    def receptive_field(self) -> int:
        """Full width of the receptive field in mosaic pixels: a packed pixel depends on packed
        pixels within r = body radius + 1 (3×3 tail), i.e. mosaic pixels within 2·r + 1; the
        classical skip (Malvar 5×5, bilinear 3×3) reaches 2 pixels only."""
        return 2 * max(2 * (self.body.body_radius + 1) + 1, 2) + 1

    def forward(self, mosaic: torch.Tensor) -> torch.Tensor:
        if mosaic.ndim != 4 or mosaic.shape[1] != 1:
            raise ValueError(f"JDDNet takes a (B, 1, H, W) mosaic, got shape {tuple(mosaic.shape)}")
        h, w = mosaic.shape[-2:]
        if h < 2 or w < 2:
            raise ValueError(f"JDDNet needs at least 2×2 pixels, got {w}×{h}")
        # a 1-px reflection at the bottom/right copies row H-2 to row H: same CFA colours
        m = F.pad(mosaic, (0, w % 2, 0, h % 2), mode="reflect") if (h % 2 or w % 2) else mosaic
        packed = F.pixel_unshuffle(m, 2)
        feats = self.body.forward_body(pad_to_multiple(packed, 2 ** self.body.depth))
        out = self.shuffle(self.tail(feats))[..., :m.shape[-2], :m.shape[-1]]
        if self.skip is not None:
            if min(m.shape[-2:]) < 3 and self.skip == "malvar":  # 2-px images: Malvar's 5×5 does not fit
                out = out + bilinear_demosaic(m, self.pattern)
            else:
                out = out + self.SKIPS[self.skip](m, self.pattern)
        return out[..., :h, :w]


def build_jdd_model(body_cfg: ModelConfig, pattern: str = "RGGB", skip: str | None = "malvar") -> JDDNet:
    """A fresh JDDNet whose body is ``build_model(body_cfg)``; ``body_cfg`` must have in_channels=4
    (use the config of the UNet(4, 4) pre-trained on packed mosaics).

    Raises:
        ValueError: ``body_cfg.in_channels`` is not 4, the arch is not a U-Net, or bad pattern/skip.
    """
    if body_cfg.in_channels != 4:
        raise ValueError(f"the JDD body takes packed mosaics: body_cfg.in_channels must be 4, "
                         f"got {body_cfg.in_channels}")
    return JDDNet(build_unet_body(body_cfg), pattern, skip=skip)


__all__ = ["JDD_SKIPS", "JDDNet", "build_jdd_model"]
