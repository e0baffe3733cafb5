"""Pixel-shuffle down-sampling: exact inverse, layout against a hand-written loop, padding, gradients, errors."""

import itertools

import pytest
import torch

from rcl.data.pd import pd_down, pd_size, pd_up


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _reference_down(x, s):
    """pd_down written out pixel by pixel, with the replicate rule spelt out."""
    b, c, h, w = x.shape
    sh, sw = -(-h // s), -(-w // s)
    out = torch.empty(b * s * s, c, sh, sw, dtype=x.dtype)
    for n in range(b):
        for a in range(s):
            for bb in range(s):
                for i in range(sh):
                    for j in range(sw):
                        r, q = min(a + s * i, h - 1), min(bb + s * j, w - 1)
                        out[n * s * s + a * s + bb, :, i, j] = x[n, :, r, q]
    return out


SIZES = [(1, 1), (1, 5), (2, 2), (3, 7), (5, 5), (6, 9), (8, 8), (11, 4), (13, 17), (16, 15)]


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_exact_inverse_and_reference(stride, hw):
    h, w = hw
    x = _rand(2, 3, h, w, seed=h * 100 + w)
    y = pd_down(x, stride)
    assert y.shape == (2 * stride ** 2, 3, *pd_size(h, w, stride))
    assert torch.equal(y, _reference_down(x, stride))
    assert torch.equal(pd_up(y, stride, (h, w)), x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])
def test_any_dtype(dtype):
    x = (_rand(1, 2, 7, 10, seed=3) * 200).to(dtype)
    for s in (2, 3):
        y = pd_down(x, s)
        assert y.dtype == dtype
        assert torch.equal(pd_up(y, s, x.shape[-2:]), x)


def test_sub_image_is_every_sth_pixel_when_divisible():
    x = _rand(3, 2, 12, 18, seed=1)
    s = 3
    y = pd_down(x, s)
    for n, a, b in itertools.product(range(3), range(s), range(s)):
        assert torch.equal(y[n * s * s + a * s + b], x[n, :, a::s, b::s])


def test_stride_one_is_identity():
    x = _rand(2, 3, 5, 7)
    assert pd_down(x, 1) is x
    assert torch.equal(pd_up(x, 1, (5, 7)), x)


def test_batch_and_channels_preserved():
    x = _rand(4, 5, 9, 10, seed=2)
    y = pd_down(x, 2)
    assert y.shape == (16, 5, 5, 5)
    # each image's sub-images hold that image's pixels only, channel by channel
    for n in range(4):
        sub = y[n * 4:(n + 1) * 4]
        for c in range(5):
            assert set(sub[:, c].flatten().tolist()) == set(x[n, c].flatten().tolist())


def test_padding_replicates_never_zeros():
    x = _rand(1, 1, 5, 5, seed=4) + 1.0  # every pixel ≥ 1: a zero could only come from zero padding
    y = pd_down(x, 4)
    assert (y >= 1).all()
    # sub-image (3, 3) at (1, 1) is position (7, 7), beyond the 5×5 image: a copy of pixel (4, 4)
    assert y[3 * 4 + 3, 0, 1, 1] == x[0, 0, 4, 4]


def test_gradients_flow():
    x = _rand(2, 3, 7, 9, seed=5, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: pd_down(t, 3), (x,))
    y = _rand(2 * 4, 3, 4, 5, seed=6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: pd_up(t, 2, (7, 9)), (y,))
    # a round trip passes gradients through unchanged (padded copies are cropped away)
    x.grad = None
    pd_up(pd_down(x, 3), 3, (7, 9)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    # pd_down alone: a replicated pixel collects the gradient of each of its copies
    x.grad = None
    pd_down(x, 2).sum().backward()
    assert x.grad[0, 0, 0, 0] == 1 and x.grad[0, 0, 6, 8] == 4 and x.grad[0, 0, 6, 0] == 2


@pytest.mark.parametrize("stride", [0, -1, 1.5, True, "2", None])
def test_bad_stride(stride):
    with pytest.raises(ValueError, match="stride"):
        pd_down(_rand(1, 1, 4, 4), stride)
    with pytest.raises(ValueError, match="stride"):
        pd_up(_rand(4, 1, 2, 2), stride, (4, 4))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pd_down(_rand(1, 4, 4), 2)
    with pytest.raises(ValueError, match="empty"):
        pd_down(torch.zeros(1, 1, 0, 4), 2)
    with pytest.raises(ValueError, match="multiple of stride"):
        pd_up(_rand(6, 1, 2, 2), 2, (4, 4))
    with pytest.raises(ValueError, match="do not come from"):
        pd_up(_rand(4, 1, 2, 2), 2, (5, 4))  # 5 rows at stride 2 give 3-row sub-images
    with pytest.raises(ValueError, match="size"):
        pd_up(_rand(4, 1, 2, 2), 2, (4,))
    with pytest.raises(ValueError, match="positive"):
        pd_up(_rand(4, 1, 2, 2), 2, (0, 4))
    with pytest.raises(ValueError, match=r"\(B·s²"):
        pd_up(_rand(4, 2, 2), 2, (4, 4))
