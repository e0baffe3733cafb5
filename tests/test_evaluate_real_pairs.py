"""`rcl evaluate CKPT --noisy DIR --clean DIR`: real pairs scored under the one protocol (checked
against scikit-image's PSNR on uint8 computed here, from the arrays written to the files), the
bm3d-oracle σ (checked against numpy), the bm3d-estimated row, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from rcl.checkpoint import save_checkpoint
from rcl.cli import app
from rcl.data.io import write_image
from rcl.data.noise import RealNoise, parse_noise_spec
from rcl.data.datasets import ImageSet
from rcl.evaluation import BM3D_ESTIMATED_ROW, BM3D_ORACLE_ROW, evaluate, estimate_sigma
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask

runner = CliRunner()

# name → (H, W, bit depth): an even size, an odd size, a 16-bit PNG
PAIRS = {"a.png": (24, 24, 8), "b_odd.png": (23, 31, 8), "c16.png": (26, 20, 16)}


def _u8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float (C, H, W) → (H, W, C) uint8 as the protocol says: clamp, ×255, round half to even."""
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def _write_pairs(root, pairs=PAIRS, channels=3, seed=0):
    """Smooth clean images and noisy copies (σ ≈ 12/255, clipped), written as exact 8- or 16-bit PNGs.
    Returns name → (noisy, clean) float64 arrays (C, H, W) of exactly the values in the files."""
    rng = np.random.default_rng(seed)
    (root / "noisy").mkdir(parents=True)
    (root / "clean").mkdir(parents=True)
    values = {}
    for i, (name, (h, w, bits)) in enumerate(pairs.items()):
        yy, xx = np.mgrid[0:h, 0:w]
        base = 0.25 + 0.4 * (xx / w) * (yy / h) + 0.2 * (yy > h // 2) + 0.05 * i
        x = np.stack([np.clip(base + 0.08 * c, 0, 1) for c in range(channels)])
        y = np.clip(x + rng.normal(0, 12 / 255, x.shape), 0, 1)
        peak = 255 if bits == 8 else 65535
        x, y = (np.round(v * peak) / peak for v in (x, y))
        write_image(root / "clean" / name, torch.from_numpy(x).float(), bit_depth=bits)
        write_image(root / "noisy" / name, torch.from_numpy(y).float(), bit_depth=bits)
        values[name] = (y, x)
    return values


def _checkpoint(path, channels=3):
    body = ModelConfig(width=4, depth=1, in_channels=channels, out_channels=channels)
    torch.manual_seed(0)
    model = DenoiseTask().build_model(body)
    save_checkpoint(path, model, body, stage="finetune", **DenoiseTask().checkpoint_metadata(model))
    return path, model


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    values = _write_pairs(root)
    ck, model = _checkpoint(root / "net.safetensors")
    return root, values, ck, model


def _run(*args):
    return runner.invoke(app, ["evaluate", *map(str, args), "--device", "cpu"])


def test_real_pairs_score_as_skimage_psnr_on_uint8(pairs, tmp_path):
    root, values, ck, model = pairs
    js = tmp_path / "scores.json"
    res = _run(ck, "--noisy", root / "noisy", "--clean", root / "clean", "--reference", "bm3d-oracle",
               "--reference", "bm3d-estimated", "--json", js)
    assert res.exit_code == 0, res.output
    assert "real noisy/clean pairs" in res.output and "noisy input" in res.output
    out = json.loads(js.read_text())
    assert out["noise"] == "real" and out["data"] is None and out["seed"] is None
    results = out["results"]
    assert set(results) == {"net.safetensors", BM3D_ORACLE_ROW, BM3D_ESTIMATED_ROW}
    net = results["net.safetensors"]
    assert [im["name"] for im in net["images"]] == sorted(PAIRS)
    for im in net["images"]:
        y, x = values[im["name"]]
        # the noisy input's row: PSNR of the quantised noisy image, computed here from the written arrays
        assert im["psnr_noisy"] == pytest.approx(peak_signal_noise_ratio(_u8(x), _u8(y), data_range=255), abs=1e-9)
        # the network's row: its output on the noisy file's values, quantised and scored here
        with torch.no_grad():
            f = model.eval()(torch.from_numpy(y).float()[None])[0].double().numpy()
        assert im["psnr"] == pytest.approx(peak_signal_noise_ratio(_u8(x), _u8(f), data_range=255), abs=1e-4)
        # σ of a real pair: std(noisy − clean) over all pixels and channels, on the 0–255 scale
        assert im["sigma"] == pytest.approx(np.std(y - x) * 255, rel=1e-6)
    assert net["psnr_noisy"] == pytest.approx(np.mean([im["psnr_noisy"] for im in net["images"]]), abs=1e-9)


def test_bm3d_oracle_gets_std_of_noisy_minus_clean(pairs, tmp_path):
    """The oracle row is CBM3D given σ = std(noisy − clean)·255 (numpy, here): its PSNR equals
    bm3d_rgb called directly with that σ."""
    import bm3d

    root, values, ck, _ = pairs
    js = tmp_path / "scores.json"
    res = _run(ck, "--noisy", root / "noisy", "--clean", root / "clean", "--reference", "bm3d-oracle", "--json", js)
    assert res.exit_code == 0, res.output
    row = json.loads(js.read_text())["results"][BM3D_ORACLE_ROW]
    assert row["reference"] is True
    for im in row["images"]:
        y, x = values[im["name"]]
        sigma = float(np.std(y - x))
        assert im["sigma"] == pytest.approx(sigma * 255, rel=1e-6)
        d = np.asarray(bm3d.bm3d_rgb(y.transpose(1, 2, 0).copy(), sigma_psd=sigma)).transpose(2, 0, 1)
        d = d.astype(np.float32).astype(np.float64)  # the protocol passes BM3D's output on as float32
        assert im["psnr"] == pytest.approx(peak_signal_noise_ratio(_u8(x), _u8(d), data_range=255), abs=1e-6)


def test_bm3d_estimated_records_the_sigma_it_used(pairs, tmp_path):
    root, values, ck, _ = pairs
    js = tmp_path / "scores.json"
    res = _run(ck, "--noisy", root / "noisy", "--clean", root / "clean", "--reference", "bm3d-estimated",
               "--json", js)
    assert res.exit_code == 0, res.output
    row = json.loads(js.read_text())["results"][BM3D_ESTIMATED_ROW]
    for im in row["images"]:
        y, _ = values[im["name"]]
        assert im["sigma_used"] == pytest.approx(estimate_sigma(y) * 255, rel=1e-5)


def _one_error_line(res, *words):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_unmatched_name_is_refused(pairs, tmp_path):
    root, _, ck, _ = pairs
    _write_pairs(tmp_path, {"a.png": (24, 24, 8), "b.png": (24, 24, 8)})
    (tmp_path / "noisy" / "b.png").rename(tmp_path / "noisy" / "other.png")
    js = tmp_path / "scores.json"
    res = _run(ck, "--noisy", tmp_path / "noisy", "--clean", tmp_path / "clean", "--json", js)
    _one_error_line(res, "other.png", "no clean image of the same name")
    assert not js.exists()


def test_size_mismatch_is_refused(pairs, tmp_path):
    root, _, ck, _ = pairs
    _write_pairs(tmp_path, {"a.png": (24, 24, 8)})
    write_image(tmp_path / "clean" / "a.png", torch.full((3, 24, 25), 0.5))
    res = _run(ck, "--noisy", tmp_path / "noisy", "--clean", tmp_path / "clean")
    _one_error_line(res, "a.png", "24×24", "25×24")


def test_channel_mismatch_within_a_pair_is_refused(pairs, tmp_path):
    root, _, ck, _ = pairs
    _write_pairs(tmp_path, {"a.png": (24, 24, 8)})
    write_image(tmp_path / "clean" / "a.png", torch.full((1, 24, 24), 0.5))
    res = _run(ck, "--noisy", tmp_path / "noisy", "--clean", tmp_path / "clean")
    _one_error_line(res, "a.png", "channel")


@pytest.mark.parametrize("extra, words", [
    (["--data", "{root}/clean", "--clean", "{root}/clean"], ["--data", "--clean", "exclude"]),
    (["--data", "{root}/clean", "--noisy", "{root}/noisy"], ["--data", "--noisy", "exclude"]),
    (["--noisy", "{root}/noisy"], ["--noisy needs --clean"]),
    (["--clean", "{root}/clean"], ["--clean needs --noisy"]),
    ([], ["--data", "--noisy"]),
    (["--noisy", "{root}/noisy", "--clean", "{root}/clean", "--noise", "gaussian:25"], ["--noise gaussian:25", "--noisy"]),
    (["--noisy", "{root}/noisy", "--clean", "{root}/clean", "--reference", "bm3d"], ["--reference bm3d", "bm3d-oracle"]),
    (["--data", "{root}/clean", "--reference", "bm3d-oracle"], ["--reference bm3d-oracle", "real"]),
    (["--data", "{root}/clean", "--noise", "real"], ["'real'", "--noisy"]),
])
def test_bad_combinations_are_refused(pairs, tmp_path, extra, words):
    root, _, ck, _ = pairs
    js = tmp_path / "scores.json"
    res = _run(ck, *[e.format(root=root) for e in extra], "--json", js)
    _one_error_line(res, *words)
    assert not js.exists()


def test_noise_real_with_pairs_is_accepted(pairs):
    root, _, ck, _ = pairs
    res = _run(ck, "--noisy", root / "noisy", "--clean", root / "clean", "--noise", "real")
    assert res.exit_code == 0, res.output


def test_protocol_refuses_real_noise_without_inputs_and_mismatched_pairs():
    clean = ImageSet([torch.zeros(1, 12, 12), torch.zeros(1, 12, 12)], ["a", "b"])
    den = {"id": lambda y, s: y}
    with pytest.raises(ValueError, match="real noise needs the noisy images"):
        evaluate(den, clean, RealNoise())
    with pytest.raises(ValueError, match="names must match"):
        evaluate(den, clean, RealNoise(), noisy=ImageSet(clean.images, ["b", "a"]))
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate(den, clean, RealNoise(), noisy=ImageSet([torch.zeros(1, 12, 12), torch.zeros(1, 12, 13)], ["a", "b"]))
    # given synthetic inputs keep working (the demo and the benchmark figures pass them)
    res, _ = evaluate(den, clean, parse_noise_spec("gaussian:25"), noisy=clean, sigmas=torch.tensor([0.1, 0.1]))
    assert res["id"].scores[0].sigma == pytest.approx(25.5)


def test_bm3d_estimated_also_runs_on_synthetic_noise(pairs, tmp_path):
    """With --data the row estimates σ from the protocol's fixed-seed noisy images (not their true σ)."""
    from rcl.evaluation import make_noisy_test_set
    from rcl.data.datasets import load_image_set

    root, _, ck, _ = pairs
    js = tmp_path / "scores.json"
    res = _run(ck, "--data", root / "clean", "--noise", "gaussian:20", "--reference", "bm3d-estimated", "--json", js)
    assert res.exit_code == 0, res.output
    row = json.loads(js.read_text())["results"][BM3D_ESTIMATED_ROW]
    noisy, _ = make_noisy_test_set(load_image_set(root / "clean"), parse_noise_spec("gaussian:20"), 0)
    assert [im["sigma"] for im in row["images"]] == pytest.approx([20.0] * len(PAIRS))
    assert [im["sigma_used"] for im in row["images"]] == pytest.approx(
        [estimate_sigma(y) * 255 for y in noisy.images], rel=1e-5)
