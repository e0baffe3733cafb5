"""`rcl demo`: RCL end to end on real photographs shipped with scikit-image.

1. Photographs from ``skimage.data`` (bundled in the wheel, no download) are converted to
   grayscale (BT.601) and split into training photos and held-out test photos.
2. Each training photo gets Gaussian noise with its own σ ~ U[5, 50]/255, once (seeded): this
   is the user's unlabelled noisy collection.
3. RCL pre-training on those noisy photos only.
4. Fine-tuning with ONE labelled photo (its clean version; fresh synthetic noise per crop), once
   from the RCL weights, once from scratch, and once from the RCL network shipped with rcl
   (``pretrained:gray``, pre-trained on Train400; when this installation has it), with the same
   steps and seed.
5. Evaluation on the held-out photos (protocol of :mod:`rcl.evaluation.protocol`, seed 0),
   beside BM3D given each photo's true σ (:func:`rcl.evaluation.bm3d_reference`, the classical
   reference: does the learned network beat it?).

Writes a run folder: results.md / results.json (table and per-image scores), loss_curves.png,
restorations.png, the checkpoints and the CSV logs. The folder is assembled under a temporary
name and renamed when complete, so an interrupted run leaves no half-written result.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from . import __version__
from .data.datasets import ImageSet, add_noise_per_image, match_channels
from .data.noise import GaussianRangeNoise
from .models import ModelConfig

CLI_ENTRY_POINTS = ("rcl", "__main__.py")  # argv[0] of the `rcl` script and of `python -m rcl`

TRAIN_PHOTOS = ("chelsea", "coffee", "rocket", "motorcycle_left", "brick", "grass", "gravel", "moon", "coins",
                "page", "immunohistochemistry", "hubble_deep_field")
TEST_PHOTOS = ("camera", "astronaut", "clock")

QUICK = dict(pretrain_steps=40, finetune_steps=20, crop=32, ft_crop=32, batch_images=8, batch_size=8, lr=1e-3,
             test_size=192, n_train=8)
# the CLI's defaults (chosen by validation PSNR per CPU-minute, docs/benchmarks.md "Schedule sweep")
FULL = dict(pretrain_steps=2000, finetune_steps=2000, crop=48, ft_crop=64, batch_images=12, batch_size=8, lr=1e-3,
            test_size=None, n_train=None)
SHIPPED_ROW = "shipped RCL (pretrained:gray) + 1 label"


def _photo(name: str):
    import skimage.data as data

    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def load_photos(names, size: int | None = None) -> ImageSet:
    """Bundled scikit-image photos as grayscale (1, H, W) tensors in [0, 1] (optionally centre-cropped)."""
    import numpy as np

    images = []
    for n in names:
        arr = np.asarray(_photo(n))
        img = torch.from_numpy(arr.astype(np.float32) / 255.0)
        img = img.permute(2, 0, 1) if img.ndim == 3 else img.unsqueeze(0)
        img = match_channels(img[:3], 1, n)
        if size is not None:
            _, h, w = img.shape
            t, left = (h - min(h, size)) // 2, (w - min(w, size)) // 2
            img = img[:, t:t + size, left:left + size]
        images.append(img.contiguous())
    return ImageSet(images, list(names))


def _shipped_gray(mcfg: ModelConfig):
    """The shipped grayscale RCL network (:mod:`rcl.pretrained`) if this installation has it and it
    is the demo's architecture, else None."""
    from .checkpoint import load_checkpoint
    from .pretrained import pretrained_path

    try:
        model, meta = load_checkpoint(pretrained_path("pretrained:gray"))
    except ValueError:
        return None
    return model if ModelConfig(**meta["model"]) == mcfg else None


def run_demo(out: Path | None = None, quick: bool = False, seed: int = 0, progress: bool = True,
             engine=None) -> dict:
    """Run the demo and return the summary dict (also written to the run folder).

    ``engine``: the :class:`rcl.training.Engine` of the three trainings (default: the CPU).

    Raises:
        FileExistsError: ``out`` exists already.
    """
    from .checkpoint import save_checkpoint
    from .evaluation import BM3D_ROW, bm3d_reference, evaluate, make_noisy_test_set
    from .evaluation.residual import sigma_correlation
    from .methods import FinetuneConfig, RCLConfig, get_method
    from .methods.supervised import fraction_for_label_count
    from .reporting import markdown_table, plot_loss_curves, plot_restorations, print_table
    from .tasks import get_task
    from .training import Engine, describe_device, fit

    t_start = time.time()
    engine = engine or Engine(device="cpu", progress=progress)
    p = QUICK if quick else FULL
    out = Path(out) if out is not None else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists():
        raise FileExistsError(f"{out}: run folder exists; choose another --out")
    work = out.parent / f".{out.name}.partial"
    marker = work / ".rcl-demo"
    if work.exists():
        if not (work.is_dir() and marker.is_file()):
            raise FileExistsError(f"{work}: exists and is not an unfinished rcl demo folder; move it away")
        shutil.rmtree(work)  # an earlier, interrupted demo run
    work.mkdir(parents=True)
    marker.write_text("unfinished rcl demo run; safe to delete\n")
    try:
        noise = GaussianRangeNoise(5 / 255, 50 / 255)
        train_names = TRAIN_PHOTOS[: p["n_train"]] if p["n_train"] else TRAIN_PHOTOS
        train_clean = load_photos(train_names)
        test_clean = load_photos(TEST_PHOTOS[:2] if quick else TEST_PHOTOS, p["test_size"])
        noisy_train, sigma_train = add_noise_per_image(train_clean, noise, seed + 1)
        mcfg = ModelConfig(arch="unet", in_channels=1, out_channels=1, width=16, depth=3)

        task = get_task("denoise")
        rcl_method, supervised = get_method("rcl"), get_method("supervised")
        pcfg = RCLConfig(steps=p["pretrain_steps"], batch_images=p["batch_images"], crop_size=p["crop"],
                              seed=seed)
        print(f"[1/5] RCL pre-training on {len(noisy_train)} noisy photos (no labels), {pcfg.steps} steps",
              flush=True)
        pre = fit(task, rcl_method, noisy_train, pcfg, mcfg, log_path=work / "pretrain_log.csv", progress=progress,
                  desc="pretrain (RCL)", engine=engine)
        rcl_model, h_pre = pre.model, pre.history
        save_checkpoint(work / "rcl_pretrained.safetensors", rcl_model, mcfg, stage="pretrain", method="rcl",
                        noise="gaussian:5-50", training=pcfg.model_dump())

        fcfg = FinetuneConfig(steps=p["finetune_steps"], batch_size=p["batch_size"], crop_size=p["ft_crop"],
                              lr=p["lr"], label_fraction=fraction_for_label_count(1, len(train_clean)), seed=seed)
        print(f"[2/5] fine-tuning with 1 labelled photo from the RCL weights, {fcfg.steps} steps", flush=True)
        res = fit(task, supervised, train_clean, fcfg, mcfg, init=rcl_model, noise=noise,
                  log_path=work / "finetune_rcl_log.csv", progress=progress, desc="finetune (RCL init)", engine=engine)
        tuned, h_tuned, labelled = res.model, res.history, res.labelled
        print(f"[3/5] fine-tuning with the same photo from scratch, {fcfg.steps} steps", flush=True)
        res = fit(task, supervised, train_clean, fcfg, mcfg, init=None, noise=noise,
                  log_path=work / "finetune_scratch_log.csv", progress=progress, desc="finetune (scratch)", engine=engine)
        scratch, h_scratch = res.model, res.history
        shipped = _shipped_gray(mcfg)
        h_shipped = None
        if shipped is not None:
            print(f"[4/5] fine-tuning with the same photo from the shipped RCL network (pretrained:gray), "
                  f"{fcfg.steps} steps", flush=True)
            res = fit(task, supervised, train_clean, fcfg, mcfg, init=shipped, noise=noise,
                      log_path=work / "finetune_shipped_log.csv", progress=progress, desc="finetune (shipped init)",
                      engine=engine)
            shipped_tuned, h_shipped = res.model, res.history
        save_checkpoint(work / "rcl_1label.safetensors", tuned, mcfg, stage="finetune", init_stage="pretrain",
                        noise="gaussian:5-50", training=fcfg.model_dump(), labelled_images=labelled)
        save_checkpoint(work / "scratch_1label.safetensors", scratch, mcfg, stage="finetune", init_stage=None,
                        noise="gaussian:5-50", training=fcfg.model_dump(), labelled_images=labelled)
        if shipped is not None:
            save_checkpoint(work / "shipped_1label.safetensors", shipped_tuned, mcfg, stage="finetune",
                            init="pretrained:gray", init_stage="pretrain", noise="gaussian:5-50",
                            training=fcfg.model_dump(), labelled_images=labelled)

        print(f"[5/5] evaluating on {len(test_clean)} held-out photos", flush=True)
        noisy_test, sigma_test = make_noisy_test_set(test_clean, noise, seed=0)
        methods = {"RCL only (0 labels)": rcl_method.predictor(rcl_model, pcfg),
                   "scratch + 1 label": supervised.predictor(scratch, fcfg),
                   "RCL + 1 label": supervised.predictor(tuned, fcfg)}
        if shipped is not None:
            methods[SHIPPED_ROW] = supervised.predictor(shipped_tuned, fcfg)
        methods[BM3D_ROW] = bm3d_reference(task, noise)
        results, outputs = evaluate(methods, test_clean, noise, noisy=noisy_test, sigmas=sigma_test,
                                    keep_outputs=True, task=task)
        first = next(iter(results.values()))
        rows = [{"method": "noisy input", "psnr": first.mean("psnr_noisy"), "ssim": first.mean("ssim_noisy")}]
        rows += [{"method": k, "psnr": r.mean("psnr"), "ssim": r.mean("ssim")} for k, r in results.items()]
        corr = sigma_correlation(rcl_model, noisy_train, sigma_train)

        per_image = []
        for i, name in enumerate(test_clean.names):
            row = {"image": name, "sigma": float(sigma_test[i]) * 255, "noisy": first.scores[i].psnr_noisy}
            row.update({k: r.scores[i].psnr for k, r in results.items()})
            per_image.append(row)

        psnr = {r["method"]: r["psnr"] for r in rows}
        gain_vs_scratch = psnr["RCL + 1 label"] - psnr["scratch + 1 label"]
        gain_vs_noisy = psnr["RCL only (0 labels)"] - psnr["noisy input"]
        gain_vs_bm3d = psnr["RCL + 1 label"] - psnr[BM3D_ROW]
        elapsed = time.time() - t_start
        summary = {
            "rcl_version": __version__, "quick": quick, "seed": seed, "seconds": elapsed,
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "device": describe_device(engine.device), "precision": engine.precision,
            "command": " ".join(["rcl"] + sys.argv[1:]) if Path(sys.argv[0]).name in CLI_ENTRY_POINTS
            else "rcl demo",
            "noise": noise.describe(), "train_photos": list(train_clean.names), "labelled_photo": labelled,
            "test_photos": list(test_clean.names), "pretrain": pcfg.model_dump(), "finetune": fcfg.model_dump(),
            "table": rows, "per_image_psnr": per_image,
            "rcl_plus_1_label_minus_scratch_db": gain_vs_scratch, "rcl_only_minus_noisy_db": gain_vs_noisy,
            "rcl_plus_1_label_minus_bm3d_db": gain_vs_bm3d,
            "residual_sigma_correlation_train": corr,
            "results": {k: r.to_dict() for k, r in results.items()},
        }
        cols = [("method", "method", ""), ("psnr", "PSNR (dB)", ".2f"), ("ssim", "SSIM", ".4f")]
        img_cols = [("image", "photo", ""), ("sigma", "σ (0-255)", ".1f"), ("noisy", "noisy", ".2f")] + \
                   [(k, k, ".2f") for k in results]
        md = [f"# rcl demo{' (--quick: smoke budget, numbers not meaningful)' if quick else ''}\n",
              f"Held-out photos: {', '.join(test_clean.names)} (grayscale, {noise.describe()}, protocol seed 0). "
              f"Pre-trained on {len(train_clean)} noisy photos; labelled photo: {labelled[0]}.\n\n",
              markdown_table(rows, cols),
              f"\nRCL + 1 label − scratch + 1 label: **{gain_vs_scratch:+.2f} dB**; "
              f"RCL only − noisy input: **{gain_vs_noisy:+.2f} dB**; "
              f"RCL + 1 label − {BM3D_ROW}: **{gain_vs_bm3d:+.2f} dB**.\n",
              f"Pearson r between the per-photo residual std and the true σ on the {len(train_clean)} "
              f"training photos: {corr['pearson_r']:.3f}.\n",
              "\n## Per photo (PSNR, dB)\n\n", markdown_table(per_image, img_cols),
              f"\nBudget: pre-training {pcfg.steps} steps, each fine-tune {fcfg.steps} steps; "
              f"{elapsed:.0f} s on {describe_device(engine.device)}, precision {engine.precision}.\n"]
        (work / "results.md").write_text("".join(md))
        (work / "results.json").write_text(json.dumps(summary, indent=2))
        curves = {"RCL pre-training": h_pre, "fine-tune from RCL": h_tuned, "fine-tune from scratch": h_scratch}
        if h_shipped is not None:
            curves["fine-tune from shipped RCL"] = h_shipped
        plot_loss_curves(curves, work / "loss_curves.png", keys=("loss", "contrastive", "consistency"))
        panels = [("noisy", noisy_test.images)] + [(k, v) for k, v in outputs.items()] + [("clean", test_clean.images)]
        titles = [f"{n} σ={float(s) * 255:.0f}" for n, s in zip(test_clean.names, sigma_test)]
        plot_restorations(panels, titles, work / "restorations.png")
        marker.unlink()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print_table(f"rcl demo — held-out photos ({', '.join(test_clean.names)}), {noise.describe()}", rows)
    print(f"RCL + 1 label vs scratch + 1 label: {gain_vs_scratch:+.2f} dB; RCL only vs noisy: {gain_vs_noisy:+.2f} dB; "
          f"RCL + 1 label vs {BM3D_ROW}: {gain_vs_bm3d:+.2f} dB; "
          f"residual-σ Pearson r (train photos): {corr['pearson_r']:.3f}")
    print(f"run folder: {out} ({elapsed:.0f} s)")
    return summary
