"""Whole-image and tiled inference, with memory bounded by default.

:func:`predict` runs the whole image in one forward pass when the estimated peak memory of that
pass (:func:`inference_bytes`) fits a budget, and in overlapping tiles otherwise
(:func:`auto_tile`). The budget is ``max_bytes`` when given, else the environment variable
``RCL_INFERENCE_MEMORY`` (bytes, or a number with a binary suffix: ``1G``, ``1.5GiB``, ``800M``,
``512MB``; K/M/G/T mean 1024**1…4), else :data:`DEFAULT_INFERENCE_BYTES` (1 GiB).

Tiles are exact, not approximate: every tile starts at a multiple of the network's alignment
(:func:`tile_alignment`: 2**depth for a U-Net, whose max-pools must see the same pixel pairs as
in the whole image), and neighbouring tiles overlap by at least the receptive-field width
(:func:`tile_overlap`), with the seam in the middle of the overlap, so each kept output pixel is
at least the receptive-field radius away from any inner tile border and the tiled output equals
the whole-image output up to float rounding (measured ≤ 1e-5).
"""

from __future__ import annotations

import math
import os
import re
import warnings
import weakref
from contextlib import contextmanager
from typing import Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

DEFAULT_INFERENCE_BYTES = 1 << 30
"""Default memory budget of :func:`predict` (1 GiB): input + output + activations of one pass.

Whole-image inference of the default U-Net (width 16, depth 3) is estimated at ≈ 0.3 GiB for a
768×512 RGB image, so evaluation test sets are never tiled by default; a 24-megapixel RGB photo
(≈ 16 GiB whole) is restored in 840-px tiles. Override with ``RCL_INFERENCE_MEMORY``."""

MEMORY_ENV = "RCL_INFERENCE_MEMORY"
FALLBACK_OVERLAP = 16
"""Tile overlap (px) for networks whose receptive field is unknown (seams may show)."""
PROBE_SIZE = 128
"""Side (px, rounded up to the alignment) of the probe image used to measure activation memory."""
ACTIVATION_MARGIN = 1.2
"""Factor on the measured activation bytes: oneDNN scratch buffers and allocator slack, which the
probe does not see, added 4–20 % in RSS measurements of the default U-Net (768×512 to 6000×4000)."""


@contextmanager
def inference_layout(model: nn.Module):
    """Run ``model`` in eval mode with its 4-D weights in channels-last memory layout; restore both.

    oneDNN's CPU convolutions run faster on channels-last tensors: for the default U-Net on a
    481×321 image, 0.33 → 0.22 s (grayscale) and 0.33 → 0.25 s (RGB) on one thread, measured
    on the development machine; the output values differ only by float rounding (≤ 1e-6).
    The weights are converted back to their layout on exit (contiguous, or channels-last for a
    network that trains channels-last), so a model that is being trained is left as it was (the
    ``nn.Parameter`` objects are kept, so an optimizer's references stay valid). Feed inputs through :func:`to_layout`.
    """
    was_training = model.training
    # a network that trains channels-last (rcl.training.Engine) goes back to channels-last: the
    # optimiser's moment tensors have its parameters' strides, which the fused Adam kernel relies on
    was_cl = any(p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
                 for p in model.parameters())
    model.eval()
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.channels_last if was_cl else torch.contiguous_format)
        model.train(was_training)


def to_layout(x: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) input in the channels-last layout that :func:`inference_layout` expects."""
    return x.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- budget

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str | int) -> int:
    """A byte count from ``"1073741824"``, ``"1G"``, ``"1.5GiB"``, ``"800M"``, ``"512MB"`` (binary units).

    Raises:
        ValueError: not a positive size.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        n = text
    else:
        m = re.fullmatch(r"\s*(\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})\s*([KMGT]?)(?:I?B)?\s*", str(text),
                         re.IGNORECASE)
        if m is None:
            raise ValueError(f"not a memory size: {text!r} (use bytes or e.g. 800M, 1G, 1.5GiB)")
        n = int(float(m.group(1)) * _SUFFIX[m.group(2).upper()])
    if n <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return n


def default_inference_bytes() -> int:
    """The budget used when ``max_bytes`` is None: ``RCL_INFERENCE_MEMORY`` if set, else
    :data:`DEFAULT_INFERENCE_BYTES`.

    Raises:
        ValueError: the environment variable is set but is not a positive size.
    """
    env = os.environ.get(MEMORY_ENV, "").strip()
    if not env:
        return DEFAULT_INFERENCE_BYTES
    try:
        return parse_bytes(env)
    except ValueError as exc:
        raise ValueError(f"{MEMORY_ENV}={env!r}: {exc}") from None


# ----------------------------------------------------------------------------- geometry

_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity,
              nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.Softplus, nn.Hardtanh, nn.ReLU6)


def _sequential_radius(model: nn.Module) -> int | None:
    """Radius of a plain stack (nn.Sequential / Conv2d) of stride-1 'same' convs and pointwise layers."""
    if not isinstance(model, (nn.Sequential, nn.Conv2d)):
        return None
    r = 0
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            continue
        if isinstance(m, nn.Conv2d):
            pad = m.padding if m.padding != "same" else tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
            rad = [d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size)]
            if any(s != 1 for s in m.stride) or any(k % 2 == 0 for k in m.kernel_size) or tuple(pad) != tuple(rad):
                return None
            r += max(rad)
        elif not isinstance(m, _POINTWISE):
            return None
    return r


def receptive_field(model: nn.Module) -> int | None:
    """Full width (2·radius + 1) of the network's receptive field, in input pixels, or None if unknown.

    Uses the model's ``receptive_field`` attribute (UNet, DnCNN, SRNet, JDDNet: an analytic
    upper bound); for a plain ``nn.Sequential`` of stride-1 'same' convolutions and pointwise
    layers, the sum of the conv radii. An output pixel depends only on input pixels at most
    ``receptive_field // 2`` away along each axis (for SRNet: around the LR pixel it comes from).
    """
    rf = getattr(model, "receptive_field", None)
    if rf is not None:
        return int(rf)
    r = _sequential_radius(model)
    return None if r is None else 2 * r + 1


def tile_alignment(model: nn.Module) -> int:
    """Tile starts must be multiples of this (the model's ``tile_align``; 1 if it has none):
    2**depth for a U-Net and for SRNet (LR pixels), 2·2**depth for JDDNet, 1 for DnCNN."""
    return max(1, int(getattr(model, "tile_align", 1)))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def tile_overlap(model: nn.Module) -> int:
    """Overlap (input px) that makes tiled inference exact: 2·radius of the receptive field,
    rounded up to the alignment (U-Net depth 3: 120; DnCNN depth 8: 16). Tiles must be larger
    than twice this. ``FALLBACK_OVERLAP`` for networks whose receptive field is unknown."""
    rf = receptive_field(model)
    if rf is None:
        return FALLBACK_OVERLAP
    return _round_up(2 * (rf // 2), tile_alignment(model))


def min_tile(model: nn.Module, overlap: int | None = None) -> int:
    """Smallest tile :func:`auto_tile` uses: the least multiple of the alignment > 2·overlap."""
    ov = tile_overlap(model) if overlap is None else overlap
    return _round_up(2 * ov + 1, tile_alignment(model))


# ----------------------------------------------------------------------------- memory estimate

class _LiveBytes(TorchDispatchMode):
    """Peak total size of the tensor storages created by the ops run inside it (and alive together).

    Each output storage is counted once and released by a weakref finalizer when it dies; the
    storages passed as ``ignore`` (input, weights) are never counted. Scratch memory that an op
    allocates and frees internally (e.g. oneDNN reorders) is not seen.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in torch._dynamo.disable otherwise, which imports
        # torch._dynamo on first use: +4 s and +100 MB in a CLI process that never compiles
        return False

    def __init__(self, ignore: Sequence[torch.Tensor] = ()):
        super().__init__()
        self._ignore = {id(t.untyped_storage()) for t in ignore}
        self._keep = [t.untyped_storage() for t in ignore]  # keep their ids unique meanwhile
        self._sizes: dict[int, int] = {}
        self.now = self.peak = 0

    def _free(self, key: int) -> None:
        self.now -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                try:
                    st = t.untyped_storage()
                except (RuntimeError, NotImplementedError):  # opaque tensors: not counted
                    continue
                key = id(st)
                if key in self._ignore or key in self._sizes:
                    continue
                self._sizes[key] = st.nbytes()
                self.now += st.nbytes()
                self.peak = max(self.peak, self.now)
                weakref.finalize(st, self._free, key)
        return out


_COSTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(model.parameters(), None)
    return (p.dtype, p.device) if p is not None else (torch.float32, torch.device("cpu"))


@torch.no_grad()
def _probe(model: nn.Module, channels: int) -> tuple[float, float]:
    """(activation bytes per input pixel, output bytes per input pixel) of one sample, cached.

    Measured once per (model, channels, dtype, device) by one eval-mode forward pass on a
    PROBE_SIZE² image (about 10 ms for the default U-Net): the peak of live tensors created by
    the forward pass and the final ``contiguous()`` of the output, divided by the pixel count.
    """
    dtype, device = _model_dtype_device(model)
    key = (channels, dtype, device)
    cache = _COSTS.setdefault(model, {})
    if key not in cache:
        side = _round_up(PROBE_SIZE, tile_alignment(model))
        g = torch.Generator().manual_seed(0)
        x = to_layout(torch.rand(1, channels, side, side, generator=g).to(device=device, dtype=dtype))
        was_training = model.training
        model.eval()
        try:
            with _LiveBytes([x, *model.parameters(), *model.buffers()]) as live:
                y = model(x)
                y_out = y.contiguous()
                out_bytes = y_out.numel() * y_out.element_size()
                del y, y_out
        finally:
            model.train(was_training)
        cache[key] = (ACTIVATION_MARGIN * live.peak / side ** 2, out_bytes / side ** 2)
    return cache[key]


def _shape4(shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"expected an input shape (B, C, H, W) or (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def _elt(model: nn.Module) -> int:
    return torch.empty(0, dtype=_model_dtype_device(model)[0]).element_size()


def _tile_bytes(model: nn.Module, b: int, c: int, th: int, tw: int) -> int:
    """Peak bytes of one forward pass on a (b, c, th, tw) tile made channels-last (copy included)."""
    act, _ = _probe(model, c)
    a = tile_alignment(model)
    return math.ceil(b * (c * _elt(model) * th * tw + act * _round_up(th, a) * _round_up(tw, a)))


def inference_bytes(model: nn.Module, shape: Sequence[int]) -> int:
    """Estimated peak memory (bytes) of whole-image :func:`predict` on an input of shape
    (B, C, H, W) (or (C, H, W)): the input, its channels-last copy, and the tensors alive at the
    peak of the forward pass (padded to the alignment), output and its contiguous copy included.

    The activation cost per pixel is measured once per model and channel count by one forward
    pass on a small probe image, with every tensor allocation counted (a dispatch mode), and
    cached; it scales with B·H·W, times :data:`ACTIVATION_MARGIN`. Weights and the fixed cost of
    Python/torch are not included. Default U-Net (width 16, depth 3), RGB: ≈ 700 bytes per pixel
    (768×512: ≈ 265 MiB; 6000×4000: ≈ 16 GiB).

    Raises:
        ValueError: a malformed shape.
    """
    b, c, h, w = _shape4(shape)
    return b * c * h * w * _elt(model) + _tile_bytes(model, b, c, h, w)


def full_image_bytes(model: nn.Module, shape: Sequence[int]) -> int:
    """Bytes of the full-size input and output of tiled predict (held throughout)."""
    b, c, h, w = _shape4(shape)
    _, out_px = _probe(model, c)
    return math.ceil(b * h * w * (c * _elt(model) + out_px))


def tiled_inference_bytes(model: nn.Module, shape: Sequence[int], tile: int) -> int:
    """Estimated peak of tiled predict: full input and output plus one tile's forward pass."""
    b, c, h, w = _shape4(shape)
    return full_image_bytes(model, shape) + _tile_bytes(model, b, c, min(tile, h), min(tile, w))


def _auto_tile(model: nn.Module, shape, budget: int, overlap: int) -> int | None:
    b, c, h, w = _shape4(shape)
    align = tile_alignment(model)
    lo = min_tile(model, overlap)
    if h <= lo and w <= lo:
        return None  # even the smallest tile would be the whole image: no probe, no tiling
    if inference_bytes(model, (b, c, h, w)) <= budget:
        return None
    # the full-size input and output are needed whatever the tile: the tile gets the rest of the
    # budget, but at least a quarter of it (a huge image then exceeds the budget, with a warning,
    # instead of being restored in minimal, slow tiles)
    full = full_image_bytes(model, shape)
    tile_budget = max(budget - full, budget // 4)
    if full > budget - budget // 4:
        warnings.warn(f"{w}×{h} px input: its input and output alone take {full / 2**20:.0f} MiB of the "
                      f"{budget / 2**20:.0f} MiB inference budget; restoring it in tiles that use up to "
                      f"{tile_budget / 2**20:.0f} MiB more", stacklevel=3)

    def cost(t: int) -> int:
        return _tile_bytes(model, b, c, min(t, h), min(t, w))

    if cost(lo) > tile_budget:
        warnings.warn(f"{w}×{h} px input: even the smallest exact tile ({lo} px) needs "
                      f"{cost(lo) / 2**20:.0f} MiB, over the {tile_budget / 2**20:.0f} MiB left of the "
                      f"budget; using it anyway", stacklevel=3)
        return lo
    lo_k, hi = lo // align, (max(h, w) - 1) // align  # tiles >= max(h, w) would be the whole image
    while lo_k < hi:  # largest k in [lo_k, hi] with cost(k·align) <= tile_budget (cost is monotone)
        mid = (lo_k + hi + 1) // 2
        if cost(mid * align) <= tile_budget:
            lo_k = mid
        else:
            hi = mid - 1
    return lo_k * align


def auto_tile(model: nn.Module, shape: Sequence[int], max_bytes: int | None = None) -> int | None:
    """The tile size :func:`predict` uses with ``tile=None``: None when whole-image inference of an
    input of shape (B, C, H, W) (or (C, H, W)) fits ``max_bytes`` (:func:`inference_bytes`), else
    the largest multiple of :func:`tile_alignment` (in input pixels) whose tiled estimate — the
    full-size input and output plus one tile's forward pass — fits. Non-decreasing in the budget.

    Args:
        max_bytes: budget in bytes; None: :func:`default_inference_bytes` (``RCL_INFERENCE_MEMORY``
            or :data:`DEFAULT_INFERENCE_BYTES`).

    Returns None without estimating (no probe forward pass) when H and W are both at most
    :func:`min_tile`. When the full-size input and output alone take more than 3/4 of the budget
    (above ≈ 33 megapixels RGB for 1 GiB), the tile still gets 1/4 of the budget and a warning
    says the budget will be exceeded; when not even :func:`min_tile` fits, it warns and returns it.

    Raises:
        ValueError: malformed shape, or bad ``RCL_INFERENCE_MEMORY``.
    """
    budget = default_inference_bytes() if max_bytes is None else parse_bytes(max_bytes)
    return _auto_tile(model, shape, budget, tile_overlap(model))


# ----------------------------------------------------------------------------- inference-time PD

MAX_PD_STRIDE = 16
"""Largest pixel-shuffle down-sampling stride :func:`predict` accepts (checkpoints: ``pd_stride_inference``)."""

_PD_STRIDES: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()


def check_pd_stride(stride, what: str = "pd_stride") -> int:
    """``stride`` if it is an integer in [1, :data:`MAX_PD_STRIDE`]; ValueError naming ``what`` otherwise."""
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= MAX_PD_STRIDE:
        raise ValueError(f"{what} must be an integer from 1 to {MAX_PD_STRIDE}, got {stride!r}")
    return stride


def set_inference_pd_stride(model: nn.Module, stride: int) -> nn.Module:
    """Make :func:`predict` run ``model`` on the stride² pixel-shuffle down-sampled (PD) sub-images
    of every input (``pd_stride=None``, the default of every caller), and return ``model``.

    This is how a checkpoint's ``pd_stride_inference`` (:func:`rcl.checkpoint.load_checkpoint`)
    reaches ``rcl restore``, ``rcl evaluate`` and ``rcl noise-corr``. The setting belongs to this
    model object only: a copy (``copy.deepcopy``, e.g. the network that fine-tuning starts from)
    gets the default stride 1, since a network trained further on full-resolution pairs is no
    longer the PD-trained one. Stride 1 removes the setting.

    Raises:
        ValueError: ``stride`` not an integer in [1, :data:`MAX_PD_STRIDE`].
    """
    stride = check_pd_stride(stride)
    if stride == 1:
        _PD_STRIDES.pop(model, None)
    else:
        _PD_STRIDES[model] = stride
    return model


def inference_pd_stride(model: nn.Module) -> int:
    """The PD stride :func:`predict` uses for ``model`` by default (1 unless set by
    :func:`set_inference_pd_stride`)."""
    return _PD_STRIDES.get(model, 1)


def _predict_pd(model: nn.Module, x: torch.Tensor, stride: int, tile: int | None, overlap: int | None,
                max_bytes: int | None) -> torch.Tensor:
    """:func:`predict` of (B, C, H, W) ``x`` on its PD sub-images: ``pd_up(f(pd_down(x, s)), s, (H, W))``.

    The s² sub-images go through :func:`predict` one at a time (each (B, C, ⌈H/s⌉, ⌈W/s⌉), tiled
    if needed), so one forward pass never holds more than one sub-image's activations; the two
    full-size PD copies made here (the sub-images and their outputs) are taken off the memory
    budget of those passes."""
    from ..data.pd import pd_down, pd_up

    if int(getattr(model, "scale", 1)) != 1:
        raise ValueError(f"inference-time PD (stride {stride}) needs a network whose output has the "
                         f"input's size; {type(model).__name__} up-scales by {model.scale}")
    h, w = x.shape[-2:]
    b, s2 = x.shape[0], stride * stride
    sub = pd_down(x, stride)
    subs = sub.view(b, s2, *sub.shape[1:])
    out_sub = None
    if tile is None:
        budget = default_inference_bytes() if max_bytes is None else parse_bytes(max_bytes)
        max_bytes = max(1, budget - 2 * sub.numel() * sub.element_size())
    for k in range(s2):
        y = predict(model, subs[:, k], tile=tile, overlap=overlap, max_bytes=max_bytes, pd_stride=1)
        if out_sub is None:
            out_sub = torch.empty(b, s2, *y.shape[1:], dtype=y.dtype, device=y.device)
        out_sub[:, k] = y
    del sub, subs
    return pd_up(out_sub.view(b * s2, *out_sub.shape[2:]), stride, (h, w))


# ----------------------------------------------------------------------------- prediction

@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, tile: int | None = None, overlap: int | None = None,
            max_bytes: int | None = None, pd_stride: int | None = None) -> torch.Tensor:
    """Apply ``model`` in eval mode to a (C, H, W) or (B, C, H, W) image; memory bounded by default.

    Output shape: (…, C_out, H·s, W·s) with s the model's ``scale`` (1 for denoisers and JDD);
    contiguous; no autograd graph; on ``x``'s device (the network runs on its own device: the
    input, or each tile, is copied there and back).

    Args:
        tile: tile side in input pixels. None (default): whole-image inference if its estimate
            (:func:`inference_bytes`) fits ``max_bytes``, else tiles of :func:`auto_tile`'s size.
            An explicit tile is rounded down to a multiple of :func:`tile_alignment` (at least one
            alignment step); an image no larger than ``tile`` is processed whole.
        overlap: pixels shared by neighbouring tiles; each output pixel is taken from the tile
            where it lies in the middle half of the overlap. None (default): :func:`tile_overlap`,
            which makes the tiled output equal the whole-image output up to float rounding; if an
            explicit ``tile`` is too small for it (tile ≤ 2·overlap) the overlap is reduced to
            fit, with a warning (seams may then show). With ``tile=None`` an explicit overlap
            smaller than :func:`tile_overlap` is raised to it.
        max_bytes: memory budget for ``tile=None`` (bytes); None: :func:`default_inference_bytes`.
        pd_stride: pixel-shuffle down-sampling at inference (AP-BSN's asymmetric PD, Lee, Son,
            Lee, CVPR 2022): with s > 1 the network restores the s² sub-images of the input
            (:func:`rcl.data.pd.pd_down`, replicate-padded to a multiple of s) one by one and the
            outputs are put back (:func:`rcl.data.pd.pd_up`); ``tile`` is then in sub-image pixels.
            None (default): the model's own stride, :func:`inference_pd_stride` (a checkpoint's
            ``pd_stride_inference``; 1 for every other network). 1: no PD.

    Tiled inference never holds a full-size copy of the input: each tile is copied (channels-last)
    on its own; the output is allocated once at full size.

    Raises:
        ValueError: an explicit ``overlap`` with tile ≤ 2·overlap (on an image larger than the
            tile); a bad ``max_bytes`` or ``RCL_INFERENCE_MEMORY``; ``pd_stride`` not an integer
            in [1, :data:`MAX_PD_STRIDE`], or > 1 for an up-scaling (SR) network.
    """
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    stride = inference_pd_stride(model) if pd_stride is None else check_pd_stride(pd_stride)
    if stride > 1:
        out = _predict_pd(model, x, stride, tile, overlap, max_bytes)
        return out[0] if single else out
    h, w = x.shape[-2:]
    scale = int(getattr(model, "scale", 1))
    align = tile_alignment(model)
    exact = tile_overlap(model)
    guessed = overlap is None and receptive_field(model) is None
    if tile is None:
        budget = default_inference_bytes() if max_bytes is None else parse_bytes(max_bytes)
        overlap = exact if overlap is None else _round_up(max(overlap, exact), align)
        tile = _auto_tile(model, x.shape, budget, overlap)
    elif not (h <= tile and w <= tile):
        if overlap is None:
            overlap = exact
            if tile <= 2 * overlap:
                overlap = max(0, (tile - 1) // 2 // align * align)
                warnings.warn(f"tile {tile} px is too small for the receptive field of "
                              f"{type(model).__name__} (exact tiling needs overlap {exact} px, tile > "
                              f"{2 * exact}); using overlap {overlap} px: seams may show", stacklevel=3)
        elif tile <= 2 * overlap:
            raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
        tile = max(align, tile - tile % align)
    if guessed and tile is not None and not (h <= tile and w <= tile):
        warnings.warn(f"receptive field of {type(model).__name__} unknown: tiles overlap by {overlap} px "
                      "and seams may show", stacklevel=3)
    with inference_layout(model):
        if tile is None or (h <= tile and w <= tile):
            dev = _model_dtype_device(model)[1]
            out = model(to_layout(x.to(dev))).to(x.device).contiguous()
        else:
            out = _tiled(model, x, tile, overlap, scale, align)
    return out[0] if single else out


def tile_starts(n: int, tile: int, step: int, align: int = 1) -> list[int]:
    """Tile start offsets covering [0, n), each a multiple of ``align``, consecutive ones at most
    ``step`` apart (step rounded down to a multiple of align, at least align); the last start is
    the largest multiple of align ≤ n − tile, so the last tile (which runs to n) is at least
    ``tile`` long."""
    if n <= tile:
        return [0]
    step = max(align, step - step % align)
    last = (n - tile) - (n - tile) % align
    s = list(range(0, last, step)) + [last]
    return sorted(set(s))


def tile_spans(n: int, tile: int, step: int, align: int) -> list[tuple[int, int, int, int]]:
    """(start, end, keep_from, keep_to) per tile along one axis: tiles [start, end) and the part
    [keep_from, keep_to) of [0, n) taken from each; seams lie in the middle of each overlap."""
    starts = tile_starts(n, tile, step, align)
    ends = [min(s + tile, n) for s in starts[:-1]] + [n]
    seams = [0] + [(starts[k + 1] + ends[k]) // 2 for k in range(len(starts) - 1)] + [n]
    return [(s, e, seams[k], seams[k + 1]) for k, (s, e) in enumerate(zip(starts, ends))]


def _tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int, scale: int, align: int = 1) -> torch.Tensor:
    """Tiled forward pass of a (B, C, H, W) input; the output is allocated once, contiguous."""
    b, _, h, w = x.shape
    out = None
    step = tile - overlap
    rows, cols = tile_spans(h, tile, step, align), tile_spans(w, tile, step, align)
    for top, bottom, y0, y1 in rows:
        for left, right, x0, x1 in cols:
            dev = _model_dtype_device(model)[1]
            y = model(to_layout(x[..., top:bottom, left:right].to(dev))).to(x.device)
            if out is None:
                out = torch.empty(b, y.shape[1], h * scale, w * scale, dtype=y.dtype, device=x.device)
            s = scale
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = y[..., (y0 - top) * s:(y1 - top) * s, (x0 - left) * s:(x1 - left) * s]
            del y
    return out
