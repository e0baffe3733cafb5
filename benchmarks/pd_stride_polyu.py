"""Choose the pixel-shuffle down-sampling (PD) stride of blind-spot training on real camera noise
(PolyU), by zero-label PSNR / SSIM on a validation split of scenes: never on the test part.

Steps (each a subcommand; the commands that were run, and their results, are in docs/design.md,
"Pixel-shuffle down-sampling for real noise"):

    # 1. the scene-disjoint split (rcl.data.real_pairs.scene_split, fractions 0.6/0.2/0.2, seed 0):
    #    links to the noisy training images (the only images training sees), to the validation
    #    pairs, and the three file lists in split.json; the test part is listed, never linked
    python benchmarks/pd_stride_polyu.py split --polyu ../shared/data/real/PolyU --out /tmp/pd_polyu

    # 2. pre-training, noisy training-scene images only: RCL with `rcl pretrain --noise real
    #    --pd-stride S`, N2V through rcl.training.fit with N2VConfig(pd_stride=S)
    rcl pretrain /tmp/pd_polyu/train -o /tmp/pd_polyu/rcl_s2.safetensors --noise real --pd-stride 2 ...
    python benchmarks/pd_stride_polyu.py n2v --train /tmp/pd_polyu/train --pd-stride 2 \\
        -o /tmp/pd_polyu/n2v_s2.safetensors --steps 800 --threads 1

    # 3. every checkpoint on the validation pairs, at several inference strides
    python benchmarks/pd_stride_polyu.py evaluate --split /tmp/pd_polyu --inference 1,2,train \\
        --json benchmarks/pd_stride_polyu.json /tmp/pd_polyu/*.safetensors

    # 4. a copy of a checkpoint with another pd_stride_inference (for `rcl noise-corr --checkpoint`)
    python benchmarks/pd_stride_polyu.py set-inference CKPT 2 -o CKPT_inf2.safetensors

Restoration goes through the package's one inference function (rcl.evaluation.inference.predict,
``pd_stride`` = the inference stride) and is scored with rcl.evaluation.metrics (PSNR on [0, 1]
after clamping, SSIM on 8-bit), averaged over the validation images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _link_all(names, src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        target = dst / n
        if not target.exists():
            target.symlink_to((src / n).resolve())


def cmd_split(a) -> None:
    from rcl.data.real_pairs import matched_pairs, scene_key, scene_split

    pairs = matched_pairs(a.polyu / "noisy", a.polyu / "clean")
    names = [p.name for p in pairs]
    split = scene_split(names, (0.6, 0.2, 0.2), seed=0)
    out = a.out
    _link_all(split.train, a.polyu / "noisy", out / "train")  # noisy only: no clean training image is linked
    _link_all(split.val, a.polyu / "noisy", out / "val" / "noisy")
    _link_all(split.val, a.polyu / "clean", out / "val" / "clean")
    record = {"fractions": [0.6, 0.2, 0.2], "seed": 0, "by": "scene",
              **{part: list(getattr(split, part)) for part in ("train", "val", "test")},
              "scenes": {part: sorted({scene_key(n) for n in getattr(split, part)}) for part in ("train", "val", "test")}}
    (out / "split.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"train {len(split.train)} / val {len(split.val)} / test {len(split.test)} images "
          f"({', '.join(f'{k}: {len(v)} scenes' for k, v in record['scenes'].items())}) -> {out}")


def cmd_n2v(a) -> None:
    import torch

    from rcl.checkpoint import save_checkpoint
    from rcl.data.datasets import load_image_set
    from rcl.methods.n2v import N2VConfig
    from rcl.models import ModelConfig
    from rcl.tasks import DenoiseTask
    from rcl.training import fit

    torch.set_num_threads(a.threads)
    noisy = load_image_set(a.train, min_size=a.crop_size)
    cfg = N2VConfig(steps=a.steps, batch_size=a.batch_size, crop_size=a.crop_size, seed=a.seed,
                    pd_stride=a.pd_stride)
    body = ModelConfig(arch="unet", in_channels=noisy.channels, out_channels=noisy.channels, width=16, depth=3)
    t0 = time.time()
    res = fit(DenoiseTask(), "n2v", noisy, cfg, body, log_path=a.log, progress=False, desc=f"n2v pd{a.pd_stride}")
    save_checkpoint(a.out, res.model, body, stage="pretrain", method="n2v", noise="real",
                    training=cfg.model_dump(), n_images=len(noisy), final_loss=res.history[-1]["loss"])
    print(f"wrote {a.out} ({a.steps} steps, {time.time() - t0:.0f} s, final loss {res.history[-1]['loss']:.4g})")


def _strides(spec: str, train_stride: int) -> list[int]:
    out = []
    for part in spec.split(","):
        s = train_stride if part.strip() == "train" else int(part)
        if s not in out:
            out.append(s)
    return out


def cmd_evaluate(a) -> None:
    import numpy as np
    import torch

    from rcl.checkpoint import load_checkpoint
    from rcl.data.datasets import load_image_set
    from rcl.evaluation.inference import predict
    from rcl.evaluation.metrics import psnr, ssim

    torch.set_num_threads(a.threads)
    noisy = load_image_set(a.split / "val" / "noisy")
    clean = load_image_set(a.split / "val" / "clean")
    assert noisy.names == clean.names
    split = json.loads((a.split / "split.json").read_text())
    assert len(noisy) == len(split["val"])
    rows = [{"model": "noisy input", "psnr": float(np.mean([psnr(y.clamp(0, 1), c) for y, c in zip(noisy.images, clean.images)])),
             "ssim": float(np.mean([ssim(y.clamp(0, 1), c) for y, c in zip(noisy.images, clean.images)]))}]
    print(f"noisy input: {rows[0]['psnr']:.2f} dB / {rows[0]['ssim']:.4f}", flush=True)
    for ck in a.checkpoints:
        model, meta = load_checkpoint(ck)
        train_stride = meta.get("training", {}).get("pd_stride", 1)
        for s in _strides(a.inference, train_stride):
            t0 = time.time()
            outs = [predict(model, y, pd_stride=s).clamp(0, 1) for y in noisy.images]
            row = {"model": Path(ck).name, "method": meta.get("method"), "pd_stride": train_stride,
                   "pd_stride_inference": s, "steps": meta.get("training", {}).get("steps"),
                   "seed": meta.get("training", {}).get("seed"),
                   "final_loss": meta.get("final_loss"),
                   "psnr": float(np.mean([psnr(o, c) for o, c in zip(outs, clean.images)])),
                   "ssim": float(np.mean([ssim(o, c) for o, c in zip(outs, clean.images)])),
                   "residual_std_255": float(np.mean([float((y - o).std()) * 255 for y, o in zip(noisy.images, outs)]))}
            rows.append(row)
            print(f"{row['model']} (train PD {train_stride}, inference PD {s}): {row['psnr']:.2f} dB / "
                  f"{row['ssim']:.4f} ({time.time() - t0:.0f} s)", flush=True)
    record = {"what": "zero-label PSNR/SSIM on PolyU validation scenes (scene_split 0.6/0.2/0.2, seed 0)",
              "validation_images": len(noisy), "cpu": _cpu_model(), "threads": a.threads,
              "python": sys.version.split()[0], "torch": torch.__version__,
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "rows": rows,
              "split": {k: split[k] for k in ("fractions", "seed", "by", "scenes", "train", "val", "test")}}
    if a.json:
        Path(a.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {a.json}")


def cmd_set_inference(a) -> None:
    from rcl.checkpoint import load_checkpoint, save_checkpoint
    from rcl.models import ModelConfig

    model, meta = load_checkpoint(a.checkpoint)
    keep = {k: v for k, v in meta.items() if k not in ("format", "format_version", "rcl_version", "model")}
    keep["pd_stride_inference"] = a.stride
    save_checkpoint(a.out, model, ModelConfig(**meta["model"]), **keep)
    print(f"wrote {a.out} (pd_stride_inference {a.stride})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("--polyu", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(fn=cmd_split)
    n = sub.add_parser("n2v")
    n.add_argument("--train", type=Path, required=True)
    n.add_argument("--pd-stride", type=int, default=1)
    n.add_argument("-o", "--out", type=Path, required=True)
    n.add_argument("--steps", type=int, default=800)
    n.add_argument("--batch-size", type=int, default=16)
    n.add_argument("--crop-size", type=int, default=48)
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--threads", type=int, default=1)
    n.add_argument("--log", type=Path)
    n.set_defaults(fn=cmd_n2v)
    e = sub.add_parser("evaluate")
    e.add_argument("checkpoints", nargs="+")
    e.add_argument("--split", type=Path, required=True)
    e.add_argument("--inference", default="1,2,train", help="inference strides; 'train': the training stride")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--json")
    e.set_defaults(fn=cmd_evaluate)
    si = sub.add_parser("set-inference")
    si.add_argument("checkpoint")
    si.add_argument("stride", type=int)
    si.add_argument("-o", "--out", required=True)
    si.set_defaults(fn=cmd_set_inference)
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    a.fn(a)


if __name__ == "__main__":
    main()
