"""Which RCL pre-training variant to keep as the default, measured at the converged budget on a
VALIDATION split of Train400, over several seeds (GitHub issue "Beat BM3D with few labels", item 6).

    OMP_NUM_THREADS=2 python benchmarks/consistency_study.py --train ../shared/data/train/Train400 \\
        --out runs/consistency-study --seeds 0 1 --threads 2 --report-dir docs/consistency-study
    python benchmarks/consistency_study.py --train ../shared/data/train/Train400 --out /tmp/cs-smoke --smoke

**Split.** The training folder's images, sorted by file name; every tenth (indices 9, 19, …) is a
validation image (40 of Train400's 400), the rest (360) the training images. The split is made
of symbolic links under ``OUT/split/{train,val}``. No test set is read.

**What runs.** For each seed s, one ``rcl benchmark`` run (``OUT/seed<s>``; resumable: rerun the
same command) of a config written to ``OUT/seed<s>.yaml``: methods ``rcl`` and ``none``
(scratch), every RCL variant below as an *ablation* of the base RCL pre-training (the benchmark's
``ablations``: pre-trained with the same data, noise and steps, then evaluated without labels and
after fine-tuning on 1 % of the training images, 4 labels), pre-training seed s and fine-tuning
seed s. Budgets are those of the ``converged`` preset (pre-training 2,000 steps of 16 images × 2
crops of 48²; fine-tuning 2,000 steps of 8 crops of 64², Adam 1e-3; noise σ ∈ [5, 50], drawn
once per training image for pre-training, fresh per crop for fine-tuning). Every number goes
through the benchmark's evaluation protocol (uint8 PSNR/SSIM, noise seeded per image name) on
the validation images at σ = 25 and σ ∈ [5, 50].

Variants (fields of :class:`rcl.methods.RCLConfig` over the base config; base = blind-spot
consistency, contrastive weight 0.01, τ = 0.1, EMD on raw residuals):

* ``blindspot-alone``: contrastive weight 0 (the consistency term alone);
* ``contrastive-alone``: no consistency term, contrastive weight 1 (the contrastive term alone);
* ``center``: EMD on mean-removed residual crops;
* ``neighbor``: Neighbor2Neighbor-style sub-sampled consistency term in place of the blind spot
  (Huang et al., CVPR 2021); ``neighbor-alone``: the same with contrastive weight 0;
  ``neighbor-center``: with mean-removed residuals;
* ``warmup-0.5``: the contrastive weight ramps from 0 over the first half of the run;
* ``tau-0.05``, ``tau-0.5``: the NT-Xent temperature;
* ``negatives-32``: 32 images per batch (62 negatives per anchor instead of 30; twice the crops,
  so twice the cost per step: the report shows each cell's wall time).

**Report.** ``--report-dir DIR`` (default ``OUT/report``): ``study.md`` and ``study.json`` and, per
seed, ``seed<s>/`` with that seed's benchmark report, results, config, log and figures. Seeds may run in
separate invocations (``--seeds 0``, later ``--seeds 1``): the report aggregates every seed folder
of DIR made with the same variants, budgets and validation images. Per variant: the mean over
seeds (and each seed) of the validation PSNR without labels and after fine-tuning, at both
noises, beside scratch with the same 4 labels. Residual Contrastive Learning: Dong et al., IJCAI
2022, arXiv 2106.10070.

**Errors.** A missing or empty ``--train`` folder, fewer than 20 images, a bad seed list or an
output that would overwrite an input print one line ``error: …`` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

VARIANTS = {
    "blindspot-alone": {"contrastive_weight": 0.0},
    "contrastive-alone": {"consistency": "none", "contrastive_weight": 1.0},
    "center": {"center_residuals": True},
    "neighbor": {"consistency": "neighbor"},
    "neighbor-alone": {"consistency": "neighbor", "contrastive_weight": 0.0},
    "neighbor-center": {"consistency": "neighbor", "center_residuals": True},
    "warmup-0.5": {"contrastive_warmup": 0.5},
    "tau-0.05": {"temperature": 0.05},
    "tau-0.5": {"temperature": 0.5},
    "negatives-32": {"batch_images": 32},
}
NOISES = ["gaussian:25", "gaussian:5-50"]
FULL = {"pretrain_steps": 2000, "finetune_steps": 2000, "val_crop": None, "train_limit": None}
SMOKE = {"pretrain_steps": 6, "finetune_steps": 4, "val_crop": 64, "train_limit": 30}


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        fail(message)


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies inside it (resolved paths)."""
    return a == b or b in a.parents


def list_training(train: Path, limit: int | None) -> list[Path]:
    """The training folder's images sorted by name (the first ``limit``); fails on fewer than 20."""
    from rcl.data.io import list_images

    try:
        files = sorted(list_images(train), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        fail(str(exc))
    files = files[:limit] if limit else files
    if len(files) < 20:
        fail(f"{train}: {len(files)} image(s); the study needs at least 20 (every tenth is a validation image)")
    return files


def make_split(train: Path, out: Path, limit: int | None) -> tuple[Path, Path, list[str]]:
    """Symbolic links of the sorted images: every tenth to ``val``, the others to ``train``."""
    files = list_training(train, limit)
    parts = {"train": [f for i, f in enumerate(files) if i % 10 != 9], "val": [f for i, f in enumerate(files) if i % 10 == 9]}
    dirs = {}
    for part, chosen in parts.items():
        d = out / "split" / part
        d.mkdir(parents=True, exist_ok=True)
        want = {f.name: f.resolve() for f in chosen}
        for link in d.iterdir():  # only links made by this script are ever removed
            if not link.is_symlink():
                fail(f"{link}: not a link made by this script; {d} holds only links to the training images")
        for link in d.iterdir():  # a rerun with other data: drop links that no longer belong
            if link.name not in want or link.resolve() != want[link.name]:
                link.unlink()
        for name, target in want.items():
            if not (d / name).exists():
                (d / name).symlink_to(target)
        dirs[part] = d
    return dirs["train"], dirs["val"], [f.name for f in parts["val"]]


def config(seed: int, train: Path, val: Path, budget: dict) -> dict:
    test = {"name": "val40", "path": str(val), "noises": NOISES}
    if budget["val_crop"]:
        test["crop"] = budget["val_crop"]
    return {
        "name": f"consistency-study-seed{seed}",
        "data": {"train": str(train), "channels": 1, "test": [test]},
        "model": {"arch": "unet", "width": 16, "depth": 3},
        "methods": ["rcl", "none"],
        "train_noise": "gaussian:5-50",
        "noise_seed": 1,
        "pretrain": {"steps": budget["pretrain_steps"], "seed": seed, "rcl": {"batch_images": 16, "crop_size": 48}},
        "label_fractions": [0.01],
        "seeds": [seed],
        "finetune": {"steps": budget["finetune_steps"], "batch_size": 8, "crop_size": 64, "lr": 0.001,
                     "val_every": 250},
        "ablations": [{"name": k, "rcl": v} for k, v in VARIANTS.items()],
        "ablation_fraction": 0.01,
    }


def aggregate(runs: dict[int, Path]) -> dict:
    """Per variant and noise: PSNR/SSIM without labels and after fine-tuning, per seed and mean."""
    rows: dict = {}
    for seed, run in runs.items():
        res = json.loads((run / "results.json").read_text())
        for r in res["rows"]:
            if r.get("kind") == "ablation":
                name = "base" if r["variant"].endswith("(base config)") else r["variant"]
                d = rows.setdefault(name, {}).setdefault(r["noise"], {})
                d.setdefault("direct", {})[seed] = r["direct_psnr"]
                d.setdefault("finetuned", {})[seed] = r["finetuned_psnr"]
            elif r.get("kind") == "finetuned" and r["method"] == "none":
                d = rows.setdefault("scratch", {}).setdefault(r["noise"], {})
                d.setdefault("finetuned", {})[seed] = r["psnr_mean"]
            elif r.get("kind") == "noisy":
                rows.setdefault("noisy", {}).setdefault(r["noise"], {}).setdefault("direct", {})[seed] = r["psnr"]
    return rows


def _mean(d: dict | None) -> float | None:
    vals = [v for v in (d or {}).values() if v is not None]
    return statistics.fmean(vals) if vals else None


def render(rows: dict, seeds: list[int], command: str, val_names: list[str], cpu: str) -> str:
    def cell(d):
        m = _mean(d)
        if m is None:
            return "—"
        per = ", ".join(f"{d[s]:.2f}" for s in seeds if d.get(s) is not None)
        return f"**{m:.2f}** ({per})" if len(seeds) > 1 else f"{m:.2f}"

    md = ["# RCL variants at the converged budget, on a Train400 validation split", "",
          f"Command (the last invocation; each seed's own is in `seed<s>/study.json`): `{command}`", "",
          f"Validation images ({len(val_names)}, never trained on): every tenth Train400 file in name order. "
          f"Seeds {', '.join(map(str, seeds))} (pre-training and fine-tuning); cells: mean over seeds "
          f"(per seed). {cpu}. Each cell's wall time: the time section of `seed<s>/report.md`.", "",
          "| variant | overrides | " + " | ".join(f"0 labels, {n}" for n in NOISES) + " | "
          + " | ".join(f"4 labels, {n}" for n in NOISES) + " |",
          "|---|---|" + "---:|" * (2 * len(NOISES))]
    order = ["noisy", "scratch", "base", *VARIANTS]
    for name in order:
        if name not in rows:
            continue
        ov = {"noisy": "noisy input", "scratch": "no pre-training", "base": "RCL default"}.get(
            name, ", ".join(f"{k}={v}" for k, v in VARIANTS.get(name, {}).items()))
        r = rows[name]
        md.append(f"| {name} | {ov} | " + " | ".join(cell(r.get(n, {}).get("direct")) for n in NOISES) + " | "
                  + " | ".join(cell(r.get(n, {}).get("finetuned")) for n in NOISES) + " |")
    return "\n".join(md) + "\n"


def study_key(budget: dict, val_names: list[str]) -> dict:
    """What makes two seeds' results comparable: the variants, noises, budgets and validation images."""
    return {"variants": VARIANTS, "noises": NOISES, "budget": budget, "validation_images": val_names}


def collect(report_dir: Path, key: dict) -> dict[int, Path]:
    """The seed folders of ``report_dir`` made under ``key`` (others are skipped, with a note)."""
    runs = {}
    for d in sorted(report_dir.glob("seed*")):
        try:
            meta = json.loads((d / "study.json").read_text())
            seed = int(meta["seed"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if meta.get("key") != json.loads(json.dumps(key)):
            print(f"note: {d} was made with other variants, budgets or validation images; not aggregated")
            continue
        runs[seed] = d
    return dict(sorted(runs.items()))


def main(argv=None) -> None:
    ap = _Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=_path, required=True, help="folder of clean grayscale training images (Train400)")
    ap.add_argument("--out", type=_path, required=True, help="work folder (resumable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report-dir", type=_path, default=None,
                    help="folder of the report (default OUT/report): study.md, study.json and, per seed, the "
                         "benchmark's report, results, config, log and figures; the report aggregates every seed "
                         "folder there that was made with the same variants and budgets (seeds may be run apart)")
    ap.add_argument("--smoke", action="store_true", help="a tiny run (30 images, a few steps) to check the plumbing")
    args = ap.parse_args(argv)
    from rcl.cli.common import UsageError, check_creatable
    from rcl.configs import MAX_SEED

    if any(not 0 <= s <= MAX_SEED for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        fail(f"--seeds must be distinct integers from 0 to {MAX_SEED}, got {args.seeds}")
    if not 1 <= args.threads <= 1024:
        fail(f"--threads must be from 1 to 1024, got {args.threads}")
    if not args.train.is_dir():
        fail(f"--train {args.train}: not a folder")
    out = args.out.resolve()
    report_dir = (args.report_dir or out / "report").resolve()
    train_root = args.train.resolve()
    for what, p in (("--out", out), ("--report-dir", report_dir)):
        if _inside(p, train_root):
            fail(f"{what} {p}: inside the training folder {train_root}, an input")
        if _inside(train_root, p):
            fail(f"--train {train_root}: inside {what} {p}, which this script writes into")
        if p.exists() and not p.is_dir():
            fail(f"{what} {p}: exists and is not a folder")
        try:
            check_creatable(p, what)  # the CLI's rule: a writable ancestor folder, outside the package
        except UsageError as exc:
            fail(str(exc))
    if report_dir == out or _inside(report_dir, out / "split") or any(_inside(report_dir, out / f"seed{s}")
                                                                       for s in args.seeds):
        fail(f"--report-dir {report_dir}: the work folder or a folder the runs write into; choose another")
    budget = SMOKE if args.smoke else FULL
    list_training(train_root, budget["train_limit"])  # refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    train, val, val_names = make_split(train_root, out, budget["train_limit"])
    key = study_key(budget, val_names)
    from rcl.benchmark.cells import atomic_text as _atomic
    from rcl.benchmark.report import cpu_name
    from rcl.data.io import atomic_write_bytes

    command = "OMP_NUM_THREADS={t} python benchmarks/consistency_study.py {a}".format(
        t=args.threads, a=" ".join(sys.argv[1:] if argv is None else argv))
    for seed in args.seeds:
        cfg_path = out / f"seed{seed}.yaml"
        cfg_path.write_text(yaml.safe_dump(config(seed, train, val, budget), sort_keys=False))
        run = out / f"seed{seed}"
        cmd = [sys.executable, "-m", "rcl", "benchmark", str(cfg_path), "-o", str(run), "--threads", str(args.threads), "--no-progress",
               "--save-every", "500"]
        print("+", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd)
        if proc.returncode:  # rcl printed its own one-line error
            raise SystemExit(proc.returncode)
        dest = report_dir / f"seed{seed}"
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted(run.iterdir()):  # the benchmark's report, results, config, log and figures
            if f.is_file() and f.suffix in (".md", ".json", ".yaml", ".log", ".png"):
                atomic_write_bytes(dest / f.name, lambda tmp, f=f: tmp.write_bytes(f.read_bytes()))
        _atomic(dest / "study.json", json.dumps({"seed": seed, "command": command,
                                                 "cpu": f"{cpu_name()}, {args.threads} thread(s)",
                                                 "key": key}, indent=1))
    runs = collect(report_dir, key)
    rows = aggregate(runs)
    cpus = sorted({json.loads((d / "study.json").read_text())["cpu"] for d in runs.values()})
    text = render(rows, list(runs), command, val_names, "; ".join(cpus))
    _atomic(report_dir / "study.md", text)
    _atomic(report_dir / "study.json", json.dumps(
        {"seeds": list(runs), "variants": VARIANTS, "validation_images": val_names,
         "rows": {k: {n: {w: {str(s): v for s, v in d.items()} for w, d in nd.items()} for n, nd in r.items()}
                  for k, r in rows.items()}}, indent=1))
    print(f"report: {report_dir / 'study.md'}")


if __name__ == "__main__":
    main()
