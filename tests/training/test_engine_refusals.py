"""Bad uses of the engine's options through the CLI (found by an adversarial review): one
`error:` line, the right exit status, and no file of the user's touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = ["--crop-size", "16", "--width", "4", "--depth", "1", "--no-progress", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("refusal-data")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((40, 44)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def rcl(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rcl", *args], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout)


def _one_error(res: subprocess.CompletedProcess, *words: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_the_state_path_never_replaces_an_input(data, tmp_path):
    pre = tmp_path / "ft.state.safetensors"  # a checkpoint whose name is the state path of -o ft.safetensors
    assert rcl("pretrain", str(data), "--steps", "2", "--batch-images", "2", *TINY, "-o", str(pre)).returncode == 0
    before = pre.read_bytes()
    res = rcl("finetune", str(data), "--steps", "2", "--batch-size", "2", *TINY, "--init", str(pre),
              "-o", str(tmp_path / "ft.safetensors"), "--save-every", "1", "--overwrite")
    _one_error(res, "would overwrite an input file")
    assert pre.read_bytes() == before and not (tmp_path / "ft.safetensors").exists()


def test_log_and_state_path_collide(data, tmp_path):
    res = rcl("pretrain", str(data), "--steps", "2", "--batch-images", "2", *TINY, "-o", str(tmp_path / "a.safetensors"),
              "--save-every", "1", "--log", str(tmp_path / "a.state.safetensors"))
    _one_error(res, "--log", "training state")


def _state(data: Path, tmp_path: Path, *extra: str) -> Path:
    """A state saved after a few steps (SIGTERM) of a pre-training with ``extra`` options."""
    out = tmp_path / "r.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "rcl", "pretrain", str(data), "--steps", "4000", "--batch-images",
                             "2", *TINY, "-o", str(out), "--save-every", "100000", "--log-every", "1", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        for line in proc.stderr:
            if "step 3/" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = tmp_path / "r.state.safetensors"
    assert proc.returncode == 143 and state.exists()
    return state


def test_resume_refuses_other_noise_pixels_or_precision(data, tmp_path):
    state = _state(data, tmp_path, "--noise", "gaussian:5-50")
    common = ["pretrain", str(data), "--steps", "4000", "--batch-images", "2", *TINY, "--save-every", "100000",
              "--resume", str(state), "-o", str(tmp_path / "other.safetensors")]
    for extra in (["--noise", "gaussian:25"], ["--noise", "real"], ["--noise", "gaussian:5-50", "--precision", "bf16"]):
        _one_error(rcl(*common, *extra), "another run")
    # the same names and sizes, other pixels
    other = tmp_path / "other-data"
    other.mkdir()
    for p in sorted(data.iterdir()):
        a = np.asarray(Image.open(p)).copy()
        a[0, 0] ^= 1
        Image.fromarray(a).save(other / p.name)
    common[1] = str(other)
    _one_error(rcl(*common, "--noise", "gaussian:5-50"), "another run")


def test_resume_from_elsewhere_keeps_the_files_it_did_not_write(data, tmp_path):
    state = _state(data, tmp_path)
    moved = tmp_path / "elsewhere.state.safetensors"
    state.rename(moved)
    precious = tmp_path / "r.state.safetensors"
    precious.write_text("precious")
    # --save-every would write over a file that is not the resumed state: refused without --overwrite
    res = rcl("pretrain", str(data), "--steps", "4000", "--batch-images", "2", *TINY, "--save-every", "100000",
              "--resume", str(moved), "-o", str(tmp_path / "r.safetensors"))
    _one_error(res, "--overwrite")
    assert precious.read_text() == "precious"


@pytest.mark.parametrize("delay", [1.6, 2.2])
def test_sigterm_around_the_start_of_training_exits_143(data, tmp_path, delay):
    """SIGTERM once the CLI runs (before or just after the first step) ends with status 143 and
    one `error: stopped by SIGTERM` line (before the handlers are installed, while Python imports
    torch, the default action ends the process by the signal, writing nothing)."""
    proc = subprocess.Popen([sys.executable, "-m", "rcl", "pretrain", str(data), "--steps", "50", "--batch-images",
                             "2", *TINY, "-o", str(tmp_path / "m.safetensors")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == -signal.SIGTERM:
        pytest.skip("the signal came while Python was still importing (this machine is slow)")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM") and "Traceback" not in err
    assert not (tmp_path / "m.safetensors").exists()


def test_threads_and_compile_are_checked_first(data, tmp_path):
    res = rcl("pretrain", str(data), "--steps", "2", *TINY[:-4], "--threads", "99999", "-o", str(tmp_path / "t.safetensors"))
    _one_error(res, "--threads")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    res = rcl("pretrain", str(data), "--steps", "2", *TINY, "--compile", "-o", str(tmp_path / "c.safetensors"),
              env=_env(PATH=str(bare), CXX=""))
    _one_error(res, "--compile", "C++ compiler")


def test_a_worker_that_finds_no_readable_image_prints_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):  # valid headers, broken pixel data
        p = bad / f"b{i}.png"
        Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(p)
        raw = p.read_bytes()
        p.write_bytes(raw[:60] + b"\0" * (len(raw) - 60))
    res = rcl("pretrain", str(bad), "--steps", "3", "--batch-images", "2", *TINY, "--dataset", "files",
              "--workers", "1", "-o", str(tmp_path / "w.safetensors"))
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("error")]
    # RCL needs 2 distinct images: it stops at the second corrupt file found (a method content with
    # one image would go on to the third and report that none of the 3 can be decoded)
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert "cannot be decoded" in lines[0] and "at most 1 of the 3 images can be, fewer than the 2" in lines[0], lines
    assert "Traceback" not in res.stderr and not (tmp_path / "w.safetensors").exists()
