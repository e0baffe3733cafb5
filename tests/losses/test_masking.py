"""Noise2Void masking: masked pixels take a neighbour's value within the radius."""

import pytest
import torch

from rcl.losses.masking import neighbour_offsets, n2v_mask


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _unique(b, c, h, w):
    return torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w)


def _check_neighbours(x, masked, mask, radius):
    b, c, h, w = x.shape
    # unmasked pixels unchanged
    assert torch.equal(masked[~mask], x[~mask])
    # masked pixel value = value of another pixel of the same image/channel within the window
    for bi, ci, y, xx in mask.nonzero().tolist():
        v = int(masked[bi, ci, y, xx].item())
        base = (bi * c + ci) * h * w
        assert base <= v < base + h * w, "value taken from another image or channel"
        sy, sx = divmod(v - base, w)
        assert (sy, sx) != (y, xx), "masked pixel kept its own value"
        assert abs(sy - y) <= radius and abs(sx - xx) <= radius


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 3, 31, 45), (1, 1, 1, 7), (1, 1, 6, 1), (1, 2, 2, 2),
                                   (1, 1, 3, 3)])
def test_masked_values_come_from_neighbours(shape):
    x = _unique(*shape)
    masked, mask = n2v_mask(x, 0.3, _gen(1))
    assert masked.shape == x.shape and mask.shape == x.shape and mask.dtype == torch.bool
    assert mask.any()
    _check_neighbours(x, masked, mask, radius=2)


def test_radius_one_and_three():
    x = _unique(1, 1, 12, 13)
    for radius in (1, 3):
        masked, mask = n2v_mask(x, 0.5, _gen(radius), radius=radius)
        _check_neighbours(x, masked, mask, radius)


def test_border_pixels_never_keep_their_own_value():
    # mask (almost) everything of a small image: many clamped offsets land on the centre and must be moved
    x = _unique(4, 2, 3, 4)
    masked, mask = n2v_mask(x, 0.999, _gen(2))
    assert mask.float().mean() > 0.95
    _check_neighbours(x, masked, mask, radius=2)
    assert (masked[mask] != x[mask]).all()


def test_ratio_approximately_right():
    x = torch.zeros(4, 3, 64, 64)
    for ratio in (0.03, 0.2, 0.5):
        _, mask = n2v_mask(x, ratio, _gen(3))
        assert mask.float().mean().item() == pytest.approx(ratio, abs=0.01)


def test_channels_get_independent_masks():
    x = torch.zeros(2, 3, 40, 40)
    _, mask = n2v_mask(x, 0.2, _gen(4))
    assert not torch.equal(mask[:, 0], mask[:, 1]) and not torch.equal(mask[:, 1], mask[:, 2])
    # independence: joint frequency ≈ product
    both = (mask[:, 0] & mask[:, 1]).float().mean().item()
    assert both == pytest.approx(0.04, abs=0.012)


def test_at_least_one_masked_pixel():
    x = torch.zeros(1, 1, 2, 2)
    for seed in range(20):
        _, mask = n2v_mask(x, 1e-6, _gen(seed))
        assert mask.sum() >= 1


def test_seeded_and_input_untouched():
    x = torch.rand(2, 1, 10, 10, generator=_gen(0))
    x0 = x.clone()
    a, ma = n2v_mask(x, 0.1, _gen(5))
    b, mb = n2v_mask(x, 0.1, _gen(5))
    c, mc = n2v_mask(x, 0.1, _gen(6))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(ma, mc)
    assert torch.equal(x, x0)


def test_neighbour_choice_covers_window():
    # over many draws the masked value of an interior pixel takes every one of the 24 neighbours
    x = _unique(1, 1, 9, 9)
    seen = set()
    for seed in range(150):
        masked, mask = n2v_mask(x, 0.9, _gen(seed))
        if mask[0, 0, 4, 4]:
            seen.add(int(masked[0, 0, 4, 4]))
    assert len(seen) == 24


def test_offsets():
    offs = neighbour_offsets(2)
    assert offs.shape == (24, 2)
    assert not ((offs[:, 0] == 0) & (offs[:, 1] == 0)).any()
    assert offs.abs().max() == 2


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        n2v_mask(torch.zeros(1, 1, 4, 4), ratio)


def test_single_pixel_rejected():
    with pytest.raises(ValueError, match="2 pixels"):
        n2v_mask(torch.zeros(2, 1, 1, 1), 0.5)


@pytest.mark.parametrize("shape", [(32, 1, 48, 48), (3, 3, 17, 9), (2, 1, 1, 2), (4, 3, 2, 2), (5, 2, 1, 7)])
@pytest.mark.parametrize("ratio", [0.05, 0.5, 0.95])
def test_sparse_and_dense_replacement_agree(shape, ratio):
    """The CPU's masked-pixels-only path and the dense path (used on GPUs) give the same values,
    with gradients flowing to the kept and the copied pixels alike."""
    from rcl.losses.masking import _replace_masked, neighbour_offsets

    g = torch.Generator().manual_seed(sum(shape) + int(100 * ratio))
    x = torch.rand(shape, generator=g)
    mask = torch.rand(shape, generator=g) < ratio
    offs = neighbour_offsets(2)
    pick = torch.randint(len(offs), shape, generator=g)
    outs, grads = [], []
    for sparse in (True, False):
        xr = x.clone().requires_grad_()
        out = _replace_masked(xr, mask, pick, offs, sparse)
        (out * torch.arange(out.numel()).view(shape)).sum().backward()
        outs.append(out.detach())
        grads.append(xr.grad)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0], grads[1])
    assert not torch.equal(outs[0], x) or not mask.any()
