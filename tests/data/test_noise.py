"""Noise models: seeded reproducibility, moments, parameters, spec parsing."""

import math

import pytest
import torch

from rcl.data.noise import (SCALE, GaussianNoise, GaussianRangeNoise, PoissonGaussianNoise, PoissonNoise,
                            RealNoise, parse_noise_spec)

MODELS = [GaussianNoise(25 / 255), GaussianRangeNoise(), PoissonNoise(30.0), PoissonGaussianNoise()]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_seeded_reproducibility(model):
    clean = torch.rand(3, 2, 16, 17, generator=_gen(0))
    y1, p1 = model(clean, _gen(7))
    y2, p2 = model(clean, _gen(7))
    y3, p3 = model(clean, _gen(8))
    assert torch.equal(y1, y2)
    assert p1.keys() == p2.keys()
    for k in p1:
        assert torch.equal(p1[k], p2[k])
        assert p1[k].shape == (3,)
    assert not torch.equal(y1, y3)
    assert y1.shape == clean.shape and y1.dtype == clean.dtype
    # clean input untouched
    assert torch.equal(clean, torch.rand(3, 2, 16, 17, generator=_gen(0)))


@pytest.mark.parametrize("model", MODELS + [RealNoise()], ids=lambda m: m.name)
def test_rejects_non_batch(model):
    with pytest.raises(ValueError, match="B, C, H, W"):
        model(torch.zeros(1, 8, 8), _gen(0))


def test_gaussian_moments():
    sigma = 25 / 255
    clean = torch.full((2, 1, 256, 256), 0.5)
    y, params = GaussianNoise(sigma)(clean, _gen(1))
    n = y - clean
    assert torch.allclose(params["sigma"], torch.full((2,), sigma))
    assert abs(n.mean().item()) < 3 * sigma / math.sqrt(n.numel()) + 1e-4
    assert n.std().item() == pytest.approx(sigma, rel=0.01)
    # not clipped
    assert y.min() < 0.5 - 3 * sigma and y.max() > 0.5 + 3 * sigma


def test_gaussian_zero_sigma_is_identity():
    clean = torch.rand(1, 3, 8, 8, generator=_gen(0))
    y, p = GaussianNoise(0.0)(clean, _gen(0))
    assert torch.equal(y, clean) and p["sigma"].tolist() == [0.0]


def test_gaussian_float64_input():
    clean = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    y, _ = GaussianNoise(0.1)(clean, _gen(0))
    assert y.dtype == torch.float64


def test_gaussian_range_per_image_sigma():
    lo, hi = 5 / 255, 50 / 255
    clean = torch.full((16, 1, 128, 128), 0.3)
    y, params = GaussianRangeNoise(lo, hi)(clean, _gen(2))
    s = params["sigma"]
    assert s.shape == (16,)
    assert ((s >= lo) & (s <= hi)).all()
    assert s.std() > 0.01  # really drawn per image
    emp = (y - clean).flatten(1).std(dim=1)
    torch.testing.assert_close(emp, s, rtol=0.02, atol=0)


def test_poisson_moments():
    peak = 30.0
    x = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1, 1).expand(3, 1, 200, 200).contiguous()
    y, params = PoissonNoise(peak)(x, _gen(3))
    # values on the lattice k / peak
    k = y * peak
    assert torch.allclose(k, k.round(), atol=1e-4)
    mean = y.flatten(1).mean(1)
    var = y.flatten(1).var(1)
    torch.testing.assert_close(mean, torch.tensor([0.1, 0.5, 0.9]), rtol=0.02, atol=0)
    torch.testing.assert_close(var, torch.tensor([0.1, 0.5, 0.9]) / peak, rtol=0.03, atol=0)
    torch.testing.assert_close(params["sigma"], (torch.tensor([0.1, 0.5, 0.9]) / peak).sqrt())


def test_poisson_negative_input_clamped():
    y, p = PoissonNoise(10.0)(torch.full((1, 1, 4, 4), -0.5), _gen(0))
    assert torch.equal(y, torch.zeros_like(y)) and p["sigma"].item() == 0


def test_poisson_gaussian_variance():
    x_levels = torch.tensor([0.1, 0.8])
    x = x_levels.view(1, 1, 2, 1).expand(4, 1, 2, 40000).contiguous()
    model = PoissonGaussianNoise()
    y, params = model(x, _gen(4))
    a, b = params["a"], params["b"]
    assert ((a >= model.a_min * (1 - 1e-5)) & (a <= model.a_max * (1 + 1e-5))).all()
    assert ((b >= model.b_min) & (b <= model.b_max)).all()
    n = y - x
    for img in range(4):
        for row, xv in enumerate(x_levels):
            expected = a[img] * xv + b[img] ** 2
            assert n[img, 0, row].var().item() == pytest.approx(expected.item(), rel=0.03)
            assert abs(n[img, 0, row].mean().item()) < 4 * expected.sqrt().item() / 200
    sig = (a.view(4, 1) * x_levels.view(1, 2) + b.view(4, 1) ** 2).mean(1).sqrt()
    torch.testing.assert_close(params["sigma"], sig)


def test_poisson_gaussian_log_uniform_a():
    model = PoissonGaussianNoise(a_min=1e-4, a_max=1e-2)
    _, params = model(torch.zeros(4000, 1, 1, 1), _gen(5))
    log_a = params["a"].log10()
    # log-uniform on [-4, -2]: mean -3, roughly half below -3
    assert log_a.mean().item() == pytest.approx(-3, abs=0.05)
    assert (log_a < -3).float().mean().item() == pytest.approx(0.5, abs=0.04)


def test_real_noise_is_identity():
    x = torch.rand(2, 3, 5, 5, generator=_gen(0))
    y, p = RealNoise()(x, _gen(0))
    assert torch.equal(y, x) and torch.isnan(p["sigma"]).all() and p["sigma"].shape == (2,)
    assert RealNoise.synthetic is False and GaussianNoise.synthetic is True


@pytest.mark.parametrize("ctor", [lambda: GaussianNoise(-0.1), lambda: GaussianNoise(float("nan")),
                                  lambda: GaussianRangeNoise(0.2, 0.1), lambda: GaussianRangeNoise(-0.1, 0.1),
                                  lambda: PoissonNoise(0.0), lambda: PoissonNoise(-1.0),
                                  lambda: PoissonGaussianNoise(a_min=0.0),
                                  lambda: PoissonGaussianNoise(b_min=0.5, b_max=0.1)])
def test_invalid_parameters(ctor):
    with pytest.raises(ValueError):
        ctor()


# ---------------------------------------------------------------- parse_noise_spec


def test_parse_gaussian():
    m = parse_noise_spec("gaussian:25")
    assert isinstance(m, GaussianNoise) and m.sigma == pytest.approx(25 / 255)
    m = parse_noise_spec("  Gaussian:12.5 ")
    assert isinstance(m, GaussianNoise) and m.sigma == pytest.approx(12.5 / 255)


def test_parse_gaussian_range():
    m = parse_noise_spec("gaussian:5-50")
    assert isinstance(m, GaussianRangeNoise)
    assert m.sigma_min == pytest.approx(5 / SCALE) and m.sigma_max == pytest.approx(50 / SCALE)


def test_parse_poisson_and_others():
    m = parse_noise_spec("poisson:30")
    assert isinstance(m, PoissonNoise) and m.peak == 30
    assert isinstance(parse_noise_spec("poisson-gaussian"), PoissonGaussianNoise)
    assert isinstance(parse_noise_spec("real"), RealNoise)
    assert isinstance(parse_noise_spec("REAL"), RealNoise)


@pytest.mark.parametrize("spec", ["", "gaussian", "gaussian:", "gaussian:abc", "gaussian:-5", "gaussian:50-5",
                                  "gaussian:5-", "gaussian:nan", "poisson", "poisson:0", "poisson:-3", "poisson:x",
                                  "poisson-gaussian:3", "real:1", "speckle:3", "gauss:25"])
def test_parse_bad_specs(spec):
    with pytest.raises(ValueError, match="bad noise spec"):
        parse_noise_spec(spec)


def test_describe():
    assert "25" in GaussianNoise(25 / 255).describe()
    assert "5" in GaussianRangeNoise().describe() and "50" in GaussianRangeNoise().describe()
    assert "30" in PoissonNoise(30).describe()
    assert PoissonGaussianNoise().describe().startswith("poisson-gaussian")
    assert RealNoise().describe().startswith("real")


@pytest.mark.parametrize("peak", [4e38, 1e300, 2e9])
def test_poisson_peak_too_large_is_refused(peak):
    """A peak beyond float32's range would crash torch.poisson; it is refused with a clear message."""
    with pytest.raises(ValueError, match="peak"):
        PoissonNoise(peak)
