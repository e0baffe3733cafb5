"""Resumable training through the CLI: a run killed with SIGKILL at a random step and resumed with
--resume ends with the same weights, bit for bit, as the uninterrupted run; SIGTERM stops within a
step and saves a state; bad states are refused with one line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

STEPS = 160


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume-data")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 52), (48, 48), (36, 60), (50, 44), (44, 40), (56, 38)]):
        Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cmd(kind: str, data: Path, out: Path, *extra: str) -> list[str]:
    common = ["--out", str(out), "--steps", str(STEPS), "--crop-size", "16", "--width", "8", "--depth", "2",
              "--no-progress", "--noise", "gaussian:25", "--threads", "1", "--device", "cpu"]
    size = ["--batch-images", "5"] if kind == "pretrain" else ["--batch-size", "5", "--label-fraction", "0.5"]
    return [sys.executable, "-m", "rcl", kind, str(data), *common, *size, *extra]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    return res


def _state_step(path: Path) -> int:
    try:
        with safe_open(str(path), "pt") as fh:
            return json.loads(fh.metadata()["rcl"])["step"]
    except Exception:  # not written yet (the rename is atomic, so never half-written)
        return 0


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    diff = {k: float((wa[k] - wb[k]).abs().max()) for k in wa if not torch.equal(wa[k], wb[k])}
    assert not diff, f"weights differ after resume: {diff}"


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """Uninterrupted runs (no --save-every)."""
    folder = tmp_path_factory.mktemp("reference")
    outs = {}
    for kind in ("pretrain", "finetune"):
        outs[kind] = folder / f"{kind}.safetensors"
        _run(_cmd(kind, data, outs[kind]))
    return outs


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_sigkill_at_a_random_step_then_resume_is_bit_exact(kind, data, reference, tmp_path):
    seed = int(time.time() * 1e6) % 10_000
    target = random.Random(seed).randrange(12, STEPS - 20)
    out = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    proc = subprocess.Popen(_cmd(kind, data, out, "--save-every", "4", "--log", str(tmp_path / "log.csv")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        deadline = time.time() + 240
        while _state_step(state) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before step {target} (test seed {seed})"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _state_step(state)
    assert 0 < killed_at < STEPS and not out.exists()
    res = _run(_cmd(kind, data, out, "--save-every", "4", "--resume", str(state), "--log", str(tmp_path / "log.csv")))
    assert out.exists() and not state.exists(), res.stderr  # the state is removed once the checkpoint is written
    _same_weights(out, reference[kind])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == STEPS + 1  # the resumed run's log has every step, once


def test_sigterm_stops_within_a_step_and_saves_a_state(data, reference, tmp_path):
    out = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    proc = subprocess.Popen(_cmd("pretrain", data, out, "--save-every", "1000", "--log-every", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        for line in proc.stderr:  # wait until training runs
            if "step 20/" in line:
                break
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped_after = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert stopped_after < 3.0, f"SIGTERM took {stopped_after:.1f} s"
    assert f"--resume {state}" in err and err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM")
    step = _state_step(state)
    assert 20 <= step < STEPS and not out.exists()
    _run(_cmd("pretrain", data, out, "--resume", str(state)))
    _same_weights(out, reference["pretrain"])


def test_resume_refuses_a_state_of_another_run(data, tmp_path):
    out = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    proc = subprocess.Popen(_cmd("pretrain", data, out, "--save-every", "5", "--log-every", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        for line in proc.stderr:
            if "step 10/" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _state_step(state) >= 5
    other = _cmd("pretrain", data, tmp_path / "o.safetensors", "--resume", str(state), "--seed", "1")
    res = subprocess.run(other, capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "another run" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # a checkpoint is not a state
    res = subprocess.run(_cmd("pretrain", data, tmp_path / "p.safetensors", "--resume", str(data / "im0.png")),
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 2 and "not a readable training state" in res.stderr
    # an earlier state where --save-every would write: refused without --resume or --overwrite
    res = subprocess.run(_cmd("pretrain", data, out, "--save-every", "5"), capture_output=True, text=True,
                         env=_env(), timeout=120)
    assert res.returncode == 2 and "--resume" in res.stderr and "--overwrite" in res.stderr


def test_plain_log_lines_and_csv_rows_appear_while_training(data, tmp_path):
    """With stderr not a terminal: plain lines (step, loss, steps/s, ETA; no carriage return) every
    --log-every steps; the --log CSV (its .part while running) grows as training goes (tail -f)."""
    out, log = tmp_path / "pre.safetensors", tmp_path / "pre.csv"
    (tmp_path / "pre.csv.part").write_text("a user's file\n")  # never touched
    proc = subprocess.Popen(_cmd("pretrain", data, out, "--log", str(log), "--log-every", "10"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    rows_seen = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and rows_seen < 5:
            for part in tmp_path.glob("pre.csv.*.part"):
                try:
                    rows_seen = max(rows_seen, len(part.read_text().splitlines()) - 1)
                except FileNotFoundError:  # renamed onto the log meanwhile
                    pass
            time.sleep(0.02)
        assert proc.poll() is None and 5 <= rows_seen < STEPS, "no CSV rows were readable during training"
    finally:
        proc.wait(timeout=300) if proc.poll() is None else None
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if "step " in ln]
    assert [int(ln.split("step ")[1].split("/")[0]) for ln in lines] == list(range(10, STEPS + 1, 10))
    assert all("steps/s" in ln and "ETA" in ln and "loss" in ln for ln in lines)
    assert len(log.read_text().splitlines()) == STEPS + 1 and not list(tmp_path.glob("pre.csv.*.part"))
    assert (tmp_path / "pre.csv.part").read_text() == "a user's file\n"
