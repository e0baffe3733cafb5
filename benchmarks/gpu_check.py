"""One prepared check of rcl on a CUDA GPU: the GPU tests, training speed, and a supervised denoiser
trained for a fixed wall-clock budget and scored on BSD68 at σ = 25. Sized to finish in about 7
minutes on one data-centre GPU (H200), data loading included.

    python benchmarks/gpu_check.py --data ../shared/data            # writes docs/gpu.md, benchmarks/gpu_check.json
    python benchmarks/gpu_check.py --smoke                          # CPU, seconds, tiny sizes, temp dir

Phases (each timed; the report says what each measures):

1. ``pytest -m gpu`` in a subprocess (the tests that need a CUDA GPU): pass / fail / skip counts.
2. Training speed: steps/s of RCL pre-training and supervised fine-tuning, default U-Net (width 16,
   depth 3) and a large one (width 64, depth 4), default batch and crop, fp32 and bf16: one warm-up,
   a short probe that sizes the timed windows (about 1.5 s each), then the median of 3 windows,
   each one call of the trainer (:func:`rcl.training.train`) between ``torch.cuda.synchronize()``.
3. A fully supervised denoiser (method ``supervised``, label fraction 1, all of Train400, fixed
   Gaussian σ = 25, U-Net width 64 depth 4, batch 64 of 96² crops, Adam lr 1e-3 cosine-decayed,
   bf16): its steps are chosen from a measured steps/s so that training takes about 4 minutes
   (less when the earlier phases ran long: the whole run keeps to ``--budget-seconds``).
4. That network on BSD68 at σ = 25 with the project's evaluation protocol
   (:func:`rcl.evaluation.protocol.evaluate`: fixed-seed noise per file name, PSNR/SSIM on the
   uint8-quantised output). Target ≥ 29.0 dB (DnCNN-S publishes 29.23 dB).

In full mode the device is ``resolve_device("cuda")``: without a CUDA GPU the script prints one
``error:`` line and exits with status 2 (it never falls back to the CPU). Exit status 1: a GPU test
failed or the PSNR target was missed; the report is written either way.

``--smoke`` runs every phase on the CPU in seconds (tiny networks, 2 steps, 2 images) and writes to
a temporary folder unless ``--out`` / ``--json`` are given; without ``--data`` images it generates
a few synthetic ones (smoke mode only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # a checkout without `pip install -e .`: use its sources
    import rcl  # noqa: F401
except ImportError:  # pragma: no cover - depends on the install
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

SIGMA = 25
TARGET_PSNR = 29.0
DNCNN_S_PSNR = 29.23  # Zhang et al., 2017, Table 2: DnCNN-S, BSD68, σ = 25
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"gpu_check [{time.perf_counter() - T0:6.1f} s]: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- settings

def settings(smoke: bool) -> dict:
    """Every size the run uses (smoke: tiny, CPU, seconds)."""
    if smoke:
        return {
            "nets": {"default": {"width": 4, "depth": 1}, "large": {"width": 8, "depth": 2}},
            "pretrain": {"batch_images": 2, "crop_size": 16}, "finetune": {"batch_size": 4, "crop_size": 16},
            "warm_steps": 1, "probe_steps": 1, "window_s": 0.0, "windows": 2, "min_window_steps": 2,
            "max_window_steps": 2,
            "sup_net": {"width": 4, "depth": 1}, "sup_batch": 4, "sup_crop": 16, "sup_probe_steps": 1,
            "sup_min_steps": 2, "sup_max_steps": 2, "n_train": 2, "n_test": 2,
            "pytest_paths": ["tests/training/test_engine.py"], "pytest_timeout": 240,
        }
    return {
        "nets": {"default": {"width": 16, "depth": 3}, "large": {"width": 64, "depth": 4}},
        "pretrain": {}, "finetune": {},  # the configs' defaults (RCL: 16 images × 2 crops of 48²; 16 crops of 48²)
        "warm_steps": 5, "probe_steps": 10, "window_s": 1.5, "windows": 3, "min_window_steps": 10,
        "max_window_steps": 5000,
        "sup_net": {"width": 64, "depth": 4}, "sup_batch": 64, "sup_crop": 96, "sup_probe_steps": 20,
        "sup_min_steps": 100, "sup_max_steps": 200_000, "n_train": None, "n_test": None,
        "pytest_paths": ["tests"], "pytest_timeout": 180,
    }


# ----------------------------------------------------------------------------- machine

def machine(device: torch.device) -> dict:
    import rcl
    from rcl.training import describe_device

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cpu_cores": os.cpu_count(), "platform": platform.platform(), "rcl": rcl.__version__,
            "device": describe_device(device), "git": _git_commit(),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    compute_capability=f"{p.major}.{p.minor}", gpu_count=torch.cuda.device_count(),
                    driver=_nvidia_smi("driver_version"))
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        return out.stdout.strip() + (" (with local changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------- data

def synthetic_data(root: Path, n_train: int = 4, n_test: int = 2) -> Path:
    """A few smooth grayscale PNGs in ``root/train/Train400`` and ``root/test/BSD68`` (smoke mode
    without the real images)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub, n, (h, w) in (("train/Train400", n_train, (48, 56)), ("test/BSD68", n_test, (40, 52))):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        for k in range(n):
            a, b, c = rng.uniform(1, 6, 3)
            img = 0.5 + 0.25 * np.sin(a * xx * 6.28 + b) * np.cos(c * yy * 6.28) + 0.05 * rng.standard_normal((h, w))
            Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(folder / f"synth{k:02d}.png")
    return root


def load_data(data: Path, cfg: dict):
    from rcl.data import load_image_set

    train = load_image_set(data / "train" / "Train400", channels=1, limit=cfg["n_train"])
    test = load_image_set(data / "test" / "BSD68", channels=1, limit=cfg["n_test"])
    return train, test


# ----------------------------------------------------------------------------- phase 1: pytest -m gpu

def run_gpu_tests(paths: list[str], timeout: float, workdir: Path) -> dict:
    xml = workdir / "pytest-gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", *paths,
           f"--junitxml={xml}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    shown = "python -m pytest -q -p no:cacheprovider -m gpu " + " ".join(paths)
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        rc, tail = None, (out.decode(errors="replace") if isinstance(out, bytes) else str(out))[-3000:]
    res = {"command": shown, "returncode": rc, "seconds": time.perf_counter() - t, "timed_out": rc is None,
           "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "problems": [], "skip_reasons": {}, "tail": tail}
    if xml.exists():
        root = ET.parse(xml).getroot()
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            kinds = {child.tag for child in case}
            if "failure" in kinds or "error" in kinds:
                kind = "failed" if "failure" in kinds else "errors"
                res[kind] += 1
                node = case.find("failure") if "failure" in kinds else case.find("error")
                msg = " ".join((node.get("message") or "").split())[:300]
                res["problems"].append(f"{name}: {msg}")
            elif "skipped" in kinds:
                res["skipped"] += 1
                why = " ".join((case.find("skipped").get("message") or "").split())[:200]
                res["skip_reasons"][why] = res["skip_reasons"].get(why, 0) + 1
            else:
                res["passed"] += 1
        for suite in root.iter("testsuite"):  # collection errors have no testcase of their own
            extra = int(suite.get("errors", 0)) - res["errors"]
            if extra > 0:
                res["errors"] += extra
                res["problems"].append(f"{extra} collection error(s): see the output tail")
    if rc == 5 or not any(res[k] for k in ("passed", "failed", "errors", "skipped")):
        res["errors"] += 1
        res["problems"].append("no test marked gpu was collected")
    elif rc != 0 and not (res["failed"] or res["errors"]):  # pytest itself failed (or timed out)
        res["errors"] += 1
        res["problems"].append("pytest timed out" if rc is None else f"pytest exited with status {rc}")
    return res


# ----------------------------------------------------------------------------- phase 2: speed

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runner(method: str, data, method_cfg, body, device: torch.device, noise=None):
    """A network on the device (channels-last, as :func:`rcl.training.fit` prepares it) and the
    method that trains it."""
    from rcl.methods import get_method
    from rcl.models import build_model
    from rcl.tasks import get_task

    torch.manual_seed(0)
    model = build_model(body).to(device, memory_format=torch.channels_last)
    cls = get_method(method)
    return model, cls(data, method_cfg, task=get_task("denoise"), model=model, noise=noise)


def measure_speed(stage: str, method: str, data, method_cfg, body, device, precision, cfg, noise=None) -> dict:
    """Median steps/s of ``cfg['windows']`` timed windows of the trainer, after a warm-up."""
    from rcl.training import Engine, train

    model, runner = _runner(method, data, method_cfg, body, device, noise)
    engine = Engine(device=device, precision=precision, progress=False, log_every=-1, handle_signals=False)
    lr = method_cfg.lr
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed(steps: int, seed: int) -> float:
        _sync(device)
        t = time.perf_counter()
        train(model, runner, steps, lr, seed, progress=False, engine=engine)
        _sync(device)
        return time.perf_counter() - t

    timed(cfg["warm_steps"], 1)  # cuDNN algorithm choice, allocator, first Adam state
    probe = cfg["probe_steps"] / timed(cfg["probe_steps"], 2)
    k = int(min(cfg["max_window_steps"], max(cfg["min_window_steps"], round(probe * cfg["window_s"]))))
    rates = [k / timed(k, 100 + w) for w in range(cfg["windows"])]
    per_step = 2 * runner.layout()[1] if method == "rcl" else method_cfg.batch_size
    med = statistics.median(rates)
    row = {"stage": stage, "method": method, "network": f"U-Net w{body.width} d{body.depth}",
           "params": sum(p.numel() for p in model.parameters()), "precision": precision,
           "batch": (f"{runner.layout()[1]} images × 2 crops" if method == "rcl" else f"{method_cfg.batch_size} crops"),
           "crop": method_cfg.crop_size, "window_steps": k, "windows_steps_per_s": rates, "steps_per_s": med,
           "crops_per_s": med * per_step, "megapixels_per_s": med * per_step * method_cfg.crop_size ** 2 / 1e6,
           "peak_gpu_mib": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None)}
    del model, runner
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


# ----------------------------------------------------------------------------- phase 3 + 4: supervised denoiser

def supervised_denoiser(train_set, test_set, device, cfg, train_seconds: float, precision: str,
                        checkpoint: Path | None) -> dict:
    from rcl.data.noise import GaussianNoise
    from rcl.evaluation.protocol import evaluate, model_denoiser
    from rcl.methods import FinetuneConfig
    from rcl.models import ModelConfig
    from rcl.tasks import get_task
    from rcl.training import Engine, fit, train

    noise = GaussianNoise(SIGMA / 255)
    body = ModelConfig(**cfg["sup_net"])
    base = FinetuneConfig(steps=1, batch_size=cfg["sup_batch"], crop_size=cfg["sup_crop"], lr=1e-3, loss="l2",
                          label_fraction=1.0, resample_noise=True, seed=0)
    # steps/s of this very configuration, then the steps that fit the budget
    model, runner = _runner("supervised", train_set, base, body, device, noise)
    engine = Engine(device=device, precision=precision, progress=False, log_every=-1, handle_signals=False)
    for i, n in enumerate((3, cfg["sup_probe_steps"])):
        _sync(device)
        t = time.perf_counter()
        train(model, runner, n, base.lr, i, progress=False, engine=engine)
        _sync(device)
        rate = n / (time.perf_counter() - t)
    del model, runner
    if device.type == "cuda":
        torch.cuda.empty_cache()
    steps = int(min(cfg["sup_max_steps"], max(cfg["sup_min_steps"], rate * train_seconds)))
    log(f"supervised: {rate:.1f} steps/s measured → {steps} steps for a {train_seconds:.0f} s budget")
    run_cfg = base.model_copy(update={"steps": steps})
    engine = Engine(device=device, precision=precision, progress=True, log_every=max(1, steps // 10))
    _sync(device)
    t = time.perf_counter()
    result = fit(get_task("denoise"), "supervised", train_set, run_cfg, body, noise=noise, engine=engine,
                 progress=True, desc="supervised σ=25")
    _sync(device)
    train_s = time.perf_counter() - t
    model = result.model  # on the CPU
    if checkpoint is not None:
        from rcl.checkpoint import save_checkpoint

        save_checkpoint(checkpoint, model, body, stage="finetune", noise=noise.describe(),
                        training={"steps": steps, "precision": precision})
    losses = [h["loss"] for h in result.history]
    tail = losses[-max(1, len(losses) // 20):]
    model.to(device)
    _sync(device)
    t = time.perf_counter()
    scores, _ = evaluate({"supervised": model_denoiser(model)}, test_set, noise, seed=0)
    _sync(device)
    eval_s = time.perf_counter() - t
    summary = scores["supervised"].summary()
    return {"network": f"U-Net w{body.width} d{body.depth}", "params": sum(p.numel() for p in model.parameters()),
            "precision": precision, "batch_size": run_cfg.batch_size, "crop_size": run_cfg.crop_size,
            "lr": run_cfg.lr, "schedule": "cosine to 1 % (Adam, gradient norm clipped to 1)", "loss": run_cfg.loss,
            "noise": noise.describe(), "train_images": len(train_set), "test_images": len(test_set),
            "probe_steps_per_s": rate, "budget_s": train_seconds, "steps": steps, "train_s": train_s,
            "steps_per_s": steps / train_s, "first_loss": losses[0], "final_loss": sum(tail) / len(tail),
            "eval_s": eval_s, "psnr": summary["psnr"], "ssim": summary["ssim"], "psnr_noisy": summary["psnr_noisy"],
            "ssim_noisy": summary["ssim_noisy"], "target_psnr": TARGET_PSNR, "dncnn_s_psnr": DNCNN_S_PSNR,
            "target_met": summary["psnr"] >= TARGET_PSNR,
            "checkpoint": str(checkpoint) if checkpoint is not None else None}


# ----------------------------------------------------------------------------- report

def markdown(rep: dict) -> str:
    m, smoke = rep["machine"], rep["smoke"]
    out = ["# GPU check", ""]
    out.append(f"Written by `benchmarks/gpu_check.py` on {rep['date']} (UTC) in {rep['total_s']:.0f} s of wall time.")
    if smoke:
        out += ["", "**Smoke run on the CPU**: tiny networks, 2 steps, 2 images. It checks that the script works; "
                "its numbers mean nothing."]
    out += ["", "## Machine", "", "| | |", "|---|---|"]
    if m.get("gpu"):
        out.append(f"| GPU | {m['gpu']} ({m['gpu_memory_gib']} GiB, compute capability {m['compute_capability']}; "
                   f"{m['gpu_count']} visible) |")
        out.append(f"| NVIDIA driver | {m.get('driver') or 'unknown'} |")
    out += [f"| device | {m['device']} |",
            f"| torch | {m['torch']} (CUDA {m['cuda'] or 'none'}, cuDNN {m['cudnn'] or 'none'}) |",
            f"| cuDNN TF32 / benchmark mode | {m['cudnn_allow_tf32']} / {m['cudnn_benchmark']} (torch's defaults; "
            "rcl leaves them as they are) |",
            f"| Python | {m['python']} on {m['platform']}, {m['cpu_cores']} CPU cores |",
            f"| rcl | {m['rcl']} (git {m['git'] or 'unknown'}) |"]
    st = rep["settings"]
    window = f"about {st['window_s']:g} s each" if st["window_s"] > 0 else f"{st['min_window_steps']} steps each"
    out += ["", "## Command", "", "```bash", rep["command"], "```", "",
            f"Data: `{rep['data']}`{' (synthetic images made for the smoke run)' if rep['synthetic_data'] else ''}.",
            "", "## What was measured", "",
            "- **GPU tests**: `pytest -m gpu`, the tests that need a CUDA GPU (short fits of rcl, n2v, simclr and "
            "supervised on the device; a checkpoint of a CUDA-trained network loaded on the CPU gives the same "
            "output within 1e-4; batches drawn on the device; bf16 within 1 % of fp32; fp16 with the gradient "
            "scaler).",
            "- **Training speed**: optimisation steps per second of the trainer (`rcl.training.train`: draws on "
            "the device, forward, loss, backward, gradient clipping, Adam, log flushes), networks in the "
            "channels-last layout as `fit` prepares them. After a warm-up and a probe that sizes the windows, "
            f"the median of {rep['settings']['windows']} timed windows ({window}), each between "
            "`torch.cuda.synchronize()` calls. fp32 means fp32 weights and activations "
            "with cuDNN's TF32 convolutions (torch's default); bf16 is autocast to bfloat16. Peak GPU memory "
            "is `torch.cuda.max_memory_allocated` over the warm-up and windows.",
            "- **Supervised denoiser**: `fit(task=denoise, method=supervised)` on all of Train400 with fresh "
            f"Gaussian noise of σ = {SIGMA} for every crop, its steps chosen from a measured steps/s so that "
            "training fits the time budget (wall time of `fit` below, data on the device included), then "
            "`rcl.evaluation.protocol.evaluate` on BSD68 with the protocol's fixed-seed noise (σ = 25, seed 0): "
            "the network sees the unclipped noisy image, the output is clamped and quantised to uint8, PSNR "
            "(peak 255) and SSIM per image, averaged. Evaluation runs in fp32 on the device.", ""]
    pt = rep.get("pytest")
    out += ["## GPU tests (`pytest -m gpu`)", ""]
    if pt is None:
        out += ["Not run (`--skip-pytest`).", ""]
    else:
        out += [f"`{pt['command']}`", "", "| passed | failed | errors | skipped | seconds |",
                "|---:|---:|---:|---:|---:|",
                f"| {pt['passed']} | {pt['failed']} | {pt['errors']} | {pt['skipped']} | {pt['seconds']:.1f} |", ""]
        for why, n in pt["skip_reasons"].items():
            out.append(f"- skipped ({n}): {why}")
        for p in pt["problems"]:
            out.append(f"- **problem**: {p}")
        if pt["problems"]:
            out += ["", "Output tail:", "", "```", pt["tail"].strip()[-2000:], "```"]
        out.append("")
    out += ["## Training speed", "",
            "| stage | network | params | batch | crop | precision | steps/s (median) | windows (steps/s) | "
            "crops/s | Mpx/s | peak GPU MiB |",
            "|---|---|---:|---|---:|---|---:|---|---:|---:|---:|"]
    for r in rep["speed"]:
        mem = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "–"
        wins = ", ".join(f"{x:.1f}" for x in r["windows_steps_per_s"])
        out.append(f"| {r['stage']} ({r['method']}) | {r['network']} | {r['params'] / 1e6:.2f} M | {r['batch']} | "
                   f"{r['crop']}² | {r['precision']} | **{r['steps_per_s']:.1f}** | {wins} ({r['window_steps']} "
                   f"steps each) | {r['crops_per_s']:.0f} | {r['megapixels_per_s']:.1f} | {mem} |")
    out.append("")
    s = rep.get("supervised")
    out += [f"## Supervised denoiser on BSD68 (σ = {SIGMA})", ""]
    if s is None:
        out += ["Not run.", ""]
    else:
        verdict = "met" if s["target_met"] else "**not met**"
        out += ["| network | params | precision | batch × crop | steps | train time | steps/s | loss first → last "
                "5 % | noisy PSNR / SSIM | PSNR | SSIM |",
                "|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|",
                f"| {s['network']} | {s['params'] / 1e6:.2f} M | {s['precision']} | {s['batch_size']} × "
                f"{s['crop_size']}² | {s['steps']} | {s['train_s']:.0f} s | {s['steps_per_s']:.1f} | "
                f"{s['first_loss']:.3g} → {s['final_loss']:.3g} | {s['psnr_noisy']:.2f} / {s['ssim_noisy']:.3f} | "
                f"**{s['psnr']:.2f}** | {s['ssim']:.4f} |", "",
                f"Trained on {s['train_images']} Train400 images ({s['noise']}, fresh noise per crop), Adam lr "
                f"{s['lr']:g}, {s['schedule']}, {s['loss']} loss; {s['steps']} steps chosen from "
                f"{s['probe_steps_per_s']:.1f} steps/s measured on this configuration for a {s['budget_s']:.0f} s "
                f"budget. Evaluated on {s['test_images']} BSD68 images in {s['eval_s']:.1f} s.", "",
                f"Target PSNR ≥ {s['target_psnr']:.1f} dB: {verdict} ({s['psnr']:.2f} dB; DnCNN-S publishes "
                f"{s['dncnn_s_psnr']:.2f} dB on BSD68 at σ = 25 after much longer training).", ""]
    out += ["## Timings", "", "| phase | seconds |", "|---|---:|"]
    for k, v in rep["timings"].items():
        out.append(f"| {k} | {v:.1f} |")
    out += [f"| **total** | **{rep['total_s']:.1f}** |", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="folder holding train/Train400 and test/BSD68 (default: ../shared/data)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown report (default docs/gpu.md; smoke: a temp dir)")
    ap.add_argument("--json", type=Path, default=None,
                    help="JSON results (default benchmarks/gpu_check.json; smoke: a temp dir)")
    ap.add_argument("--smoke", action="store_true", help="everything on the CPU in seconds (numbers mean nothing)")
    ap.add_argument("--device", default="cuda", help="a CUDA device: cuda or cuda:N (full mode)")
    ap.add_argument("--train-seconds", type=float, default=240.0,
                    help="wall-clock budget of the supervised training (default 240)")
    ap.add_argument("--budget-seconds", type=float, default=450.0,
                    help="the whole run: the training budget shrinks so that the run ends within it (default 450)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16",
                    help="precision of the supervised training (default bf16)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="also save the supervised network here")
    ap.add_argument("--skip-pytest", action="store_true", help="do not run pytest -m gpu")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="rcl-gpu-check-"))
    try:
        return _main(args, argv, tmp)
    finally:  # keep only the reports written into the temporary folder (--smoke's default)
        for child in tmp.iterdir():
            if child.name not in ("gpu.md", "gpu_check.json"):
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        if not any(tmp.iterdir()):
            tmp.rmdir()


def _main(args, argv, tmp: Path) -> int:
    command = shlex.join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    from rcl.training import DeviceError, resolve_device

    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # tiny ops: threads only add overhead (and oversubscribe a busy machine)
    else:
        spec = args.device.strip().lower()
        if not spec.startswith("cuda"):
            print(f"error: --device {args.device}: the GPU check runs on a CUDA device (cuda or cuda:N); "
                  "use --smoke for a CPU run", file=sys.stderr)
            return 2
        try:
            device = resolve_device(spec)
        except DeviceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    cfg = settings(args.smoke)
    out_md = args.out or (tmp / "gpu.md" if args.smoke else REPO / "docs" / "gpu.md")
    out_json = args.json or (tmp / "gpu_check.json" if args.smoke else REPO / "benchmarks" / "gpu_check.json")
    timings: dict[str, float] = {}

    data, synthetic = args.data, False
    if not (data / "train" / "Train400").is_dir() or not (data / "test" / "BSD68").is_dir():
        if not args.smoke:
            print(f"error: --data {data}: needs train/Train400 and test/BSD68 (the project's data folder)",
                  file=sys.stderr)
            return 2
        data, synthetic = synthetic_data(tmp / "data"), True
    log(f"device {device}; data {data}{' (synthetic)' if synthetic else ''}; report {out_md}")
    t = time.perf_counter()
    train_set, test_set = load_data(data, cfg)
    timings["load data (Train400, BSD68)"] = time.perf_counter() - t
    info = machine(device)

    pytest_res = None
    if not args.skip_pytest:
        log("pytest -m gpu …")
        pytest_res = run_gpu_tests(cfg["pytest_paths"], cfg["pytest_timeout"], tmp)
        timings["pytest -m gpu"] = pytest_res["seconds"]
        log(f"pytest -m gpu: {pytest_res['passed']} passed, {pytest_res['failed']} failed, "
            f"{pytest_res['errors']} errors, {pytest_res['skipped']} skipped")

    from rcl.data import add_noise_per_image, parse_noise_spec
    from rcl.data.noise import GaussianNoise
    from rcl.methods import FinetuneConfig, RCLConfig
    from rcl.models import ModelConfig

    t = time.perf_counter()
    noisy_set, _ = add_noise_per_image(train_set, parse_noise_spec("gaussian:5-50"), seed=1)
    speed = []
    for stage, method in (("pre-training", "rcl"), ("fine-tuning", "supervised")):
        for net in ("default", "large"):
            body = ModelConfig(**cfg["nets"][net])
            for precision in ("fp32", "bf16"):
                if method == "rcl":
                    mcfg, data_, noise = RCLConfig(**cfg["pretrain"]), noisy_set, None
                else:
                    mcfg, data_, noise = FinetuneConfig(**cfg["finetune"]), train_set, GaussianNoise(SIGMA / 255)
                row = measure_speed(stage, method, data_, mcfg, body, device, precision, cfg, noise)
                speed.append(row)
                log(f"speed: {stage} {row['network']} {precision}: {row['steps_per_s']:.1f} steps/s")
    timings["training speed (8 configurations)"] = time.perf_counter() - t

    elapsed = time.perf_counter() - T0
    reserve = 10.0 if args.smoke else 45.0  # probe, evaluation and report
    train_seconds = max(0.0 if args.smoke else 30.0, min(args.train_seconds, args.budget_seconds - elapsed - reserve))
    t = time.perf_counter()
    sup = supervised_denoiser(train_set, test_set, device, cfg, train_seconds, args.precision, args.checkpoint)
    timings["supervised: probe + training"] = time.perf_counter() - t - sup["eval_s"]
    timings["supervised: BSD68 evaluation"] = sup["eval_s"]
    log(f"supervised: {sup['steps']} steps in {sup['train_s']:.0f} s, BSD68 σ=25 PSNR {sup['psnr']:.2f} dB, "
        f"SSIM {sup['ssim']:.4f}")

    rep = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "command": command,
           "smoke": args.smoke, "data": str(args.data if not synthetic else data), "synthetic_data": synthetic,
           "machine": info, "settings": {k: v for k, v in cfg.items()}, "pytest": pytest_res, "speed": speed,
           "supervised": sup, "timings": timings}
    rep["total_s"] = time.perf_counter() - T0
    for path, text in ((out_md, markdown(rep)), (out_json, json.dumps(rep, indent=2) + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    log(f"wrote {out_md} and {out_json}")
    failed = pytest_res is not None and (pytest_res["failed"] or pytest_res["errors"])
    missed = not args.smoke and not sup["target_met"]
    if failed:
        log("GPU tests failed")
    if missed:
        log(f"PSNR {sup['psnr']:.2f} dB is below the {TARGET_PSNR} dB target")
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
