"""Peak memory and wall time of `rcl denoise` on a 24-megapixel 16-bit RGB photo, without --tile.

Creates a 6000×4000 16-bit RGB image (TIFF with tifffile; optionally a 16-bit PNG with pypng,
timing its write and read), saves an untrained default RGB checkpoint, runs
``rcl denoise CKPT IMG -o OUT`` in a subprocess N times per format and records the child's peak
RSS (``os.wait4`` rusage, i.e. ru_maxrss of that child alone) and wall time, plus a coarse RSS
timeline (/proc sampling every 50 ms). With ``--phases`` it also runs the CLI's steps in one
separate process (load, read, auto_tile, predict, write) and reports the RSS before and the
peak during each step, which tells where the memory goes. The tile size and the estimate that
``auto_tile`` used are reported too.

    OMP_NUM_THREADS=2 python benchmarks/restore_memory.py docs/restore_memory.json --runs 3 --phases

Results: docs/benchmarks.md ("Restoring a 24-megapixel photo").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

H, W = 4000, 6000


def _rss_of(pid: int | str) -> int:
    """Resident set size (bytes) of a process, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler:
    """Samples a process's RSS in a thread (every ``dt`` s) until stopped."""

    def __init__(self, pid: int | str, dt: float = 0.05):
        self.pid, self.dt, self.samples = pid, dt, []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, _rss_of(self.pid)))
            self._stop.wait(self.dt)

    def peak_since(self, t: float) -> int:
        return max((r for s, r in self.samples if s >= t), default=0)

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def stop(self):
        self._stop.set()
        self._thread.join()


def make_image(folder: Path, fmt: str) -> tuple[Path, dict]:
    import numpy as np

    rng = np.random.default_rng(0)
    # a smooth gradient plus noise: realistic enough for a codec, and every value in 16 bits
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([xx / W, yy / H, (xx + yy) / (W + H)], axis=-1)
    img = np.clip(base * 50000 + rng.normal(0, 3000, size=base.shape).astype(np.float32), 0, 65535).astype(np.uint16)
    del base, yy, xx
    path = folder / f"photo24mp.{fmt}"
    t = time.perf_counter()
    if fmt == "tif":
        import tifffile

        tifffile.imwrite(str(path), img)
    else:
        import png

        png.from_array(img.reshape(H, -1), "RGB;16").save(str(path))
    info = {"write_s": round(time.perf_counter() - t, 2), "bytes": path.stat().st_size}
    # read time with rcl's reader, in a fresh process (memory and time of the reader alone)
    code = ("import time; from rcl.data.io import read_image; t = time.perf_counter(); "
            f"img, info = read_image({str(path)!r}); print(time.perf_counter() - t)")
    proc, res = measured([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    seconds = float(proc.communicate()[0].split()[-1])
    peak = json.loads(res.read_text())["maxrss_kib"]
    res.unlink()
    info.update(read_s=round(seconds, 2), read_process_peak_rss_mib=round(peak / 1024))
    return path, info


# A child's ru_maxrss includes the RSS high-water mark of the process it was vfork()ed from (the
# kernel carries it over at exec), so children are started from this tiny launcher, never from
# the benchmark process itself (which holds torch and the image: ~1.8 GB at its peak).
LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}, fh)
"""


def measured(cmd: list[str], **popen) -> tuple[subprocess.Popen, Path]:
    """Start ``cmd`` under the launcher; its peak RSS lands in the returned JSON file."""
    fd, res = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    return subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, res, *cmd], **popen), Path(res)


def run_cli(ckpt: Path, img: Path, out: Path, env: dict) -> dict:
    """One `rcl denoise` run: wall time, peak RSS (wait4 in a launcher), RSS timeline (VmRSS
    samples of the child) and its stdout lines with times."""
    rcl = Path(sys.executable).parent / "rcl"  # this Python's console script (not a pyenv shim)
    rcl = [str(rcl)] if rcl.exists() else [shutil.which("rcl") or "rcl"]
    cmd = [*rcl, "denoise", str(ckpt), str(img), "-o", str(out), "--overwrite"]
    t0 = time.perf_counter()
    launcher, res_path = measured(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    child = None
    while child is None and launcher.poll() is None:  # the launcher's only child: rcl
        kids = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
        child = (kids.read_text().split() or [None])[0] if kids.exists() else None
        time.sleep(0.005)
    sampler = Sampler(child or launcher.pid)
    proc = launcher
    lines = []

    def reader():
        for line in proc.stdout:
            lines.append((round(time.perf_counter() - t0, 2), line.rstrip()))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop()
    th.join()
    res = json.loads(res_path.read_text())
    res_path.unlink()
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n" + "\n".join(l for _, l in lines))
    step = max(1, len(sampler.samples) // 300)
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(res["maxrss_kib"] / 1024),
            "sampled_peak_rss_mib": round(max((r for _, r in sampler.samples), default=0) / 2**20),
            "output": lines, "rss_timeline_mib": [(round(t, 2), round(r / 2**20)) for t, r in sampler.samples[::step]]}


def phases(ckpt: str, img: str, out: str) -> dict:
    """The CLI's steps in this process, with the RSS before and the peak RSS during each."""
    sampler = Sampler("self", dt=0.01)
    res, last = {}, [sampler.now()]

    def mark(name):
        t = sampler.now()
        time.sleep(0.03)  # let the sampler see the state after the step
        res[name] = {"seconds": round(t - last[0], 2), "peak_rss_mib": round(sampler.peak_since(last[0]) / 2**20),
                     "rss_after_mib": round(_rss_of("self") / 2**20)}
        last[0] = sampler.now()

    import torch

    from rcl.checkpoint import load_checkpoint
    from rcl.data.io import read_image, write_image
    from rcl.evaluation.inference import auto_tile, predict
    mark("import torch + rcl")
    model, _ = load_checkpoint(ckpt)
    mark("load checkpoint")
    x, info = read_image(img)
    mark("read_image")
    tile = auto_tile(model, (1, *x.shape))
    mark("auto_tile (probe)")
    y = predict(model, x, tile=tile)
    mark("predict")
    del x
    mark("del input")
    write_image(Path(out) / Path(img).name, y, info.bit_depth)
    mark("write_image")
    sampler.stop()
    return {"tile": tile, "threads": torch.get_num_threads(), "steps": res}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json_out", type=Path, nargs="?", help="where to write the results (JSON)")
    ap.add_argument("--runs", type=int, default=3, help="CLI runs per format (median reported)")
    ap.add_argument("--formats", default="tif,png", help="comma-separated: tif, png (pypng, slow)")
    ap.add_argument("--phases", action="store_true", help="also break the memory down by step (one run)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the image/checkpoint here (default: a temp dir)")
    ap.add_argument("--_phases", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._phases:
        print(json.dumps(phases(*args._phases)))
        return
    if args.json_out is None:
        ap.error("json_out is required")

    import torch

    from rcl.checkpoint import save_checkpoint
    from rcl.evaluation.inference import (tiled_inference_bytes, auto_tile, default_inference_bytes, inference_bytes,
                                          tile_overlap)
    from rcl.models import ModelConfig, build_model

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(tmp.name if tmp else args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(in_channels=3, out_channels=3)
    torch.manual_seed(0)
    model = build_model(cfg)
    ckpt = save_checkpoint(work / "untrained_rgb.safetensors", model, cfg)
    shape = (1, 3, H, W)
    tile = auto_tile(model, shape)
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if l.startswith("Model name")), platform.processor())
    result = {
        "image": f"{W}×{H} RGB, 16-bit", "model": cfg.model_dump(), "command": "rcl denoise CKPT IMG -o OUT",
        "cpu": cpu, "cpus": os.cpu_count(), "OMP_NUM_THREADS": env["OMP_NUM_THREADS"], "torch": torch.__version__,
        "python": platform.python_version(), "runs": args.runs,
        "budget_bytes": default_inference_bytes(), "auto_tile": tile, "overlap": tile_overlap(model),
        "estimate_whole_mib": round(inference_bytes(model, shape) / 2**20),
        "estimate_tiled_mib": round(tiled_inference_bytes(model, shape, tile) / 2**20) if tile else None,
        "formats": {},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "formats"}), flush=True)
    for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
        path, info = make_image(work, fmt)
        print(fmt, info, flush=True)
        runs = []
        for k in range(args.runs):
            r = run_cli(ckpt, path, work / "out", env)
            print(fmt, k, r["wall_s"], "s", r["peak_rss_mib"], "MiB", flush=True)
            runs.append(r)
        result["formats"][fmt] = {
            **info, "median_wall_s": statistics.median(r["wall_s"] for r in runs),
            "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
            "max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "wall_s": [r["wall_s"] for r in runs], "peak_rss_mib": [r["peak_rss_mib"] for r in runs],
            "cli_output": runs[0]["output"], "rss_timeline_mib": runs[0]["rss_timeline_mib"],
        }
        if args.phases and fmt == "tif":
            proc, res = measured([sys.executable, __file__, "--_phases", str(ckpt), str(path), str(work / "out")],
                                 stdout=subprocess.PIPE, text=True, env=env)
            result["phases"] = json.loads(proc.communicate()[0].strip().splitlines()[-1])
            result["phases"]["process_peak_rss_mib"] = round(json.loads(res.read_text())["maxrss_kib"] / 1024)
            res.unlink()
            print(json.dumps(result["phases"], indent=1), flush=True)
        path.unlink()
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.json_out}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
