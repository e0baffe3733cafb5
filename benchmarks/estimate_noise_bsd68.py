"""`rcl estimate-noise` measured: σ̂ from a pre-trained network's calibrated residual vs scikit-image's
estimate_sigma (and rcl's default estimator), on BSD68 with white Gaussian noise of a known σ, and on
the PolyU training scenes beside the oracle σ = std(noisy − clean).

The calibration images must not be test images: we calibrate on a held-out part of Train400 that the
network was not pre-trained on. BSD68 gets one σ per image, σ ~ U[5, 50] seeded by (seed, file name)
(the evaluation protocol's noise, ``gaussian:5-50``). PolyU (Xu et al., arXiv 1804.02603;
**non-commercial research use only**): only the training part of
``scene_split(names, (0.6, 0.2, 0.2), seed=0)``.

    OMP_NUM_THREADS=1 python benchmarks/estimate_noise_bsd68.py /tmp/pre400.safetensors \
        --calibration /tmp/t400_cal --bsd68 ../shared/data/test/BSD68 --polyu ../shared/data/real/PolyU \
        --json benchmarks/estimate_noise_bsd68.json

Everything goes through the functions behind ``rcl estimate-noise`` (rcl.evaluation.noise_level:
``calibrate``, ``image_residual_std``, ``estimate_sigma``). σ on the 0–255 scale.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _summary(est: np.ndarray, true: np.ndarray) -> dict:
    """MAE, mean signed error, median absolute error, Pearson r (nan when σ̂ is constant)."""
    r = float(np.corrcoef(est, true)[0, 1]) if np.std(est) > 0 else float("nan")
    return {"mae": float(np.mean(np.abs(est - true))), "bias": float(np.mean(est - true)),
            "median_abs_error": float(np.median(np.abs(est - true))), "pearson_r": r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--calibration", type=Path, required=True, help="clean calibration images (not test images)")
    ap.add_argument("--bsd68", type=Path, required=True)
    ap.add_argument("--polyu", type=Path, default=None, help="folder holding PolyU noisy/ and clean/")
    ap.add_argument("--seed", type=int, default=0, help="seed of the BSD68 noise and of the calibration noise")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from rcl.checkpoint import load_checkpoint
    from rcl.data.datasets import load_image_set
    from rcl.data.io import read_image
    from rcl.data.noise import SCALE, parse_noise_spec
    from rcl.data.real_pairs import matched_pairs, scene_split
    from rcl.evaluation import make_noisy_test_set
    from rcl.reporting import finite_json
    from rcl.evaluation.noise_level import (CALIBRATION_SIGMAS, DEFAULT_ESTIMATOR, calibrate, estimate_sigma,
                                            image_residual_std, oracle_sigma)

    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.checkpoint)
    want = meta["model"]["in_channels"]
    t0 = time.perf_counter()
    cal_images = load_image_set(args.calibration, channels=want)
    cal = calibrate(model, cal_images, CALIBRATION_SIGMAS, seed=args.seed)
    t_cal = time.perf_counter() - t0
    methods = ("network", "wavelet", DEFAULT_ESTIMATOR)

    def estimates(y: torch.Tensor) -> dict:
        r = image_residual_std(model, y, per_channel=y.shape[0] != want)
        return {"residual_std": r * SCALE, "network": cal(r) * SCALE, "in_range": cal.in_range(r),
                "wavelet": estimate_sigma(y, "wavelet") * SCALE,
                DEFAULT_ESTIMATOR: estimate_sigma(y, DEFAULT_ESTIMATOR) * SCALE}

    bsd = load_image_set(args.bsd68, channels=want)
    noisy, sigmas = make_noisy_test_set(bsd, parse_noise_spec("gaussian:5-50"), args.seed)
    bsd_rows = {}
    for name, y, s in zip(noisy.names, noisy.images, sigmas):
        bsd_rows[name] = {"sigma": float(s) * SCALE, **estimates(y)}
    true = np.array([r["sigma"] for r in bsd_rows.values()])
    bsd_table = {m: _summary(np.array([r[m] for r in bsd_rows.values()]), true) for m in methods}
    bins = [(5, 20), (20, 35), (35, 50.0001)]
    bsd_bins = {f"{a:g}-{min(b, 50):g}": {m: float(np.mean([abs(r[m] - r["sigma"]) for r in bsd_rows.values()
                                                            if a <= r["sigma"] < b])) for m in methods}
                for a, b in bins}
    extrapolated_bsd = sum(not r["in_range"] for r in bsd_rows.values())

    print(f"calibration: {len(cal_images)} images of {args.calibration}; σ {list(CALIBRATION_SIGMAS)} ↦ mean "
          f"residual std {[round(v, 2) for v in cal.to_dict()['fitted']]} ({t_cal:.1f} s)\n")
    print(f"BSD68, {len(bsd)} images, one σ ~ U[5, 50] each (seed {args.seed}); {extrapolated_bsd} residual std(s) "
          "outside the calibrated range\n")
    print("| estimator | MAE | mean σ̂ − σ | median abs. error | Pearson r | MAE σ∈[5,20) | [20,35) | [35,50] |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in methods:
        t = bsd_table[m]
        print(f"| {m} | {t['mae']:.2f} | {t['bias']:+.2f} | {t['median_abs_error']:.2f} | {t['pearson_r']:.3f} | "
              + " | ".join(f"{bsd_bins[k][m]:.2f}" for k in bsd_bins) + " |")

    polyu = None
    if args.polyu is not None:
        pairs = {p.name: p for p in matched_pairs(args.polyu / "noisy", args.polyu / "clean")}
        names = scene_split(sorted(pairs), (0.6, 0.2, 0.2), seed=0).train
        rows = {}
        for name in names:
            y, _ = read_image(pairs[name].noisy)
            x, _ = read_image(pairs[name].clean)
            rows[name] = {"oracle": oracle_sigma(y, x) * SCALE, **estimates(y)}
        oracle = np.array([r["oracle"] for r in rows.values()])
        table = {m: _summary(np.array([r[m] for r in rows.values()]), oracle) for m in methods}
        extrapolated = sum(not r["in_range"] for r in rows.values())
        res = np.array([r["residual_std"] for r in rows.values()])
        print(f"\nPolyU training scenes, {len(names)} crops (RGB; the 1-channel network runs per channel), oracle σ "
              f"mean {oracle.mean():.2f}; network residual std {res.min():.2f}–{res.max():.2f}, {extrapolated} "
              "outside the calibrated range\n")
        print("| estimator | MAE | mean σ̂ − σ | median abs. error | Pearson r |\n|---|---:|---:|---:|---:|")
        for m in methods:
            t = table[m]
            print(f"| {m} | {t['mae']:.2f} | {t['bias']:+.2f} | {t['median_abs_error']:.2f} | {t['pearson_r']:.3f} |")
        polyu = {"split": "scene_split(names, (0.6, 0.2, 0.2), seed=0).train", "files": names, "table": table,
                 "extrapolated": extrapolated, "per_image": rows}
    wall = time.perf_counter() - t0
    print(f"\n{wall:.1f} s")
    if args.json is not None:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip() or None
        except OSError:
            commit = None
        payload = {"checkpoint": str(args.checkpoint), "checkpoint_meta": {k: meta.get(k) for k in ("model", "stage", "noise")},
                   "calibration_images": sorted(cal_images.names), "calibration": cal.to_dict(),
                   "sigma_scale": "0-255", "seed": args.seed,
                   "bsd68": {"noise": "gaussian:5-50, one σ per image seeded by (seed, file name)",
                             "table": bsd_table, "mae_by_sigma": bsd_bins, "extrapolated": extrapolated_bsd,
                             "per_image": bsd_rows},
                   "polyu": polyu,
                   "polyu_data": "PolyU (Xu et al., arXiv 1804.02603; non-commercial research use only)",
                   "commit": commit, "python": platform.python_version(), "torch": torch.__version__, "wall_s": wall}
        args.json.write_text(json.dumps(finite_json(payload), indent=2, allow_nan=False))  # nan → null
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
