"""Blind-spot masking (Krull et al., 2019, Noise2Void, Sec. 3; Batson & Royer, 2019, Noise2Self).

A network that never sees a pixel's own noisy value cannot reproduce its (pixel-independent)
noise, so a loss on masked pixels trains a denoiser from noisy images alone (J-invariance).
"""

from __future__ import annotations

import torch

from ..data.draws import Draws, as_draws

_OFFSETS_CACHE: dict[tuple, torch.Tensor] = {}


def neighbour_offsets(radius: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The (dy, dx) offsets of the (2·radius + 1)² − 1 neighbours of a pixel, (K, 2) int64 without
    (0, 0): the candidates of Noise2Void's random-neighbour replacement (cached per radius and
    device, so a training step copies nothing to the device)."""
    key = (radius, str(torch.device(device)))
    if key not in _OFFSETS_CACHE:
        r = torch.arange(-radius, radius + 1)
        dy, dx = torch.meshgrid(r, r, indexing="ij")
        keep = (dy != 0) | (dx != 0)
        _OFFSETS_CACHE[key] = torch.stack([dy[keep], dx[keep]], dim=1).to(device)  # (K, 2), no (0, 0)
    return _OFFSETS_CACHE[key]


def n2v_mask(x: torch.Tensor, ratio: float, generator: "Draws | torch.Generator | None" = None,
             radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise2Void masking: replace a random fraction of pixels by a random neighbour's value.

    Each (b, c, y, x) is masked independently with probability ``ratio`` (so RGB channels get
    independent masks); a masked pixel takes the value of a neighbour drawn uniformly from the
    (2·radius+1)² window without the centre, clamped at the border.

    Args:
        x: (B, C, H, W) noisy batch.
        ratio: masked fraction in (0, 1).
        radius: neighbourhood radius (2 gives N2V's 5×5 window).

    Returns:
        ``(masked, mask)``: masked input (B, C, H, W) and the boolean mask (B, C, H, W).
        At least one pixel of every image is masked. ``generator``: a
        :class:`rcl.data.draws.Draws` (per-image draws of the global batch) or a torch.Generator.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    b, c, h, w = x.shape
    if h * w < 2:
        raise ValueError("blind-spot masking needs images of at least 2 pixels")
    draws = as_draws(generator)
    mask = (draws.sample_rand(b, c, h, w) < ratio).to(x.device)
    fallback = draws.sample_randint(c * h * w, b).to(x.device)  # one pixel kept masked per image
    flat_mask = mask.view(b, -1)
    empty = ~flat_mask.any(dim=1)
    flat_mask[torch.arange(b, device=x.device), fallback] |= empty
    offs = neighbour_offsets(radius, x.device)
    pick = draws.sample_randint(len(offs), b, c, h, w).to(x.device)
    return _replace_masked(x, mask, pick, offs, sparse=x.device.type == "cpu"), mask


def _replace_masked(x: torch.Tensor, mask: torch.Tensor, pick: torch.Tensor, offs: torch.Tensor,
                    sparse: bool) -> torch.Tensor:
    """``x`` with each masked pixel replaced by its neighbour ``offs[pick]`` (see :func:`n2v_mask`).

    ``sparse`` (the CPU's path) works on the masked pixels alone, a fraction ``ratio`` of them:
    5× faster than the dense path on a default RCL batch. On a GPU ``nonzero`` would wait for the
    device, so the dense path is used there. Both give the same values (tested)."""
    b, c, h, w = x.shape
    if sparse:
        bi, ci, yi, xi = mask.nonzero(as_tuple=True)
        sy, sx = _neighbour(yi, xi, pick[bi, ci, yi, xi], offs, h, w)
        out = x.clone()
        out[bi, ci, yi, xi] = x[bi, ci, sy, sx]
        return out
    yy = torch.arange(h, device=x.device).view(1, 1, h, 1).expand(b, c, h, w)
    xx = torch.arange(w, device=x.device).view(1, 1, 1, w).expand(b, c, h, w)
    sy, sx = _neighbour(yy, xx, pick, offs, h, w)
    flat = x.reshape(b, c, h * w)
    neighbour = torch.gather(flat, 2, (sy * w + sx).reshape(b, c, h * w)).reshape(x.shape)
    return torch.where(mask, neighbour, x)


def _neighbour(yy: torch.Tensor, xx: torch.Tensor, pick: torch.Tensor, offs: torch.Tensor, h: int,
               w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of the neighbour ``offs[pick]`` of pixels (yy, xx), clamped to the image;
    a clamped offset that lands back on the pixel itself is shifted one step inward."""
    sy = (yy + offs[pick, 0]).clamp(0, h - 1)
    sx = (xx + offs[pick, 1]).clamp(0, w - 1)
    same = (sy == yy) & (sx == xx)
    sy = torch.where(same & (yy > 0), yy - 1, torch.where(same, (yy + 1).clamp(max=h - 1), sy))
    still = (sy == yy) & (sx == xx)
    sx = torch.where(still & (xx > 0), xx - 1, torch.where(still, (xx + 1).clamp(max=w - 1), sx))
    return sy, sx


def check_pd_crop(crop: int, stride: int, min_side: int = 8) -> None:
    """Refuse a crop side that does not suit pixel-shuffle down-sampling with ``stride``.

    A PD'd crop of side ``crop`` is split into stride² sub-images of side crop / stride; the crop
    must be a multiple of the stride (no replicated border pixels: a copied pixel next to itself
    would be a perfect "neighbour" for the blind spot) and each sub-image at least ``min_side``
    pixels (the network's smallest sensible input: 8, the smallest crop rcl trains on, or the
    U-Net's 2**depth, whichever is larger).

    Raises:
        ValueError: a bad stride, a crop not divisible by it, or sub-images below ``min_side``.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"pd_stride must be an integer >= 1, got {stride!r}")
    if stride == 1:
        return
    if crop % stride:
        raise ValueError(f"crop size {crop} is not a multiple of pd_stride {stride}; use a crop size of "
                         f"{crop - crop % stride} or {crop - crop % stride + stride}")
    if crop // stride < min_side:
        raise ValueError(f"crop size {crop} at pd_stride {stride} gives {crop // stride}-px sub-images, smaller "
                         f"than the network's minimum of {min_side} px; use a crop size of at least "
                         f"{min_side * stride}")


def pd_blindspot_forward(model, x: torch.Tensor, ratio: float, generator: "Draws | torch.Generator | None" = None,
                         stride: int = 1, radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The blind-spot forward pass, optionally on pixel-shuffle down-sampled (PD) crops.

    With ``stride`` s > 1 each crop is split into its s² PD sub-images (:func:`rcl.data.pd.pd_down`;
    neighbours in a sub-image were s pixels apart in the crop), the sub-images are masked
    (:func:`n2v_mask`: a masked pixel takes a neighbour's value *within its sub-image*, i.e. from
    s·radius pixels away at most, on the PD grid) and go through ``model`` as a batch of B·s²
    images; the output and the mask are put back together (:func:`rcl.data.pd.pd_up`). This is PD
    before a blind-spot network as in Zhou et al., AAAI 2020 and Lee, Son, Lee (AP-BSN), CVPR 2022:
    noise correlated over fewer than s pixels becomes close to independent between a masked pixel
    and the neighbours the network sees.

    Draws: the mask of a crop's s² sub-images is drawn as one row of the local batch (the
    sub-images are stacked as s²·C channels of their crop for :func:`n2v_mask`), so the per-row
    draws of ``generator`` (a :class:`rcl.data.draws.Draws` with the method's layout) keep their
    one-row-per-crop contract: N ranks draw what one rank would. Nothing comes from torch's global
    RNG unless ``generator`` is None. s = 1 is exactly ``model(n2v_mask(x, ...)[0])``, the same
    draws in the same order.

    Args:
        model: f_θ, (N, C, h, w) → (N, C, h, w).
        x: (B, C, H, W) noisy crops, H and W multiples of ``stride`` (see :func:`check_pd_crop`).
        ratio: masked fraction in (0, 1), per pixel and channel.
        stride: PD stride s ≥ 1.
        radius: neighbourhood radius of the replacement, in sub-image pixels.

    Returns:
        ``(out, mask)``: f's output (B, C, H, W) in the crops' pixel order and the boolean mask
        (B, C, H, W) of the pixels the loss is taken on.

    Raises:
        ValueError: a bad stride, H or W not a multiple of it, or ``ratio`` out of (0, 1).
    """
    if stride == 1:
        masked, mask = n2v_mask(x, ratio, generator, radius)
        return model(masked), mask
    from ..data.pd import pd_down, pd_up

    b, c, h, w = x.shape
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"pd_stride must be an integer >= 1, got {stride!r}")
    if h % stride or w % stride:
        raise ValueError(f"PD blind-spot training: crops of {h}×{w} px are not a multiple of pd_stride {stride}")
    s2, hs, ws = stride * stride, h // stride, w // stride
    sub = pd_down(x, stride)                                   # (B·s², C, h/s, w/s), image-major
    masked, mask = n2v_mask(sub.reshape(b, s2 * c, hs, ws), ratio, generator, radius)
    net_in = masked.reshape(b * s2, c, hs, ws)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        net_in = net_in.contiguous(memory_format=torch.channels_last)
    out = model(net_in)
    return pd_up(out, stride, (h, w)), pd_up(mask.reshape(b * s2, c, hs, ws), stride, (h, w))
