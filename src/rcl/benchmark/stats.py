"""Statistics of the evaluated cells: per-row means and sample standard deviations over seeds,
pairwise comparisons against the seed spread, verdicts, and their formatting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Runner


@dataclass
class Stat:
    """Mean ± sample std over seeds of one row on one test set/noise(/scale); PSNR in dB."""

    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    n: int  # seeds
    n_images: int
    psnr_rgb: float = math.nan  # SR on colour images: RGB PSNR beside the Y-channel PSNR
    psnr_rgb_std: float = math.nan


def mean_std(vals: list[float]) -> tuple[float, float]:
    """Mean and sample std of the finite values (nan when there are none / fewer than two)."""
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def aggregate(runner: "Runner", task: str = "denoise") -> tuple[dict, dict]:
    """The rows of ``task``: keys (row kind…, test, noise) — (…, test, noise, scale) for SR/JDD —
    → :class:`Stat`, fine-tuned rows ("ft", method, fraction) pooled over seeds; and the same keys
    → the cells' payloads (per-image scores)."""
    by_row: dict[tuple, list[dict]] = {}
    for c, p in runner.scores(task):
        row = c.row[:3] if c.row[0] == "ft" else c.row
        by_row.setdefault(row + runner.spec_of(c).stat_key(c.test, c.noise), []).append(p)
    out = {}
    for k, ps in by_row.items():
        pm, pstd = mean_std([p["psnr"] for p in ps])
        sm, sstd = mean_std([p["ssim"] for p in ps])
        rm, rstd = mean_std([p.get("psnr_rgb") for p in ps])
        out[k] = Stat(pm, pstd, sm, sstd, len(ps), ps[0]["n_images"], rm, rstd)
    return out, by_row


def noisy_rows(runner: "Runner") -> dict:
    """(test, noise) → (psnr_noisy, ssim_noisy, n_images) of the denoising test images, from a
    fine-tuned cell (the full test selection)."""
    out = {}
    for c, p in runner.scores("denoise"):
        if c.row[0] == "ft" and (c.test, c.noise) not in out:
            out[(c.test, c.noise)] = (p["psnr_noisy"], p["ssim_noisy"], p["n_images"])
    return out


def compare(a: Stat | None, b: Stat | None) -> dict | None:
    """A vs B: Δ PSNR (dB), the larger seed std, and the outcome (win/loss beyond it, else tie)."""
    if a is None or b is None:
        return None
    d = a.psnr - b.psnr
    if a.n < 2 or b.n < 2:
        spread, outcome = math.nan, "tie (one seed)"
    else:
        spread = max(a.psnr_std, b.psnr_std)
        outcome = "win" if d > spread else ("loss" if d < -spread else "tie")
    return {"delta_db": d, "spread_db": spread, "outcome": outcome}


def verdict(outcomes: list[str], missing: str | None = None) -> str:
    """Holds if every outcome is a win, does not hold if one is a loss, else inconclusive (why)."""
    if missing:
        return f"inconclusive (not measured: {missing})"
    if not outcomes:
        return "inconclusive (nothing to compare)"
    if any(o == "loss" for o in outcomes):
        return "does not hold"
    if all(o == "win" for o in outcomes):
        return "holds"
    if all(o == "tie (one seed)" for o in outcomes):
        return "inconclusive (one seed: no spread estimate)"
    return "inconclusive (difference within seed std)"


def combine(verdicts: list[str]) -> str:
    """One verdict from several (any 'does not hold' wins, then all 'holds', else the first reason)."""
    if any(v == "does not hold" for v in verdicts):
        return "does not hold"
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    reasons = [v for v in verdicts if v.startswith("inconclusive")]
    return reasons[0] if reasons else "inconclusive"


def subset_psnr(payloads: list[dict], names: set[str]) -> float:
    """Mean over seeds of the mean PSNR on the images ``names`` (a classical row's subset)."""
    vals = []
    for p in payloads:
        sel = [im["psnr"] for im in p["images"] if im["name"] in names]
        if sel:
            vals.append(sum(sel) / len(sel))
    return sum(vals) / len(vals) if vals else math.nan


# -- formatting -----------------------------------------------------------------------------

def fmt(mean: float, std: float, digits: int) -> str:
    """``mean ± std`` (``mean`` alone without a finite std; — without a finite mean)."""
    if mean is None or not math.isfinite(mean):
        return "—"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def noise_label(spec: str) -> str:
    """``gaussian:25`` → ``σ=25``, ``gaussian:5-50`` → ``σ∈[5, 50]``; other specs unchanged."""
    kind, _, arg = spec.partition(":")
    if kind == "gaussian":
        return f"σ∈[{arg.replace('-', ', ')}]" if "-" in arg.lstrip("-") else f"σ={arg}"
    return spec
