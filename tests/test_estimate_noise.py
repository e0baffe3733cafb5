"""Noise levels: the σ estimators on white Gaussian noise, the residual calibration of
`rcl estimate-noise` (monotone, inverted exactly, refused when flat) and the command itself with a
tiny network trained for a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rcl.checkpoint import save_checkpoint
from rcl.cli import app
from rcl.data.datasets import ImageSet
from rcl.data.io import write_image
from rcl.data.noise import parse_noise_spec
from rcl.evaluation.noise_level import (DEFAULT_ESTIMATOR, ESTIMATORS, SigmaCalibration, box_downsample, calibrate,
                                        estimate_sigma, oracle_sigma)
from rcl.methods.supervised import FinetuneConfig
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training.api import finetune

runner = CliRunner()


def _smooth(h, w, channels=1, phase=0.0):
    """A smooth image in [0.2, 0.8] (a gradient plus a slow wave): nearly no fine-scale content."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.2 * np.sin(3 * xx + 2 * yy + phase) + 0.1 * (xx - yy)
    return np.stack([base + 0.05 * c for c in range(channels)])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [5, 20, 40])
@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_estimators_recover_white_gaussian_sigma_on_a_smooth_image(method, sigma, channels):
    rng = np.random.default_rng(sigma + channels)
    noisy = _smooth(192, 192, channels) + rng.standard_normal((channels, 192, 192)) * sigma / 255
    est = estimate_sigma(torch.from_numpy(noisy).float(), method) * 255
    assert est == pytest.approx(sigma, rel=0.12), (method, est)


def test_default_estimator_is_registered_and_unknown_names_are_refused():
    assert DEFAULT_ESTIMATOR in ESTIMATORS
    with pytest.raises(ValueError, match="unknown noise-level estimator 'nope'"):
        estimate_sigma(np.zeros((1, 16, 16)), "nope")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        estimate_sigma(np.zeros((2, 16, 16)))


def test_oracle_sigma_and_box_downsample_against_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 9, 7)), rng.random((3, 9, 7))
    assert oracle_sigma(torch.from_numpy(y), x) == pytest.approx(np.std(y - x), rel=1e-12)
    b = box_downsample(x, 3)
    assert b.shape == (3, 3, 2) and b[1, 2, 1] == pytest.approx(x[1, 6:9, 3:6].mean())
    with pytest.raises(ValueError, match="shapes differ"):
        oracle_sigma(x, x[:, :8])


def test_calibration_inverts_piecewise_linearly_and_extends_linearly():
    cal = SigmaCalibration(sigmas=(0.1, 0.2, 0.3), residual_stds=(0.15, 0.2, 0.4), fitted=(0.15, 0.2, 0.4),
                           n_images=1, seed=0)
    assert cal(0.175) == pytest.approx(0.15) and cal(0.3) == pytest.approx(0.25)
    assert cal(0.5) == pytest.approx(0.35) and not cal.in_range(0.5)   # last segment extended
    assert cal(0.14) == pytest.approx(0.08) and cal(0.0) == 0.0        # first segment extended, clipped at 0
    with pytest.raises(ValueError, match="grows strictly"):
        SigmaCalibration((0.1, 0.2), (0.2, 0.2), (0.2, 0.2), 1, 0)


class _Scale(nn.Module):
    """f(y) = a·y: the residual is (1 − a)·y (a = 1: the identity, whose residual is 0 at every σ)."""

    def __init__(self, a):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.constant_(self.conv.weight, a)

    def forward(self, y):
        return self.conv(y)


def test_a_network_whose_residual_does_not_grow_is_refused():
    clean = ImageSet([torch.from_numpy(_smooth(24, 24)).float()], ["a.png"])
    with pytest.raises(ValueError, match="does not grow with σ between σ = 5 and 10"):
        calibrate(_Scale(1.0), clean)


def test_a_network_with_non_finite_output_is_refused_by_name():
    """An overflowing network gave 'does not grow … (mean nan and nan …)'; now the NaN is named."""
    clean = ImageSet([torch.from_numpy(_smooth(24, 24)).float()], ["a.png"])
    with pytest.raises(ValueError, match="NaN or infinite values on the calibration images at σ = 5"):
        calibrate(_Scale(float("nan")), clean)


def test_wavelet_estimator_on_a_flat_image_is_zero_without_warnings():
    """scikit-image's MAD of the non-zero detail coefficients is the median of none on a flat
    image (nan, 'Mean of empty slice'): rcl reads it as σ̂ = 0."""
    import warnings

    from rcl.evaluation.noise_level import estimate_sigma_wavelet

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate_sigma_wavelet(torch.zeros(1, 32, 32)) == 0.0
        assert estimate_sigma_wavelet(torch.zeros(3, 32, 32)) == 0.0
        rgb = torch.zeros(3, 32, 32)
        rgb[1] = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))
        assert 0 < estimate_sigma_wavelet(rgb) < 0.5  # flat channels count as 0 in the mean


def test_calibration_of_a_known_residual():
    """f(y) = y/2 on a constant image c: residual (y − c + c)/2 has std σ/2 exactly up to the noise
    sample: the fitted curve is increasing and its inverse gives back σ on fresh noise."""
    clean = ImageSet([torch.full((1, 64, 64), 0.5)], ["c.png"])
    cal = calibrate(_Scale(0.5), clean, seed=3)
    assert np.all(np.diff(cal.fitted) > 0) and cal.fitted == cal.residual_stds
    assert np.array(cal.residual_stds) == pytest.approx(np.array(cal.sigmas) / 2, rel=0.05)
    g = torch.Generator().manual_seed(7)
    y = 0.5 + torch.randn(1, 64, 64, generator=g) * 30 / 255
    from rcl.evaluation.noise_level import image_residual_std

    assert cal(image_residual_std(_Scale(0.5), y)) * 255 == pytest.approx(30, rel=0.05)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A width-4 U-Net fine-tuned for 300 steps on smooth images with σ ~ U[5, 50], a calibration
    folder and a noisy test folder (other smooth images, σ = 10 and 35)."""
    root = tmp_path_factory.mktemp("estimate")
    cal, test = root / "cal", root / "test"
    cal.mkdir()
    test.mkdir()
    train = ImageSet([torch.from_numpy(_smooth(48, 48, phase=p)).float() for p in (0, 1, 2, 3)], list("abcd"))
    body = ModelConfig(width=4, depth=1, in_channels=1, out_channels=1)
    model, _, _ = finetune(train, parse_noise_spec("gaussian:5-50"), FinetuneConfig(steps=300, batch_size=8, crop_size=32,
                                                                                    lr=3e-3), body, progress=False)
    ck = save_checkpoint(root / "net.safetensors", model, body, stage="finetune",
                         **DenoiseTask().checkpoint_metadata(model))
    for i, p in enumerate((0.5, 1.5, 2.5)):
        write_image(cal / f"c{i}.png", torch.from_numpy(_smooth(40, 40, phase=p)).float())
    g = torch.Generator().manual_seed(1)
    for name, s, p in (("t10.png", 10, 4.0), ("t35.png", 35, 5.0)):
        y = torch.from_numpy(_smooth(40, 40, phase=p)).float() + torch.randn(1, 40, 40, generator=g) * s / 255
        write_image(test / name, y.clamp(0, 1))
    return root, ck, cal, test


def test_estimate_noise_recovers_sigma_with_a_tiny_trained_network(trained):
    root, ck, cal, test = trained
    js = root / "sigma.json"
    res = runner.invoke(app, ["estimate-noise", str(ck), str(test), "--calibration", str(cal), "--json", str(js),
                              "--device", "cpu", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "t10.png" in res.output and "estimate_sigma" in res.output
    out = json.loads(js.read_text())
    fitted = out["calibration"]["fitted"]
    assert out["calibration"]["sigmas"] == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0]
    assert all(b > a for a, b in zip(fitted, fitted[1:]))
    got = {r["image"]: r for r in out["per_image"]}
    assert got["t10.png"]["sigma"] == pytest.approx(10, abs=2.5)
    assert got["t35.png"]["sigma"] == pytest.approx(35, abs=4)
    assert got["t35.png"]["estimate_sigma_wavelet"] == pytest.approx(35, rel=0.15)


def test_estimate_noise_refusals(trained, tmp_path):
    root, ck, cal, test = trained
    rgb_model = DenoiseTask().build_model(ModelConfig(width=4, depth=1, in_channels=3, out_channels=3))
    body3 = ModelConfig(width=4, depth=1, in_channels=3, out_channels=3)
    ck3 = save_checkpoint(tmp_path / "rgb.safetensors", rgb_model, body3, stage="finetune",
                          **DenoiseTask().checkpoint_metadata(rgb_model))
    cases = [
        (["estimate-noise", str(ck3), str(test), "--calibration", str(cal)], ["t10.png", "1 channel(s)", "takes 3"]),
        (["estimate-noise", str(ck), str(test)], ["--calibration"]),
        (["estimate-noise", str(ck), str(test), "--calibration", str(tmp_path / "none")], ["none"]),
        (["estimate-noise", str(ck), str(test), "--calibration", str(cal), "--json", str(test / "t10.png")],
         ["overwrite an input"]),
    ]
    for args, words in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        lines = [line for line in res.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), res.output
        for w in words:
            assert w in lines[0], (w, lines[0])
