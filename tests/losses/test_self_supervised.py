"""Self-supervised baseline losses: Noise2Void / Noise2Self masks, Neighbor2Neighbor sub-sampler,
SimCLR NT-Xent and projection head."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rcl.losses.masking import n2v_mask
from rcl.losses.neighbor2neighbor import apply_subsample, ne2ne_loss, neighbor_subsample
from rcl.losses.noise2self import interpolate_neighbours, n2s_loss, n2s_mask
from rcl.losses.noise2void import n2v_loss
from rcl.losses.ntxent import FeatureNTXent
from rcl.methods import n2s_predict
from rcl.models import DnCNN, UNet
from rcl.models.projection import ProjectionHead, project


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- Noise2Void


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 31, 45)])
def test_n2v_masked_pixels_replaced_unmasked_unchanged(shape):
    x = torch.rand(shape, generator=_gen(1))  # neighbours differ almost surely
    masked, mask = n2v_mask(x, 0.1, _gen(2))
    assert mask.any()
    assert torch.equal(masked[~mask], x[~mask])
    assert (masked[mask] != x[mask]).all()


def test_n2v_replacement_independent_of_own_value():
    x = torch.rand(1, 3, 31, 45, generator=_gen(3))
    masked, mask = n2v_mask(x, 0.05, _gen(4))
    for b, c, y, xx in mask.nonzero()[:20].tolist():
        x2 = x.clone()
        x2[b, c, y, xx] = 100.0  # change only the centre pixel
        masked2, mask2 = n2v_mask(x2, 0.05, _gen(4))
        assert torch.equal(mask2, mask)
        assert masked2[b, c, y, xx] == masked[b, c, y, xx]


def test_n2v_rgb_channels_have_independent_masks():
    x = torch.rand(2, 3, 40, 40, generator=_gen(5))
    _, mask = n2v_mask(x, 0.2, _gen(6))
    assert not torch.equal(mask[:, 0], mask[:, 1]) and not torch.equal(mask[:, 1], mask[:, 2])


def test_n2v_loss_only_scores_masked_pixels():
    x = torch.rand(2, 1, 16, 16, generator=_gen(7))

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1, 1, 16, 16))

        def forward(self, z):
            return z + self.p

    probe = Probe()
    loss, logs = n2v_loss(probe, x, 0.1, _gen(8))
    loss.backward()
    _, mask = n2v_mask(x, 0.1, _gen(8))  # the same draw as inside the loss
    assert math.isfinite(logs["loss"])
    touched = probe.p.grad[0, 0] != 0  # the output pixels that entered the loss
    assert torch.equal(touched, mask.any(dim=(0, 1)))


# --------------------------------------------------------------------------- Noise2Self


def test_n2s_interpolation_is_the_zero_centre_kernel():
    x = torch.rand(1, 1, 5, 5, generator=_gen(9))
    got = interpolate_neighbours(x)[0, 0, 2, 2]
    n = x[0, 0]
    want = (n[1, 2] + n[3, 2] + n[2, 1] + n[2, 3] + 0.5 * (n[1, 1] + n[1, 3] + n[3, 1] + n[3, 3])) / 6
    assert torch.allclose(got, want)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 31, 45)])
def test_n2s_masked_pixels_replaced_unmasked_unchanged(shape):
    x = torch.rand(shape, generator=_gen(10))
    for phase in [(0, 0), (1, 3), (3, 2)]:
        masked, mask = n2s_mask(x, 4, phase=phase)
        assert mask.shape == x.shape and mask.dtype == torch.bool
        assert torch.equal(masked[~mask], x[~mask])
        assert (masked[mask] != x[mask]).all()
        assert torch.allclose(masked[mask], interpolate_neighbours(x)[mask])
        # the same spatial mask for every channel and image
        assert (mask == mask[:1, :1]).all()


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (2, 3, 31, 45)])
def test_n2s_replacement_independent_of_own_value(shape):
    x = torch.rand(shape, generator=_gen(11))
    masked, mask = n2s_mask(x, 4, phase=(2, 1))
    x2 = x.clone()
    x2[mask] = torch.rand(int(mask.sum()), generator=_gen(12)) * 50  # change every masked pixel's own value
    masked2, mask2 = n2s_mask(x2, 4, phase=(2, 1))
    assert torch.equal(mask2, mask)
    assert torch.equal(masked2, masked)  # nothing of the masked values leaks into the input


@pytest.mark.parametrize("grid,h,w", [(4, 32, 32), (3, 30, 33), (4, 31, 45), (2, 7, 5)])
def test_n2s_grid_covers_every_pixel_once_over_the_phases(grid, h, w):
    x = torch.zeros(1, 1, h, w)
    count = torch.zeros(h, w, dtype=torch.long)
    for dy in range(grid):
        for dx in range(grid):
            _, mask = n2s_mask(x, grid, phase=(dy, dx))
            if h % grid == 0 and w % grid == 0:
                assert int(mask.sum()) == h * w // grid ** 2
            count += mask[0, 0].long()
    assert (count == 1).all()


def test_n2s_random_phase_masks_one_over_g_squared():
    x = torch.rand(3, 1, 48, 48, generator=_gen(13))
    phases = set()
    g = _gen(14)
    for _ in range(64):
        _, mask = n2s_mask(x, 4, g)
        assert mask.float().mean().item() == pytest.approx(1 / 16)
        ys, xs = mask[0, 0].nonzero()[0].tolist()
        phases.add((ys % 4, xs % 4))
    assert len(phases) > 8  # the phase is drawn at random


def test_n2s_rejects_bad_grid():
    with pytest.raises(ValueError):
        n2s_mask(torch.zeros(1, 1, 8, 8), 1, _gen())


def test_n2s_predict_masks_every_pixel():
    # a network that returns its input: J-invariant inference gives the interpolation everywhere
    x = torch.rand(1, 2, 13, 10, generator=_gen(15))
    out = n2s_predict(nn.Identity(), x[0], grid=3)
    assert torch.allclose(out, interpolate_neighbours(x)[0])


def test_n2s_loss_is_finite_and_differentiable():
    model = UNet(1, 1, 4, 1)
    loss, logs = n2s_loss(model, torch.rand(2, 1, 16, 16, generator=_gen(16)), 4, _gen(17))
    loss.backward()
    assert math.isfinite(logs["loss"]) and all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------- Neighbor2Neighbor


def _coords(b, c, h, w):
    """Pixel values that encode (channel, y, x)."""
    yy = torch.arange(h).view(1, 1, h, 1)
    xx = torch.arange(w).view(1, 1, 1, w)
    cc = torch.arange(c).view(1, c, 1, 1)
    return (cc * 100_000 + yy * 1000 + xx).expand(b, c, h, w).double()


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 31, 45), (3, 2, 2, 3)])
def test_ne2ne_subsampled_pixels_are_edge_neighbours_in_one_cell(shape):
    b, c, h, w = shape
    x = _coords(*shape)
    g1, g2, idx1, idx2 = neighbor_subsample(x, _gen(18))
    assert g1.shape == g2.shape == (b, c, h // 2, w // 2)
    assert idx1.shape == idx2.shape == (b, h // 2, w // 2)
    ci = torch.arange(c).view(1, c, 1, 1)
    ii = torch.arange(h // 2).view(1, 1, -1, 1)
    jj = torch.arange(w // 2).view(1, 1, 1, -1)
    for g in (g1, g2):
        v = g.long()
        assert (v // 100_000 == ci).all()  # same channel
        y, xx = (v % 100_000) // 1000, v % 1000
        assert (y // 2 == ii).all() and (xx // 2 == jj).all()  # inside cell (i, j)
    y1, x1 = (g1.long() % 100_000) // 1000, g1.long() % 1000
    y2, x2 = (g2.long() % 100_000) // 1000, g2.long() % 1000
    assert ((y1 - y2).abs() + (x1 - x2).abs() == 1).all()  # distinct and sharing an edge
    # every channel uses the same positions
    assert (y1 == y1[:, :1]).all() and (x1 == x1[:, :1]).all()


def test_ne2ne_draws_all_eight_pairs_and_apply_matches():
    x = torch.rand(4, 1, 32, 32, generator=_gen(19))
    g1, g2, idx1, idx2 = neighbor_subsample(x, _gen(20))
    pairs = set(zip(idx1.flatten().tolist(), idx2.flatten().tolist()))
    assert pairs == {(0, 1), (0, 2), (1, 0), (1, 3), (2, 0), (2, 3), (3, 1), (3, 2)}
    assert torch.equal(apply_subsample(x, idx1), g1) and torch.equal(apply_subsample(x, idx2), g2)


def test_ne2ne_regulariser_target_has_no_gradient():
    calls = []

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, z):
            calls.append((tuple(z.shape[-2:]), torch.is_grad_enabled()))
            return self.conv(z)

    x = torch.rand(2, 1, 21, 18, generator=_gen(21))
    loss, logs = ne2ne_loss(Rec(), x, 1.5, _gen(22))
    assert sorted(calls) == [((10, 9), True), ((21, 18), False)]
    assert float(logs["loss"]) == pytest.approx(float(logs["rec"]) + 1.5 * float(logs["reg"]), rel=1e-6)
    loss0, logs0 = ne2ne_loss(Rec(), x, 0.0, _gen(22))
    assert float(logs0["loss"]) == pytest.approx(float(logs0["rec"]))


# --------------------------------------------------------------------------- SimCLR


def _reference_ntxent(z, tau):
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        sims = [F.cosine_similarity(z[i], z[k], dim=0).item() / tau for k in range(n)]
        pos = sims[(i + b) % n]
        denom = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -math.log(math.exp(pos) / denom)
    return total / n


@pytest.mark.parametrize("n,d,tau", [(4, 8, 0.1), (10, 64, 0.5), (6, 3, 1.0)])
def test_feature_ntxent_matches_reference_loop(n, d, tau):
    z = torch.randn(n, d, generator=_gen(n + d), dtype=torch.float64)
    got = FeatureNTXent(tau)(z).item()
    assert got == pytest.approx(_reference_ntxent(z, tau), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("model,encoder", [(UNet(1, 1, 8, 2), "enc"), (DnCNN(3, width=8, depth=3), "body")])
def test_projection_head_shapes_and_gradients(model, encoder):
    head = ProjectionHead(model.feature_channels)
    z = project(model, head, torch.rand(5, model.in_channels, 32, 32, generator=_gen(23)))
    assert z.shape == (5, 64)
    z.sum().backward()
    assert all(p.grad is not None for p in head.parameters())
    assert all(p.grad is not None for p in getattr(model, encoder).parameters())
