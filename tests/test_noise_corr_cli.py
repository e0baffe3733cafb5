"""Noise autocorrelation: `rcl.evaluation.noise_corr` against a NumPy reference and closed forms, and
`rcl noise-corr` on synthetic pairs (8- and 16-bit, odd sizes, a checkpoint) and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from rcl.checkpoint import save_checkpoint
from rcl.cli import app
from rcl.data.io import read_image, write_image
from rcl.evaluation.inference import predict
from rcl.evaluation.noise_corr import NoiseCorrelation, noise_autocorrelation
from rcl.models import ModelConfig, build_model

runner = CliRunner()


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _box_noise(c, h, w, seed=0, sigma=1.0):
    """Gaussian noise blurred by a 3×3 box kernel: autocorrelation 2/3, 1/3, 0 at lags 1, 2, 3."""
    n = torch.randn(c, 1, h + 2, w + 2, generator=_gen(seed), dtype=torch.float64) * sigma
    return F.conv2d(n, torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64))[:, 0]


# ------------------------------------------------------------------------- the measure

def _reference(r: np.ndarray, lags, s):
    """The definition written out with loops: crop, sub-images by slicing, per-sub-image means."""
    c, h, w = r.shape
    r = r[:, : h // s * s, : w // s * s]
    out_h, out_v = [], []
    for k in lags:
        ch_h, ch_v = [], []
        for ch in range(c):
            subs = [r[ch, a::s, b::s] for a in range(s) for b in range(s)]
            subs = [z - z.mean() for z in subs]
            sq = sum(float((z ** 2).sum()) for z in subs) / sum(z.size for z in subs)
            ph = pv = 0.0
            nh = nv = 0
            for z in subs:
                for i in range(z.shape[0]):
                    for j in range(z.shape[1]):
                        if j + k < z.shape[1]:
                            ph += z[i, j] * z[i, j + k]
                            nh += 1
                        if i + k < z.shape[0]:
                            pv += z[i, j] * z[i + k, j]
                            nv += 1
            ch_h.append(ph / nh / sq)
            ch_v.append(pv / nv / sq)
        out_h.append(np.mean(ch_h))
        out_v.append(np.mean(ch_v))
    return out_h, out_v


@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("hw", [(19, 23), (24, 24)], ids=["19x23", "24x24"])
def test_matches_loop_reference(s, hw):
    r = _box_noise(2, *hw, seed=s) + torch.linspace(0, 3, hw[1], dtype=torch.float64)  # a mean to remove
    r[1] *= 5  # channels of different scales are averaged after normalising each
    got = noise_autocorrelation(r, (1, 2, 3), stride=s)
    ref_h, ref_v = _reference(r.numpy(), (1, 2, 3), s)
    np.testing.assert_allclose(got.horizontal, ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.vertical, ref_v, rtol=0, atol=1e-12)
    assert got.lags == (1, 2, 3) and got.stride == s and got.channels == 2


def test_close_to_corrcoef_of_shifted_arrays():
    r = _box_noise(1, 256, 256, seed=7)[0].numpy()
    got = noise_autocorrelation(torch.from_numpy(r), (1, 2, 3))
    for i, k in enumerate((1, 2, 3)):
        assert abs(got.horizontal[i] - np.corrcoef(r[:, :-k].ravel(), r[:, k:].ravel())[0, 1]) < 2e-3
        assert abs(got.vertical[i] - np.corrcoef(r[:-k].ravel(), r[k:].ravel())[0, 1]) < 2e-3


def test_white_noise_is_uncorrelated():
    r = torch.randn(3, 512, 512, generator=_gen(1), dtype=torch.float64)
    for s in (1, 2, 4):
        got = noise_autocorrelation(r, (1, 2, 3), stride=s)
        assert max(map(abs, got.horizontal + got.vertical)) < 0.01, got


def test_box_blurred_noise_closed_forms():
    r = _box_noise(3, 512, 512, seed=2)
    expect = {1: (2 / 3, 1 / 3, 0.0), 2: (1 / 3, 0.0, 0.0), 3: (0.0, 0.0, 0.0)}  # lag k at stride s = lag k·s
    for s, want in expect.items():
        got = noise_autocorrelation(r, (1, 2, 3), stride=s)
        np.testing.assert_allclose(got.horizontal, want, atol=0.015)
        np.testing.assert_allclose(got.vertical, want, atol=0.015)
        np.testing.assert_allclose(got.mean, want, atol=0.015)


def test_scale_and_offset_invariant_and_2d_input():
    r = _box_noise(1, 40, 44, seed=3)
    a = noise_autocorrelation(r, stride=2)
    b = noise_autocorrelation(r[0] * 0.01 + 0.5, stride=2)
    np.testing.assert_allclose(a.horizontal, b.horizontal, atol=1e-10)
    assert isinstance(a, NoiseCorrelation) and a.to_dict()["mean"] == list(a.mean)


def test_constant_channel_left_out_and_constant_residual_refused():
    r = _box_noise(3, 40, 40, seed=4)
    only = noise_autocorrelation(r[:1])
    r[1:] = 0.25
    got = noise_autocorrelation(r)
    assert got.channels == 1 and got.horizontal == only.horizontal
    with pytest.raises(ValueError, match="constant"):
        noise_autocorrelation(torch.zeros(3, 16, 16))


def test_measure_refusals():
    r = torch.randn(1, 15, 40, generator=_gen(0))
    with pytest.raises(ValueError, match="too small for PD stride 4 and lag 3"):
        noise_autocorrelation(r, stride=4)  # 15 // 4 = 3 rows per sub-image: no vertical pair at lag 3
    noise_autocorrelation(r, stride=3)  # 5 rows: fine
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="stride"):
            noise_autocorrelation(r, stride=bad)
    with pytest.raises(ValueError, match="lag"):
        noise_autocorrelation(r, lags=(0, 1))
    with pytest.raises(ValueError, match="at least one lag"):
        noise_autocorrelation(r, lags=())
    with pytest.raises(ValueError, match="shape"):
        noise_autocorrelation(torch.zeros(1, 1, 8, 8))


# ------------------------------------------------------------------------- the command

def _pair(root, name, c, h, w, seed, bit_depth=8, sigma=0.1):
    """A smooth clean image and a noisy copy with box-blurred Gaussian noise (no clipping)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    clean = (0.35 + 0.3 * xx * yy).expand(c, h, w).clone()
    noisy = clean + _box_noise(c, h, w, seed=seed, sigma=sigma).float()
    assert 0 < noisy.min() and noisy.max() < 1
    for sub, img in (("noisy", noisy), ("clean", clean)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        write_image(root / sub / name, img, bit_depth=bit_depth)
    return root / "noisy" / name, root / "clean" / name


@pytest.fixture()
def pairs(tmp_path):
    root = tmp_path / "data"
    _pair(root, "a16.png", 3, 96, 96, seed=1, bit_depth=16)  # 16-bit RGB PNG
    _pair(root, "odd.png", 1, 61, 75, seed=2)                   # odd size, grayscale 8-bit
    _pair(root, "c.tif", 3, 64, 80, seed=3, bit_depth=16)
    return root


def _expected(pairs_root, names, strides):
    out = {}
    for name in names:
        y, _ = read_image(pairs_root / "noisy" / name)
        x, _ = read_image(pairs_root / "clean" / name)
        out[name] = [noise_autocorrelation(y - x, (1, 2, 3), s).to_dict() for s in strides]
    return out


def test_cli_pairs_table_and_json(pairs, tmp_path):
    js = tmp_path / "out.json"
    res = runner.invoke(app, ["noise-corr", str(pairs / "noisy"), "--clean", str(pairs / "clean"),
                              "--pd", "1,2,3", "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "| PD stride | lag 1 | lag 2 | lag 3 |" in res.output and "3 image(s)" in res.output
    payload = json.loads(js.read_text())
    names = ["a16.png", "c.tif", "odd.png"]
    assert payload["images"] == 3 and sorted(payload["per_image"]) == names
    expected = _expected(pairs, names, (1, 2, 3))
    for name in names:
        for got, want in zip(payload["per_image"][name], expected[name]):
            np.testing.assert_allclose(got["horizontal"], want["horizontal"], atol=1e-12)
            np.testing.assert_allclose(got["vertical"], want["vertical"], atol=1e-12)
    for k, s in enumerate((1, 2, 3)):
        row = payload["strides"][k]
        assert row["stride"] == s
        want = np.mean([[expected[n][k]["mean"] for n in names]], axis=1)[0]
        np.testing.assert_allclose(row["mean"], want, atol=1e-12)
    # the box-blurred noise's closed form, roughly (small images, quantised)
    np.testing.assert_allclose(payload["strides"][0]["mean"], (2 / 3, 1 / 3, 0), atol=0.06)
    np.testing.assert_allclose(payload["strides"][1]["mean"][0], 1 / 3, atol=0.06)
    assert f"| 1 | {payload['strides'][0]['mean'][0]:+.3f} |" in res.output
    # an existing --json is replaced only with --overwrite
    res = runner.invoke(app, ["noise-corr", str(pairs / "noisy"), "--clean", str(pairs / "clean"), "--json", str(js)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(app, ["noise-corr", str(pairs / "noisy"), "--clean", str(pairs / "clean"), "--json", str(js),
                              "--overwrite"])
    assert res.exit_code == 0, res.output
    assert [r["stride"] for r in json.loads(js.read_text())["strides"]] == [1, 2, 3, 4]  # the default --pd


def test_cli_single_files(pairs):
    res = runner.invoke(app, ["noise-corr", str(pairs / "noisy" / "odd.png"), "--clean", str(pairs / "clean"),
                              "--pd", "2"])
    assert res.exit_code == 0, res.output
    assert "1 image(s)" in res.output
    res = runner.invoke(app, ["noise-corr", str(pairs / "noisy" / "odd.png"), "--clean",
                              str(pairs / "clean" / "odd.png"), "--pd", "1"])
    assert res.exit_code == 0, res.output


def test_cli_checkpoint_residual(tmp_path):
    root = tmp_path / "data"
    _pair(root, "g.png", 1, 40, 44, seed=5)
    torch.manual_seed(0)
    cfg = ModelConfig(in_channels=1, out_channels=1, width=4, depth=2)
    model = build_model(cfg)
    ck = save_checkpoint(tmp_path / "m.safetensors", model, cfg)
    js = tmp_path / "c.json"
    res = runner.invoke(app, ["noise-corr", str(root / "noisy"), "--checkpoint", str(ck), "--pd", "1,2",
                              "--json", str(js), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    y, _ = read_image(root / "noisy" / "g.png")
    want = [noise_autocorrelation(y - predict(model.eval(), y), (1, 2, 3), s).to_dict() for s in (1, 2)]
    got = json.loads(js.read_text())
    assert got["residual"] == "noisy - f(noisy)"
    for g, w in zip(got["per_image"]["g.png"], want):
        np.testing.assert_allclose(g["horizontal"], w["horizontal"], atol=1e-6)
    # an RGB image for a grayscale model is refused, naming the file
    _pair(root, "rgb.png", 3, 40, 44, seed=6)
    res = runner.invoke(app, ["noise-corr", str(root / "noisy"), "--checkpoint", str(ck), "--device", "cpu"])
    assert res.exit_code == 2 and "rgb.png" in res.output and "channel" in res.output


def _one_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in res.output


def test_cli_refusals(pairs, tmp_path):
    noisy, clean = str(pairs / "noisy"), str(pairs / "clean")
    # an unmatched name, on either side
    write_image(pairs / "noisy" / "extra.png", torch.rand(1, 32, 32))
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean]), "extra.png", "no clean image")
    (pairs / "noisy" / "extra.png").unlink()
    write_image(pairs / "clean" / "lonely.png", torch.rand(1, 32, 32))
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean]), "lonely.png", "no noisy image")
    (pairs / "clean" / "lonely.png").unlink()
    # differing sizes
    write_image(pairs / "clean" / "odd.png", torch.rand(1, 60, 75))
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean]), "odd.png", "75×61", "75×60")
    # differing channels
    write_image(pairs / "clean" / "odd.png", torch.rand(3, 61, 75))
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean]), "odd.png", "channel")
    _pair(pairs, "odd.png", 1, 61, 75, seed=2)
    # too small for a stride
    _pair(tmp_path / "tiny", "t.png", 1, 14, 30, seed=0)
    _one_error(runner.invoke(app, ["noise-corr", str(tmp_path / "tiny" / "noisy"), "--clean",
                                   str(tmp_path / "tiny" / "clean"), "--pd", "1,4"]), "t.png", "PD stride 4")
    # noisy == clean: no noise
    (tmp_path / "same").mkdir()
    write_image(tmp_path / "same" / "s.png", torch.rand(1, 32, 32))
    _one_error(runner.invoke(app, ["noise-corr", str(tmp_path / "same"), "--clean", str(tmp_path / "same")]),
               "s.png", "constant")
    # options
    _one_error(runner.invoke(app, ["noise-corr", noisy]), "exactly one of --clean")
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean, "--checkpoint", "m.safetensors"]),
               "exactly one of --clean")
    for bad, why in (("0", "[1, 64]"), ("1,x", "integers"), ("", "integers"), ("2,2", "twice"), ("1.5", "integers")):
        _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean, "--pd", bad]), "--pd", why)
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", str(pairs / "clean" / "odd.png")]),
               "is a folder")
    _one_error(runner.invoke(app, ["noise-corr", str(tmp_path / "nowhere"), "--clean", clean]), "nowhere")
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--checkpoint", str(pairs / "noisy" / "odd.png")]),
               "odd.png")
    js = pairs / "noisy" / "odd.png"
    _one_error(runner.invoke(app, ["noise-corr", noisy, "--clean", clean, "--json", str(js), "--overwrite"]),
               "input")
    assert not list(tmp_path.glob("*.json"))


def test_a_non_finite_residual_is_named_not_called_constant():
    from rcl.evaluation.noise_corr import noise_autocorrelation

    r = torch.randn(1, 32, 32)
    r[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        noise_autocorrelation(r)
    with pytest.raises(ValueError, match="constant"):
        noise_autocorrelation(torch.zeros(1, 32, 32))
