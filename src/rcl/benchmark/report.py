"""The run's report (``report.md``) and the summary in ``results.json``: the header and compute
budget, the denoising sections (results, BM3D protocol check, published numbers, ablations; the
claims come from :mod:`.claims`), the SR/JDD sections (:mod:`.report_tasks`), command and config.

Reads the run only through the runner's read API (:mod:`.runner`) and :mod:`.stats`."""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..models.factory import ModelConfig
from .cells import EVAL_SEED, frac_tag
from .claims import claims_section, judge_claims
from .config import config_yaml
from .published import published_numbers
from .report_tasks import jdd_section, sr_section, task_section
from .stats import aggregate, fmt, noise_label, noisy_rows
from .taskspec import SectionSpec
from .plan import MATCHED, matched_steps
from .validation import method_label, role_method

if TYPE_CHECKING:
    from .runner import Runner


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where available)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def count_parameters(cfg: ModelConfig) -> int:
    """Parameters of the network ``cfg`` builds."""
    from ..models.factory import build_model

    return sum(p.numel() for p in build_model(cfg).parameters())


def log_history(log_path: Path) -> dict | None:
    """Runs recorded in a run folder's ``benchmark.log`` (one ``start:`` line each) and the summed
    compute time of the cells they computed (the ``computed … (X s)`` lines); None if no log."""
    try:
        lines = Path(log_path).read_text().splitlines()
    except OSError:
        return None
    starts = [ln for ln in lines if " start: " in ln]
    secs = 0.0
    for ln in lines:
        m = re.search(r" computed .*\(([0-9.]+) s\)$", ln)
        if m:
            secs += float(m.group(1))
    return {"runs": len(starts), "first": starts[0][:19] if starts else "?", "cell_seconds": secs}


def report(runner: "Runner", out_name: str, command: str, seconds: float, started: str) -> tuple[str, dict]:
    """The report (Markdown) of a finished run and the summary that ``results.json`` holds beside the
    run's config and cell lists (rows, claims, BM3D check, published numbers, SR/JDD rows, budget)."""
    import torch

    cfg = runner.cfg
    den = cfg.tasks.denoise
    n_train = runner.plan.train_count(runner.spec("denoise"))
    mcfg = cfg.model
    n_params = count_parameters(mcfg)
    rcl_cfg = cfg.pretrain.rcl_config()
    bcfg = cfg.pretrain.method_config(role_method("self-supervised"))  # the baselines' crops

    rows_json: list[dict] = []
    md: list[str] = []
    md.append(f"# rcl benchmark — {cfg.name}\n\n")
    if cfg.note:
        md.append(f"> **{cfg.note.strip()}**\n\n")
    md.append(f"Run folder `{out_name}`, started {started}, {seconds / 60:.1f} min of wall time in this run "
              f"({len(runner.computed)} cells computed, {len(runner.cached)} reused from the cache).")
    history = log_history(runner.log_path)
    if history and history["runs"] > 1:
        md.append(f" The folder's `benchmark.log` records {history['runs']} runs since {history['first']}; the "
                  f"cells they computed took {history['cell_seconds'] / 60:.1f} min in all.")
    md.append("\n\n")
    tasks = [name for name, on in (("denoising", den), ("super-resolution", cfg.tasks.sr is not None),
                                   ("joint demosaicking + denoising", cfg.tasks.jdd is not None)) if on]
    registered = [SectionSpec(cfg, name) for name in cfg.tasks.registered]
    tasks += [spec.task.describe() for spec in registered]
    md.append(f"Tasks: {', '.join(tasks)}.\n\n")
    if den or cfg.tasks.sr is not None:
        md.append(f"Training images: `{cfg.data.train}` ({n_train} images, {cfg.data.channels} channel(s)); "
                  f"pre-training collection noised once with `{cfg.train_noise}` (seed {cfg.noise_seed})"
                  + (f"; fine-tuning on the clean labelled images with fresh `{cfg.train_noise}` noise per crop"
                     if den else "") + ". ")
    md.append(f"Test noise drawn by the protocol with seed {EVAL_SEED} (docs/protocol.md). PSNR in dB, SSIM in "
              "[0, 1]; fine-tuned rows are mean ± sample std over "
              f"{f'seeds {cfg.seeds}' if den else 'the seeds listed in each task section'}; pre-training uses one seed "
              f"({cfg.pretrain.seed}), so 0-label and reference rows have no spread.\n\n")
    budget = (f"**Compute budget (read before comparing with published numbers):** {mcfg.arch} width {mcfg.width} "
              f"depth {mcfg.depth} ({n_params / 1e6:.2f} M parameters); pre-training {cfg.pretrain.steps} steps "
              f"(RCL: {rcl_cfg.batch_images} images × 2 crops of {rcl_cfg.crop_size}²; baselines: "
              f"{bcfg.batch_size} crops of {bcfg.crop_size}²)"
              + (f"; fine-tuning {cfg.finetune.steps} steps of {cfg.finetune.batch_size} crops of "
                 f"{cfg.finetune.crop_size}²" if den else "")
              + f"; CPU only ({cpu_name()}, {torch.get_num_threads()} torch threads). The published networks are "
              "larger and trained far longer on GPUs (DnCNN-S: 17 layers × 64 channels, ≈0.56 M parameters), so "
              "expect our numbers below theirs.")
    md.append(budget + "\n\n")

    abl_json: list[dict] = []
    judged: list[dict] = []
    chk, pub_rows = None, []
    if den:
        judged = judge_claims(cfg, aggregate(runner)[0])
        abl_json, chk, pub_rows = _denoise_sections(runner, md, rows_json, budget)
        claims_section(md, cfg, judged)
    task_json = {}
    if cfg.tasks.sr is not None:
        task_json["sr"] = sr_section(runner, md)
    if cfg.tasks.jdd is not None:
        task_json["jdd"] = jdd_section(runner, md)
    for spec in registered:
        task_json[spec.name] = task_section(runner, md, spec)

    # -- command and config
    md.append(f"\n## Command and config\n\n```\n{command}\n```\n\n```yaml\n{config_yaml(cfg)}```\n")
    md.append(f"\nrcl {__import__('rcl').__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
              f"{cpu_name()}, {torch.get_num_threads()} torch threads.\n")

    summary = {"rows": rows_json + abl_json, "claims": judged, "bm3d_check": chk, "published": pub_rows, **task_json,
               "budget": {"model": mcfg.model_dump(), "parameters": n_params, "pretrain_steps": cfg.pretrain.steps,
                          "finetune_steps": cfg.finetune.steps, "cpu": cpu_name(),
                          "torch_threads": torch.get_num_threads()}}
    return "".join(md), summary


def row_methods(cfg) -> list[str]:
    """The methods of the denoising tables, then the compute-matched scratch row when configured."""
    return list(cfg.methods) + ([MATCHED] if cfg.compute_matched_scratch else [])


def row_label(cfg, m: str) -> str:
    """A row's name in the tables (``none (scratch)``; ``scratch, compute-matched (N steps)``)."""
    return f"scratch, compute-matched ({matched_steps(cfg)} steps)" if m == MATCHED else method_label(m)


def _row_cells(runner: "Runner", m: str, f: float) -> list:
    """The denoising fine-tuning cells of row ``m`` at label fraction ``f`` (one per seed)."""
    task = runner.spec("denoise").name
    return [c for c in runner.plan.model_cells
            if c.kind == "finetune" and c.evals and c.evals[0].row[:3] == ("ft", m, f) and c.task == task]


def _cell_meta(cell) -> dict:
    """A training cell's checkpoint metadata ({} if unreadable)."""
    from ..checkpoint import CheckpointError, read_metadata

    try:
        return read_metadata(cell.path)
    except CheckpointError:
        return {}


def plateau_gain(curve: list[list[float]], steps: int) -> float | None:
    """Validation PSNR gained over the last quarter of a run: the last score minus the first one
    at or after 75 % of ``steps`` (dB); None without two such points."""
    late = [(s, v) for s, v in curve if s >= 0.75 * steps]
    return late[-1][1] - late[0][1] if len(late) >= 2 else None


PLATEAU_DB = 0.05  # "plateaued": less than this gained over the last quarter of the budget


def _learning_curve_section(runner: "Runner", md: list[str]) -> None:
    """Validation PSNR against steps of scratch at the largest label fraction (and of the
    compute-matched scratch row): has full supervision plateaued within the budget?"""
    from ..reporting import markdown_table
    from .validation import role_method

    cfg = runner.cfg
    fmax = max(cfg.label_fractions)
    rows, verdicts = [], []
    for m in (role_method("scratch"), MATCHED):
        for c in _row_cells(runner, m, fmax):
            curve = _cell_meta(c).get("val_curve") or []
            if not curve:
                continue
            gain = plateau_gain(curve, c.training.steps)
            if gain is not None:
                verdicts.append(gain < PLATEAU_DB)
            rows.append({"row": f"{row_label(cfg, m)}, seed {c.training.seed}",
                         "curve": ", ".join(f"{int(s)}: {v:.2f}" for s, v in curve),
                         "gain": f"{gain:+.3f}" if gain is not None else "—"})
    if not rows:
        return
    if not verdicts or len(verdicts) < len(rows):
        verdict = "not measured (a run has fewer than two validations in the last quarter of its steps)"
    else:
        verdict = "plateaued" if all(verdicts) else "not plateaued"
    md.append(f"\nLearning curve of full supervision ({fmax * 100:g} % labels): validation PSNR (dB, on the labels "
              f"held out of training) against the step; the budget counts as plateaued when less than {PLATEAU_DB} dB "
              f"is gained over its last quarter — **{verdict}**:\n\n"
              + markdown_table(rows, [("row", "row", ""), ("curve", "step: validation PSNR", ""),
                                      ("gain", "gain over the last quarter (dB)", "")]))


def _time_section(runner: "Runner", md: list[str]) -> None:
    """Wall time of each training cell (from its checkpoint's ``seconds``): pre-training per method,
    fine-tuning per row and fraction (mean over seeds), on this machine (see the header)."""
    from ..reporting import markdown_table

    def secs(cell) -> float | None:
        v = _cell_meta(cell).get("seconds")
        return float(v) if isinstance(v, (int, float)) else None

    cfg = runner.cfg
    rows = []
    for m, cell in runner.plan.pretrained.items():
        s = secs(cell)
        rows.append({"row": f"pre-training {m}", "steps": cell.training.get("steps", ""), "min": _duration(s)})
    for m in row_methods(cfg):
        for f in cfg.label_fractions:
            cells = _row_cells(runner, m, f)
            vals = [v for v in (secs(c) for c in cells) if v is not None]
            if cells:
                rows.append({"row": f"fine-tuning {row_label(cfg, m)} at {f * 100:g} %",
                             "steps": cells[0].training.steps,
                             "min": _duration(sum(vals) / len(vals) if vals else None)})
    md.append("\nWall time per training cell (fine-tuning: mean over seeds; evaluation cells are in `benchmark.log`; "
              "the machine and thread count are in the header and at the end):\n\n"
              + markdown_table(rows, [("row", "cell", ""), ("steps", "steps", ""), ("min", "wall time", "")]))


def _duration(seconds: float | None) -> str:
    """``12.3 s`` below two minutes, else ``4.5 min``; — when unknown."""
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _denoise_sections(runner: "Runner", md: list[str], rows_json: list[dict],
                      budget: str) -> tuple[list[dict], dict | None, list[dict]]:
    """The denoising parts of the report before the claims (results, BM3D check, published numbers,
    ablations), appended to ``md``; returns (ablation rows, BM3D check, published rows)."""
    from ..methods import get_method
    from ..reporting import markdown_table

    cfg = runner.cfg
    stats = aggregate(runner)[0]
    noisy = noisy_rows(runner)
    n_train = runner.plan.train_count(runner.spec("denoise"))
    fr = cfg.label_fractions
    k_of = {f: max(1, round(f * n_train)) for f in fr}
    pairs = cfg.expand(None)

    # -- main tables
    md.append("\n## Results\n")
    frac_cols = [(f"f{frac_tag(f)}", f"{f * 100:g} % ({k_of[f]} img)") for f in fr]
    for t, n in pairs:
        pn, sn, nimg = noisy[(t, n)]
        tsc = cfg.test_set(t)
        crop = f", centre crops ≤ {tsc.crop}²" if tsc.crop else ""
        md.append(f"\n### {t}, {noise_label(n)} (`{n}`, {nimg} images{crop})\n")
        for metric, digits, label in (("psnr", 2, "PSNR (dB)"), ("ssim", 4, "SSIM")):
            rows = []
            val = pn if metric == "psnr" else sn
            rows.append({"method": "noisy input", "zero": f"{val:.{digits}f}"})
            if metric == "psnr":
                rows_json.append({"kind": "noisy", "test": t, "noise": n, "psnr": pn, "ssim": sn, "n_images": nimg})
            b = stats.get(("bm3d", t, n))
            if b is not None:
                extra = "" if b.n_images == nimg else f", {b.n_images} of {nimg} images"
                rows.append({"method": f"BM3D (σ known{extra})", "zero": f"{getattr(b, metric):.{digits}f}"})
                if metric == "psnr":
                    rows_json.append({"kind": "bm3d", "test": t, "noise": n, "psnr": b.psnr, "ssim": b.ssim,
                                      "n_images": b.n_images})
            for m in row_methods(cfg):
                r = {"method": row_label(cfg, m)}
                d = stats.get(("direct", m, t, n))
                r["zero"] = f"{getattr(d, metric):.{digits}f}" if d else "—"
                if d is not None and metric == "psnr":
                    rows_json.append({"kind": "direct", "method": m, "test": t, "noise": n, "psnr": d.psnr,
                                      "ssim": d.ssim, "predictor": get_method(m).predictor_name,
                                      "n_images": d.n_images})
                for f, (key, _) in zip(fr, frac_cols):
                    s = stats.get(("ft", m, f, t, n))
                    r[key] = fmt(getattr(s, metric), getattr(s, metric + "_std"), digits) if s else "—"
                    if s is not None and metric == "psnr":
                        rows_json.append({"kind": "finetuned", "method": m, "fraction": f, "labelled_images": k_of[f],
                                          "test": t, "noise": n, "psnr_mean": s.psnr, "psnr_std": s.psnr_std,
                                          "ssim_mean": s.ssim, "ssim_std": s.ssim_std, "n_seeds": s.n,
                                          "n_images": s.n_images})
                rows.append(r)
            cols = [("method", "method", ""), ("zero", "0 labels", "")] + [(k, h, "") for k, h in frac_cols]
            md.append(f"\n{label}:\n\n" + markdown_table(rows, cols))
    if cfg.finetune.val_every:
        md.append(f"\nWith at least {cfg.finetune.val_min_labels} labelled images, {cfg.finetune.val_fraction * 100:g} % "
                  f"of them (at least one) are held out of training and scored every {cfg.finetune.val_every} steps and "
                  "after the last, and the best step's weights are kept: the k labelled images of a column include "
                  "them.\n")
    if cfg.compute_matched_scratch:
        md.append(f"\n'{row_label(cfg, MATCHED)}' = none (scratch) trained for as many steps as RCL's pre-training "
                  f"plus fine-tuning ({matched_steps(cfg)}), so that a pre-trained row is also compared at equal "
                  "optimiser steps.\n")
    _time_section(runner, md)
    _learning_curve_section(runner, md)
    md.append("\n'0 labels' = the pre-trained network used directly (rcl, n2v, ne2ne: plain forward pass; n2s: "
              "Noise2Self's J-invariant inference, `n2s_predict`); simclr and none are not denoisers without "
              "labels. 'x % (k img)' = fine-tuned on k labelled training images. Figure: `psnr_vs_fraction.png`; "
              "sample restorations: `samples.png`.\n")

    # -- BM3D check
    md.append("\n## BM3D protocol check\n\n")
    chk = None
    ref = published_numbers().bm3d_check
    for t, n in cfg.expand(cfg.bm3d.where) if cfg.bm3d.enabled else []:
        if t.lower() == ref.test.lower() and n == ref.noise:
            b = stats[("bm3d", t, n)]
            full = b.n_images == ref.n_images and cfg.test_set(t).crop is None
            diff = b.psnr - ref.psnr
            ok = abs(diff) <= ref.tolerance
            chk = {"test": t, "noise": n, "ours": b.psnr, "published": ref.psnr, "diff_db": diff,
                   "within_tolerance": ok, "tolerance_db": ref.tolerance, "n_images": b.n_images,
                   "full_test_set": full}
            note = "" if full else (f" — only {b.n_images} image(s){' (cropped)' if cfg.test_set(t).crop else ''}, "
                                    "so not comparable with the published mean")
            md.append(f"BM3D on {t} {noise_label(n)}: **{b.psnr:.2f} dB** vs published {ref.psnr:.2f} dB "
                      f"({ref.source}): difference {diff:+.2f} dB, **{'within' if ok else 'outside'} {ref.tolerance:g} dB**{note}.\n")
    if chk is None:
        md.append(f"BM3D on {ref.test} {noise_label(ref.noise)} was not run in this configuration (enable `bm3d` with "
                  f"`where` on a test set named {ref.test} with `{ref.noise}`).\n")

    # -- published
    md.append("\n## Published numbers\n\n")
    pub_rows = []
    for p in published_numbers().rows:
        ours, what = "—", "not run"
        tsel = [t for t, n in pairs if t.lower() == p.test.lower() and n == p.noise]
        if tsel:
            t = tsel[0]
            kind = p.ours
            if kind[0] == "bm3d":
                s, what = stats.get(("bm3d", t, p.noise)), "our BM3D"
            elif kind[0] == "direct":
                s, what = stats.get(("direct", kind[1], t, p.noise)), f"our {kind[1]} (0 labels)"
            else:
                s, what = stats.get(("ft", kind[1], kind[2], t, p.noise)), f"our {kind[1]} @ {kind[2] * 100:g} % labels"
            if s is not None:
                ours = f"{s.psnr:.2f}"
            else:
                what = "not run"
        pub_rows.append({"test": p.test, "noise": noise_label(p.noise), "method": p.method,
                         "published": p.psnr, "source": p.source, "ours": ours, "what": what})
    md.append(markdown_table(pub_rows, [("test", "test set", ""), ("noise", "noise", ""), ("method", "method", ""),
                                        ("published", "published PSNR", ".2f"), ("source", "source", ""),
                                        ("ours", "ours", ""), ("what", "our row", "")]))
    md.append("\n" + budget + "\n")

    # -- ablations
    abl_json = []
    if cfg.ablations:
        fa, s0 = cfg.abl_fraction, cfg.seeds[0]
        apairs = cfg.expand(cfg.ablation_eval)
        md.append(f"\n## Ablations (RCL pre-training variants)\n\nPSNR (dB) directly after pre-training (0 labels) / "
                  f"after fine-tuning at {fa * 100:g} % labels ({max(1, round(fa * n_train))} img) with seed {s0}; "
                  "one seed, so differences below the seed std of the main tables are not meaningful.\n\n")

        def single(row):
            return {(c.test, c.noise): p for c, p in runner.scores("denoise") if c.row == row}

        arows = []
        ours = role_method("ours")  # the ablations are variants of its pre-training
        base_d, base_f = single(("direct", ours)), single(("ft", ours, fa, s0))
        variants = [(f"{ours} (base config)", "—", base_d, base_f)]
        for a in cfg.ablations:
            ov = ", ".join(f"{k}={v}" for k, v in a.rcl.items())
            variants.append((a.name, ov, single(("abl-direct", a.name)), single(("abl-ft", a.name))))
        for name, ov, dd, ff in variants:
            r = {"variant": name, "overrides": ov}
            for t, n in apairs:
                d, f = dd.get((t, n)), ff.get((t, n))
                r[f"{t}|{n}"] = f"{d['psnr']:.2f} / {f['psnr']:.2f}" if d and f else (
                    f"{d['psnr']:.2f} / —" if d else "—")
                abl_json.append({"kind": "ablation", "variant": name, "overrides": ov, "test": t, "noise": n,
                                 "direct_psnr": d["psnr"] if d else None, "direct_ssim": d["ssim"] if d else None,
                                 "finetuned_psnr": f["psnr"] if f else None, "finetuned_ssim": f["ssim"] if f else None,
                                 "fraction": fa, "seed": s0})
            arows.append(r)
        md.append(markdown_table(arows, [("variant", "variant", ""), ("overrides", "overrides", "")] +
                                 [(f"{t}|{n}", f"{t} {noise_label(n)}", "") for t, n in apairs]))
        if ours not in cfg.methods or fa not in fr:
            md.append("\nThe base row needs method rcl and the ablation fraction among `label_fractions`.\n")
    return abl_json, chk, pub_rows
