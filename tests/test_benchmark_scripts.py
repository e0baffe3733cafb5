"""The scripts of benchmarks/ run (their smoke modes, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_large_collection_smoke(tmp_path):
    out = tmp_path / "large.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "large_collection.py"), "--smoke", "--workdir",
                           str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    assert res["collection"]["images"] == 4 and res["steps"] == 2 and res["workers"] == 2
    assert res["driver"] in ("cli", "python-driver")
    (run,) = res["runs"]
    assert run["max_processes"] == 3  # the main process and its two DataLoader workers were sampled
    assert 0 < run["peak_pss_bytes"] <= run["peak_rss_bytes"] == res["median_peak_rss_bytes"]
    assert res["machine"]["logical_cpus"] >= 1 and res["memory_path"]["estimate_bytes"] > 0
    assert (tmp_path / "work" / "large_collection.safetensors").exists()


def _sweep(*args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / "schedule_sweep.py"), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_schedule_sweep_smoke_resumes_and_refuses_other_settings(tmp_path):
    import torch

    from rcl.data.io import write_image

    data = tmp_path / "train"
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        write_image(data / f"im{i:02d}.png", torch.rand(1, 40, 40, generator=g))
    out = tmp_path / "sweep.jsonl"
    first = _sweep("--smoke", "--data", str(data), "--out", str(out), tmp_path=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(r["cfg"]["crop_size"] == 32 for r in records)  # what ran, not the full cfg
    assert all(r["curve"] and r["best_psnr"] == max(c[2] for c in r["curve"]) for r in records)
    again = _sweep("--smoke", "--data", str(data), "--out", str(out), tmp_path=tmp_path)
    assert again.returncode == 0 and "started" not in again.stdout  # resumed: nothing left to run
    other = _sweep("--data", str(data), "--out", str(out), "--budget", "5", tmp_path=tmp_path)
    assert other.returncode == 2 and other.stderr.startswith("error: --out") and len(other.stderr.splitlines()) == 1
    for bad in (["--budget", "nan"], ["--probe", "0"], ["--jobs", "0"], ["--noise", "bogus:1"],
                ["--eval-noise", "bogus:1"], ["--bm3d"]):
        res = _sweep("--data", str(data), "--out", str(tmp_path / "x.jsonl"), *bad, tmp_path=tmp_path)
        assert res.returncode == 2 and res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1, bad
    assert not (tmp_path / "x.jsonl").exists()


def test_schedule_sweep_scores_the_kept_network_and_bm3d_at_an_evaluation_noise(tmp_path):
    """--eval-noise gaussian:25 --bm3d: the kept network and BM3D (σ known) on the validation split;
    on smooth images both beat the noisy input (≈ 20.2 dB at σ = 25), and BM3D (σ known) beats a
    network trained for a few steps."""
    import numpy as np
    import torch

    from rcl.data.io import write_image

    data = tmp_path / "train"
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    for i in range(12):
        img = 0.5 + 0.3 * np.sin(2 * np.pi * (xx * (1 + i % 3) + yy * (i % 2)))
        write_image(data / f"im{i:02d}.png", torch.from_numpy(img[None].astype(np.float32)))
    out = tmp_path / "sweep.jsonl"
    res = _sweep("--smoke", "--candidates", "unet-w16-d3", "--data", str(data), "--out", str(out),
                 "--eval-noise", "gaussian:25", "--bm3d", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["eval_noise"] == "gaussian:25" and rec["settings"]["bm3d"] is True
    assert rec["bm3d_psnr"] > 25 and rec["bm3d_psnr"] > rec["eval_psnr"], rec
