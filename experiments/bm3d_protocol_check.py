"""Protocol check: BM3D (σ known) on BSD68 at σ = 25 under rcl's evaluation protocol, against the
published 28.57 dB (Dabov et al. 2007, as reported by Zhang et al. 2017, DnCNN, Table II).

    python experiments/bm3d_protocol_check.py --data ../shared/data/test/BSD68 --out docs/bm3d_protocol_check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rcl.data import GaussianNoise, load_image_set
from rcl.evaluation import bm3d_denoiser, evaluate

PUBLISHED = 28.57


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sigma", type=float, default=25.0)
    args = ap.parse_args()
    clean = load_image_set(args.data, channels=1)
    t0 = time.time()
    res, _ = evaluate({"bm3d": bm3d_denoiser()}, clean, GaussianNoise(args.sigma / 255), seed=0)
    r = res["bm3d"]
    out = {"test_set": str(args.data), "n_images": len(clean), "sigma": args.sigma, "seed": 0,
           "psnr_noisy": r.mean("psnr_noisy"), "psnr_bm3d": r.mean("psnr"), "ssim_bm3d": r.mean("ssim"),
           "published_psnr": PUBLISHED, "difference_db": r.mean("psnr") - PUBLISHED,
           "seconds": time.time() - t0, "per_image": [s.__dict__ for s in r.scores]}
    args.out.write_text(json.dumps(out, indent=2))
    print({k: v for k, v in out.items() if k != "per_image"})


if __name__ == "__main__":
    main()
