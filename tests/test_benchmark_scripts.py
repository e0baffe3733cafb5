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
