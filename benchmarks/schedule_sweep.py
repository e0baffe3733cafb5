"""Which network and schedule converge best per CPU-minute? Supervised denoising on a validation split.

Issue: every network rcl trained was below BM3D because its budget was tiny. This script chooses
the default network (arch, width, depth) and schedule (crop, batch, learning rate, steps) by
**validation PSNR per CPU-minute**, never on a test set:

* data: the clean training folder (Train400), all labelled (100 %); ``fit`` holds out 10 % of it
  (40 images, seeded) as the validation split (:mod:`rcl.training.validation`);
* noise: the training noise (default ``gaussian:5-50``, blind), fresh per crop; the validation
  images get one fixed realisation each, seeded by name (the evaluation protocol);
* each candidate trains in its own subprocess on **one thread** for a fixed CPU-time budget: a
  short probe measures its CPU seconds per step, and the run takes ``budget / that`` steps on a
  full cosine schedule; validation every 1/12 of the run (its CPU time is not counted);
* per candidate: the validation curve (step, CPU seconds, PSNR), the best PSNR, and the gain over
  the last quarter of the run (the plateau criterion: < 0.05 dB).

Results go to ``--out`` as JSON lines, one per finished candidate (resumable: finished candidates
are skipped when rerun). ``--jobs 2`` runs two single-thread candidates at once on 2 cores (CPU
time, not wall time, is the budget, so the two barely disturb each other's numbers).

    python benchmarks/schedule_sweep.py --data ../shared/data/train/Train400 --budget 720 --jobs 2 \\
        --out benchmarks/schedule_sweep.jsonl
    python benchmarks/schedule_sweep.py --smoke --data DIR --out /tmp/s.jsonl   # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CANDIDATES = {
    # name: (model fields, fine-tuning config fields)
    "unet-w16-d3": ({"arch": "unet", "width": 16, "depth": 3}, {"crop_size": 48, "batch_size": 16, "lr": 1e-3}),
    "unet-w16-d3-lr2e-3": ({"arch": "unet", "width": 16, "depth": 3}, {"crop_size": 48, "batch_size": 16, "lr": 2e-3}),
    "unet-w16-d3-lr5e-4": ({"arch": "unet", "width": 16, "depth": 3}, {"crop_size": 48, "batch_size": 16, "lr": 5e-4}),
    "unet-w16-d3-crop64-b8": ({"arch": "unet", "width": 16, "depth": 3}, {"crop_size": 64, "batch_size": 8, "lr": 1e-3}),
    "unet-w24-d3": ({"arch": "unet", "width": 24, "depth": 3}, {"crop_size": 48, "batch_size": 16, "lr": 1e-3}),
    "unet-w32-d3": ({"arch": "unet", "width": 32, "depth": 3}, {"crop_size": 48, "batch_size": 16, "lr": 1e-3}),
    "unet-w32-d3-crop64-b8": ({"arch": "unet", "width": 32, "depth": 3}, {"crop_size": 64, "batch_size": 8, "lr": 1e-3}),
    "unet-w16-d3-crop64-b8-lr5e-4": ({"arch": "unet", "width": 16, "depth": 3}, {"crop_size": 64, "batch_size": 8, "lr": 5e-4}),
    "unet-w32-d3-crop64-b8-lr5e-4": ({"arch": "unet", "width": 32, "depth": 3}, {"crop_size": 64, "batch_size": 8, "lr": 5e-4}),
    "unet-w32-d3-crop64-b8-lr2.5e-4": ({"arch": "unet", "width": 32, "depth": 3}, {"crop_size": 64, "batch_size": 8, "lr": 2.5e-4}),
    "unet-w16-d4": ({"arch": "unet", "width": 16, "depth": 4}, {"crop_size": 64, "batch_size": 16, "lr": 1e-3}),
    "dncnn-17": ({"arch": "dncnn", "width": 64, "depth": 17}, {"crop_size": 40, "batch_size": 16, "lr": 1e-3}),
}
# the sweep's own list (docs/benchmarks.md); DnCNN-17: ≈ 2 CPU-s per step, a few hundred steps; the
# later candidates were added for the plateau study (docs/benchmarks.md) and stay out of it
LATER = ("unet-w32-d3-crop64-b8", "unet-w16-d3-crop64-b8-lr5e-4", "unet-w32-d3-crop64-b8-lr5e-4",
         "unet-w32-d3-crop64-b8-lr2.5e-4")
DEFAULT = [n for n in CANDIDATES if n != "dncnn-17" and n not in LATER]

CHILD = r"""
import json, sys, time, math
import torch
torch.set_num_threads(1)
from rcl.data.datasets import load_image_set
from rcl.data.noise import parse_noise_spec
from rcl.methods import Supervised
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training import fit
from rcl.training import validation as V

args = json.loads(sys.argv[1])
clean = load_image_set(args["data"], channels=1)
if args.get("limit"):
    clean = clean.subset(list(range(min(args["limit"], len(clean)))))
noise = parse_noise_spec(args["noise"])
body = ModelConfig(**args["model"], in_channels=1, out_channels=1)
task = DenoiseTask()
base = {**args["cfg"], "seed": 0, "label_fraction": 1.0, "val_every": 0}  # the probe runs without validation

# probe: CPU seconds per step (after 5 warm-up steps), without validation
def timed(steps):
    t = time.process_time()
    fit(task, Supervised, clean, {**base, "steps": steps}, body, noise=noise, progress=False)
    return time.process_time() - t
p = args["probe"]
per_step = (timed(p + 5) - timed(5)) / p
steps = max(12, int(args["budget"] / per_step))
every = max(1, steps // 12)

curve, spent, held = [], {"val": 0.0}, {}
class Timed(V.Validation):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        held["val"] = self  # the validation split, for the evaluation at --eval-noise below
    def __call__(self, model):
        t = time.process_time()
        score = super().__call__(model)
        spent["val"] += time.process_time() - t
        curve.append([self._step, time.process_time() - t0 - spent["val"], score])
        return score
    def due(self, step, steps):
        self._step = step
        return super().due(step, steps)
V.Validation = Timed
t0, w0 = time.process_time(), time.perf_counter()
res = fit(task, Supervised, clean, {**base, "steps": steps, "val_every": every}, body, noise=noise, progress=False)
cpu = time.process_time() - t0 - spent["val"]
last_q = [c for c in curve if c[0] >= 0.75 * steps]
gain = curve[-1][2] - min(last_q, key=lambda c: c[0])[2] if len(last_q) > 1 else float("nan")
extra = {}
if args.get("eval_noise"):  # the kept (best) network, and BM3D (σ known), on the same validation split
    from rcl.evaluation.bm3d_baseline import bm3d_denoiser
    from rcl.evaluation.protocol import evaluate, model_denoiser
    v = held["val"]
    den = {"net": model_denoiser(res.model), **({"bm3d": bm3d_denoiser()} if args.get("bm3d") else {})}
    r, _ = evaluate(den, v.clean, parse_noise_spec(args["eval_noise"]), v.seed, task=task)
    extra = {"eval_noise": args["eval_noise"], "eval_psnr": r["net"].mean("psnr"),
             **({"bm3d_psnr": r["bm3d"].mean("psnr")} if "bm3d" in r else {})}
print(json.dumps({**extra, "per_step_cpu_s": per_step, "steps": steps, "val_every": every, "cpu_s": cpu,
                  "wall_s": time.perf_counter() - w0, "curve": curve, "best_psnr": res.best_psnr,
                  "best_step": res.best_step, "final_psnr": curve[-1][2], "last_quarter_gain_db": gain,
                  "n_train": len(res.labelled), "n_val": len(res.validation),
                  "params": sum(p.numel() for p in res.model.parameters())}))
"""


def main() -> int:
    from rcl.benchmark.report import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.error = lambda message: (print(f"error: {message}", file=sys.stderr), sys.exit(2))  # one line
    ap.add_argument("--data", required=True, help="clean training folder (Train400)")
    ap.add_argument("--out", required=True, help="JSON lines, one per finished candidate (resumable)")
    ap.add_argument("--budget", type=float, default=720.0, help="CPU seconds of training per candidate")
    ap.add_argument("--noise", default="gaussian:5-50")
    ap.add_argument("--candidates", default=",".join(DEFAULT), help="comma-separated names")
    ap.add_argument("--jobs", type=int, default=1, help="candidates run at once (one thread each)")
    ap.add_argument("--probe", type=int, default=40, help="steps timed to size each run")
    ap.add_argument("--eval-noise", default=None,
                    help="also score the kept network on the validation split at this noise (e.g. gaussian:25)")
    ap.add_argument("--bm3d", action="store_true", help="with --eval-noise: BM3D (σ known) on the same split")
    ap.add_argument("--smoke", action="store_true", help="2 candidates, 16 images, a few seconds each")
    args = ap.parse_args()
    names = args.candidates.split(",")
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"error: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    import math

    from rcl.data.noise import parse_noise_spec

    budget, probe, limit = args.budget, args.probe, None
    if args.smoke:
        names, budget, probe, limit = names[:2], 3.0, 2, 16
    problems = []
    if not (math.isfinite(budget) and budget > 0):
        problems.append(f"--budget {budget}: give a positive number of CPU seconds")
    if probe < 1:
        problems.append(f"--probe {probe}: give at least 1 step")
    if args.jobs < 1:
        problems.append(f"--jobs {args.jobs}: give at least 1")
    if not Path(args.data).is_dir():
        problems.append(f"--data {args.data}: no such folder")
    for opt, spec in (("--noise", args.noise), ("--eval-noise", args.eval_noise)):
        try:
            if spec is not None:
                parse_noise_spec(spec)
        except ValueError as exc:
            problems.append(f"{opt} {spec}: {exc}")
    try:  # the CLI's output checks (dangling link or loop, missing folder, special file), before any training
        from rcl.cli.common import UsageError, check_replace, check_writable_target

        check_writable_target(Path(args.out), "--out")
        check_replace(Path(args.out), "--out", overwrite=True)  # an existing results file is appended to
    except (UsageError, RuntimeError) as exc:  # RuntimeError: Path.resolve() on a link loop
        problems.append(str(exc))
    if args.bm3d and args.eval_noise is None:
        problems.append("--bm3d needs --eval-noise (the noise at which BM3D, σ known, is scored)")
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    out = Path(args.out)
    settings = {"data": str(Path(args.data).resolve()), "budget_cpu_s": budget, "noise": args.noise,
                "smoke": args.smoke, **({"eval_noise": args.eval_noise, "bm3d": args.bm3d} if args.eval_noise else {})}
    done = set()
    if out.exists():
        try:
            records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
            for r in records:
                if r.get("settings") != settings:
                    print(f"error: --out {out}: holds results of other settings ({r.get('settings')}); "
                          f"give another --out", file=sys.stderr)
                    return 2
                done.add(r["name"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            print(f"error: --out {out}: not a results file of this script ({type(exc).__name__})", file=sys.stderr)
            return 2
    todo = [n for n in names if n not in done]
    failed = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple[str, subprocess.Popen, float]] = []
    used: dict[str, dict] = {}
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            name = todo.pop(0)
            model, cfg = CANDIDATES[name]
            if args.smoke:
                cfg = {**cfg, "crop_size": 32, "batch_size": 4}
            used[name] = cfg
            spec = {"data": args.data, "noise": args.noise, "model": model, "cfg": cfg, "budget": budget,
                    "probe": probe, "limit": limit, "eval_noise": args.eval_noise, "bm3d": args.bm3d}
            proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(spec)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            running.append((name, proc, time.time()))
            print(f"started {name}", flush=True)
        time.sleep(1.0)
        for item in list(running):
            name, proc, started = item
            if proc.poll() is None:
                continue
            running.remove(item)
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                print(f"{name}: failed (exit {proc.returncode}): {stderr.strip().splitlines()[-1:]}", flush=True)
                failed += 1
                continue
            rec = {"name": name, "model": CANDIDATES[name][0], "cfg": used[name], "budget_cpu_s": budget,
                   "noise": args.noise, "jobs": args.jobs, "cpu": cpu_name(), "settings": settings,
                   **json.loads(stdout.strip().splitlines()[-1])}
            out.parent.mkdir(parents=True, exist_ok=True)  # a new folder, as the CLI's outputs do
            with out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{name}: {rec['steps']} steps, best {rec['best_psnr']:.2f} dB at {rec['best_step']}, "
                  f"final {rec['final_psnr']:.2f}, last-quarter gain {rec['last_quarter_gain_db']:+.3f} dB, "
                  f"{rec['cpu_s']:.0f} CPU-s" + (f"; at {rec['eval_noise']}: {rec['eval_psnr']:.2f} dB" +
                                                (f", BM3D {rec['bm3d_psnr']:.2f} dB" if "bm3d_psnr" in rec else "")
                                                if "eval_noise" in rec else ""), flush=True)
    if failed:
        print(f"error: {failed} candidate(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
