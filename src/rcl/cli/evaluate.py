"""`rcl evaluate`: score checkpoints with the fixed-seed evaluation protocol."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..configs import MAX_SEED
from ..tasks import TASKS
from .common import (DeviceOpt, OverwriteOpt, ThreadsOpt, UsageError, check_channels, check_outputs, check_restorer,
                     check_tile, errors_to_exit, path_argument, path_option, set_threads, tile_help)
from .task_options import EvalNoiseOpt


class Reference(str, Enum):
    """Network-free references that ``--reference`` adds to the table."""

    bm3d = "bm3d"


@errors_to_exit
def evaluate(
    checkpoints: Annotated[list[Path], path_argument(help="One or more checkpoints of the same task to compare.")],
    data: Annotated[Path, path_option("--data", help="Folder of clean test images.")],
    noise: EvalNoiseOpt = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Noise seed of the protocol.")] = 0,
    channels: Annotated[Optional[int], typer.Option(help="Convert test images to 1 or 3 channels.")] = None,
    tile: Annotated[Optional[int], typer.Option(help=tile_help())] = None,
    json_out: Annotated[Optional[Path], path_option("--json", help="Write per-image scores as JSON.")] = None,
    reference: Annotated[Optional[Reference], typer.Option(
        help="Add a classical reference row under the same protocol: bm3d = BM3D (CBM3D on RGB) given each "
             "image's true σ; denoising models and Gaussian --noise only.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
):
    # the help (docstring) is set below, from the tasks
    from ..checkpoint import load_checkpoint
    from ..data.datasets import load_image_set
    from ..data.io import atomic_write_bytes
    from ..data.noise import parse_noise_spec
    from ..evaluation import evaluate as run_evaluate
    from ..evaluation import BM3D_ROW, bm3d_reference, model_denoiser
    from ..reporting import finite_json, print_table
    from ..tasks import task_from_metadata

    from ..training import describe_device, resolve_device

    check_channels(channels)
    check_tile(tile)
    set_threads(threads)
    dev = resolve_device(device)
    if json_out is not None:
        check_outputs({"--json": json_out}, [data, *checkpoints], overwrite)
    models = [(ck, *load_checkpoint(ck)) for ck in checkpoints]
    for _, model, _ in models:
        model.to(dev)
    for ck, _, meta in models:
        check_restorer(meta, ck)
    tasks = {(task_from_metadata(m).describe()) for _, _, m in models}
    if len(tasks) > 1:
        raise UsageError(f"checkpoints of different tasks cannot be compared in one table: {sorted(tasks)}")
    task = task_from_metadata(models[0][2])
    noise = noise if noise is not None else task.eval_noise
    noise_model = parse_noise_spec(noise)
    if not noise_model.synthetic:
        raise UsageError("evaluation needs clean images and a synthetic --noise, not 'real'")
    references = {}
    if reference is Reference.bm3d:
        try:
            references[BM3D_ROW] = bm3d_reference(task, noise_model)
        except ValueError as exc:
            raise UsageError(f"--reference bm3d: {exc}") from None
    min_size, why = task.min_test_size()  # the task's one rule (also the benchmark's)
    test = load_image_set(data, channels=channels, min_size=min_size, min_size_reason=why)
    denoisers = {}
    for ck, model, meta in models:
        want = meta["model"]["in_channels"]
        need = task.output_channels(want)
        if test.channels != need and need == want:
            raise UsageError(f"{ck}: model takes {want} channel(s), test images have {test.channels}; "
                             f"use --channels {want}")
        if test.channels != need:
            raise UsageError(f"{data}: a {task.describe()} model is scored on {need}-channel test images, "
                             f"got {test.channels} channel(s)")
        name, k = ck.name, 2
        while name in denoisers:
            name, k = f"{ck.name} ({k})", k + 1
        denoisers[name] = model_denoiser(model, tile)
    reference_names = set()
    for name, restorer in references.items():  # in the same call: the same noisy inputs, the same scores
        while name in denoisers:
            name += " (reference)"
        denoisers[name] = restorer
        reference_names.add(name)
    results, _ = run_evaluate(denoisers, test, noise_model, seed, task=task)
    rows = [{"method": task.reference_name, "psnr": r.mean("psnr_noisy"), "ssim": r.mean("ssim_noisy")}
            for r in list(results.values())[:1]]
    rows += [{"method": k, "psnr": r.mean("psnr"), "ssim": r.mean("ssim")} for k, r in results.items()]
    print_table(f"{data} — {task.describe()}{task.score_note}, {noise_model.describe()}, seed {seed}, "
                f"{len(test)} images, on {describe_device(dev)}", rows)
    if json_out is not None:
        payload = {"data": str(data), "task": task.name, "scale": task.scale, "noise": noise, "seed": seed,
                   "device": describe_device(dev),
                   "results": {k: {**r.to_dict(), "reference": k in reference_names} for k, r in results.items()}}
        text = json.dumps(finite_json(payload), indent=2, allow_nan=False)
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(text))
        typer.echo(f"wrote {json_out}")


evaluate.__doc__ = (
    "Score checkpoints on clean test images with fixed-seed synthetic degradations (docs/protocol.md).\n\n"
    + " ".join(f"{cls.name}: {cls.protocol_help}." for cls in TASKS.values() if cls.protocol_help))
