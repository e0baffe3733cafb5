"""Downstream networks built on the (RCL pre-trained) U-Net body: super-resolution and joint
demosaicking + denoising.

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

**JDDNet** (noisy Bayer mosaic (B, 1, H, W) → RGB (B, 3, H, W)): the mosaic is packed into
(B, 4, H/2, W/2) (positional packing, :func:`rcl.data.degradations.pack_bayer`), a U-Net with
``in_channels=4`` gives features at half resolution, and a conv3×3 → 12 channels + PixelShuffle(2)
tail returns RGB at full resolution, added to a differentiable classical demosaic of the input —
Malvar-He-Cutler (2004) by default, bilinear as an option — with a zero-initialised tail again, so
the untrained net *is* that classical method and fine-tuning learns denoising plus the correction
to it. Malvar rather than bilinear because a linear demosaicker is slow to learn by SGD (image
spectra make the least-squares problem ill-conditioned): in our CPU runs a linear 3×3 packed
filter trained from the bilinear start for 600 steps still trailed Malvar by 2.6 dB noise-free.
RCL pre-training for JDD runs on *packed noisy mosaics* with a residual UNet(4, 4) denoiser
(:func:`rcl.training.downstream.packed_noisy_mosaics` + ``RCLPretraining``), which has exactly the
shapes of ``JDDNet.body``, so every pre-trained weight transfers (:func:`transfer_weights`; the
denoiser's 1×1 head is carried but unused). The pattern is fixed per network (positional
packing); ``scale`` is 1 because output and input have the same spatial size. Odd H or W are
handled by a 1-px reflection at the bottom/right, which keeps the CFA phase.

Tiled inference (:func:`rcl.evaluation.predict` with ``tile``) starts every tile at a multiple of
the network's ``tile_align`` (SRNet: 2**depth LR pixels, the body's pooling grid; JDDNet:
2·2**depth mosaic pixels, which also keeps the CFA phase) and overlaps tiles by the
``receptive_field``, so that tiled and whole-image outputs agree up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.degradations import bicubic_upscale, bilinear_demosaic, check_pattern, malvar_demosaic
from .factory import ModelConfig, build_model
from .padding import pad_to_multiple
from .unet import UNet


def _body_width(body: UNet) -> int:
    return body.head.in_channels


def _tail(cin: int, cout: int, zero: bool) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    if zero:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


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
        self.tail = _tail(_body_width(body), self.out_channels * scale ** 2, zero=self.skip)
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


class JDDNet(nn.Module):
    """Joint demosaicking + denoising: Bayer mosaic (B, 1, H, W) → RGB (B, 3, H, W), H, W ≥ 2.

    Args:
        body: a U-Net with ``in_channels == 4`` (packed mosaic); only ``forward_body`` is used.
        pattern: the CFA pattern the network is trained for ("RGGB", "BGGR", "GRBG", "GBRG").
        skip: classical demosaic of the input added to the output: "malvar" (default), "bilinear"
            or None (the tail then gets PyTorch's default init instead of zeros).
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
        self.tail = _tail(_body_width(body), 3 * 4, zero=skip is not None)
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


def _unet_body(cfg: ModelConfig) -> UNet:
    if cfg.arch != "unet":
        raise ValueError(f"downstream networks need a U-Net body (arch='unet'), got arch={cfg.arch!r}")
    body = build_model(cfg)
    assert isinstance(body, UNet)
    return body


def build_sr_model(body_cfg: ModelConfig, scale: int, skip: bool = True) -> SRNet:
    """A fresh SRNet whose body is ``build_model(body_cfg)``; output channels = body_cfg.out_channels."""
    return SRNet(_unet_body(body_cfg), scale, body_cfg.out_channels, skip=skip)


def build_jdd_model(body_cfg: ModelConfig, pattern: str = "RGGB", skip: str | None = "malvar") -> JDDNet:
    """A fresh JDDNet whose body is ``build_model(body_cfg)``; ``body_cfg`` must have in_channels=4
    (use the config of the UNet(4, 4) pre-trained on packed mosaics)."""
    if body_cfg.in_channels != 4:
        raise ValueError(f"the JDD body takes packed mosaics: body_cfg.in_channels must be 4, "
                         f"got {body_cfg.in_channels}")
    return JDDNet(_unet_body(body_cfg), pattern, skip=skip)


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
