"""NT-Xent from logits, residual NT-Xent and feature NT-Xent against a hand-written loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from rcl.losses.emd import emd
from rcl.losses.ntxent import FeatureNTXent, ResidualNTXent, nt_xent_from_logits


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _reference(logits):
    """ℓ_i = −log(exp(s_{i,p}) / Σ_{k≠i} exp(s_{i,k})), p = (i + B) mod 2B, averaged over i."""
    s = logits.double().tolist()
    n = len(s)
    b = n // 2
    total = 0.0
    for i in range(n):
        p = (i + b) % n
        denom = sum(math.exp(s[i][k]) for k in range(n) if k != i)
        total += -math.log(math.exp(s[i][p]) / denom)
    return total / n


@pytest.mark.parametrize("b", [2, 3, 5])
def test_matches_python_loop(b):
    logits = torch.randn(2 * b, 2 * b, generator=_gen(b), dtype=torch.float64) * 2
    assert nt_xent_from_logits(logits).item() == pytest.approx(_reference(logits), abs=1e-10)


def test_diagonal_is_ignored():
    logits = torch.randn(6, 6, generator=_gen(1))
    other = logits.clone()
    other.fill_diagonal_(1000.0)
    assert nt_xent_from_logits(other).item() == pytest.approx(nt_xent_from_logits(logits).item(), abs=1e-6)
    assert torch.isfinite(nt_xent_from_logits(other))


@pytest.mark.parametrize("b", [2, 4, 7])
@pytest.mark.parametrize("c", [0.0, 3.5, -2.0])
def test_all_equal_logits(b, c):
    logits = torch.full((2 * b, 2 * b), c)
    assert nt_xent_from_logits(logits).item() == pytest.approx(math.log(2 * b - 1), abs=1e-6)


@pytest.mark.parametrize("b", [2, 3, 8])
@pytest.mark.parametrize("a", [0.0, 1.0, 5.0, -1.5])
def test_positive_a_negatives_zero(b, a):
    n = 2 * b
    logits = torch.zeros(n, n, dtype=torch.float64)
    idx = torch.arange(n)
    logits[idx, (idx + b) % n] = a
    expected = math.log(1 + (2 * b - 2) * math.exp(-a))
    assert nt_xent_from_logits(logits).item() == pytest.approx(expected, abs=1e-10)


def test_gradient_of_positive_logit():
    # d loss / d s_{i,p} = (softmax_p - 1) / 2B
    b = 3
    logits = torch.randn(2 * b, 2 * b, generator=_gen(2), dtype=torch.float64, requires_grad=True)
    nt_xent_from_logits(logits).backward()
    masked = logits.detach().clone()
    masked.fill_diagonal_(float("-inf"))
    sm = masked.softmax(dim=1)
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        assert logits.grad[i, p].item() == pytest.approx((sm[i, p].item() - 1) / (2 * b), abs=1e-10)
        assert logits.grad[i, i].item() == 0


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (5, 5), (4, 6), (4,), (2, 4, 4)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match="square"):
        nt_xent_from_logits(torch.zeros(shape))


# ---------------------------------------------------------------- ResidualNTXent


def _residuals(b=3, c=1, p=6, seed=0):
    g = _gen(seed)
    sig = torch.linspace(0.5, 3, b).repeat(2).view(2 * b, 1, 1, 1)
    return torch.randn(2 * b, c, p, p, generator=g, dtype=torch.float64) * sig


def test_residual_emd_logits_match_hand_emd():
    r = _residuals()
    tau = 0.2
    loss_fn = ResidualNTXent(temperature=tau, similarity="emd", normalize=False)
    logits = loss_fn.logits(r)
    n = r.shape[0]
    for i in range(n):
        for j in range(n):
            assert logits[i, j].item() == pytest.approx(-emd(r[i], r[j]).item() / tau, abs=1e-9)
    assert loss_fn(r).item() == pytest.approx(_reference(logits), abs=1e-9)


def test_residual_normalize_divides_by_batch_std():
    r = _residuals(seed=1)
    a = ResidualNTXent(0.1, "emd", normalize=True).logits(r)
    b = ResidualNTXent(0.1, "emd", normalize=False).logits(r / r.std())
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("similarity", ["emd", "l2", "cosine"])
@pytest.mark.parametrize("scale", [1e-3, 0.37, 25.0])
def test_normalized_loss_invariant_to_scale(similarity, scale):
    r = _residuals(c=3, seed=2)
    fn = ResidualNTXent(0.1, similarity, normalize=True)
    assert fn(r * scale).item() == pytest.approx(fn(r).item(), rel=1e-5)


def test_unnormalized_emd_loss_depends_on_scale():
    r = _residuals(seed=3)
    fn = ResidualNTXent(0.1, "emd", normalize=False)
    assert fn(r * 5).item() != pytest.approx(fn(r).item(), rel=1e-3)


def test_residual_l2_and_cosine_logits():
    r = _residuals(b=2, c=2, p=4, seed=4)
    flat = r.flatten(1)
    l2 = ResidualNTXent(0.5, "l2", normalize=False).logits(r)
    ref = torch.tensor([[-((flat[i] - flat[j]) ** 2).mean().item() / 0.5 for j in range(4)] for i in range(4)],
                       dtype=torch.float64)
    assert torch.allclose(l2, ref, atol=1e-9)
    cos = ResidualNTXent(0.5, "cosine", normalize=False).logits(r)
    ref = torch.tensor([[F.cosine_similarity(flat[i], flat[j], dim=0).item() / 0.5 for j in range(4)]
                        for i in range(4)], dtype=torch.float64)
    assert torch.allclose(cos, ref, atol=1e-9)


def test_residual_loss_prefers_matching_noise_levels():
    """Pairs with the same noise level (distinct across images) give a lower loss than shuffled pairs."""
    b = 4
    g = _gen(5)
    sig = torch.tensor([0.2, 0.6, 1.2, 2.5])
    r = torch.randn(2 * b, 1, 16, 16, generator=g) * sig.repeat(2).view(-1, 1, 1, 1)
    fn = ResidualNTXent(0.1)
    matched = fn(r)
    shuffled = fn(torch.cat([r[:b], r[b:][[1, 2, 3, 0]]]))
    assert matched < shuffled
    assert matched < math.log(2 * b - 1)


def test_residual_gradient_finite():
    r = _residuals(seed=6).float().requires_grad_(True)
    ResidualNTXent()(r).backward()
    assert torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_residual_constructor_errors():
    with pytest.raises(ValueError):
        ResidualNTXent(temperature=0)
    with pytest.raises(ValueError):
        ResidualNTXent(temperature=-1)
    with pytest.raises(ValueError):
        ResidualNTXent(similarity="l1")
    with pytest.raises(ValueError, match="even number of views"):
        ResidualNTXent()(torch.randn(3, 1, 4, 4))  # odd batch


# ---------------------------------------------------------------- FeatureNTXent


def test_feature_ntxent_matches_loop():
    z = torch.randn(6, 5, generator=_gen(7), dtype=torch.float64)
    tau = 0.3
    zn = z / z.norm(dim=1, keepdim=True)
    logits = (zn @ zn.T) / tau
    assert FeatureNTXent(tau)(z).item() == pytest.approx(_reference(logits), abs=1e-9)
    # invariant to the per-row norm
    scale = torch.tensor([1.0, 2.0, 0.5, 3.0, 7.0, 0.1], dtype=torch.float64).view(6, 1)
    assert FeatureNTXent(tau)(z * scale).item() == pytest.approx(FeatureNTXent(tau)(z).item(), abs=1e-9)


def test_feature_ntxent_perfect_pairs():
    # orthogonal instances, identical views: positive cos 1, negatives 0
    b, tau = 3, 0.5
    e = torch.eye(b, dtype=torch.float64)
    z = torch.cat([e, e])
    expected = math.log(1 + (2 * b - 2) * math.exp(-1 / tau))
    assert FeatureNTXent(tau)(z).item() == pytest.approx(expected, abs=1e-10)


def test_feature_ntxent_errors():
    with pytest.raises(ValueError):
        FeatureNTXent(0.0)
    with pytest.raises(ValueError):
        FeatureNTXent()(torch.randn(2, 4))  # a single instance
