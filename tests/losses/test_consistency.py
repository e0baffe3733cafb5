"""Consistency terms, RCL loss and the supervised reconstruction loss."""

import pytest
import torch
from torch import nn

from rcl.losses.consistency import CONSISTENCY_VARIANTS, consistency_forward, permute_pixels
from rcl.losses.rcl import RCLLoss
from rcl.losses.supervised import reconstruction_loss
from rcl.models import UNet


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _model():
    torch.manual_seed(0)
    return UNet(1, 1, width=4, depth=1)


def test_permute_pixels_preserves_multiset_per_image_channel():
    x = torch.randn(3, 2, 5, 7, generator=_gen(0))
    y = permute_pixels(x, _gen(1))
    assert y.shape == x.shape
    for b in range(3):
        for c in range(2):
            assert torch.equal(y[b, c].flatten().sort().values, x[b, c].flatten().sort().values)
    assert not torch.equal(x, y)


def test_permute_pixels_same_permutation_for_all_channels():
    base = torch.arange(2 * 30, dtype=torch.float32).view(2, 1, 5, 6)
    x = torch.cat([base, base + 1000, base * -1], dim=1)
    y = permute_pixels(x, _gen(2))
    assert torch.equal(y[:, 1], y[:, 0] + 1000)
    assert torch.equal(y[:, 2], -y[:, 0])
    # different images get different permutations
    assert not torch.equal(y[0, 0] - x[0, 0, 0, 0], y[1, 0] - x[1, 0, 0, 0])


def test_permute_pixels_seeded():
    x = torch.randn(2, 1, 4, 4, generator=_gen(0))
    assert torch.equal(permute_pixels(x, _gen(3)), permute_pixels(x, _gen(3)))


@pytest.mark.parametrize("variant", CONSISTENCY_VARIANTS)
def test_variants_finite_loss_and_residual_shape(variant):
    model = _model()
    crops = torch.rand(4, 1, 12, 12, generator=_gen(4))
    loss, residual = consistency_forward(variant, model, crops, _gen(5), mask_ratio=0.1)
    assert loss.ndim == 0 and torch.isfinite(loss)
    side = 6 if variant == "neighbor" else 12  # neighbor: the residual of a 2×2-sub-sampled image
    assert residual.shape == (4, 1, side, side) and torch.isfinite(residual).all()
    if variant == "none":
        assert loss.item() == 0
    else:
        assert loss.item() > 0
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown consistency"):
        consistency_forward("n2n", _model(), torch.rand(2, 1, 8, 8))


class _Scale(nn.Module):
    """f(x) = k·x, a model whose terms have closed forms."""

    def __init__(self, k):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k)))

    def forward(self, x):
        return self.k * x


def test_fidelity_closed_form():
    crops = torch.rand(2, 1, 6, 6, generator=_gen(6))
    loss, residual = consistency_forward("fidelity", _Scale(0.75), crops)
    assert torch.allclose(residual, 0.25 * crops)
    assert loss.item() == pytest.approx(((0.25 * crops) ** 2).mean().item(), rel=1e-6)


def test_recorruption_closed_form():
    # f = k·x: x̂ = k c, n̂ = (1−k) c; f(x̂ + π(n̂)) − x̂ = k² c + k(1−k) π(c) − k c
    k = 0.5
    crops = torch.rand(2, 1, 5, 5, generator=_gen(7))
    loss, residual = consistency_forward("recorruption", _Scale(k), crops, _gen(8))
    perm = permute_pixels((1 - k) * crops, _gen(8))
    expected = ((k * (k * crops + perm) - k * crops) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(residual, (1 - k) * crops)


def test_recorruption_gradient_only_through_second_pass():
    k = 0.3
    model = _Scale(k)
    crops = torch.rand(2, 1, 5, 5, generator=_gen(9))
    loss, _ = consistency_forward("recorruption", model, crops, _gen(1))
    loss.backward()
    # loss = mean((k·z − x̂)²) with z = x̂ + π(n̂) and x̂ treated as constants: d/dk = mean(2(k z − x̂) z)
    xh = k * crops
    z = xh + permute_pixels((1 - k) * crops, _gen(1))
    expected = (2 * (k * z - xh) * z).mean()
    assert abs(expected.item()) > 1e-3
    assert model.k.grad.item() == pytest.approx(expected.item(), rel=1e-4)


def test_blindspot_identity_model_loss_is_masked_error():
    # identity f: loss = mean over masked pixels of (neighbour − centre)², residual = c − masked(c)
    crops = torch.rand(2, 1, 8, 8, generator=_gen(10))
    loss, residual = consistency_forward("blindspot", nn.Identity(), crops, _gen(11), mask_ratio=0.2)
    from rcl.losses.masking import n2v_mask

    masked, mask = n2v_mask(crops, 0.2, _gen(11))
    assert loss.item() == pytest.approx(((masked - crops) ** 2)[mask].mean().item(), rel=1e-6)
    assert torch.allclose(residual, crops - masked)


# ---------------------------------------------------------------- RCL loss


@pytest.mark.parametrize("consistency", ["blindspot", "fidelity", "recorruption", "neighbor", "none"])
def test_rcl_loss_combines_terms(consistency):
    model = _model()
    crops = torch.rand(4, 1, 10, 10, generator=_gen(12))
    crit = RCLLoss(temperature=0.2, contrastive_weight=0.3, consistency=consistency, consistency_weight=2.0,
                   mask_ratio=0.1)
    loss, logs = crit(model, crops, _gen(13))
    assert torch.isfinite(loss)
    assert set(logs) == {"loss", "contrastive", "consistency", "residual_std"}
    assert float(logs["loss"]) == pytest.approx(0.3 * float(logs["contrastive"]) + 2.0 * float(logs["consistency"]), rel=1e-5)
    loss.backward()


def test_rcl_loss_odd_batch_rejected():
    with pytest.raises(ValueError):
        RCLLoss()(_model(), torch.rand(3, 1, 8, 8), _gen(0))


# ---------------------------------------------------------------- supervised


def test_reconstruction_loss():
    a = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    b = torch.zeros_like(a)
    assert reconstruction_loss(a, b).item() == pytest.approx(14 / 4)
    assert reconstruction_loss(a, b, "l1").item() == pytest.approx(6 / 4)
    with pytest.raises(ValueError, match="l2 or l1"):
        reconstruction_loss(a, b, "huber")
    with pytest.raises(ValueError, match="differ"):
        reconstruction_loss(a, torch.zeros(1, 1, 2, 3))
