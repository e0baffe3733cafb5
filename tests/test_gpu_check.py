"""benchmarks/gpu_check.py: its smoke run on the CPU writes the report and the JSON, and its full
mode refuses to run without a CUDA GPU."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
SECTIONS = ["# GPU check", "## Machine", "## Command", "## What was measured", "## GPU tests (`pytest -m gpu`)",
            "## Training speed", "## Supervised denoiser on BSD68 (σ = 25)", "## Timings"]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke_run_writes_report_and_json(tmp_path):
    md, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(md), "--json", str(js)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = md.read_text()
    positions = [text.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in positions), [s for s, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions)
    assert "Smoke run on the CPU" in text
    assert "python benchmarks/gpu_check.py --smoke --out" in text  # the exact command
    rep = json.loads(js.read_text())
    assert rep["smoke"] is True and rep["machine"]["device"].startswith("cpu")
    pt = rep["pytest"]
    assert pt["failed"] == 0 and pt["errors"] == 0, pt["problems"]
    assert pt["passed"] + pt["skipped"] >= 1
    speed = rep["speed"]
    assert len(speed) == 8
    assert {(r["method"], r["precision"]) for r in speed} == {(m, p) for m in ("rcl", "supervised")
                                                              for p in ("fp32", "bf16")}
    assert all(r["steps_per_s"] > 0 and len(r["windows_steps_per_s"]) == 2 for r in speed)
    sup = rep["supervised"]
    assert sup["steps"] == 2 and sup["test_images"] == 2
    assert math.isfinite(sup["psnr"]) and 0 < sup["ssim"] <= 1
    assert set(rep["timings"]) >= {"pytest -m gpu", "supervised: BSD68 evaluation"}


def test_synthetic_data_loads_as_the_project_layout(tmp_path):
    mod = _module()
    root = mod.synthetic_data(tmp_path / "data", n_train=3, n_test=2)
    train, test = mod.load_data(root, mod.settings(smoke=False))
    assert (len(train), len(test)) == (3, 2)
    assert train.channels == test.channels == 1
    assert train.min_side() >= 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_full_mode_without_cuda_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "gpu.md"), "--json",
                           str(tmp_path / "gpu.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "CUDA is not available" in lines[0]
    assert not (tmp_path / "gpu.md").exists() and not (tmp_path / "gpu.json").exists()
