"""The report sections of the downstream tasks: super-resolution, joint demosaicking + denoising and
any other registered task (tables per test set/noise(/scale), one per metric, and their rows for
``results.json``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .cells import EVAL_SEED, frac_tag
from .stats import aggregate, compare, fmt, noise_label, subset_psnr
from .validation import method_label, role_method

if TYPE_CHECKING:
    from .runner import Runner


def task_tables(md: list[str], stats: dict, key: tuple, methods: list[str], fracs: list[float], k_of: dict,
                refs: list[tuple[tuple, str]], metrics: list[tuple[str, int, str]], n_images: int,
                rows_json: list[dict], extra: dict) -> None:
    """Tables (one per metric) of one test set/noise(/scale): reference rows in the '0 labels' column,
    one row per method with mean ± std over seeds per fraction, and Δ ours − scratch (rcl − none)."""
    from ..reporting import markdown_table

    ours, scratch = role_method("ours"), role_method("scratch")
    frac_cols = [(f"f{frac_tag(f)}", f"{f * 100:g} % ({k_of[f]} img)") for f in fracs]
    for metric, digits, label in metrics:
        rows = []
        for rkey, rname in refs:
            st = stats.get(rkey + key)
            if st is None:
                continue
            note = "" if st.n_images == n_images else f" ({st.n_images} of {n_images} images)"
            rows.append({"method": rname + note, "zero": fmt(getattr(st, metric), math.nan, digits)})
            if metric == "psnr":
                rows_json.append({"kind": "reference" if rkey == ("ref",) else "classical", "method": rname,
                                  **extra, "psnr": st.psnr, "ssim": st.ssim, "n_images": st.n_images,
                                  **({"psnr_rgb": st.psnr_rgb} if math.isfinite(st.psnr_rgb) else {})})
        for m in methods:
            r = {"method": method_label(m), "zero": "—"}
            for f, (col, _) in zip(fracs, frac_cols):
                st = stats.get(("ft", m, f) + key)
                r[col] = fmt(getattr(st, metric), getattr(st, metric + "_std"), digits) if st else "—"
                if st is not None and metric == "psnr":
                    rgb = ({"psnr_rgb_mean": st.psnr_rgb, "psnr_rgb_std": st.psnr_rgb_std}
                           if math.isfinite(st.psnr_rgb) else {})
                    rows_json.append({"kind": "finetuned", "method": m, "fraction": f, "labelled_images": k_of[f],
                                      **extra, "psnr_mean": st.psnr, "psnr_std": st.psnr_std, "ssim_mean": st.ssim,
                                      "ssim_std": st.ssim_std, **rgb, "n_seeds": st.n, "n_images": st.n_images})
            rows.append(r)
        if metric == "psnr" and {ours, scratch} <= set(methods):
            r = {"method": f"Δ {ours} − {scratch} (outcome)", "zero": ""}
            for f, (col, _) in zip(fracs, frac_cols):
                c = compare(stats.get(("ft", ours, f) + key), stats.get(("ft", scratch, f) + key))
                r[col] = f"{c['delta_db']:+.2f} ({c['outcome']})" if c else "—"
            rows.append(r)
        cols = [("method", "method", ""), ("zero", "0 labels", "")] + [(k, h, "") for k, h in frac_cols]
        md.append(f"\n{label}:\n\n" + markdown_table(rows, cols))


def sr_section(runner: "Runner", md: list[str]) -> list[dict]:
    """The super-resolution section, appended to ``md``; returns its rows for ``results.json``."""
    cfg, sr = runner.cfg, runner.cfg.tasks.sr
    spec = runner.spec("sr", sr.scales[0])  # the section's lists (methods, fractions, seeds) are per task
    stats, _ = aggregate(runner, "sr")
    fr, methods, seeds = spec.fractions, spec.methods, spec.seeds
    k_of = {f: max(1, round(f * runner.plan.train_count(spec))) for f in fr}
    fcfg = spec.finetune_base()
    colour = cfg.data.channels == 3
    md.append("\n## Super-resolution (noisy LR → clean HR)\n\n")
    md.append(f"Each clean HR test image is cropped at the bottom/right to a multiple of the scale, bicubic-downscaled "
              f"(MATLAB `imresize`) and noised with the protocol's fixed seed ({EVAL_SEED}); the reference row is "
              "bicubic up-sampling of the noisy LR input. The networks are SRNets: the U-Net body of the denoising "
              f"pre-training on `{cfg.data.train}` (the same cells as the denoising benchmark; `none` = fresh "
              "weights), a zero-initialised sub-pixel tail and a bicubic skip, fine-tuned (`rcl.training.fit`, "
              "method `supervised`, task `sr`) on the "
              f"labelled HR images ({fcfg.steps} steps of {fcfg.batch_size} HR crops of {fcfg.crop_size}², fresh "
              f"`{cfg.sr_noise}` noise on each LR crop), seeds {seeds}. PSNR/SSIM on the Y channel (BT.601) with a "
              f"border of `scale` pixels{'; RGB PSNR with the same border' if colour else ''}. "
              "'Δ rcl − none' follows the rule of the claims (win/loss beyond the larger seed std). Figures: "
              f"`sr_psnr_vs_fraction.png`, {', '.join(f'`sr_samples_x{sc}.png`' for sc in sr.scales)}.\n")
    metrics = [("psnr", 2, "PSNR (dB, Y)"), ("ssim", 4, "SSIM (Y)")] + ([("psnr_rgb", 2, "PSNR (dB, RGB)")]
                                                                       if colour else [])
    rows_json: list[dict] = []
    for t in sr.test:
        for n in t.noises:
            for sc in sr.scales:
                key = (t.name, n, sc)
                ref = stats.get(("ref",) + key)
                nimg = ref.n_images if ref else 0
                crop = f", centre crops ≤ {t.crop}²" if t.crop else ""
                md.append(f"\n### {t.name}, ×{sc}, {noise_label(n)} (`{n}`, {nimg} images{crop})\n")
                task_tables(md, stats, key, methods, fr, k_of, [(("ref",), "bicubic (noisy LR)")], metrics, nimg,
                            rows_json, {"test": t.name, "noise": n, "scale": sc})
    return rows_json


def jdd_section(runner: "Runner", md: list[str]) -> list[dict]:
    """The JDD section, appended to ``md``; returns its rows for ``results.json``."""
    cfg, j, spec = runner.cfg, runner.cfg.tasks.jdd, runner.spec("jdd")
    stats, payloads = aggregate(runner, "jdd")
    fr, methods, seeds = spec.fractions, spec.methods, spec.seeds
    n_train = runner.plan.train_count(spec)
    k_of = {f: max(1, round(f * n_train)) for f in fr}
    fcfg, psec, jm = spec.finetune_base(), spec.pretrain_section, spec.model_cfg
    rc, bc = psec.rcl_config(), psec.method_config(role_method("self-supervised"))
    train, _ = cfg.jdd_train
    md.append("\n## Joint demosaicking + denoising (noisy Bayer mosaic → clean RGB)\n\n")
    md.append(f"Pattern {j.pattern}, noise `{j.noise}` on the mosaic. Pre-training: the {n_train} clean RGB "
              f"images of `{train}` are mosaicked, noised once (seed {cfg.jdd_noise_seed}) and packed to 4 channels "
              f"at half resolution; each method pre-trains a UNet(4, 4) (width {jm.width}, depth {jm.depth}) on them for "
              f"{psec.steps} steps (RCL: {rc.batch_images} images × 2 crops of {rc.crop_size}²; baselines: "
              f"{bc.batch_size} crops of {bc.crop_size}²; `none` = fresh weights). Fine-tuning: a JDDNet (that body, a "
              f"zero-initialised sub-pixel tail, a Malvar skip) fine-tuned (`rcl.training.fit`, method "
              f"`supervised`, task `jdd`), {fcfg.steps} steps of "
              f"{fcfg.batch_size} RGB crops of {fcfg.crop_size}² with fresh noise per crop, seeds {seeds}. Test images "
              "are cropped to even sides, mosaicked and noised with the protocol's fixed seed; the reference row is "
              "bilinear demosaicking of the noisy mosaic; 'Malvar' is Malvar-He-Cutler demosaicking "
              "(colour-demosaicing); 'Malvar + BM3D' runs CBM3D on the Malvar output with the σ the protocol passes "
              "(the noise model's per-image σ on [0, 1], the root of the noise variance averaged over the mosaic; "
              "demosaicking correlates the noise, so this σ is only approximately that of the RGB image). PSNR/SSIM "
              "on RGB. Figures: `jdd_psnr_vs_fraction.png`, `jdd_samples.png`.\n")
    rows_json: list[dict] = []
    refs = [(("ref",), "bilinear demosaic (noisy)"), (("classical", "malvar"), "Malvar demosaic (noisy)"),
            (("classical", "malvar+bm3d"), "Malvar + BM3D (σ known)")]
    metrics = [("psnr", 2, "PSNR (dB, RGB)"), ("ssim", 4, "SSIM (RGB)")]
    fmin = min(fr)
    for t in j.test:
        for n in t.noises:
            key = (t.name, n, 1)
            ref = stats.get(("ref",) + key)
            nimg = ref.n_images if ref else 0
            crop = f", centre crops ≤ {t.crop}²" if t.crop else ""
            md.append(f"\n### {t.name}, `{n}` ({nimg} images{crop})\n")
            task_tables(md, stats, key, methods, fr, k_of, refs, metrics, nimg, rows_json,
                        {"test": t.name, "noise": n})
            b = payloads.get(("classical", "malvar+bm3d") + key)
            if b and b[0]["n_images"] < nimg:
                names = {im["name"] for im in b[0]["images"]}
                parts = [f"bilinear {subset_psnr(payloads.get(('ref',) + key, []), names):.2f}"]
                if ("classical", "malvar") + key in payloads:
                    parts.append(f"Malvar {subset_psnr(payloads[('classical', 'malvar') + key], names):.2f}")
                parts.append(f"Malvar + BM3D {subset_psnr(b, names):.2f}")
                for m in methods:
                    pl = payloads.get(("ft", m, fmin) + key)
                    if pl:
                        parts.append(f"{m} @ {fmin * 100:g} % {subset_psnr(pl, names):.2f}")
                md.append(f"\nOn the {len(names)} image(s) Malvar + BM3D ran on ({', '.join(sorted(names))}), PSNR (dB): "
                          + ", ".join(parts) + " (networks: mean over seeds).\n")
    return rows_json


def task_section(runner: "Runner", md: list[str], spec) -> list[dict]:
    """The section of another registered task (:class:`~.taskspec.SectionSpec`), appended to ``md``:
    its reference row (:attr:`rcl.tasks.Task.reference_name`) and the fine-tuned networks per test
    set/noise; returns its rows for ``results.json``."""
    task = spec.task
    stats, _ = aggregate(runner, spec.name)
    fr = spec.fractions
    train, _, channels = spec.train_source()
    k_of = {f: max(1, round(f * runner.plan.train_count(spec))) for f in fr}
    fcfg = spec.finetune_base()
    md.append(f"\n## {task.describe()} (task `{spec.name}`)\n\n")
    md.append(f"Registered task {task!r}. Pre-training: the {runner.plan.train_count(spec)} clean images of "
              f"`{train}` ({channels} channel(s)), made once into the task's pre-training data "
              f"(`{spec.collection_noise}`, seed {spec.noise_seed}); each method pre-trains on them for "
              f"{spec.pretrain_section.steps} steps. "
              f"Fine-tuning (`rcl.training.fit`, method `supervised`): {fcfg.steps} steps of {fcfg.batch_size} "
              f"crops of {fcfg.crop_size}² with fresh `{spec.train_noise}` noise, seeds {spec.seeds}. Test images "
              f"are degraded by the task with the protocol's fixed seed ({EVAL_SEED}); the reference row is "
              f"{task.reference_name}; scores by the task's metrics.\n")
    metrics = [("psnr", 2, "PSNR (dB)"), ("ssim", 4, "SSIM")]
    rows_json: list[dict] = []
    for t in spec.tests:
        for n in t.noises:
            key = spec.stat_key(t.name, n)
            ref = stats.get(("ref",) + key)
            nimg = ref.n_images if ref else 0
            md.append(f"\n### {t.name}, {noise_label(n)} (`{n}`, {nimg} images)\n")
            task_tables(md, stats, key, spec.methods, fr, k_of, [(("ref",), task.reference_name)], metrics, nimg,
                        rows_json, {"test": t.name, "noise": n})
    return rows_json
