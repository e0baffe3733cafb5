"""The run's figures: PSNR vs label fraction per test set/noise(/scale), and sample restorations
(denoising: ``psnr_vs_fraction.png``, ``samples.png``; SR: ``sr_psnr_vs_fraction.png``,
``sr_samples_x<scale>.png``; JDD: ``jdd_psnr_vs_fraction.png``, ``jdd_samples.png``; another
registered task: ``<name>_psnr_vs_fraction.png``).

Reads the run only through the runner's read API (:mod:`.runner`) and :mod:`.stats`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .cells import EVAL_SEED
from .inputs import centre_crop
from .plan import PLAIN
from .stats import aggregate, noise_label, noisy_rows
from .taskspec import SectionSpec
from .validation import role_method

if TYPE_CHECKING:
    from .runner import Runner


def figures(runner: "Runner", work: Path) -> None:
    """Every figure of the configured tasks, into ``work``."""
    if runner.cfg.tasks.denoise:
        _denoise_figures(runner, work)
    if runner.cfg.tasks.sr is not None:
        _sr_figures(runner, work)
    if runner.cfg.tasks.jdd is not None:
        _jdd_figures(runner, work)
    for name in runner.cfg.tasks.registered:
        _task_figure(runner, work, runner.spec(name))


def _series(stats: dict, methods: list[str], fracs: list[float], key: tuple) -> dict:
    """method → (fractions, mean PSNRs, PSNR stds) of its fine-tuned rows at ``key`` (test, noise[, scale])."""
    series = {}
    for m in methods:
        pts = [(f, stats[("ft", m, f) + key]) for f in fracs if ("ft", m, f) + key in stats]
        series[m] = ([f for f, _ in pts], [s.psnr for _, s in pts], [s.psnr_std for _, s in pts])
    return series


def _denoise_figures(runner: "Runner", work: Path) -> None:
    from ..data.noise import parse_noise_spec
    from ..evaluation.protocol import evaluate
    from ..reporting import plot_metric_vs_fraction, plot_restorations
    from .report import row_methods

    cfg, spec = runner.cfg, runner.spec("denoise")
    stats, _ = aggregate(runner, "denoise")
    ours = role_method("ours")
    noisy = noisy_rows(runner)
    panels = []
    for t, n in cfg.expand(None):
        hl = {"noisy input": noisy[(t, n)][0]}
        b = stats.get(("bm3d", t, n))
        if b is not None and b.n_images == noisy[(t, n)][2]:
            hl["BM3D"] = b.psnr
        d = stats.get(("direct", ours, t, n))
        if d is not None:
            hl[f"{ours}, 0 labels"] = d.psnr
        panels.append((f"{t} {noise_label(n)}", _series(stats, row_methods(cfg), cfg.label_fractions, (t, n)), hl))
    plot_metric_vs_fraction(panels, work / "psnr_vs_fraction.png")

    # samples: one image of the first test set, at σ=25 if evaluated, else the first noise
    t0 = cfg.data.test[0]
    noise = "gaussian:25" if "gaussian:25" in t0.noises else t0.noises[0]
    clean_all, noisy_all, sig_all = runner.inputs.noisy_test(t0, noise, spec.test_limit(t0), spec)
    clean, noisy_img = clean_all.subset([0]), noisy_all.subset([0])
    fmin, s0 = min(cfg.label_fractions), cfg.seeds[0]
    dens = {}
    if cfg.bm3d.enabled:
        dens["BM3D (σ known)"] = spec.classical_restorer("bm3d")
    if ours in runner.plan.pretrained:
        dens[f"{ours}, 0 labels"] = runner.restorer(PLAIN, runner.plan.pretrained[ours], spec)
    for m in cfg.methods:
        dens[f"{m} + {fmin * 100:g} %"] = runner.restorer(PLAIN, runner.plan.finetuned(spec, m, fmin, s0), spec)
    res, outs = evaluate(dens, clean, parse_noise_spec(noise), seed=EVAL_SEED, noisy=noisy_img, sigmas=sig_all[:1],
                         keep_outputs=True, task=spec.task)
    first = next(iter(res.values())).scores[0]
    cols = [(f"noisy\n{first.psnr_noisy:.2f} dB", noisy_img.images)]
    cols += [(f"{k}\n{res[k].scores[0].psnr:.2f} dB", v) for k, v in outs.items()]
    cols += [("clean", clean.images)]
    plot_restorations(cols, [f"{clean.names[0]} ({t0.name}) {noise_label(noise)}"], work / "samples.png", crop=160)


def _sr_figures(runner: "Runner", work: Path) -> None:
    from ..data.noise import parse_noise_spec
    from ..evaluation.protocol import evaluate
    from ..reporting import plot_metric_vs_fraction, plot_restorations

    sr = runner.cfg.tasks.sr
    spec = runner.spec("sr", sr.scales[0])  # the section's lists (methods, fractions, seeds) are per task
    stats, _ = aggregate(runner, "sr")
    fr, methods, seeds = spec.fractions, spec.methods, spec.seeds
    panels = []
    for t in sr.test:
        for n in t.noises:
            for sc in sr.scales:
                key = (t.name, n, sc)
                ref = stats.get(("ref",) + key)
                panels.append((f"{t.name} ×{sc} {noise_label(n)}", _series(stats, methods, fr, key),
                               {"bicubic (noisy LR)": ref.psnr} if ref else {}))
    plot_metric_vs_fraction(panels, work / "sr_psnr_vs_fraction.png", ylabel="PSNR (dB, Y)")

    # samples: the first image of the first test set at its first noise, one figure per scale
    t0, fmin, s0 = sr.test[0], min(fr), seeds[0]
    noise = t0.noises[0]
    for sc in sr.scales:
        spec = runner.spec("sr", sc)
        clean = runner.inputs.test_images(t0, spec.test_limit(t0), spec).subset([0])
        dens = {spec.task.reference_name: spec.classical_restorer(spec.task.reference_id)}
        for m in methods:
            dens[f"{m} + {fmin * 100:g} %"] = runner.restorer(PLAIN, runner.plan.finetuned(spec, m, fmin, s0), spec)
        res, outs = evaluate(dens, clean, parse_noise_spec(noise), seed=EVAL_SEED, keep_outputs=True, task=spec.task)
        cols = [(f"{k}\n{res[k].scores[0].psnr:.2f} dB (Y)", v) for k, v in outs.items()] + [("clean HR", clean.images)]
        plot_restorations(cols, [f"{clean.names[0]} ({t0.name}) ×{sc} {noise_label(noise)}"],
                          work / f"sr_samples_x{sc}.png", crop=160)


def _jdd_figures(runner: "Runner", work: Path) -> None:
    from ..data.datasets import ImageSet
    from ..data.noise import parse_noise_spec
    from ..evaluation.protocol import evaluate
    from ..reporting import plot_metric_vs_fraction, plot_restorations

    j, spec = runner.cfg.tasks.jdd, runner.spec("jdd")
    stats, _ = aggregate(runner, "jdd")
    fr, methods, seeds = spec.fractions, spec.methods, spec.seeds
    panels = []
    for t in j.test:
        for n in t.noises:
            key = (t.name, n, 1)
            ref = stats.get(("ref",) + key)
            hl = {"bilinear": ref.psnr} if ref else {}
            for rk, label in ((("classical", "malvar"), "Malvar"), (("classical", "malvar+bm3d"), "Malvar + BM3D")):
                st = stats.get(rk + key)
                if st is not None and ref is not None and st.n_images == ref.n_images:
                    hl[label] = st.psnr
            panels.append((f"{t.name} {n}", _series(stats, methods, fr, key), hl))
    plot_metric_vs_fraction(panels, work / "jdd_psnr_vs_fraction.png", ylabel="PSNR (dB, RGB)")

    # samples: a centre crop (≤ 256², even offsets) of the first image of the first test set, so
    # that BM3D stays cheap; PSNRs in the figure are on that crop (its own fixed-seed noise)
    t0, fmin, s0 = j.test[0], min(fr), seeds[0]
    noise = parse_noise_spec(t0.noises[0])
    full = runner.inputs.test_images(t0, spec.test_limit(t0), spec)
    im = centre_crop(full.images[0], 256, align=2)
    clean = ImageSet([im], [full.names[0]])
    task = spec.task
    noisy, _, _ = task.degrade(clean, noise, EVAL_SEED)
    dens = {"bilinear": spec.classical_restorer(task.reference_id)}
    if j.malvar:
        dens["Malvar"] = spec.classical_restorer("malvar")
    if j.bm3d.enabled:
        dens["Malvar + BM3D"] = spec.classical_restorer("malvar+bm3d")
    for m in methods:
        dens[f"{m} + {fmin * 100:g} %"] = runner.restorer(PLAIN, runner.plan.finetuned(spec, m, fmin, s0), spec)
    res, outs = evaluate(dens, clean, noise, seed=EVAL_SEED, keep_outputs=True, task=task)
    cols = [("noisy mosaic", noisy.images)]
    cols += [(f"{k}\n{res[k].scores[0].psnr:.2f} dB", v) for k, v in outs.items()] + [("clean", clean.images)]
    ch, cw = im.shape[-2:]
    plot_restorations(cols, [f"{clean.names[0]} ({t0.name}) {t0.noises[0]}, centre {cw}×{ch}"],
                      work / "jdd_samples.png", crop=160)


def _task_figure(runner: "Runner", work: Path, spec: SectionSpec) -> None:
    """PSNR vs label fraction of another registered task, its reference row highlighted."""
    from ..reporting import plot_metric_vs_fraction

    stats, _ = aggregate(runner, spec.name)
    panels = []
    for t in spec.tests:
        for n in t.noises:
            key = spec.stat_key(t.name, n)
            ref = stats.get(("ref",) + key)
            panels.append((f"{t.name} {noise_label(n)}", _series(stats, spec.methods, spec.fractions, key),
                           {spec.task.reference_name: ref.psnr} if ref else {}))
    plot_metric_vs_fraction(panels, work / f"{spec.name}_psnr_vs_fraction.png")
