"""`rcl finetune`: supervised fine-tuning on a label fraction (denoise, SR, JDD)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (Arch, CheckpointOutOpt, LogOpt, LrOpt, OverwriteOpt, ProgressOpt, SeedOpt, StepsOpt, UsageError,
                     check_output_file, errors_to_exit, load_training_images)
from .task_branches import (PatternOpt, Task, TaskNoiseOpt, check_body, check_finetune_options, check_init,
                            default_train_noise, finetune_body_channels, run_finetune)


def _from_scratch(what: str):
    """An option of the new network, ignored with --init (the checkpoint's network is used)."""
    return typer.Option(help=f"{what} when training from scratch.")


@errors_to_exit
def finetune(
    data: Annotated[Path, typer.Argument(help="Folder of clean training images (the labels).")],
    out: CheckpointOutOpt,
    init: Annotated[Optional[Path], typer.Option(help="Checkpoint to start from (e.g. from `rcl pretrain`); "
                                                     "omit to train from scratch.")] = None,
    noisy: Annotated[Optional[Path], typer.Option(help="Folder of real noisy images matching DATA by file "
                                                       "name; omit to synthesise noise with --noise.")] = None,
    noise: TaskNoiseOpt = None,
    task: Annotated[Task, typer.Option(help="denoise; sr (noisy low-res → clean high-res, needs --scale); "
                                            "jdd (noisy Bayer mosaic → clean RGB, from RGB images).")] = Task.denoise,
    scale: Annotated[int, typer.Option(help="SR scale factor (2 or 4) for --task sr.")] = 2,
    pattern: PatternOpt = "RGGB",
    label_fraction: Annotated[float, typer.Option(help="Fraction 0 < f <= 1 of DATA used as labels (at least one image).")] = 1.0,
    channels: Annotated[Optional[int], typer.Option(help="Convert images to 1 or 3 channels.")] = None,
    arch: Annotated[Arch, _from_scratch("Architecture")] = Arch.unet,
    width: Annotated[int, _from_scratch("Width")] = 16,
    depth: Annotated[int, _from_scratch("Depth")] = 3,
    steps: StepsOpt = 300,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels (of the clean/high-res image).")] = 48,
    lr: LrOpt = 5e-4,
    loss: Annotated[str, typer.Option(help="l2 or l1.")] = "l2",
    seed: SeedOpt = 0,
    log: LogOpt = None,
    progress: ProgressOpt = True,
    overwrite: OverwriteOpt = False,
):
    """Fine-tune on a label fraction of clean images (from --init, or from scratch), for denoising,
    super-resolution (--task sr --scale 2|4) or joint demosaicking + denoising (--task jdd)."""
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..data.datasets import load_image_set
    from ..models import ModelConfig
    from ..training import FinetuneConfig

    check_output_file(out, [data, init, noisy], log=log, overwrite=overwrite)
    noise = default_train_noise(noise, task)
    cfg = FinetuneConfig(steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr, loss=loss,
                         label_fraction=label_fraction, seed=seed)
    check_finetune_options(task, noise, noisy, scale, crop_size)  # TASK-SPECIFIC
    images, noise_model = load_training_images(data, noise, channels, crop_size)
    pairs = None
    if noisy is not None:
        pairs = load_image_set(noisy, channels=channels, min_size=crop_size)
        if pairs.names != images.names:
            raise UsageError(f"{noisy}: file names must match those of {data} one to one")
        for a, b, name in zip(images.images, pairs.images, images.names):
            if a.shape != b.shape:
                raise UsageError(f"{name}: clean {tuple(a.shape)} and noisy {tuple(b.shape)} sizes differ")
    body_channels = finetune_body_channels(task, images, data)  # TASK-SPECIFIC
    init_model, meta = None, {}
    if init is not None:
        init_model, meta = load_checkpoint(init)
        mcfg = ModelConfig(**meta["model"])
        check_init(task, init, meta, pattern, scale)  # TASK-SPECIFIC
    else:
        mcfg = ModelConfig(arch=arch.value, in_channels=body_channels, out_channels=body_channels,
                           width=width, depth=depth)
    check_body(task, mcfg, body_channels, data, init)  # TASK-SPECIFIC
    model, hist, labelled, extra = run_finetune(task, images, noise_model, pairs, scale, pattern, cfg, mcfg,
                                                init_model, log, progress)  # TASK-SPECIFIC
    save_checkpoint(out, model, mcfg, stage="finetune", init=str(init) if init else None,
                    init_stage=meta.get("stage"), noise=noise, training=cfg.model_dump(),
                    labelled_images=labelled, final_loss=hist[-1]["loss"], **extra)
    shown = ", ".join(labelled[:5]) + (f", … ({len(labelled) - 5} more)" if len(labelled) > 5 else "")
    typer.echo(f"wrote {out} ({task.value}; {len(labelled)} labelled image(s): {shown}; "
               f"final loss {hist[-1]['loss']:.4g})")
