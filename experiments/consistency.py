"""Choose RCL's consistency term and contrastive weight by measurement (issue: core).

For each variant: pre-train on noisy Train400 (σ ~ U[5, 50] per image, fixed noise), then measure
on held-out Set12 (σ ~ U[5, 50] per image, protocol seed 0):
  * Pearson r between the per-image residual std and the true σ,
  * PSNR/SSIM of the pre-trained network alone (no labels),
  * PSNR/SSIM after fine-tuning on 1 % of Train400 labels (4 images), same steps for all,
and the same fine-tuning from scratch.

    python experiments/consistency.py --data ../shared/data --out docs/consistency
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rcl.data import GaussianRangeNoise, add_noise_per_image, load_image_set
from rcl.evaluation import evaluate, make_noisy_test_set, model_denoiser
from rcl.evaluation.residual import sigma_correlation
from rcl.models import ModelConfig
from rcl.training import FinetuneConfig, PretrainConfig, finetune, pretrain

VARIANTS = {
    "blindspot, w_c=0.01": dict(consistency="blindspot", contrastive_weight=0.01),
    "blindspot, w_c=0 (no contrastive)": dict(consistency="blindspot", contrastive_weight=0.0),
    "blindspot, w_c=0.1": dict(consistency="blindspot", contrastive_weight=0.1),
    "fidelity λ=10, w_c=1": dict(consistency="fidelity", consistency_weight=10.0, contrastive_weight=1.0),
    "recorruption λ=1, w_c=1": dict(consistency="recorruption", consistency_weight=1.0, contrastive_weight=1.0),
    "none, w_c=1": dict(consistency="none", contrastive_weight=1.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    noise = GaussianRangeNoise()
    train = load_image_set(args.data / "train/Train400", channels=1)
    noisy_train, _ = add_noise_per_image(train, noise, seed=1)
    test = load_image_set(args.data / "test/Set12", channels=1)
    noisy_test, sig_test = make_noisy_test_set(test, noise, seed=0)
    mcfg = ModelConfig()
    ft = FinetuneConfig(steps=args.finetune_steps, label_fraction=0.01)
    rows = []
    t0 = time.time()
    scratch, _, labelled = finetune(train, noise, ft, mcfg, progress=False)
    res, _ = evaluate({"scratch": model_denoiser(scratch)}, test, noise, noisy=noisy_test, sigmas=sig_test)
    rows.append({"variant": "scratch + 1% labels", **{k: res["scratch"].mean(k) for k in ("psnr", "ssim")},
                 "seconds": time.time() - t0})
    print(rows[-1], flush=True)
    for name, kw in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.time()
        cfg = PretrainConfig(steps=args.pretrain_steps, **kw)
        model, hist = pretrain(noisy_train, mcfg, cfg, progress=False)
        corr = sigma_correlation(model, noisy_test, sig_test)
        tuned, _, _ = finetune(train, noise, ft, mcfg, init=model, progress=False)
        res, _ = evaluate({"rcl": model_denoiser(model), "tuned": model_denoiser(tuned)}, test, noise,
                          noisy=noisy_test, sigmas=sig_test)
        rows.append({"variant": name, "config": kw, "pearson_r": corr["pearson_r"],
                     "resid_std_over_sigma": corr["mean_ratio"],
                     "psnr_rcl_only": res["rcl"].mean("psnr"), "ssim_rcl_only": res["rcl"].mean("ssim"),
                     "psnr": res["tuned"].mean("psnr"), "ssim": res["tuned"].mean("ssim"),
                     "psnr_noisy": res["rcl"].mean("psnr_noisy"), "seconds": time.time() - t0,
                     "final_contrastive": hist[-1]["contrastive"]})
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "labelled": labelled, "rows": rows}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2))
    (args.out / "table.md").write_text(render(payload))


def render(payload: dict) -> str:
    """Markdown table of the measured rows."""
    rows = payload["rows"]
    out = ["| variant | residual-σ Pearson r | residual std / σ | PSNR RCL only | PSNR after fine-tune (1 %) | SSIM after fine-tune |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "pearson_r" not in r:
            out.append(f"| {r['variant']} | – | – | – | {r['psnr']:.2f} | {r['ssim']:.4f} |")
            continue
        out.append(f"| {r['variant']} | {r['pearson_r']:.3f} | {r['resid_std_over_sigma']:.2f} | "
                   f"{r['psnr_rcl_only']:.2f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    noisy = next((r["psnr_noisy"] for r in rows if "psnr_noisy" in r), float("nan"))
    out.append(f"\nNoisy input: {noisy:.2f} dB (Set12, σ ~ U[5, 50] per image, protocol seed 0). "
               f"Labelled images: {', '.join(payload['labelled'])}.\n")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
