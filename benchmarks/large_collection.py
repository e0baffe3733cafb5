"""Peak memory of `rcl pretrain` on a collection larger than memory, decoded from its files.

Generates once (cached in ``--workdir``) a folder of grayscale 8-bit PNGs whose decoded float32
size is over 2 GB (default: 130 images of 2048×2048 = 2.18 GB; smooth random content, which
compresses well and writes fast), then runs, ``--runs`` times,

    python -m rcl pretrain FOLDER --out OUT.safetensors --steps N --no-progress --noise gaussian:25 \\
        --dataset files --workers 2

in a subprocess and samples every 50 ms, from /proc, the resident memory of the whole process tree
(the main process and its DataLoader workers): the sum of VmRSS (what the target is checked on; it
counts the pages the forked workers share with the main process once per process) and the sum of
PSS (shared pages divided among the processes sharing them: the memory the run really holds).

If this version's ``rcl pretrain`` has no ``--dataset`` option yet, a small Python driver does the
same (``open_collection`` + ``fit`` with ``Engine(workers=…)`` + ``save_checkpoint``, the CLI's
defaults); the JSON says which ran. What the in-memory path would need is estimated (3 × the
decoded size: the images, their noisy copy and the crop buffer, plus the file-backed run's main
process), or measured with ``--memory-too``.

    OMP_NUM_THREADS=2 python benchmarks/large_collection.py --workdir /tmp/rcl-large --steps 20 --runs 3
    python benchmarks/large_collection.py --smoke --out /tmp/smoke.json    # 4 small images, 2 steps

Target: median peak RSS (tree, summed) < 1.5 GB.
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
import threading
import time
from pathlib import Path

TARGET_BYTES = 1_500_000_000
GENERATOR_VERSION = 1

DRIVER = """
import sys
from rcl.checkpoint import save_checkpoint
from rcl.data.filebank import open_collection
from rcl.data.noise import parse_noise_spec
from rcl.methods import RCL
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training import Engine, fit

folder, out, steps, mode, workers, noise_spec = sys.argv[1:7]
task, cfg = DenoiseTask(), RCL.Config(steps=int(steps))
images = open_collection(folder, min_size=cfg.crop_size, mode=mode)
noisy = task.pretraining_data(images, parse_noise_spec(noise_spec), cfg.seed)
mcfg = ModelConfig(in_channels=noisy.channels, out_channels=noisy.channels)
res = fit(task, RCL, noisy, cfg, mcfg, progress=False, desc="pretrain (RCL)",
          engine=Engine(device="cpu", workers=int(workers), progress=False))
save_checkpoint(out, res.model, mcfg, stage="pretrain", method=RCL.name, noise=noise_spec,
                training=cfg.model_dump(), n_images=len(images), final_loss=res.history[-1]["loss"])
print(f"wrote {out} ({type(images).__name__}, final loss {res.history[-1]['loss']:.4g})")
"""


# ---------------------------------------------------------------- /proc sampling of a process tree

def _status_kib(pid: int, key: str, name: str = "status") -> int:
    """A ``key: N kB`` field of /proc/PID/<name> in KiB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/{name}") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/PID/task/TID/children)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


class TreeSampler:
    """Samples the summed VmRSS and PSS of a process tree every ``dt`` s, in a thread."""

    def __init__(self, root: int, dt: float = 0.05):
        self.root, self.dt = root, dt
        self.peak_rss = self.peak_pss = self.peak_main_rss = self.max_processes = 0
        self.timeline: list[tuple[float, int, int, int]] = []  # (t, processes, rss KiB, pss KiB)
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            pids = _tree(self.root)
            rss = {p: _status_kib(p, "VmRSS:") for p in pids}
            pss = sum(_status_kib(p, "Pss:", "smaps_rollup") for p in pids)
            total = sum(rss.values())
            live = sum(1 for r in rss.values() if r)
            self.peak_rss, self.peak_pss = max(self.peak_rss, total), max(self.peak_pss, pss)
            self.peak_main_rss = max(self.peak_main_rss, rss.get(self.root, 0))
            self.max_processes = max(self.max_processes, live)
            self.timeline.append((round(time.perf_counter() - self._t0, 2), live, total, pss))
            self._stop.wait(self.dt)

    def stop(self):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- the collection

def generate(folder: Path, n: int, size: int, seed: int = 0) -> dict:
    """``n`` grayscale 8-bit size×size PNGs of smooth random content (a random 9×9 grid of grey
    levels, bicubically enlarged, plus a random gradient), written with fast zlib settings; reused
    when ``folder`` already holds this collection."""
    import numpy as np
    from PIL import Image

    manifest = folder / "manifest.json"
    want = {"version": GENERATOR_VERSION, "n": n, "size": size, "seed": seed}
    names = [f"img{k:04d}.png" for k in range(n)]
    if manifest.exists() and json.loads(manifest.read_text()) == want and all((folder / f).exists() for f in names):
        return {"generated": False, "generate_s": 0.0}
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    for name in names:
        grid = Image.fromarray(rng.uniform(30, 225, (9, 9)).astype(np.float32), "F")
        img = np.asarray(grid.resize((size, size), Image.BICUBIC))
        a, b = rng.uniform(-20, 20, 2).astype(np.float32)
        img = img + a * ramp[:, None] + b * ramp[None, :]
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L").save(folder / name, compress_level=1)
    manifest.write_text(json.dumps(want))
    return {"generated": True, "generate_s": round(time.perf_counter() - t, 1)}


# ---------------------------------------------------------------- runs

def cli_has_dataset_option(env: dict) -> bool:
    """Does this version's `rcl pretrain` take --dataset and --workers?"""
    out = subprocess.run([sys.executable, "-m", "rcl", "pretrain", "--help"], capture_output=True, text=True,
                         env={**env, "COLUMNS": "200"})
    return out.returncode == 0 and "--dataset" in out.stdout and "--workers" in out.stdout


def command(folder: Path, out: Path, steps: int, mode: str, workers: int, use_cli: bool) -> list[str]:
    if use_cli:
        return [sys.executable, "-m", "rcl", "pretrain", str(folder), "--out", str(out), "--steps", str(steps),
                "--no-progress", "--noise", "gaussian:25", "--dataset", mode, "--workers", str(workers), "--overwrite"]
    return [sys.executable, "-c", DRIVER, str(folder), str(out), str(steps), mode, str(workers), "gaussian:25"]


def run_once(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    sampler = TreeSampler(proc.pid)
    output = proc.communicate()[0]
    wall = time.perf_counter() - t0
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed ({proc.returncode}):\n{output}")
    step = max(1, len(sampler.timeline) // 200)
    return {"wall_s": round(wall, 1), "peak_rss_bytes": sampler.peak_rss * 1024, "peak_pss_bytes": sampler.peak_pss * 1024,
            "peak_rss_mib": round(sampler.peak_rss / 1024), "peak_pss_mib": round(sampler.peak_pss / 1024),
            "peak_main_rss_mib": round(sampler.peak_main_rss / 1024), "max_processes": sampler.max_processes,
            "samples": len(sampler.timeline), "output_tail": output.strip().splitlines()[-3:],
            "timeline_t_procs_rss_pss_mib": [(t, n, round(r / 1024), round(p / 1024))
                                             for t, n, r, p in sampler.timeline[::step]]}


def machine(env: dict) -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    mem = None
    try:
        mem = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines()
                       if l.startswith("MemTotal:"))) * 1024
    except (OSError, StopIteration):
        pass
    import torch

    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS"), "memory_bytes": mem, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None,
                    help="cache folder for the generated collection (default: a temporary folder, removed)")
    ap.add_argument("--images", type=int, default=130, help="number of images")
    ap.add_argument("--size", type=int, default=2048, help="side of the square images (px)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per run")
    ap.add_argument("--runs", type=int, default=3, help="runs (the median is reported)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (--workers)")
    ap.add_argument("--memory-too", action="store_true", help="also run and measure the in-memory path (--dataset "
                    "memory; needs about 3× the decoded size)")
    ap.add_argument("--force-driver", action="store_true", help="use the Python driver even if the CLI has --dataset")
    ap.add_argument("--smoke", action="store_true", help="a tiny collection (4 images of 96 px), 2 steps, 1 run")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("large_collection.json"),
                    help="results (JSON)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.size, args.steps, args.runs = 4, 96, 2, 1
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    tmp = tempfile.TemporaryDirectory(prefix="rcl-large-") if args.workdir is None else None
    work = Path(tmp.name if tmp else args.workdir)
    folder = work / f"gray{args.size}x{args.images}"
    gen = generate(folder, args.images, args.size)
    files = sorted(folder.glob("*.png"))
    decoded = sum(4 * args.size * args.size for _ in files)  # grayscale float32
    use_cli = not args.force_driver and cli_has_dataset_option(env)
    out_ckpt = work / "large_collection.safetensors"
    cmd = command(folder, out_ckpt, args.steps, "files", args.workers, use_cli)
    shown = " ".join(cmd) if use_cli else f"python -c DRIVER {' '.join(cmd[3:])}"
    result = {
        "benchmark": "large_collection", "machine": machine(env),
        "collection": {"images": len(files), "size": f"{args.size}×{args.size}", "kind": "grayscale 8-bit PNG",
                       "disk_bytes": sum(f.stat().st_size for f in files), "decoded_float32_bytes": decoded,
                       "decoded_float32_gb": round(decoded / 1e9, 3), **gen},
        "steps": args.steps, "workers": args.workers, "driver": "cli" if use_cli else "python-driver",
        "command": shown, "target_peak_rss_bytes": TARGET_BYTES, "runs": [],
    }
    print(json.dumps({k: result[k] for k in ("machine", "collection", "driver", "command")}), flush=True)
    for k in range(args.runs):
        r = run_once(cmd, env)
        print(f"run {k}: {r['wall_s']} s, peak RSS (tree) {r['peak_rss_mib']} MiB, PSS {r['peak_pss_mib']} MiB, "
              f"main {r['peak_main_rss_mib']} MiB, {r['max_processes']} processes", flush=True)
        result["runs"].append(r)
    rss = statistics.median(r["peak_rss_bytes"] for r in result["runs"])
    result.update(median_peak_rss_bytes=rss, median_peak_rss_mib=round(rss / 2**20),
                  median_peak_pss_mib=round(statistics.median(r["peak_pss_bytes"] for r in result["runs"]) / 2**20),
                  median_wall_s=statistics.median(r["wall_s"] for r in result["runs"]),
                  target_met=rss < TARGET_BYTES)
    main_peak = statistics.median(r["peak_main_rss_mib"] for r in result["runs"]) * 2**20
    result["memory_path"] = {"estimate_bytes": 3 * decoded + main_peak,
                             "estimate": "3 × decoded float32 size (images + noisy copy + crop buffer) + the "
                                         "file-backed run's main-process peak RSS"}
    if args.memory_too:
        r = run_once(command(folder, out_ckpt, args.steps, "memory", 0, use_cli), env)
        print(f"memory path: {r['wall_s']} s, peak RSS {r['peak_rss_mib']} MiB", flush=True)
        result["memory_path"]["measured"] = r
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"median peak RSS {result['median_peak_rss_mib']} MiB (target < {TARGET_BYTES / 1e9:g} GB: "
          f"{'met' if result['target_met'] else 'NOT met'}); wrote {args.out}")
    if tmp:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
