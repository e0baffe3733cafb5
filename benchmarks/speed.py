"""Speed and memory of rcl's main operations on this machine (results go to docs/benchmarks.md).

Each case runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own.

    python benchmarks/speed.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "pretrain_step": "RCL pre-training step, U-Net w16 d3, 16 images × 2 crops of 48², grayscale",
    "finetune_step": "supervised fine-tuning step, U-Net w16 d3, 16 crops of 48², grayscale",
    "infer_gray_512": "inference, U-Net w16 d3, one 512×512 grayscale image",
    "infer_rgb_768x512": "inference, U-Net w16 d3, one 768×512 RGB image",
    "infer_rgb_768x512_tiled": "inference as above, tiles of 256 with overlap 16",
    "emd_pairwise_32": "pairwise EMD matrix + NT-Xent, 32 residual crops 48² (forward+backward)",
}


def run_case(name: str, repeats: int) -> dict:
    import resource

    import torch

    from rcl.data.datasets import ImageSet
    from rcl.evaluation.inference import predict
    from rcl.losses import ResidualNTXent
    from rcl.models import ModelConfig, build_model
    from rcl.data.noise import GaussianRangeNoise
    from rcl.methods import get_method
    from rcl.tasks import get_task
    from rcl.training import FinetuneConfig, PretrainConfig

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cin = 3 if "rgb" in name else 1
    model = build_model(ModelConfig(in_channels=cin, out_channels=cin))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images = ImageSet([torch.rand(1, 180, 180) for _ in range(32)], [str(i) for i in range(32)])
    task = get_task("denoise")
    if name == "pretrain_step":
        method = get_method("rcl")(images, PretrainConfig(), task=task, model=model)
    elif name == "finetune_step":
        method = get_method("supervised")(images, FinetuneConfig(), task=task, model=model, noise=GaussianRangeNoise())
    else:
        method = None

    def once():
        if method is not None:
            loss, _ = method.loss(model, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        elif name == "emd_pairwise_32":
            r = torch.randn(32, 1, 48, 48, requires_grad=True)
            ResidualNTXent()(r).backward()
        elif name == "infer_gray_512":
            predict(model, torch.rand(1, 512, 512))
        elif name == "infer_rgb_768x512":
            predict(model, torch.rand(3, 512, 768))
        elif name == "infer_rgb_768x512_tiled":
            predict(model, torch.rand(3, 512, 768), tile=256, overlap=16)

    once()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"case": name, "median_s": times[len(times) // 2], "min_s": times[0], "repeats": repeats,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats)))
        return
    rows = []
    for name in CASES:
        res = subprocess.run([sys.executable, __file__, "--case", name, "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import torch

    lines = ["# Speed and memory\n",
             f"Measured by `python benchmarks/speed.py --out docs/benchmarks.md` on {platform.processor() or platform.machine()}, "
             f"{rows[0]['threads']} torch threads, torch {torch.__version__}, Python {platform.python_version()}. "
             "Median of the repeats after one warm-up; peak RSS of the whole subprocess (Python + torch + data).\n",
             "| case | median (s) | min (s) | peak RSS (MiB) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {CASES[r['case']]} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['peak_rss_mib']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        # replace only this script's part (up to the next "## " section); keep the other sections
        old = args.out.read_text() if args.out.exists() else ""
        rest = old[old.index("\n## "):] if "\n## " in old else ""
        args.out.write_text(text + rest)


if __name__ == "__main__":
    main()
