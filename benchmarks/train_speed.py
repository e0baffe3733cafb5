"""Training speed before and after the engine, as a paired A/B in one run (docs/benchmarks.md).

Variants, each in its own subprocess, interleaved run by run (A, B, …, then B, A, … on the next
run) so that the load of a shared machine falls on every variant alike:

* ``before``: the tree of ``--before-ref`` (default f476096, the last commit before the engine) in
  a git worktree, the default pre-training (RCL) and fine-tuning (supervised) steps;
* ``after``: this tree, default engine (channels-last, step-seeded draws, one-gather crops);
* ``after-nchw``: this tree with ``Engine(channels_last=False)`` (what the layout alone gives);
* ``after-default-malloc``: this tree with ``Engine(retain_freed_memory=False)`` (glibc's malloc
  left as it is: what :func:`rcl.training.engine.retain_freed_memory` alone gives);
* ``after-compile`` (with ``--compile``): this tree with ``Engine(compile=True)``.

A run times ``--steps`` optimiser steps after ``--warmup`` steps (timestamps of Adam's ``step``,
so set-up and compilation are excluded) of ``fit`` on 64 synthetic
180×180 grayscale images (Train400's size); the workload is pinned to the first release's defaults
(U-Net w16 d3; RCL: 16 images × 2 crops of 48²; supervised: 16 crops of 48²), which later
defaults changed, so that both trees time the same step. It reports steps/s per run, the medians, and the
median of the per-run paired ratios after/before.

    OMP_NUM_THREADS=2 python benchmarks/train_speed.py --runs 7 --json benchmarks/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time, torch
import rcl
from rcl.data.datasets import ImageSet
from rcl.data.noise import GaussianRangeNoise
from rcl.models import ModelConfig
from rcl.tasks import get_task
from rcl.training import fit
from rcl.methods import get_method
variant, kind, warmup, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
images = ImageSet([torch.rand(1, 180, 180, generator=g) for _ in range(64)], [f"{i}.png" for i in range(64)])
stamps = []
orig = torch.optim.Adam.step
def step(self, *a, **k):
    out = orig(self, *a, **k)
    stamps.append(time.perf_counter())
    return out
torch.optim.Adam.step = step
kw = {}
if variant != "before":
    from rcl.training import Engine
    kw["engine"] = Engine(device="cpu", progress=False, log_every=-1, channels_last=variant != "after-nchw",
                          compile=variant == "after-compile",
                          retain_freed_memory=variant != "after-default-malloc")
method = get_method("rcl" if kind == "pretrain" else "supervised")
# the same workload in both trees, pinned: the defaults of later trees differ (fine-tuning 8 crops of 64²)
pin = {"batch_images": 16, "crop_size": 48} if kind == "pretrain" else {"batch_size": 16, "crop_size": 48, "lr": 5e-4}
if "val_every" in method.Config.model_fields:
    pin["val_every"] = 0
cfg = method.Config(steps=warmup + steps, **pin)
noise = GaussianRangeNoise() if kind == "finetune" else None
fit(get_task("denoise"), method, images, cfg, ModelConfig(), noise=noise, progress=False, **kw)
t = stamps[warmup:]
print(json.dumps({"steps_per_s": (len(t) - 1) / (t[-1] - t[0]), "rcl": rcl.__file__}))
"""


def _worktree(ref: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"rcl-before-{ref}"
    if not (path / "src" / "rcl").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                       capture_output=True)
    return path


def _run(variant: str, kind: str, src: Path, args) -> float:
    env = {**os.environ, "PYTHONPATH": str(src / "src"), "OMP_NUM_THREADS": str(args.threads)}
    res = subprocess.run([sys.executable, "-c", WORKER, variant, kind, str(args.warmup), str(args.steps),
                          str(args.threads)], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if res.returncode:
        raise RuntimeError(f"{variant} {kind} failed:\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["rcl"].startswith(str(src)), (variant, out["rcl"])  # the right tree was measured
    return out["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--before-ref", default="f476096")
    ap.add_argument("--compile", action="store_true", help="also measure Engine(compile=True)")
    ap.add_argument("--kinds", default="pretrain,finetune")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="1 run of 3 steps (checks the script runs)")
    args = ap.parse_args()
    if args.smoke:
        args.runs, args.warmup, args.steps = 1, 1, 3
    before = _worktree(args.before_ref)
    variants = {"before": before, "after": ROOT, "after-nchw": ROOT, "after-default-malloc": ROOT}
    if args.compile:
        variants["after-compile"] = ROOT
    kinds = args.kinds.split(",")
    rates: dict[str, dict[str, list[float]]] = {k: {v: [] for v in variants} for k in kinds}
    for r in range(args.runs):
        for kind in kinds:
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for v in order:
                rates[kind][v].append(_run(v, kind, variants[v], args))
            print(f"run {r + 1}/{args.runs} {kind}: " + ", ".join(f"{v} {rates[kind][v][-1]:.2f}" for v in variants),
                  flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    summary = {"machine": {"cpu": cpu, "threads": args.threads, "python": platform.python_version()},
               "command": " ".join([Path(sys.executable).name, "benchmarks/train_speed.py"] + sys.argv[1:]),
               "before_ref": args.before_ref, "warmup": args.warmup, "steps": args.steps, "runs": args.runs,
               "steps_per_s": rates, "median_steps_per_s": {}, "median_paired_ratio_vs_before": {}}
    for kind in kinds:
        summary["median_steps_per_s"][kind] = {v: statistics.median(x) for v, x in rates[kind].items()}
        summary["median_paired_ratio_vs_before"][kind] = {
            v: statistics.median(a / b for a, b in zip(x, rates[kind]["before"]))
            for v, x in rates[kind].items() if v != "before"}
    print(json.dumps({k: summary[k] for k in ("median_steps_per_s", "median_paired_ratio_vs_before")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
