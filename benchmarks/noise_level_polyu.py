"""Noise-level estimators on the PolyU training scenes: σ̂ from the noisy image alone vs the oracle
σ = std(noisy − clean), per estimator of ``rcl.evaluation.noise_level.ESTIMATORS``.

Data: the PolyU real-world noisy image dataset (Xu, Li, Liang, Zhang, Zhang, "Real-world noisy image
denoising: a new benchmark", arXiv 1804.02603; **non-commercial research use only**). Only the
training part of ``scene_split(names, (0.6, 0.2, 0.2), seed=0)`` is read; validation and test
scenes are not touched.

    OMP_NUM_THREADS=1 python benchmarks/noise_level_polyu.py ../shared/data/real/PolyU \
        --json benchmarks/noise_level_polyu.json

Prints a Markdown table (σ on the 0–255 scale): mean absolute error, mean signed error, mean ratio
σ̂/σ, and the Pearson correlation with the oracle, sorted by mean absolute error.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("polyu", type=Path, help="folder holding noisy/ and clean/ (NAME.jpg pairs)")
    ap.add_argument("--json", type=Path, default=None, help="write the table and per-image values here")
    args = ap.parse_args(argv)

    import torch

    from rcl.data.io import read_image
    from rcl.data.noise import SCALE
    from rcl.data.real_pairs import matched_pairs, scene_split
    from rcl.evaluation.noise_level import DEFAULT_ESTIMATOR, ESTIMATORS, oracle_sigma

    torch.set_num_threads(1)
    pairs = {p.name: p for p in matched_pairs(args.polyu / "noisy", args.polyu / "clean")}
    split = scene_split(sorted(pairs), (0.6, 0.2, 0.2), seed=0)
    names = split.train
    t0 = time.perf_counter()
    rows = {}
    for name in names:
        y, _ = read_image(pairs[name].noisy)
        x, _ = read_image(pairs[name].clean)
        rows[name] = {"oracle": oracle_sigma(y, x) * SCALE,
                      **{k: fn(y) * SCALE for k, fn in ESTIMATORS.items()}}
    wall = time.perf_counter() - t0
    oracle = np.array([r["oracle"] for r in rows.values()])
    table = []
    for k in ESTIMATORS:
        est = np.array([r[k] for r in rows.values()])
        table.append({"estimator": k, "mae": float(np.mean(np.abs(est - oracle))),
                      "bias": float(np.mean(est - oracle)), "ratio": float(np.mean(est / oracle)),
                      "pearson_r": float(np.corrcoef(est, oracle)[0, 1])})
    table.sort(key=lambda r: r["mae"])
    print(f"PolyU training scenes: {len(names)} crops; oracle σ mean {oracle.mean():.2f}, "
          f"range {oracle.min():.2f}–{oracle.max():.2f} (0–255); {wall:.1f} s\n")
    print("| estimator | MAE | mean σ̂ − σ | mean σ̂ / σ | Pearson r |\n|---|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['estimator']} | {r['mae']:.2f} | {r['bias']:+.2f} | {r['ratio']:.3f} | {r['pearson_r']:.3f} |")
    print(f"\nsmallest MAE: {table[0]['estimator']}; DEFAULT_ESTIMATOR = {DEFAULT_ESTIMATOR}")
    if args.json is not None:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip() or None
        except OSError:
            commit = None
        payload = {"data": "PolyU (Xu et al., arXiv 1804.02603; non-commercial research use only)",
                   "split": "scene_split(names, (0.6, 0.2, 0.2), seed=0).train", "files": names,
                   "sigma_scale": "0-255", "oracle": "std(noisy - clean) over all pixels and channels",
                   "table": table, "per_image": rows, "default_estimator": DEFAULT_ESTIMATOR,
                   "commit": commit, "python": platform.python_version(), "torch": torch.__version__,
                   "wall_s": wall}
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
