"""The `rcl` command line on good and bad input (tiny budgets; real properties, not timings)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from rcl.checkpoint import read_metadata
from rcl.cli import app
from rcl.data.io import read_image, write_image

runner = CliRunner()


def _photo_crops(folder, n=3, size=40, channels=1, seed=0):
    """Crops of scikit-image's camera/astronaut photos written as 8-bit PNGs."""
    import skimage.data as data
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    src = data.camera() if channels == 1 else data.astronaut()
    rng = np.random.default_rng(seed)
    for i in range(n):
        t, left = rng.integers(0, 400, size=2)
        arr = src[t:t + size, left:left + size + 3]
        img = torch.from_numpy(arr.astype(np.float32) / 255)
        img = img.unsqueeze(0) if img.ndim == 2 else img.permute(2, 0, 1)
        write_image(folder / f"img{i}.png", img)
    return folder


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = _photo_crops(root / "train")
    ckpt = root / "pre.safetensors"
    res = runner.invoke(app, ["pretrain", str(data), "--out", str(ckpt), "--steps", "3", "--crop-size", "16",
                              "--batch-images", "3", "--width", "4", "--depth", "2", "--no-progress",
                              "--log", str(root / "log.csv")])
    assert res.exit_code == 0, res.output
    return root, data, ckpt


def test_help_on_every_command():
    for cmd in ([], ["pretrain"], ["finetune"], ["evaluate"], ["denoise"], ["demo"]):
        res = runner.invoke(app, cmd + ["--help"])
        assert res.exit_code == 0, (cmd, res.output)
        assert "Usage" in res.output


def test_pretrain_writes_checkpoint_and_log(pretrained):
    root, _, ckpt = pretrained
    meta = read_metadata(ckpt)
    assert meta["stage"] == "pretrain" and meta["model"]["width"] == 4 and meta["noise"] == "gaussian:5-50"
    lines = (root / "log.csv").read_text().strip().splitlines()
    assert lines[0].startswith("step,lr,loss") and len(lines) == 4
    assert not list(root.glob("*.part"))


def test_finetune_from_checkpoint_and_evaluate(pretrained, tmp_path):
    root, data, ckpt = pretrained
    out = tmp_path / "ft.safetensors"
    res = runner.invoke(app, ["finetune", str(data), "--init", str(ckpt), "--out", str(out), "--steps", "2",
                              "--crop-size", "16", "--batch-size", "2", "--label-fraction", "0.34", "--no-progress",
                              "--width", "4", "--arch", "unet"])  # agreeing with the checkpoint's network: accepted
    assert res.exit_code == 0, res.output
    meta = read_metadata(out)
    assert meta["stage"] == "finetune" and meta["init_stage"] == "pretrain" and len(meta["labelled_images"]) == 1
    js = tmp_path / "eval.json"
    res = runner.invoke(app, ["evaluate", str(out), str(ckpt), "--data", str(data), "--noise", "gaussian:25",
                              "--json", str(js)])
    assert res.exit_code == 0, res.output
    import json

    payload = json.loads(js.read_text())
    assert set(payload["results"]) == {"ft.safetensors", "pre.safetensors"}
    assert len(payload["results"]["ft.safetensors"]["images"]) == 3


def test_corrupt_image_is_named(tmp_path):
    data = _photo_crops(tmp_path / "d")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    res = runner.invoke(app, ["pretrain", str(data), "--out", str(tmp_path / "x.safetensors"), "--steps", "1",
                              "--crop-size", "16", "--no-progress"])
    assert res.exit_code == 2
    assert "broken.png" in res.output and "error:" in res.output
    assert not (tmp_path / "x.safetensors").exists()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["pretrain", str(tmp_path / "empty"), "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 2 and "no image files" in res.output


def test_missing_folder(tmp_path):
    res = runner.invoke(app, ["pretrain", str(tmp_path / "nope"), "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 2 and "nope" in res.output


def test_image_smaller_than_crop(tmp_path):
    data = _photo_crops(tmp_path / "d", size=20)
    res = runner.invoke(app, ["pretrain", str(data), "--out", str(tmp_path / "x.safetensors"), "--crop-size", "48"])
    assert res.exit_code == 2
    assert "img0.png" in res.output and "crop size 48" in res.output


def test_bad_option_values(tmp_path):
    data = _photo_crops(tmp_path / "d")
    res = runner.invoke(app, ["pretrain", str(data), "--out", str(tmp_path / "x.safetensors"), "--steps", "0"])
    assert res.exit_code == 2 and "--steps" in res.output
    res = runner.invoke(app, ["pretrain", str(data), "--out", str(tmp_path / "x.safetensors"), "--noise", "gauss"])
    assert res.exit_code == 2 and "noise spec" in res.output
    res = runner.invoke(app, ["finetune", str(data), "--out", str(tmp_path / "x.safetensors"),
                              "--label-fraction", "1.5"])
    assert res.exit_code == 2 and "--label-fraction" in res.output
    res = runner.invoke(app, ["pretrain", str(data), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and ".safetensors" in res.output


def test_denoise_keeps_16_bit_and_never_overwrites(pretrained, tmp_path):
    _, _, ckpt = pretrained
    import torch

    src = tmp_path / "in"
    src.mkdir()
    img = torch.rand(1, 33, 45)
    write_image(src / "a16.png", img, bit_depth=16)
    write_image(src / "b8.png", img, bit_depth=8)
    before = (src / "a16.png").read_bytes()
    res = runner.invoke(app, ["denoise", str(ckpt), str(src), "--output", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    out16, info16 = read_image(tmp_path / "out" / "a16.png")
    out8, info8 = read_image(tmp_path / "out" / "b8.png")
    assert info16.bit_depth == 16 and info16.channels == 1 and out16.shape == (1, 33, 45)
    assert info8.bit_depth == 8
    assert (src / "a16.png").read_bytes() == before
    # into the input folder itself, without a suffix: refused, inputs untouched
    res = runner.invoke(app, ["denoise", str(ckpt), str(src), "--output", str(src)])
    assert res.exit_code == 2 and "overwrite an input" in res.output
    assert (src / "a16.png").read_bytes() == before
    # existing outputs are not replaced without --overwrite
    res = runner.invoke(app, ["denoise", str(ckpt), str(src), "--output", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_denoise_rejects_wrong_channels(pretrained, tmp_path):
    _, _, ckpt = pretrained
    rgb = _photo_crops(tmp_path / "rgb", n=1, channels=3)
    res = runner.invoke(app, ["denoise", str(ckpt), str(rgb), "--output", str(tmp_path / "o")])
    assert res.exit_code == 2 and "channel" in res.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    data = _photo_crops(tmp_path / "d", n=1)
    res = runner.invoke(app, ["denoise", str(bad), str(data), "--output", str(tmp_path / "o")])
    assert res.exit_code == 2 and "bad.safetensors" in res.output


def test_finetune_real_noise_needs_pairs(tmp_path):
    data = _photo_crops(tmp_path / "d")
    res = runner.invoke(app, ["finetune", str(data), "--out", str(tmp_path / "x.safetensors"), "--noise", "real"])
    assert res.exit_code == 2 and "--noisy" in res.output


def test_outputs_never_overwrite_inputs(pretrained, tmp_path):
    root, data, ckpt = pretrained
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    ck_before = ckpt.read_bytes()
    # --log pointing at an input image, or at the --init checkpoint
    res = runner.invoke(app, ["pretrain", str(data), "-o", str(tmp_path / "m.safetensors"), "--log",
                              str(data / "img0.png"), "--steps", "1", "--crop-size", "16", "--no-progress"])
    assert res.exit_code == 2 and "input" in res.output
    res = runner.invoke(app, ["finetune", str(data), "-o", str(tmp_path / "f.safetensors"), "--init", str(ckpt),
                              "--log", str(ckpt), "--steps", "1", "--crop-size", "16", "--no-progress"])
    assert res.exit_code == 2 and "input" in res.output
    # --json onto a checkpoint or a test image
    res = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(data), "--json", str(ckpt)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(data), "--json", str(data / "img1.png")])
    assert res.exit_code == 2
    # denoise: a suffix escaping the output folder, and outputs that are inputs of the same run
    res = runner.invoke(app, ["denoise", str(ckpt), str(data / "img0.png"), "-o", str(tmp_path / "o"),
                              "--suffix", "/../../x", "--overwrite"])
    assert res.exit_code == 2 and "--suffix" in res.output
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert ckpt.read_bytes() == ck_before


def test_denoise_output_of_earlier_run_is_an_input(pretrained, tmp_path):
    _, data, ckpt = pretrained
    work = tmp_path / "w"
    work.mkdir()
    for p in data.iterdir():
        (work / p.name).write_bytes(p.read_bytes())
    assert runner.invoke(app, ["denoise", str(ckpt), str(work), "-o", str(work), "--suffix", "_dn"]).exit_code == 0
    dn = (work / "img0_dn.png").read_bytes()
    res = runner.invoke(app, ["denoise", str(ckpt), str(work), "-o", str(work), "--suffix", "_dn", "--overwrite"])
    assert res.exit_code == 2 and "input" in res.output
    assert (work / "img0_dn.png").read_bytes() == dn


@pytest.mark.parametrize("spec", ["gaussian:inf", "gaussian:5-inf", "poisson:inf", "gaussian:nan", "gaussian:50-5",
                                  "gaussian:-5"])
def test_non_finite_or_inverted_noise_specs(tmp_path, spec):
    data = _photo_crops(tmp_path / "d", n=2)
    res = runner.invoke(app, ["pretrain", str(data), "-o", str(tmp_path / "x.safetensors"), "--noise", spec,
                              "--steps", "1", "--crop-size", "16", "--no-progress"])
    assert res.exit_code == 2 and "noise" in res.output.lower(), res.output
    assert not (tmp_path / "x.safetensors").exists()


def test_non_finite_options_rejected(tmp_path):
    data = _photo_crops(tmp_path / "d", n=2)
    res = runner.invoke(app, ["pretrain", str(data), "-o", str(tmp_path / "x.safetensors"), "--temperature", "inf",
                              "--steps", "1", "--crop-size", "16", "--no-progress"])
    assert res.exit_code == 2 and "--temperature" in res.output


def test_cli_training_defaults_are_the_configs_defaults():
    """`rcl finetune` / `rcl pretrain` write their defaults out (so `rcl --help` does not import torch);
    they must be FinetuneConfig's and RCLConfig's, the one definition."""
    from rcl.cli.finetune import _DEFAULT
    from rcl.cli.pretrain import _RCL_DEFAULT_STEPS
    from rcl.methods import RCLConfig
    from rcl.methods.supervised import FinetuneConfig

    fields = FinetuneConfig.model_fields
    assert _DEFAULT == {k: fields[k].default for k in _DEFAULT}
    assert _RCL_DEFAULT_STEPS == RCLConfig.model_fields["steps"].default
