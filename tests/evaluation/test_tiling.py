"""Exact tiled inference, receptive fields and the automatic memory-bounded tiling of predict."""

import warnings

import pytest
import torch
from torch import nn

from rcl.evaluation.inference import (DEFAULT_INFERENCE_BYTES, MEMORY_ENV, auto_tile, default_inference_bytes,
                                      full_image_bytes, inference_bytes, min_tile, parse_bytes, predict,
                                      receptive_field, tile_alignment, tile_overlap, tile_spans,
                                      tiled_inference_bytes)
from rcl.models import DnCNN, ModelConfig, UNet, build_model
from rcl.models import JDDNet, SRNet


def _x(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _unet(c, depth, seed=0):
    torch.manual_seed(seed)
    return UNet(c, c, width=4, depth=depth)


def _dncnn(seed=0):
    torch.manual_seed(seed)
    m = DnCNN(3, width=8, depth=8)
    for bn in m.modules():  # non-trivial running statistics (eval mode uses them)
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return m


def _random_tail(m):
    """SRNet/JDDNet start with a zero tail (= the classical method): make the body matter."""
    with torch.no_grad():
        m.tail.weight.normal_(0, 0.1)
        m.tail.bias.normal_(0, 0.1)
    return m


def _srnet(scale, c=3, depth=2, seed=0):
    torch.manual_seed(seed)
    return _random_tail(SRNet(UNet(c, c, width=4, depth=depth), scale))


def _jddnet(depth=2, seed=0):
    torch.manual_seed(seed)
    return _random_tail(JDDNet(UNet(4, 4, width=4, depth=depth)))


class _Calls:
    """Records the spatial sizes of the inputs a model's forward receives."""

    def __init__(self, model):
        self.sizes = []
        self._h = model.register_forward_pre_hook(lambda mod, args: self.sizes.append(tuple(args[0].shape[-2:])))

    def remove(self):
        self._h.remove()


# ------------------------------------------------------------------ geometry of the models


@pytest.mark.parametrize("model, align, rf", [
    (UNet(1, 1, depth=0), 1, 5), (UNet(1, 1, depth=3), 8, 117), (UNet(3, 3, width=4, depth=4), 16, 245),
    (DnCNN(1, depth=8), 1, 17), (SRNet(UNet(1, 1, width=4, depth=2), 4), 4, 55),
    (JDDNet(UNet(4, 4, width=4, depth=3)), 16, 2 * (2 * 59 + 1) + 1),
])
def test_alignment_and_receptive_field_values(model, align, rf):
    assert tile_alignment(model) == align and receptive_field(model) == rf
    ov = tile_overlap(model)
    assert ov % align == 0 and ov >= rf - 1 and ov < rf - 1 + align
    assert min_tile(model) % align == 0 and min_tile(model) > 2 * ov


def test_receptive_field_of_plain_stacks_and_unknown_modules():
    stack = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2),
                          nn.BatchNorm2d(4), nn.Conv2d(4, 1, 3, padding=2, dilation=2))
    assert receptive_field(stack) == 2 * (1 + 2 + 2) + 1
    assert receptive_field(nn.Conv2d(3, 3, 1)) == 1
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1))) is None
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2))) is None
    assert receptive_field(nn.Identity()) is None and tile_overlap(nn.Identity()) == 16


def _grad_extent(model, channels, size, n=3, seed=0):
    """Empirical receptive field: the widest extent (rows or columns) of the non-zero gradient of
    the central output pixel w.r.t. n random float64 inputs (max-pool routes gradients to one
    pixel of four, hence several inputs)."""
    model = model.double().eval()
    x = _x(n, channels, size, size, seed=seed, dtype=torch.float64).requires_grad_(True)
    y = model(x)
    y[..., y.shape[-2] // 2, y.shape[-1] // 2].sum().backward()
    nz = x.grad.abs().sum(1) > 0
    widest = 0
    for k in range(n):
        rows, cols = nz[k].any(1).nonzero(), nz[k].any(0).nonzero()
        widest = max(widest, int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    return widest


@pytest.mark.parametrize("name", ["unet0", "unet1", "unet2", "unet3", "unet4", "dncnn", "sr2", "sr4", "jdd"])
def test_receptive_field_bounds_the_gradient_support(name):
    torch.manual_seed(0)
    if name.startswith("unet"):
        d = int(name[-1])
        model, c = UNet(1, 1, width=2 if d == 4 else 4, depth=d), 1
    elif name == "dncnn":
        model, c = _dncnn(), 3
    elif name.startswith("sr"):
        model, c = _srnet(int(name[-1]), c=1), 1
    else:
        model, c = _jddnet(), 1
    rf = receptive_field(model)
    size = rf + 2 * tile_alignment(model) + 8  # the support never reaches the image border
    measured = _grad_extent(model, c, size)
    assert measured <= rf <= 1.5 * measured + 8, (rf, measured)


def test_unet_radius_is_attained():
    """The analytic radius is tight: some output pixel depends on an input pixel exactly that far."""
    model = _unet(1, 2).double().eval()
    r, a = model.body_radius, tile_alignment(model)
    size = 2 * r + 4 * a + 16
    x = _x(2, 1, 8, size, seed=1, dtype=torch.float64).requires_grad_(True)
    c0, reach = size // 2 - size // 2 % a, 0
    for off in range(a):
        x.grad = None
        model(x)[:, :, 4, c0 + off].sum().backward()
        cols = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero().flatten()
        reach = max(reach, c0 + off - int(cols.min()), int(cols.max()) - c0 - off)
    assert reach == r


# ------------------------------------------------------------------ exact tiling


def test_spans_partition_the_axis_and_start_aligned():
    for n, tile, step, align in [(203, 116, 60, 4), (517, 248, 128, 8), (64, 33, 17, 1), (250, 240, 112, 16)]:
        spans = tile_spans(n, tile, step, align)
        assert spans[0][2] == 0 and spans[-1][3] == n and spans[-1][1] == n
        for (s, e, k0, k1), nxt in zip(spans, spans[1:] + [None]):
            assert s % align == 0 and s <= k0 < k1 <= e
            if nxt is not None:
                assert k1 == nxt[2] and e - s == tile
                # kept pixels are at least half the overlap away from both inner borders
                assert e - k1 >= (tile - step) // 2 and nxt[2] - nxt[0] >= (tile - step) // 2


CASES = {  # name: (model factory, input shape); odd sizes except for the mosaic
    "unet-d2-gray": (lambda: _unet(1, 2), (1, 203, 157)),
    "unet-d2-rgb": (lambda: _unet(3, 2, seed=1), (3, 157, 203)),
    "unet-d3-gray": (lambda: _unet(1, 3, seed=2), (1, 517, 283)),
    "unet-d3-rgb": (lambda: _unet(3, 3, seed=3), (3, 283, 517)),
    "dncnn": (_dncnn, (3, 203, 157)),
    "sr2": (lambda: _srnet(2), (3, 203, 157)),
    "jdd": (_jddnet, (1, 330, 250)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("which", ["smallest", "wide"])
def test_tiled_equals_whole_image(name, which):
    """Tiles just above twice the (automatic) overlap, or a tile wider than one side of the image
    (so that axis is one tile shorter than the tile): equal to whole-image inference."""
    make, shape = CASES[name]
    model = make()
    x = _x(*shape, seed=5)
    whole = predict(model, x, tile=None, max_bytes=1 << 40)
    tile = min_tile(model) if which == "smallest" else (min(shape[1:]) + max(shape[1:])) // 2
    calls = _Calls(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the automatic overlap fits: no "seams may show"
        tiled = predict(model, x, tile=tile)
    calls.remove()
    assert len(calls.sizes) > 1 and all(s != tuple(shape[1:]) for s in calls.sizes)
    if which == "wide":
        assert any(min(s) < tile for s in calls.sizes)
    assert tiled.shape == whole.shape and tiled.is_contiguous()
    assert (tiled - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["unet-d2-rgb", "dncnn", "sr2", "jdd"])
def test_auto_tiling_with_a_tiny_budget_equals_whole_image(name):
    make, shape = CASES[name]
    model = make()
    x = _x(2, *shape, seed=6)  # a batch of two
    whole = predict(model, x, max_bytes=1 << 40)
    tiny = tiled_inference_bytes(model, x.shape, min_tile(model))  # room for the smallest tile
    assert tiny < inference_bytes(model, x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # input + output take most of such a budget
        tile = auto_tile(model, x.shape, max_bytes=tiny)
        assert tile is not None and tile % tile_alignment(model) == 0 and tile > 2 * tile_overlap(model)
        assert tile < max(shape[1:])
        calls = _Calls(model)
        tiled = predict(model, x, max_bytes=tiny)
    calls.remove()
    assert len(calls.sizes) > 1
    assert (tiled - whole).abs().max() <= 1e-5


def test_budget_too_small_for_any_tile_warns_and_uses_the_smallest():
    model = _unet(1, 2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert auto_tile(model, (1, 1, 400, 300), max_bytes=1000) == min_tile(model)
    assert {"input and output alone", "smallest exact tile"} <= {
        m for w in seen for m in ("input and output alone", "smallest exact tile") if m in str(w.message)}


def test_huge_image_keeps_a_quarter_of_the_budget_for_tiles(monkeypatch):
    """100 MP RGB: input + output (2.2 GiB) exceed the 1 GiB budget; the tiles still get 256 MiB."""
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    model = build_model(ModelConfig(in_channels=3, out_channels=3))
    shape = (1, 3, 8000, 12500)
    with pytest.warns(UserWarning, match="input and output alone"):
        tile = auto_tile(model, shape)
    assert tile > 2 * min_tile(model)
    assert tiled_inference_bytes(model, shape, tile) - full_image_bytes(model, shape) <= DEFAULT_INFERENCE_BYTES // 4


def test_small_explicit_tile_reduces_the_overlap_with_a_warning():
    model = _unet(1, 3)
    x = _x(1, 300, 200, seed=7)
    with pytest.warns(UserWarning, match="seams may show"):
        y = predict(model, x, tile=128)
    assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="twice the overlap"):  # explicit overlaps are still checked
        predict(model, x, tile=128, overlap=64)


def test_explicit_tile_is_rounded_to_the_alignment():
    model = _unet(1, 2)
    calls = _Calls(model)
    predict(model, _x(1, 203, 157), tile=117, overlap=8)
    calls.remove()
    # 117 → 116 (U-Net depth 2: multiples of 4); last tiles start aligned and run to the border
    assert sorted(calls.sizes) == [(116, 116), (116, 117), (119, 116), (119, 117)]


# ------------------------------------------------------------------ memory estimate and auto_tile


def test_evaluation_images_are_never_tiled_by_default(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    for c in (1, 3):
        model = build_model(ModelConfig(in_channels=c, out_channels=c))
        for hw in [(512, 768), (768, 512), (481, 321)]:
            assert auto_tile(model, (1, c, *hw)) is None
            assert inference_bytes(model, (1, c, *hw)) < DEFAULT_INFERENCE_BYTES / 2  # a wide margin


@pytest.mark.parametrize("task, c", [("sr2", 1), ("sr2", 3), ("sr4", 3), ("jdd", 1)])
def test_task_evaluation_images_are_never_tiled_by_default(monkeypatch, task, c):
    """The committed SR and JDD benchmarks (Kodak24, 768×512, default body) run whole images."""
    from rcl.models import build_jdd_model, build_sr_model

    monkeypatch.delenv(MEMORY_ENV, raising=False)
    if task == "jdd":
        model, shape = build_jdd_model(ModelConfig(in_channels=4, out_channels=4)), (1, 1, 512, 768)
    else:
        s = int(task[-1])
        model, shape = build_sr_model(ModelConfig(in_channels=c, out_channels=c), s), (1, c, 512 // s, 768 // s)
    assert auto_tile(model, shape) is None
    assert auto_tile(model, shape[:2] + shape[:1:-1]) is None  # portrait


def test_24_megapixel_photo_is_tiled(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    model = build_model(ModelConfig(in_channels=3, out_channels=3))
    shape = (1, 3, 4000, 6000)
    tile = auto_tile(model, shape)
    assert tile is not None and tile % 8 == 0 and 2 * tile_overlap(model) < tile < 4000
    assert inference_bytes(model, shape) > DEFAULT_INFERENCE_BYTES


def test_auto_tile_is_monotone_in_the_budget():
    model = _unet(3, 3)
    shape = (1, 3, 1500, 1100)
    whole = inference_bytes(model, shape)
    budgets = [int(whole * f) for f in (0.02, 0.1, 0.2, 0.3, 0.5, 0.8, 0.99)] + [whole, 2 * whole]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the smallest budgets cannot be met
        tiles = [auto_tile(model, shape, max_bytes=b) for b in budgets]
    sizes = [float("inf") if t is None else t for t in tiles]
    assert sizes == sorted(sizes) and tiles[-1] is None and tiles[-2] is None and tiles[0] is not None
    assert len(set(sizes)) > 3


def test_inference_bytes_scales_with_the_input():
    model = _unet(3, 2)
    a = inference_bytes(model, (1, 3, 200, 200))
    assert inference_bytes(model, (3, 200, 200)) == a
    assert inference_bytes(model, (2, 3, 200, 200)) == pytest.approx(2 * a, rel=1e-6)
    assert inference_bytes(model, (1, 3, 400, 400)) == pytest.approx(4 * a, rel=0.01)
    assert a > 3 * 200 * 200 * 4 * 2  # more than the input and output
    with pytest.raises(ValueError, match="shape"):
        inference_bytes(model, (3, 200))


def test_tiny_images_are_not_probed():
    """Images no larger than the smallest tile are never tiled: no probe forward pass at all."""
    model = _unet(1, 3)
    calls = _Calls(model)
    assert auto_tile(model, (1, 1, 200, 240), max_bytes=1) is None
    calls.remove()
    assert calls.sizes == []


def test_memory_budget_parsing(monkeypatch):
    assert parse_bytes("1073741824") == 1 << 30
    assert parse_bytes("2G") == parse_bytes("2GiB") == parse_bytes("2 gb") == 2 << 30
    assert parse_bytes("1.5G") == 3 << 29 and parse_bytes("800M") == 800 << 20 and parse_bytes(512) == 512
    for bad in ("", "-1G", "0", "1X", "G", "1e9"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    assert default_inference_bytes() == DEFAULT_INFERENCE_BYTES
    monkeypatch.setenv(MEMORY_ENV, "3G")
    assert default_inference_bytes() == 3 << 30
    model = _unet(1, 2)
    monkeypatch.setenv(MEMORY_ENV, "1K")  # the environment reaches predict and auto_tile
    with pytest.warns(UserWarning, match="budget"):
        assert auto_tile(model, (1, 1, 400, 300)) == min_tile(model)
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match=MEMORY_ENV):
        default_inference_bytes()
