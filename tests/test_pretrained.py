"""Networks shipped inside the package (rcl.pretrained): present, small, usable by name, and they
denoise real photographs without any label."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rcl.checkpoint import load_checkpoint, read_metadata
from rcl.cli import app
from rcl.data.io import write_image
from rcl.evaluation.inference import predict
from rcl.evaluation.metrics import psnr
from rcl.pretrained import SHIPPED, pretrained_path

runner = CliRunner()


@pytest.mark.parametrize("name, channels", [("gray", 1), ("colour", 3)])
def test_shipped_network_loads_with_its_recipe(name, channels):
    model, meta = load_checkpoint(pretrained_path(f"pretrained:{name}"))
    assert meta["model"]["in_channels"] == channels == meta["model"]["out_channels"]
    assert meta["stage"] == "pretrain" and meta["method"] == "rcl"
    assert meta["shipped"]["name"] == name and meta["shipped"]["command"].startswith("rcl pretrain ")


def test_shipped_networks_fit_in_10_mb():
    assert sum(pretrained_path(n).stat().st_size for n in SHIPPED) <= 10_000_000


@pytest.mark.parametrize("name, photo", [("gray", "camera"), ("colour", "astronaut")])
def test_shipped_network_denoises_a_photo_without_labels(name, photo):
    """Zero labels: the shipped RCL network on a photo it never saw, σ = 25, removes some of the noise
    (it is meant as an initialisation for fine-tuning; on its own it is a weak denoiser)."""
    import skimage.data

    model, meta = load_checkpoint(pretrained_path(name))
    arr = getattr(skimage.data, photo)()
    clean = torch.from_numpy(arr.astype(np.float32) / 255)
    clean = clean[None] if clean.ndim == 2 else clean.permute(2, 0, 1)
    clean = clean[:, 100:292, 100:292].contiguous()
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    out = predict(model, noisy)
    assert psnr(out, clean) > psnr(noisy, clean) + 1.5  # measured: +2.0 dB (gray, camera); see docs/pretrained.md


def test_unknown_or_missing_shipped_network(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="no such shipped network; shipped: pretrained:gray, pretrained:colour"):
        pretrained_path("pretrained:grey")
    import rcl.pretrained as P

    monkeypatch.setattr(P.resources, "files", lambda package: tmp_path)
    with pytest.raises(ValueError, match="not included in this installation"):
        pretrained_path("pretrained:gray")


def test_finetune_from_pretrained_gray_by_name(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "clean"
    for i in range(3):
        write_image(data / f"im{i}.png", torch.rand(1, 40, 44, generator=g))
    out = tmp_path / "ft.safetensors"
    res = runner.invoke(app, ["finetune", str(data), "-o", str(out), "--init", "pretrained:gray", "--labels", "1",
                              "--steps", "2", "--crop-size", "16", "--batch-size", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    meta = read_metadata(out)
    assert meta["init"] == "pretrained:gray" and meta["init_stage"] == "pretrain"  # portable, not the install path
    assert meta["label_count"] == 1
    bad = runner.invoke(app, ["finetune", str(data), "-o", str(tmp_path / "x.safetensors"), "--init", "pretrained:nope"])
    assert bad.exit_code == 2 and "pretrained:nope" in bad.output and not (tmp_path / "x.safetensors").exists()


def test_no_output_may_land_inside_the_package(tmp_path):
    """`-o` onto a shipped network (even with --overwrite) is refused: the package is never written."""
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "clean"
    for i in range(2):
        write_image(data / f"im{i}.png", torch.rand(1, 40, 44, generator=g))
    target = pretrained_path("gray")
    before = target.read_bytes()
    for cmd in (["finetune", str(data)], ["pretrain", str(data)]):
        res = runner.invoke(app, [*cmd, "-o", str(target), "--overwrite", "--steps", "1", "--crop-size", "16"])
        assert res.exit_code == 2 and "inside the installed rcl package" in res.output, res.output
    assert target.read_bytes() == before


def test_demo_and_restore_refuse_a_folder_inside_the_package(tmp_path):
    package = pretrained_path("gray").parent.parent
    res = runner.invoke(app, ["demo", "--quick", "-o", str(package / "demo_run")])
    assert res.exit_code == 2 and "inside the installed rcl package" in res.output and not (package / "demo_run").exists()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    res = runner.invoke(app, ["demo", "--quick", "-o", str(blocker / "sub")])
    assert res.exit_code == 2 and f"{blocker} is not a folder" in res.output
    g = torch.Generator().manual_seed(0)
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 20, 20, generator=g))
    res = runner.invoke(app, ["restore", "pretrained:gray", str(tmp_path / "in"), "-o", str(package / "pretrained")])
    assert res.exit_code == 2 and f"{package / 'pretrained'}: --output is inside" in res.output


def test_evaluate_labels_a_shipped_network_by_its_name(tmp_path):
    """`rcl evaluate pretrained:gray` labels the row pretrained:gray, not the shipped file's name."""
    data = tmp_path / "g"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(data / f"{i}.png", torch.from_numpy(rng.random((1, 24, 24), dtype=np.float32)), 8)
    res = CliRunner().invoke(app, ["evaluate", "pretrained:gray", "--data", str(data), "--noise", "gaussian:25",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "| pretrained:gray |" in res.output and "gray.safetensors" not in res.output
