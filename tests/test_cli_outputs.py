"""What the CLI writes: one overwrite rule for every command, restores that continue, outputs that
keep the input's sample type, and tables that read well when redirected."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rcl.checkpoint import save_checkpoint
from rcl.cli import app
from rcl.data.io import read_image, write_image
from rcl.models import ModelConfig, build_model

runner = CliRunner()
TINY = ["--steps", "1", "--crop-size", "16", "--batch-images", "2", "--width", "4", "--depth", "1",
        "--no-progress"]


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        write_image(folder / f"im{i}.png", torch.from_numpy(rng.random((1, 24, 28), dtype=np.float32)))
    return folder


@pytest.fixture()
def ckpt(tmp_path):
    cfg = ModelConfig(width=4, depth=1)
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg, stage="finetune")


def _stat(path):
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
@pytest.mark.parametrize("which", ["--out", "--log"])
def test_training_outputs_are_replaced_only_with_overwrite(data, tmp_path, command, which):
    out, log = tmp_path / "new.safetensors", tmp_path / "log.csv"
    existing = out if which == "--out" else log
    existing.write_bytes(b"keep me")
    args = [command, str(data), "-o", str(out), "--log", str(log)] + (
        TINY if command == "pretrain" else ["--steps", "1", "--crop-size", "16", "--batch-size", "2", "--width",
                                            "4", "--depth", "1", "--no-progress"])
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output and str(existing) in res.output
    assert existing.read_bytes() == b"keep me"
    res = runner.invoke(app, args + ["--overwrite"])
    assert res.exit_code == 0, res.output
    assert existing.read_bytes() != b"keep me"


def test_evaluate_json_is_replaced_only_with_overwrite(data, ckpt, tmp_path):
    js = tmp_path / "scores.json"
    js.write_text("{}")
    args = ["evaluate", str(ckpt), "--data", str(data), "--json", str(js)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert js.read_text() == "{}"
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0
    assert '"results"' in js.read_text()


def test_interrupted_folder_restore_continues_with_skip_existing(data, ckpt, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(out)]).exit_code == 0
    whole = {p.name: p.read_bytes() for p in out.iterdir()}
    # an interrupted run: one output never written, the others complete
    (out / "im1.png").unlink()
    kept = {n: _stat(out / n) for n in ("im0.png", "im2.png")}
    res = runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output  # the old refusal stays the default
    res = runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(out), "--skip-existing"])
    assert res.exit_code == 0, res.output
    assert "skipped 2" in res.output and "im1.png" in res.output
    assert {n: _stat(out / n) for n in kept} == kept  # untouched: same bytes, same mtime
    assert {p.name: p.read_bytes() for p in out.iterdir()} == whole


def test_denoise_is_an_alias_of_restore(data, ckpt, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(a)]).exit_code == 0
    assert runner.invoke(app, ["denoise", str(ckpt), str(data), "-o", str(b)]).exit_code == 0
    assert {p.name: p.read_bytes() for p in a.iterdir()} == {p.name: p.read_bytes() for p in b.iterdir()}


def test_float_tiff_stays_float(ckpt, tmp_path):
    import tifffile

    src = tmp_path / "in"
    src.mkdir()
    arr = np.random.default_rng(0).random((30, 26), dtype=np.float32)
    tifffile.imwrite(str(src / "f.tif"), arr)
    res = runner.invoke(app, ["restore", str(ckpt), str(src), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    out = tifffile.imread(str(tmp_path / "out" / "f.tif"))
    assert out.dtype == np.float32 and out.shape == arr.shape
    assert out.min() >= 0 and out.max() <= 1
    # not quantised: equal to the network's float output, clamped to [0, 1]
    from rcl.checkpoint import load_checkpoint
    from rcl.evaluation import predict

    model, _ = load_checkpoint(ckpt)
    ref = predict(model, torch.from_numpy(arr)[None]).clamp(0, 1)[0].numpy()
    assert np.abs(out - ref).max() < 1e-6


def test_gif_input_refused_before_any_work(ckpt, tmp_path):
    from PIL import Image

    gif = tmp_path / "x.gif"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(gif)
    res = runner.invoke(app, ["restore", str(ckpt), str(gif), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "x.gif" in res.output
    assert not (tmp_path / "out").exists()


def test_tables_are_plain_markdown_when_redirected(data, ckpt):
    res = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(data)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    title = next(ln for ln in lines if "denoising" in ln)
    assert str(data) in title and "3 images" in title  # the title is one line, not wrapped
    assert "| method | PSNR (dB) | SSIM |" in lines
    rows = [ln for ln in lines if ln.startswith("| ") and "PSNR" not in ln]
    assert len(rows) == 2 and rows[0].startswith("| noisy input |")
    assert not any("│" in ln or "━" in ln for ln in lines)


def test_print_table_uses_rich_on_a_terminal():
    import io

    from rcl.reporting import print_table

    class Tty(io.StringIO):
        def isatty(self):
            return True

    buf = Tty()
    print_table("T", [{"method": "a", "psnr": 30.0, "ssim": 0.9}], file=buf)
    assert "30.00" in buf.getvalue() and "| method |" not in buf.getvalue()
    plain = io.StringIO()
    print_table("T", [{"method": "a", "psnr": 30.0, "ssim": 0.9}], file=plain)
    assert plain.getvalue() == "T\n\n| method | PSNR (dB) | SSIM |\n|---|---:|---:|\n| a | 30.00 | 0.9000 |\n"


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "rcl", "evaluate", "x.safetensors", "--data", ".", "--seed", "1e23"],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "--seed" in res.stderr


def test_rerun_into_the_input_folder_continues_with_skip_existing(data, ckpt):
    """`-o DATA --suffix _r` twice: the second run (with --skip-existing) takes the first run's outputs
    for outputs, not inputs, and continues; without --skip-existing it still refuses."""
    args = ["restore", str(ckpt), str(data), "-o", str(data), "--suffix", "_r"]
    assert runner.invoke(app, args).exit_code == 0
    (data / "im1_r.png").unlink()  # interrupted before the second output
    kept = {n: _stat(data / n) for n in ("im0_r.png", "im2_r.png")}
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "would overwrite an input" in res.output
    res = runner.invoke(app, args + ["--skip-existing"])
    assert res.exit_code == 0, res.output
    assert "skipped 2" in res.output and "im1_r.png" in res.output and "im0_r_r" not in res.output
    assert {n: _stat(data / n) for n in kept} == kept
    assert sorted(p.name for p in data.iterdir()) == ["im0.png", "im0_r.png", "im1.png", "im1_r.png", "im2.png",
                                                      "im2_r.png"]
    res = runner.invoke(app, args + ["--skip-existing"])  # everything done: nothing to do, no error
    assert res.exit_code == 0 and "skipped 3" in res.output


def _one_error_line(res):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_too_long_output_name_is_refused_before_any_output(data, ckpt, tmp_path, monkeypatch):
    long_input = data / ("b" * 240 + ".png")
    write_image(long_input, torch.rand(1, 24, 28))
    out = tmp_path / "out"
    # a --suffix that makes one output name too long for the file system: refused naming it, nothing written
    line = _one_error_line(runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(out),
                                               "--suffix", "_restored_suffix"]))
    assert "--suffix" in line and long_input.name in line and "limit" in line
    assert not out.exists() or not any(out.iterdir())
    # an input whose own name is too long for the output's file system (limit lowered here): names the input
    import rcl.cli.common as common

    monkeypatch.setattr(common, "name_max", lambda folder: 100)
    line = _one_error_line(runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(out)]))
    assert str(long_input) in line and "rename the input" in line
    assert not out.exists() or not any(out.iterdir())
    monkeypatch.undo()
    res = runner.invoke(app, ["restore", str(ckpt), str(data), "-o", str(out)])  # fits: restores all four
    assert res.exit_code == 0, res.output
    assert len(list(out.iterdir())) == 4


def test_too_long_checkpoint_name_is_refused_before_training(data, tmp_path):
    out = tmp_path / ("m" * 260 + ".safetensors")
    line = _one_error_line(runner.invoke(app, ["pretrain", str(data), "-o", str(out)] + TINY))
    assert "--out" in line and "limit" in line
    assert list(tmp_path.iterdir()) == [data]


TINY_FT = ["--steps", "2", "--width", "4", "--depth", "1", "--crop-size", "16"]


def test_finetune_with_noisy_pairs_records_real_noise(tmp_path):
    from rcl.checkpoint import load_checkpoint

    g = torch.Generator().manual_seed(0)
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    for i in range(2):
        img = torch.rand(1, 24, 24, generator=g)
        write_image(clean / f"{i}.png", img)
        write_image(noisy / f"{i}.png", (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1))
    for extra, name in (([], "a"), (["--noise", "real"], "b")):
        out = tmp_path / f"{name}.safetensors"
        res = runner.invoke(app, ["finetune", str(clean), "-o", str(out), "--noisy", str(noisy), *TINY_FT, *extra])
        assert res.exit_code == 0, res.output
        assert load_checkpoint(out)[1]["noise"] == "real"


def test_task_options_for_their_own_task_still_work(tmp_path):
    """Given for the task that takes it, a task option works; its default equals the option given
    explicitly (so valid runs are unchanged)."""
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(0)
    rgb = tmp_path / "rgb"
    for i in range(2):
        write_image(rgb / f"{i}.png", torch.rand(3, 40, 40, generator=g))
    outs = {}
    for name, extra in (("jdd", ["--task", "jdd"]), ("jdd_rggb", ["--task", "jdd", "--pattern", "rggb"]),
                        ("sr", ["--task", "sr"]), ("sr2", ["--task", "sr", "--scale", "2"])):
        outs[name] = tmp_path / f"{name}.safetensors"
        res = runner.invoke(app, ["finetune", str(rgb), "-o", str(outs[name]), *TINY_FT, *extra])
        assert res.exit_code == 0, res.output
    for a, b in (("jdd", "jdd_rggb"), ("sr", "sr2")):
        wa, wb = load_file(str(outs[a])), load_file(str(outs[b]))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    res = runner.invoke(app, ["pretrain", str(rgb), "-o", str(tmp_path / "p.safetensors"), "--task", "jdd",
                              "--pattern", "bggr", *TINY_FT])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("shape, culprit", [((3, 24, 24), "3 channel(s), but its clean image"),
                                            ((1, 24, 32), "32×24 px, but its clean image")])
def test_finetune_pairs_name_a_channel_or_size_mismatch(tmp_path, shape, culprit):
    """A noisy/clean pair that differs is refused naming the noisy file and what differs."""
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    for i in range(2):
        write_image(clean / f"{i}.png", torch.rand(1, 24, 24))
        write_image(noisy / f"{i}.png", torch.rand(*shape))
    res = runner.invoke(app, ["finetune", str(clean), "-o", str(tmp_path / "m.safetensors"), "--noisy", str(noisy),
                              *TINY_FT])
    assert res.exit_code == 2, res.output
    assert culprit in res.output and str(noisy / "0.png") in res.output
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("extra, why", [([], "2 steps < 2 × --val-every 250"),
                                        (["--val-every", "1"], "2 labelled image(s) < 10")])
def test_finetune_says_why_validation_did_not_run(tmp_path, extra, why):
    data = tmp_path / "clean"
    for i in range(2):
        write_image(data / f"{i}.png", torch.rand(1, 24, 24))
    res = runner.invoke(app, ["finetune", str(data), "-o", str(tmp_path / "m.safetensors"), *TINY_FT, *extra])
    assert res.exit_code == 0, res.output
    assert f"no validation ({why}): the last step's weights" in res.output


@pytest.mark.parametrize("how", ["symlink", "copy"])
@pytest.mark.parametrize("command", ["finetune", "evaluate"])
def test_pairs_of_a_clean_image_with_itself_are_refused(tmp_path, how, command):
    """A 'noisy' folder of links to (or copies of) the clean images holds no noisy image."""
    import shutil

    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    noisy.mkdir()
    for i in range(2):
        write_image(clean / f"{i}.png", torch.rand(1, 24, 24))
        if how == "symlink":
            (noisy / f"{i}.png").symlink_to(clean / f"{i}.png")
        else:
            shutil.copy(clean / f"{i}.png", noisy / f"{i}.png")
    out = tmp_path / "m.safetensors"
    args = (["finetune", str(clean), "-o", str(out), "--noisy", str(noisy), *TINY_FT] if command == "finetune" else
            ["evaluate", "pretrained:gray", "--noisy", str(noisy), "--clean", str(clean)])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert ("is the same file as its clean image" if how == "symlink" else "identical to its clean image") in res.output
    assert str(noisy / "0.png") in res.output and not out.exists()


@pytest.mark.parametrize("command", ["finetune", "evaluate"])
def test_rgba_file_among_gray_noisy_images_is_named_without_a_warning_first(tmp_path, command):
    """An RGBA file in a folder of grayscale noisy images: the one error line names the RGBA file
    (not the next ordinary one), and no 'alpha channel dropped' warning comes before it."""
    import numpy as np
    from PIL import Image

    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    noisy.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(clean / f"{i}.png", torch.rand(1, 24, 24))
        if i == 0:
            Image.fromarray(rng.integers(0, 256, (24, 24, 4), dtype=np.uint8), mode="RGBA").save(noisy / "0.png")
        else:
            write_image(noisy / f"{i}.png", torch.rand(1, 24, 24))
    out = tmp_path / "m.safetensors"
    args = (["finetune", str(clean), "-o", str(out), "--noisy", str(noisy), *TINY_FT] if command == "finetune" else
            ["evaluate", "pretrained:gray", "--noisy", str(noisy), "--clean", str(clean)])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert str(noisy / "0.png") in res.output and "has 3 channel(s)" in res.output
    assert "alpha" not in res.output and res.output.count("error:") == 1
    assert not out.exists()


def test_evaluate_refuses_a_pair_identical_at_8_bits(tmp_path):
    """A 16-bit 'noisy' image that is its 8-bit clean image ×257 + 1 scores an infinite PSNR: refused."""
    import numpy as np
    import tifffile

    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    noisy.mkdir()
    clean.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        c = rng.integers(0, 255, (24, 24), dtype=np.uint8)
        tifffile.imwrite(clean / f"{i}.tif", c)
        tifffile.imwrite(noisy / f"{i}.tif", c.astype(np.uint16) * 257 + 1)
    res = runner.invoke(app, ["evaluate", "pretrained:gray", "--noisy", str(noisy), "--clean", str(clean)])
    assert res.exit_code == 2, res.output
    assert f"{noisy / '0.tif'}: identical to its clean image {clean / '0.tif'} at 8-bit precision" in res.output


@pytest.mark.parametrize("command", ["finetune", "evaluate"])
def test_warnings_of_one_folder_wait_for_the_other_folders_check(tmp_path, command):
    """RGBA clean images (alpha dropped: a warning each) and a noisy folder that mixes channel
    counts: the one error line comes alone."""
    import numpy as np
    from PIL import Image

    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    clean.mkdir()
    noisy.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 24, 4), dtype=np.uint8), mode="RGBA").save(clean / f"{i}.png")
        write_image(noisy / f"{i}.png", torch.rand(1 if i == 1 else 3, 24, 24))
    out = tmp_path / "m.safetensors"
    args = (["finetune", str(clean), "-o", str(out), "--noisy", str(noisy), *TINY_FT] if command == "finetune" else
            ["evaluate", "pretrained:colour", "--noisy", str(noisy), "--clean", str(clean)])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert f"{noisy / '1.png'}: has 1 channel(s)" in res.output
    assert "alpha" not in res.output and res.output.count("error:") == 1
