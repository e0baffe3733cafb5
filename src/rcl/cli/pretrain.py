"""`rcl pretrain`: RCL pre-training on noisy images alone."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (Arch, CheckpointOutOpt, CompileOpt, DatasetMode, DatasetOpt, DeviceOpt, LogEveryOpt, LogOpt,
                     LrOpt, OverwriteOpt, Precision, PrecisionOpt, ProgressOpt, ResumeOpt, SaveEveryOpt, SeedOpt,
                     StepsOpt, ThreadsOpt, UsageError, WorkersOpt, check_output_file, engine_metadata,
                     errors_to_exit, finish_state, load_training_images, make_engine, path_argument,
                     set_threads)
from .task_options import (DEFAULT_TASK, PatternOpt, TaskName, TrainNoiseOpt, make_task,
                           pretraining_task_help, task_check)


class Consistency(str, Enum):
    blindspot = "blindspot"
    fidelity = "fidelity"
    recorruption = "recorruption"
    neighbor = "neighbor"
    none = "none"


class Similarity(str, Enum):
    emd = "emd"
    l2 = "l2"
    cosine = "cosine"


_RCL_DEFAULT_STEPS = 2000  # RCLConfig.steps (written out: `rcl --help` does not import torch; tests check it)


@errors_to_exit
def pretrain(
    data: Annotated[Path, path_argument(help="Folder (or file) of training images.")],
    out: CheckpointOutOpt,
    noise: TrainNoiseOpt = None,
    task: Annotated[TaskName, typer.Option(help=pretraining_task_help())] = DEFAULT_TASK,
    pattern: PatternOpt = None,
    channels: Annotated[Optional[int], typer.Option(help="Convert images to 1 or 3 channels (default: as read).")] = None,
    arch: Annotated[Arch, typer.Option(help="Network architecture.")] = Arch.unet,
    width: Annotated[int, typer.Option(help="Network width (channels of the first stage).")] = 16,
    depth: Annotated[int, typer.Option(help="U-Net down-sampling stages / DnCNN layers.")] = 3,
    steps: StepsOpt = _RCL_DEFAULT_STEPS,
    batch_images: Annotated[int, typer.Option(help="Images per batch (2 crops each).")] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 48,
    lr: LrOpt = 1e-3,
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature τ.")] = 0.1,
    contrastive_weight: Annotated[float, typer.Option(help="Weight of the residual NT-Xent term.")] = 0.01,
    consistency: Annotated[Consistency, typer.Option(
        help="Consistency term: blindspot (Noise2Void-style masking), neighbor (Neighbor2Neighbor's "
             "sub-sampled pairs), fidelity, recorruption or none (docs/design.md).")] = Consistency.blindspot,
    consistency_weight: Annotated[float, typer.Option(help="Weight λ of the consistency term.")] = 1.0,
    contrastive_warmup: Annotated[float, typer.Option(
        help="Fraction of the run, 0 to 1, over which the contrastive weight ramps up from 0 "
             "(0: full weight from the start).")] = 0.0,
    center_residuals: Annotated[bool, typer.Option(
        help="Remove each residual crop's mean before the EMD (compare distribution shapes, not offsets).")] = False,
    similarity: Annotated[Similarity, typer.Option(help="Residual similarity (emd = RCL).")] = Similarity.emd,
    pd_stride: Annotated[int, typer.Option(
        help="Pixel-shuffle down-sampling stride S of the blind-spot term (1 = none): each crop is split into "
             "S² sub-images before masking, for spatially correlated (real) noise. --crop-size must be a "
             "multiple of S, with sub-images of at least 8 px.")] = 1,
    pd_stride_inference: Annotated[int, typer.Option(
        help="PD stride at which the checkpoint restores images (rcl restore / evaluate; 1 = the full image). "
             "Recorded in the checkpoint as pd_stride_inference.")] = 1,
    seed: SeedOpt = 0,
    log: LogOpt = None,
    progress: ProgressOpt = True,
    log_every: LogEveryOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = Precision.fp32,
    threads: ThreadsOpt = None,
    dataset: DatasetOpt = DatasetMode.auto,
    workers: WorkersOpt = 0,
    compile: CompileOpt = False,
    save_every: SaveEveryOpt = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Pre-train a network with RCL on noisy images alone (no clean targets are used).

    With a synthetic --noise the images are taken as clean and noised once (seeded), which
    simulates a user's noisy collection; with --noise real they are used as they are. A collection
    larger than memory is decoded from its files as training goes (--dataset, --workers).
    """
    from ..checkpoint import save_checkpoint
    from ..distributed import is_main
    from ..methods import RCL
    from ..models import ModelConfig
    from ..tasks import TaskFieldError
    from ..training import fit

    check_output_file(out, [data, resume], log=log, overwrite=overwrite)
    _check_pd_options(pd_stride, pd_stride_inference, crop_size, consistency)
    if consistency == Consistency.neighbor and crop_size % 2:
        raise UsageError(f"--crop-size {crop_size}: --consistency neighbor sub-samples 2×2 cells and needs an even crop")
    set_threads(threads)
    engine = make_engine(device, precision, compile=compile, progress=progress, log_every=log_every,
                         save_every=save_every, resume=resume, out=out, overwrite=overwrite,
                         workers=workers, inputs=[data, resume], log=log)
    the_task = make_task(task, pattern=pattern)
    noise = noise if noise is not None else the_task.train_noise
    cfg = RCL.Config(steps=steps, batch_images=batch_images, crop_size=crop_size, lr=lr,
                     temperature=temperature, contrastive_weight=contrastive_weight,
                     consistency=consistency.value, consistency_weight=consistency_weight,
                     contrastive_warmup=contrastive_warmup, center_residuals=center_residuals,
                     similarity=similarity.value, seed=seed, pd_stride=pd_stride,
                     pd_stride_inference=pd_stride_inference)
    images, noise_model = load_training_images(data, noise, channels, crop_size, dataset)
    if len(images) < 2:
        raise UsageError(f"{data}: RCL pre-training needs at least 2 images (negatives come from other images)")
    task_check(the_task.check_pretraining, images, noise_model, crop_size, str(data))
    body = ModelConfig(arch=arch.value, in_channels=images.channels, out_channels=images.channels,
                       width=width, depth=depth)
    try:  # as `rcl finetune` does: a checkpoint the task's fine-tuning cannot use is refused before training
        the_task.check_body(the_task.pretrain_model_config(body))
    except TaskFieldError as exc:
        raise UsageError(f"--arch {arch.value}: {exc.reason}") from None
    noisy = the_task.pretraining_data(images, noise_model, seed)
    mcfg = ModelConfig(arch=arch.value, in_channels=noisy.channels, out_channels=noisy.channels,
                       width=width, depth=depth)
    res = fit(the_task, RCL, noisy, cfg, mcfg, log_path=log, progress=progress, desc="pretrain (RCL)", engine=engine)
    model, hist = res.model, res.history
    if not is_main():
        return
    save_checkpoint(out, model, mcfg, stage="pretrain", method=RCL.name, noise=noise,
                    training=cfg.model_dump(), n_images=len(images), final_loss=hist[-1]["loss"],
                    engine=engine_metadata(engine), **the_task.pretraining_metadata(),
                    **({"pd_stride_inference": pd_stride_inference} if pd_stride_inference != 1 else {}))
    finish_state(engine, out)
    typer.echo(f"wrote {out} (final loss {hist[-1]['loss']:.4g} after {cfg.steps} steps on {len(images)} images)")


def _check_pd_options(pd_stride: int, pd_stride_inference: int, crop_size: int, consistency: Consistency) -> None:
    """--pd-stride / --pd-stride-inference: integers from 1 to 16; PD needs the blindspot term and a
    crop size that is a multiple of the stride (sub-images of at least 8 px)."""
    from ..evaluation.inference import MAX_PD_STRIDE
    from ..losses.masking import check_pd_crop

    for name, v in (("--pd-stride", pd_stride), ("--pd-stride-inference", pd_stride_inference)):
        if not 1 <= v <= MAX_PD_STRIDE:
            raise UsageError(f"{name} {v}: must be an integer from 1 to {MAX_PD_STRIDE}")
    if pd_stride != 1 and consistency != Consistency.blindspot:
        raise UsageError(f"--pd-stride {pd_stride} needs --consistency blindspot (got {consistency.value})")
    try:
        check_pd_crop(crop_size, pd_stride)
    except ValueError as exc:
        raise UsageError(f"--crop-size {crop_size} / --pd-stride {pd_stride}: {exc}") from None
