"""`rcl evaluate --reference bm3d`: a BM3D row under the protocol of the checkpoints (same fixed-seed
noisy inputs, same uint8 PSNR), checked against bm3d called directly; and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from rcl.checkpoint import save_checkpoint
from rcl.cli import app
from rcl.data.datasets import load_image_set
from rcl.data.io import write_image
from rcl.data.noise import parse_noise_spec
from rcl.evaluation import BM3D_ROW, make_noisy_test_set
from rcl.evaluation.bm3d_baseline import bm3d_reference, check_known_sigma
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask, JDDTask, SRTask

runner = CliRunner()


def _images(folder, channels, n=2, size=40):
    """Smooth gradients with a few edges (BM3D has something to do), as exact 8-bit PNGs."""
    rng = np.random.default_rng(channels)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = 0.2 + 0.5 * (xx * (i + 1) % 1) * yy + 0.3 * (yy > 0.5 + 0.1 * i)
        arr = np.stack([np.clip(base + 0.1 * c + 0.02 * rng.standard_normal(base.shape), 0, 1)
                        for c in range(channels)])
        write_image(folder / f"im{i}.png", torch.from_numpy(np.round(arr * 255) / 255).float())
    return folder


def _checkpoint(path, task, channels):
    body = ModelConfig(width=4, depth=1, in_channels=channels, out_channels=channels)
    model = task.build_model(body)
    return save_checkpoint(path, model, body, stage="finetune", **task.checkpoint_metadata(model))


def _direct_bm3d_psnr(folder, spec, seed):
    """Each image's PSNR of bm3d.bm3d / bm3d.bm3d_rgb called directly on the protocol's fixed-seed
    noisy input with that image's σ, clamped and quantised to uint8 here."""
    import bm3d

    clean = load_image_set(folder)
    noisy, sigmas = make_noisy_test_set(clean, parse_noise_spec(spec), seed)
    out = []
    for x, y, s in zip(clean.images, noisy.images, sigmas):
        z = y.double().numpy()
        if z.shape[0] == 1:
            d = np.asarray(bm3d.bm3d(z[0], sigma_psd=float(s)))[None]
        else:
            d = np.asarray(bm3d.bm3d_rgb(z.transpose(1, 2, 0).copy(), sigma_psd=float(s))).transpose(2, 0, 1)
        u8 = np.round(np.clip(d.astype(np.float32), 0, 1) * np.float32(255)).astype(np.uint8)
        ref = np.round(x.numpy() * 255).astype(np.uint8)
        out.append(peak_signal_noise_ratio(ref, u8, data_range=255))
    return out


@pytest.mark.parametrize("channels, spec, seed", [(1, "gaussian:25", 0), (3, "gaussian:5-50", 4)])
def test_bm3d_row_equals_bm3d_called_directly(tmp_path, channels, spec, seed):
    data = _images(tmp_path / "test", channels)
    ck = _checkpoint(tmp_path / "net.safetensors", DenoiseTask(), channels)
    js = tmp_path / "scores.json"
    res = runner.invoke(app, ["evaluate", str(ck), "--data", str(data), "--noise", spec, "--seed", str(seed),
                              "--reference", "bm3d", "--json", str(js), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "BM3D" in res.output
    results = json.loads(js.read_text())["results"]
    assert set(results) == {"net.safetensors", BM3D_ROW}
    assert results[BM3D_ROW]["reference"] is True and results["net.safetensors"]["reference"] is False
    row = results[BM3D_ROW]
    direct = _direct_bm3d_psnr(data, spec, seed)
    # 1e-3 dB, not bit equality: once in a loaded full-suite run the two calls differed slightly
    # (bm3d's compiled core); another noise realisation or σ would move PSNR by ≫ 0.01 dB
    assert [im["psnr"] for im in row["images"]] == pytest.approx(direct, abs=1e-3)
    assert row["psnr"] == pytest.approx(float(np.mean(direct)), abs=1e-3)
    # the same noisy inputs as the checkpoint's row: the noisy input scores and σ agree image by image
    for a, b in zip(row["images"], results["net.safetensors"]["images"]):
        assert (a["name"], a["sigma"], a["psnr_noisy"]) == (b["name"], b["sigma"], b["psnr_noisy"])
    assert row["psnr"] > row["psnr_noisy"] + 3


def _one_error_line(res, *words):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    root = tmp_path_factory.mktemp("refuse")
    return _images(root / "test", 1), _checkpoint(root / "net.safetensors", DenoiseTask(), 1)


@pytest.mark.parametrize("spec, words", [
    ("poisson:30", ["--reference bm3d", "poisson peak=30"]),
    ("poisson-gaussian", ["--reference bm3d", "poisson-gaussian"]),
    ("gaussian:0", ["--reference bm3d", "σ > 0"]),
    ("real", ["'real'"]),
])
def test_noise_without_a_known_sigma_is_refused(gray, tmp_path, spec, words):
    data, ck = gray
    js = tmp_path / "scores.json"
    res = runner.invoke(app, ["evaluate", str(ck), "--data", str(data), "--noise", spec, "--reference", "bm3d",
                              "--json", str(js)])
    _one_error_line(res, *words)
    assert not js.exists()


@pytest.mark.parametrize("task, channels, words", [
    (SRTask(2), 1, ["--reference bm3d", "denoising", "super-resolution ×2"]),
    (JDDTask(), 4, ["--reference bm3d", "denoising", "demosaicking"]),
])
def test_non_denoising_checkpoints_are_refused(tmp_path, task, channels, words):
    data = _images(tmp_path / "test", 3, size=48)
    ck = _checkpoint(tmp_path / "m.safetensors", task, channels)
    res = runner.invoke(app, ["evaluate", str(ck), "--data", str(data), "--reference", "bm3d"])
    _one_error_line(res, *words)


def test_unknown_reference_is_one_error_line(gray):
    data, ck = gray
    _one_error_line(runner.invoke(app, ["evaluate", str(ck), "--data", str(data), "--reference", "nlm"]),
                    "--reference")


def test_library_checks():
    check_known_sigma(parse_noise_spec("gaussian:25"))
    check_known_sigma(parse_noise_spec("gaussian:5-50"))
    for spec in ("poisson:30", "poisson-gaussian", "real", "gaussian:0", "gaussian:0-0"):
        with pytest.raises(ValueError, match="BM3D"):
            check_known_sigma(parse_noise_spec(spec))
    assert callable(bm3d_reference(DenoiseTask(), parse_noise_spec("gaussian:25")))
    with pytest.raises(ValueError, match="denoising"):
        bm3d_reference(SRTask(4), parse_noise_spec("gaussian:25"))
