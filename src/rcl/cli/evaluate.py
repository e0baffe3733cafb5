"""`rcl evaluate`: score checkpoints with the fixed-seed evaluation protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..configs import MAX_SEED
from .common import OverwriteOpt, UsageError, check_channels, check_outputs, check_tile, errors_to_exit, tile_help
from .task_branches import check_test_channels, default_eval_noise, metric_note


@errors_to_exit
def evaluate(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more checkpoints of the same task to compare.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of clean test images.")],
    noise: Annotated[Optional[str], typer.Option(
        "--noise", help="Noise spec, σ on 0-255 (gaussian:25, gaussian:5-50, poisson:30, poisson-gaussian). "
                        "Default: gaussian:25 (denoise, sr), poisson-gaussian (jdd).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Noise seed of the protocol.")] = 0,
    channels: Annotated[Optional[int], typer.Option(help="Convert test images to 1 or 3 channels.")] = None,
    tile: Annotated[Optional[int], typer.Option(help=tile_help())] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write per-image scores as JSON.")] = None,
    overwrite: OverwriteOpt = False,
):
    """Score checkpoints on clean test images with fixed-seed synthetic degradations (docs/protocol.md).

    Denoising: PSNR/SSIM (uint8, peak 255) beside the noisy input. SR: Y-channel PSNR/SSIM with a
    border of `scale` px beside bicubic up-sampling. JDD: RGB PSNR/SSIM beside bilinear demosaicking.
    """
    from ..checkpoint import load_checkpoint
    from ..data.datasets import load_image_set
    from ..data.io import atomic_write_bytes
    from ..data.noise import parse_noise_spec
    from ..evaluation import evaluate as run_evaluate
    from ..evaluation import model_denoiser
    from ..evaluation.tasks import task_from_metadata
    from ..reporting import finite_json, print_table

    check_channels(channels)
    check_tile(tile)
    if json_out is not None:
        check_outputs({"--json": json_out}, [data, *checkpoints], overwrite)
    models = [(ck, *load_checkpoint(ck)) for ck in checkpoints]
    tasks = {(task_from_metadata(m).describe()) for _, _, m in models}
    if len(tasks) > 1:
        raise UsageError(f"checkpoints of different tasks cannot be compared in one table: {sorted(tasks)}")
    task = task_from_metadata(models[0][2])
    noise = default_eval_noise(noise, task)  # TASK-SPECIFIC
    noise_model = parse_noise_spec(noise)
    if not noise_model.synthetic:
        raise UsageError("evaluation needs clean images and a synthetic --noise, not 'real'")
    test = load_image_set(data, channels=channels, min_size=11 * task.scale,
                          min_size_reason=f"{11 * task.scale} px (SSIM's 11×11 window"
                                          f"{f' at scale {task.scale}' if task.scale > 1 else ''}); drop the file")
    denoisers = {}
    for ck, model, meta in models:
        check_test_channels(task, meta["model"]["in_channels"], test, ck, data)  # TASK-SPECIFIC
        name, k = ck.name, 2
        while name in denoisers:
            name, k = f"{ck.name} ({k})", k + 1
        denoisers[name] = model_denoiser(model, tile)
    results, _ = run_evaluate(denoisers, test, noise_model, seed, task=task)
    rows = [{"method": task.reference_name, "psnr": r.mean("psnr_noisy"), "ssim": r.mean("ssim_noisy")}
            for r in list(results.values())[:1]]
    rows += [{"method": k, "psnr": r.mean("psnr"), "ssim": r.mean("ssim")} for k, r in results.items()]
    metric = metric_note(task)  # TASK-SPECIFIC
    print_table(f"{data} — {task.describe()}{metric}, {noise_model.describe()}, seed {seed}, {len(test)} images", rows)
    if json_out is not None:
        payload = {"data": str(data), "task": task.name, "scale": task.scale, "noise": noise, "seed": seed,
                   "results": {k: r.to_dict() for k, r in results.items()}}
        text = json.dumps(finite_json(payload), indent=2, allow_nan=False)
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(text))
        typer.echo(f"wrote {json_out}")
