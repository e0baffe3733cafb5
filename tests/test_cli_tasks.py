"""`rcl` for super-resolution and joint demosaicking + denoising: train, evaluate, restore, refuse."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rcl.checkpoint import read_metadata
from rcl.cli import app
from rcl.data.io import read_image, write_image

from .test_cli import _photo_crops

pytestmark = pytest.mark.filterwarnings("ignore::rcl.data.degradations.CropWarning")  # odd test sizes, on purpose
runner = CliRunner()
TINY = ["--steps", "2", "--width", "4", "--depth", "2", "--no-progress"]


def _ok(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return _photo_crops(tmp_path_factory.mktemp("rgb") / "d", n=3, size=48, channels=3)


def test_sr_finetune_from_denoiser_evaluate_and_restore(tmp_path, rgb):
    gray = _photo_crops(tmp_path / "gray", n=3, size=48)
    pre = tmp_path / "pre.safetensors"
    _ok(["pretrain", str(gray), "-o", str(pre), "--crop-size", "16", "--batch-images", "3"] + TINY)
    sr = tmp_path / "sr.safetensors"
    _ok(["finetune", str(gray), "-o", str(sr), "--init", str(pre), "--task", "sr", "--scale", "4",
         "--crop-size", "32", "--batch-size", "2", "--steps", "2", "--no-progress"])
    meta = read_metadata(sr)
    assert meta["task"] == "sr" and meta["scale"] == 4
    js = tmp_path / "e.json"
    res = _ok(["evaluate", str(sr), "--data", str(gray), "--noise", "gaussian:15", "--json", str(js)])
    assert "bicubic" in res.output
    payload = json.loads(js.read_text())
    assert payload["task"] == "sr" and payload["scale"] == 4
    # restore an LR file: output is 4x larger, same bit depth
    lr = tmp_path / "lr"
    lr.mkdir()
    write_image(lr / "x.png", torch.rand(1, 13, 17), bit_depth=16)
    _ok(["denoise", str(sr), str(lr), "-o", str(tmp_path / "out")])
    out, info = read_image(tmp_path / "out" / "x.png")
    assert out.shape == (1, 52, 68) and info.bit_depth == 16
    # a denoiser and an SR model cannot share a table
    res = runner.invoke(app, ["evaluate", str(sr), str(pre), "--data", str(gray)])
    assert res.exit_code == 2 and "different tasks" in res.output


def test_jdd_pretrain_finetune_restore_and_refusals(tmp_path, rgb):
    pre = tmp_path / "pre.safetensors"
    _ok(["pretrain", str(rgb), "-o", str(pre), "--task", "jdd", "--crop-size", "16", "--batch-images", "3"] + TINY)
    meta = read_metadata(pre)
    assert meta["data"] == "packed-bayer" and meta["model"]["in_channels"] == 4
    jdd = tmp_path / "jdd.safetensors"
    _ok(["finetune", str(rgb), "-o", str(jdd), "--init", str(pre), "--task", "jdd", "--crop-size", "32",
         "--batch-size", "2", "--steps", "2", "--no-progress"])
    assert read_metadata(jdd)["task"] == "jdd"
    res = _ok(["evaluate", str(jdd), "--data", str(rgb)])
    assert "bilinear" in res.output
    # an RGB image given to a JDD model is refused, nothing written
    res = runner.invoke(app, ["denoise", str(jdd), str(rgb), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "mosaic" in res.output
    assert not (tmp_path / "o").exists()
    # a one-channel mosaic (odd size) gives an RGB image of the same size
    mos = tmp_path / "mos"
    mos.mkdir()
    write_image(mos / "m.png", torch.rand(1, 31, 45))
    _ok(["denoise", str(jdd), str(mos), "-o", str(tmp_path / "o2")])
    out, info = read_image(tmp_path / "o2" / "m.png")
    assert out.shape == (3, 31, 45)
    # a mosaic under 2×2 in a folder is refused before any output is written, naming the file
    write_image(mos / "z_row.png", torch.rand(1, 1, 50))
    res = runner.invoke(app, ["denoise", str(jdd), str(mos), "-o", str(tmp_path / "o4")])
    assert res.exit_code == 2 and "z_row.png" in res.output and "2×2" in res.output
    assert not (tmp_path / "o4").exists() or not any((tmp_path / "o4").iterdir())
    (mos / "z_row.png").unlink()
    # tiles too small for the network's context are refused
    res = runner.invoke(app, ["denoise", str(jdd), str(mos), "-o", str(tmp_path / "o5"), "--tile", "8"])
    assert res.exit_code == 2 and "--tile must be >= 32" in res.output
    res = runner.invoke(app, ["evaluate", str(jdd), "--data", str(rgb), "--tile", "4"])
    assert res.exit_code == 2 and "--tile must be >= 32" in res.output
    # the packed pre-training checkpoint is not a restorer, and cannot start a denoising fine-tune
    res = runner.invoke(app, ["denoise", str(pre), str(mos), "-o", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "--task jdd" in res.output
    res = runner.invoke(app, ["finetune", str(rgb), "-o", str(tmp_path / "x.safetensors"), "--init", str(pre),
                              "--crop-size", "16", "--steps", "1", "--no-progress"])
    assert res.exit_code == 2 and "--task jdd" in res.output


def test_task_option_errors(tmp_path, rgb):
    gray = _photo_crops(tmp_path / "gray", n=2, size=40)
    res = runner.invoke(app, ["finetune", str(gray), "-o", str(tmp_path / "x.safetensors"), "--task", "jdd",
                              "--crop-size", "16"])
    assert res.exit_code == 2 and "RGB" in res.output
    res = runner.invoke(app, ["finetune", str(gray), "-o", str(tmp_path / "x.safetensors"), "--task", "sr",
                              "--scale", "4", "--crop-size", "18"])
    assert res.exit_code == 2 and "multiple of --scale" in res.output
    res = runner.invoke(app, ["pretrain", str(gray), "-o", str(tmp_path / "x.safetensors"), "--task", "jdd",
                              "--crop-size", "16"])
    assert res.exit_code == 2 and "RGB" in res.output
