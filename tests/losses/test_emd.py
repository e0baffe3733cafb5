"""EMD (Wasserstein-1) against scipy.stats.wasserstein_distance."""

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from rcl.losses.emd import emd, pairwise_emd, sorted_channels


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 2, 17, 200])
def test_emd_equal_sizes_matches_scipy(n):
    g = _gen(n)
    a = torch.randn(1, n, generator=g, dtype=torch.float64)
    b = torch.randn(1, n, generator=g, dtype=torch.float64) * 2 + 0.5
    ref = wasserstein_distance(a[0].numpy(), b[0].numpy())
    assert emd(a, b).item() == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("n,m", [(1, 2), (3, 5), (4, 6), (10, 7), (13, 64), (100, 37), (6, 4), (2, 3)])
def test_emd_unequal_sizes_matches_scipy(n, m):
    g = _gen(10 * n + m)
    a = torch.randn(1, n, generator=g, dtype=torch.float64)
    b = torch.rand(1, m, generator=g, dtype=torch.float64) * 3 - 1
    ref = wasserstein_distance(a[0].numpy(), b[0].numpy())
    assert emd(a, b).item() == pytest.approx(ref, abs=1e-5)
    assert emd(b, a).item() == pytest.approx(ref, abs=1e-5)


def test_emd_unequal_sizes_float32_and_images():
    g = _gen(1)
    a = torch.randn(1, 9, 11, generator=g)
    b = torch.randn(1, 6, 5, generator=g) * 0.3
    ref = wasserstein_distance(a.flatten().numpy(), b.flatten().numpy())
    out = emd(a, b)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref, abs=1e-5)


def test_emd_known_values():
    # shifting a distribution by c costs |c|
    a = torch.tensor([[0.0, 1.0, 5.0]])
    assert emd(a, a + 2.5).item() == pytest.approx(2.5)
    # permutation invariance: order of samples does not matter
    assert emd(a, a.flip(-1)).item() == 0
    # {0} vs {0, 1}: half the mass moves by 1
    assert emd(torch.tensor([[0.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.5)


def test_emd_multichannel_is_mean_of_channels():
    g = _gen(2)
    a = torch.randn(3, 8, 9, generator=g, dtype=torch.float64)
    b = torch.randn(3, 7, 7, generator=g, dtype=torch.float64) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    per = [wasserstein_distance(a[c].flatten().numpy(), b[c].flatten().numpy()) for c in range(3)]
    assert emd(a, b).item() == pytest.approx(np.mean(per), abs=1e-5)
    # channels are not mixed: swapping channels of one side changes the distance
    assert emd(a, b[[2, 1, 0]]).item() != pytest.approx(emd(a, b).item(), abs=1e-3)


def test_emd_symmetric_nonnegative_identity():
    g = _gen(3)
    a, b = torch.randn(2, 50, generator=g), torch.randn(2, 50, generator=g)
    assert emd(a, b).item() == pytest.approx(emd(b, a).item(), abs=1e-7)
    assert emd(a, b).item() > 0
    assert emd(a, a).item() == 0


def test_emd_errors():
    with pytest.raises(ValueError, match="channel"):
        emd(torch.zeros(1, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="empty"):
        emd(torch.zeros(1, 0), torch.zeros(1, 4))


def test_emd_gradcheck_equal_and_unequal():
    g = _gen(4)
    # well separated values so that a finite-difference step does not reorder samples
    a = (torch.randperm(6, generator=g).double() + 0.1 * torch.rand(6, generator=g, dtype=torch.float64)).view(2, 3)
    b = (torch.randperm(6, generator=g).double() * 1.3 + 0.37).view(2, 3)
    c = (torch.randperm(10, generator=g).double() * 0.7 + 0.11).view(2, 5)
    a.requires_grad_(True)
    b.requires_grad_(True)
    c.requires_grad_(True)
    assert torch.autograd.gradcheck(emd, (a, b))
    assert torch.autograd.gradcheck(emd, (a, c))


def test_sorted_channels():
    x = torch.tensor([[[[3.0, 1.0], [2.0, 0.0]]]])
    assert sorted_channels(x).tolist() == [[[0.0, 1.0, 2.0, 3.0]]]


def test_pairwise_emd_matches_emd_per_pair():
    g = _gen(5)
    x = torch.randn(5, 2, 6, 7, generator=g) * torch.linspace(0.5, 2, 5).view(5, 1, 1, 1)
    d = pairwise_emd(x)
    assert d.shape == (5, 5)
    assert torch.allclose(d, d.T, atol=1e-7)
    assert torch.equal(torch.diagonal(d), torch.zeros(5))
    for i in range(5):
        for j in range(5):
            assert d[i, j].item() == pytest.approx(emd(x[i], x[j]).item(), abs=1e-5)
            ref = np.mean([wasserstein_distance(x[i, c].flatten().numpy(), x[j, c].flatten().numpy())
                           for c in range(2)])
            assert d[i, j].item() == pytest.approx(ref, abs=1e-5)


def test_pairwise_emd_on_vectors_and_scale():
    g = _gen(6)
    x = torch.randn(4, 1, 30, generator=g)
    d = pairwise_emd(x)
    assert torch.allclose(pairwise_emd(3 * x), 3 * d, atol=1e-5)
    assert torch.allclose(pairwise_emd(x + 1.0), d, atol=1e-5)  # common shift cancels


def test_pairwise_emd_gradcheck():
    g = _gen(7)
    x = (torch.randperm(3 * 1 * 4, generator=g).double() * 0.9 + 0.05).view(3, 1, 2, 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pairwise_emd(t), (x,))


def test_pairwise_emd_gradient_finite():
    x = torch.randn(4, 1, 8, 8, generator=_gen(8), requires_grad=True)
    d = pairwise_emd(x)
    d.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
