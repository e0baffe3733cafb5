"""TASK-SPECIFIC: every place where the command line branches on the task (denoise / sr / jdd).

The commands (pretrain, finetune, evaluate, restore) call these hooks and hold no task
if-chain of their own, so that the task registry (``rcl.tasks``) can replace this module's
bodies one by one. Each hook keeps the old checks in their old order (the first bad option
named is the same).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import UsageError


class Task(str, Enum):
    denoise = "denoise"
    sr = "sr"
    jdd = "jdd"


TaskNoiseOpt = Annotated[Optional[str], typer.Option(
    "--noise", help="Noise model, σ on 0-255: gaussian:25, gaussian:5-50 (σ per image), poisson:30, "
                    "poisson-gaussian, or real. Default: gaussian:5-50 (denoise, sr), poisson-gaussian (jdd).")]
PatternOpt = Annotated[str, typer.Option(help="Bayer pattern for --task jdd: RGGB, BGGR, GRBG or GBRG.")]


# --- pretrain / finetune (the CLI's Task enum) ---

def default_train_noise(noise: Optional[str], task: Task) -> str:
    """--noise of pretrain/finetune, or the task's default."""
    if noise is not None:
        return noise
    return "poisson-gaussian" if task == Task.jdd else "gaussian:5-50"


def pretraining_data(task: Task, images, noise_model, data: Path, pattern: str, seed: int, crop_size: int):
    """The noisy collection RCL pre-trains on, and the extra checkpoint metadata it implies."""
    if task != Task.jdd:
        from ..data.datasets import add_noise_per_image

        return (images if not noise_model.synthetic else add_noise_per_image(images, noise_model, seed)[0]), {}
    from ..data.degradations import check_pattern
    from ..training.downstream import packed_noisy_mosaics

    if not noise_model.synthetic:
        raise UsageError("--task jdd pre-trains on mosaics synthesised from clean RGB images; "
                         "--noise real is not supported here")
    if images.channels != 3:
        raise UsageError(f"{data}: --task jdd needs RGB images to mosaic, got {images.channels} channel(s)")
    pattern = check_pattern(pattern)
    noisy = packed_noisy_mosaics(images, pattern, noise_model, seed)
    if noisy.min_side() < crop_size:
        raise UsageError(f"packed mosaics are half the image size ({noisy.min_side()} px), smaller than "
                         f"--crop-size {crop_size}; use --crop-size {noisy.min_side()} or less")
    return noisy, {"data": "packed-bayer", "pattern": pattern}


def check_finetune_options(task: Task, noise: str, noisy: Optional[Path], scale: int, crop_size: int) -> None:
    """Options of `rcl finetune` that are wrong for the task (before any image is read)."""
    from ..data.noise import parse_noise_spec

    if task != Task.denoise and noisy is not None:
        raise UsageError(f"--noisy pairs are supported for --task denoise only (got --task {task.value})")
    if noisy is None and not parse_noise_spec(noise).synthetic:
        raise UsageError("--noise real needs --noisy (noisy/clean pairs); or give a synthetic --noise")
    if task == Task.sr and scale not in (2, 3, 4, 8):
        raise UsageError(f"--scale must be 2, 3, 4 or 8, got {scale}")
    if task == Task.sr and crop_size % scale:
        raise UsageError(f"--crop-size {crop_size} must be a multiple of --scale {scale}")
    if task == Task.jdd and crop_size % 2:
        raise UsageError(f"--crop-size {crop_size} must be even for --task jdd (whole Bayer tiles)")


def finetune_body_channels(task: Task, images, data: Path) -> int:
    """Channels of the network body the task fine-tunes (JDD: 4, the packed mosaic)."""
    body_channels = 4 if task == Task.jdd else images.channels
    if task == Task.jdd and images.channels != 3:
        raise UsageError(f"{data}: --task jdd needs clean RGB images, got {images.channels} channel(s)")
    return body_channels


def check_init(task: Task, init: Path, meta: dict, pattern: str, scale: int) -> None:
    """Can the checkpoint ``init`` (metadata ``meta``) start a fine-tune of ``task``?"""
    init_task = meta.get("task", "denoise")
    if init_task != "denoise" and init_task != task.value:
        raise UsageError(f"{init}: a {init_task} checkpoint cannot initialise a --task {task.value} fine-tune")
    if task == Task.jdd and meta.get("data") != "packed-bayer" and init_task != "jdd":
        raise UsageError(f"{init}: --task jdd starts from a checkpoint pre-trained with `rcl pretrain --task jdd` "
                         "(packed Bayer mosaics)")
    if task == Task.jdd and meta.get("pattern", pattern.upper()) != pattern.upper():
        raise UsageError(f"{init}: pre-trained on {meta['pattern']} mosaics, not --pattern {pattern}")
    if task == Task.sr and init_task == "sr" and int(meta.get("scale", 0)) != scale:
        raise UsageError(f"{init}: an SR ×{meta.get('scale')} checkpoint, not ×{scale}")
    if task == Task.denoise and meta.get("data") == "packed-bayer":
        raise UsageError(f"{init}: pre-trained on packed Bayer mosaics; fine-tune it with --task jdd")


def check_body(task: Task, mcfg, body_channels: int, data: Path, init: Optional[Path]) -> None:
    """The network body (new or from --init) must suit the task."""
    if mcfg.in_channels != body_channels:
        hint = f"; use --channels {mcfg.in_channels}" if task != Task.jdd else ""
        raise UsageError(f"{data}: the task needs a model taking {body_channels} channel(s) but the model "
                         f"({init or 'new'}) takes {mcfg.in_channels}{hint}")
    if task != Task.denoise and mcfg.arch != "unet":
        raise UsageError(f"--task {task.value} builds on a U-Net body; got arch {mcfg.arch}")


def run_finetune(task: Task, images, noise_model, pairs, scale: int, pattern: str, cfg, mcfg, init_model,
                 log: Optional[Path], progress: bool):
    """Fine-tune for the task: (model, history, labelled names, extra checkpoint metadata)."""
    if task == Task.denoise:
        from ..training import finetune

        model, hist, labelled = finetune(images, noise_model if pairs is None else None, cfg, mcfg,
                                         init=init_model, noisy=pairs, log_path=log, progress=progress)
        return model, hist, labelled, {}
    if task == Task.sr:
        from ..training.downstream import finetune_sr

        model, hist, labelled = finetune_sr(images, noise_model, scale, cfg, mcfg, init=init_model,
                                            log_path=log, progress=progress)
        return model, hist, labelled, {"task": "sr", "scale": scale, "skip": True}
    from ..data.degradations import check_pattern
    from ..training.downstream import finetune_jdd

    model, hist, labelled = finetune_jdd(images, noise_model, check_pattern(pattern), cfg, mcfg,
                                         init=init_model, log_path=log, progress=progress)
    return model, hist, labelled, {"task": "jdd", "pattern": check_pattern(pattern), "skip": model.skip}


# --- evaluate / restore (the task read from a checkpoint: rcl.evaluation.tasks) ---

def default_eval_noise(noise: Optional[str], task) -> str:
    """--noise of evaluate, or the task's default."""
    return noise if noise is not None else ("poisson-gaussian" if task.name == "jdd" else "gaussian:25")


def check_test_channels(task, want: int, test, checkpoint: Path, data: Path) -> None:
    """The test images must suit a model of ``task`` taking ``want`` channels."""
    if task.name == "jdd":
        if test.channels != 3:
            raise UsageError(f"{data}: JDD evaluation needs RGB test images, got {test.channels} channel(s)")
    elif want != test.channels:
        raise UsageError(f"{checkpoint}: model takes {want} channel(s), test images have "
                         f"{test.channels}; use --channels {want}")


def metric_note(task) -> str:
    """What the evaluation table's PSNR/SSIM are computed on, when not the plain image."""
    return " (Y channel)" if task.name == "sr" else ""


def check_restorable(meta: dict, checkpoint: Path) -> None:
    """Only restoration models restore (not a pre-training on packed mosaics)."""
    if meta.get("data") == "packed-bayer":
        raise UsageError(f"{checkpoint}: an RCL pre-training on packed Bayer mosaics, not a restoration model; "
                         "fine-tune it with `rcl finetune --task jdd`")


def check_restore_tile(task, tile: Optional[int]) -> None:
    if tile is not None and task.name == "jdd" and tile % 2:
        raise UsageError(f"--tile must be even for a JDD model (Bayer phase), got {tile}")
