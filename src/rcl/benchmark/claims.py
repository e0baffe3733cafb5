"""The four claims of the paper, judged from the benchmark's denoising statistics by explicit
rules (win/loss beyond the larger seed std), and their section of the report.

The methods a claim compares are found by their :attr:`rcl.methods.Method.claim_role`: "ours"
(rcl), "scratch" (none), "self-supervised" (n2v, n2s, ne2ne) and "contrastive" (simclr)."""

from __future__ import annotations

import math

from .config import BenchmarkConfig
from .stats import combine, compare, noise_label, verdict
from .validation import role_method, role_methods


def judge_claims(cfg: BenchmarkConfig, stats: dict) -> list[dict]:
    """The claims (id, claim, rule, verdict, comparisons, …) from the denoising ``stats``
    (:func:`rcl.benchmark.stats.aggregate`: ("ft", method, fraction, test, noise) → Stat)."""
    pairs = cfg.expand(None)
    fr = cfg.label_fractions
    small = [f for f in fr if f < 1] or fr
    fmin, fmax = min(fr), max(fr)
    methods = set(cfg.methods)
    ours, scratch, contrastive = role_method("ours"), role_method("scratch"), role_method("contrastive")
    self_supervised = role_methods("self-supervised")

    def st(m, f, t, n):
        return stats.get(("ft", m, f, t, n))

    def comparisons(a: str, b: str, fracs) -> list[dict]:
        out = []
        for t, n in pairs:
            for f in fracs:
                c = compare(st(a, f, t, n), st(b, f, t, n))
                if c is not None:
                    out.append({"a": a, "b": b, "test": t, "noise": n, "fraction": f, **c})
        return out

    result = []
    # (1) RCL vs scratch
    miss = None if {ours, scratch} <= methods else f"needs methods {ours} and {scratch}"
    comps = comparisons(ours, scratch, small) if not miss else []
    part_a = verdict([c["outcome"] for c in comps], miss)
    part_b, detail_b = "inconclusive (needs two label fractions)", ""
    if not miss and fmin < fmax:
        gs, gl, spreads = [], [], []
        for t, n in pairs:
            a_s, b_s = st(ours, fmin, t, n), st(scratch, fmin, t, n)
            a_l, b_l = st(ours, fmax, t, n), st(scratch, fmax, t, n)
            gs.append(a_s.psnr - b_s.psnr)
            gl.append(a_l.psnr - b_l.psnr)
            spreads.append(max(a_s.psnr_std, b_s.psnr_std, a_l.psnr_std, b_l.psnr_std))
        g_small, g_large = sum(gs) / len(gs), sum(gl) / len(gl)
        spread = sum(spreads) / len(spreads) if all(math.isfinite(s) for s in spreads) else math.nan
        diff = g_small - g_large
        if not math.isfinite(spread):
            part_b = "inconclusive (one seed: no spread estimate)"
        else:
            part_b = "holds" if diff > spread else ("does not hold" if diff < -spread else
                                                    "inconclusive (difference within seed std)")
        detail_b = (f"mean gain over scratch at {fmin:g}: {g_small:+.2f} dB, at {fmax:g}: {g_large:+.2f} dB "
                    f"(difference {diff:+.2f} dB; spread {spread:.2f} dB)")
    parts = {"a": part_a, "b": part_b}
    if cfg.compute_matched_scratch:
        from .plan import MATCHED

        comps_c = comparisons(ours, MATCHED, small) if ours in methods else []
        parts["c"] = verdict([c["outcome"] for c in comps_c], None if ours in methods else f"needs method {ours}")
        comps += comps_c
    overall = combine(list(parts.values()))
    result.append({"id": 1, "claim": "Fine-tuning from RCL beats training from scratch (none), most at small "
                                     "label fractions.",
                   "rule": ("(a) for every test set/noise and every label fraction < 100 % "
                            f"({', '.join(f'{f:g}' for f in small)}), "
                            "mean PSNR over seeds of rcl minus that of none exceeds the larger of their seed "
                            "standard deviations ('win'); a difference below minus that spread is a 'loss'. "
                            "(b) the gain at the smallest fraction, averaged over test sets/noises, exceeds the gain "
                            "at the largest fraction by more than the average spread of the four rows involved. "
                            + ("(c) the rule of (a) against scratch trained for as many steps as pre-training plus "
                               "fine-tuning (compute-matched). " if cfg.compute_matched_scratch else "")
                            + "Holds if every part holds; does not hold if one does not hold; otherwise inconclusive."),
                   "verdict": overall, "parts": parts, "detail": detail_b, "comparisons": comps})
    # (2) few labels vs full supervision
    miss = None
    if not {ours, scratch} <= methods:
        miss = f"needs methods {ours} and {scratch}"
    elif 1.0 not in fr or fmin >= 1.0:
        miss = "needs label fraction 1.0 and a smaller one"
    comps2, outs = [], []
    if not miss:
        tol = cfg.competitive_db
        for t, n in pairs:
            a, b = st(ours, fmin, t, n), st(scratch, 1.0, t, n)
            c = compare(a, b)
            gap, spread = c["delta_db"], c["spread_db"]
            if not math.isfinite(spread):
                o = "tie (one seed)"
            else:
                o = "win" if gap + tol > spread else ("loss" if gap + tol < -spread else "tie")
            comps2.append({"a": f"{ours}@{fmin:g}", "b": f"{scratch}@1", "test": t, "noise": n, "fraction": fmin,
                           "delta_db": gap, "spread_db": spread, "outcome": o})
            outs.append(o)
    note2 = None
    if not miss:
        # how much labels help scratch at this budget: if little, "full supervision" is step-limited
        gains = [st(scratch, 1.0, t, n).psnr - st(scratch, fmin, t, n).psnr for t, n in pairs
                 if st(scratch, 1.0, t, n) is not None and st(scratch, fmin, t, n) is not None]
        gains = [g for g in gains if math.isfinite(g)]
        if gains:
            note2 = (f"Context: scratch (none) gains {sum(gains) / len(gains):+.2f} dB on average from {fmin:g} to "
                     "100 % labels at this fine-tuning budget, so the full-supervision row is limited by the step "
                     "budget as much as by labels; a verdict here says nothing about a converged supervised "
                     "network.")
    result.append({"id": 2, "claim": "With few labels, RCL stays competitive with full supervision.", "note": note2,
                   "rule": (f"rcl fine-tuned at the smallest fraction ({fmin:g}) vs none (scratch) at 100 % labels; "
                            f"the gap is reported in dB. 'Competitive' = gap > −{cfg.competitive_db:g} dB. Holds if "
                            f"gap + {cfg.competitive_db:g} exceeds the larger seed std for every test set/noise; does not "
                            "hold if it is below minus that spread for one; otherwise inconclusive."),
                   "verdict": verdict(outs, miss), "comparisons": comps2})
    # (3) RCL vs the self-supervised baselines after fine-tuning
    base = [m for m in self_supervised if m in methods]
    miss = None if ours in methods and base else f"needs {ours} and at least one of {', '.join(self_supervised)}"
    per, comps3 = {}, []
    for b in base if not miss else []:
        cs = comparisons(ours, b, small)
        comps3 += cs
        per[b] = verdict([c["outcome"] for c in cs])
    v3 = combine(list(per.values())) if per else verdict([], miss)
    result.append({"id": 3, "claim": "RCL pre-training beats Noise2Void / Noise2Self / Neighbor2Neighbor pre-training "
                                     "after fine-tuning.",
                   "rule": ("per baseline, the rule of claim 1(a) with that baseline in place of none (fractions < 100 %); "
                            "holds if it holds against every baseline run; does not hold if it does not hold against "
                            "one; otherwise inconclusive."),
                   "verdict": v3, "parts": per, "comparisons": comps3,
                   "not_run": [m for m in self_supervised if m not in methods]})
    # (4) RCL vs SimCLR
    miss = None if {ours, contrastive} <= methods else f"needs methods {ours} and {contrastive}"
    comps4 = comparisons(ours, contrastive, small) if not miss else []
    result.append({"id": 4, "claim": "RCL pre-training beats SimCLR pre-training (after fine-tuning).",
                   "rule": "the rule of claim 1(a) with simclr in place of none (fractions < 100 %).",
                   "verdict": verdict([c["outcome"] for c in comps4], miss), "comparisons": comps4})
    return result


def claims_section(md: list[str], cfg: BenchmarkConfig, judged: list[dict]) -> None:
    """The report's "Claims" section for the claims ``judged`` (:func:`judge_claims`), appended to ``md``."""
    from ..reporting import markdown_table

    fr = cfg.label_fractions
    md.append("\n## Claims\n\nEach claim is judged only from the numbers above. A comparison A vs B at one test "
              "set/noise/fraction is a **win** if mean PSNR(A) − mean PSNR(B) over seeds exceeds the larger of the "
              "two seed standard deviations, a **loss** if it is below minus that spread, and a **tie** otherwise "
              "(with one seed there is no spread estimate and every comparison is a tie). A claim **holds** if "
              "every comparison it covers is a win, **does not hold** if any is a loss, and is **inconclusive "
              "(difference within seed std)** otherwise. The network and budget are far smaller than the paper's, "
              "so a verdict here is about this budget only.\n")
    for c in judged:
        comps = c["comparisons"]
        counts = {o: sum(1 for x in comps if x["outcome"] == o) for o in ("win", "tie", "loss", "tie (one seed)")}
        md.append(f"\n**Claim {c['id']}: {c['claim']}** — **{c['verdict']}**.\n\n")
        md.append(f"- Rule: {c['rule']}\n")
        if comps:
            md.append(f"- Comparisons: {counts['win']} win, {counts['tie'] + counts['tie (one seed)']} tie, "
                      f"{counts['loss']} loss (of {len(comps)}); mean Δ = "
                      f"{sum(x['delta_db'] for x in comps) / len(comps):+.2f} dB.\n")
        if c["id"] == 1:
            md.append(f"- (a) beats scratch: {c['parts']['a']}; (b) most at small fractions: {c['parts']['b']}"
                      f"{'; ' + c['detail'] if c['detail'] else ''}"
                      + (f"; (c) beats compute-matched scratch: {c['parts']['c']}" if "c" in c["parts"] else "")
                      + ".\n")
        if c["id"] == 2 and comps:
            gaps = "; ".join(f"{x['test']} {noise_label(x['noise'])}: {x['delta_db']:+.2f} dB" for x in comps)
            md.append(f"- Gap rcl@{min(fr):g} − none@100 %: {gaps}.\n")
        if c.get("note"):
            md.append(f"- {c['note']}\n")
        if c["id"] == 3:
            if c["parts"]:
                md.append("- Per baseline: " + "; ".join(f"{k}: {v}" for k, v in c["parts"].items()) + ".\n")
            if c["not_run"]:
                md.append(f"- Not run: {', '.join(c['not_run'])}.\n")
        if comps:
            crow = [{"cmp": f"{x['a']} vs {x['b']}", "tn": f"{x['test']} {noise_label(x['noise'])}",
                     "f": f"{x['fraction']:g}", "d": f"{x['delta_db']:+.2f}",
                     "s": f"{x['spread_db']:.2f}" if math.isfinite(x["spread_db"]) else "—", "o": x["outcome"]}
                    for x in comps]
            md.append("\n<details><summary>all comparisons</summary>\n\n" +
                      markdown_table(crow, [("cmp", "comparison", ""), ("tn", "test set / noise", ""),
                                            ("f", "fraction", ""), ("d", "Δ PSNR (dB)", ""),
                                            ("s", "larger seed std (dB)", ""), ("o", "outcome", "")]) +
                      "\n</details>\n")
