"""The ``rcl`` command line. Every command has ``--help``.

Noise levels σ are given on the 0–255 scale, as in the literature (``--noise gaussian:25``,
``--noise gaussian:5-50``). Bad input ends with a one-line error naming the culprit and exit
status 2; outputs are written atomically and inputs are never overwritten.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from .configs import MAX_SEED

# The argument parser's exception classes: click's, or the copy of click that newer typer vendors.
_parser_errors = sys.modules[typer.BadParameter.__module__]
_NoArgsIsHelp = getattr(_parser_errors, "NoArgsIsHelpError", type("_NeverRaised", (Exception,), {}))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _OneLineErrors(TyperGroup):
    """The root command: parser errors (a missing argument, an unknown option, ``--seed 1e23``)
    end like every other error, with one line ``error: …`` on stderr and exit status 2, instead of
    the argument parser's usage box. ``rcl`` alone still prints the help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except _NoArgsIsHelp as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            code = 2
        except _parser_errors.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            typer.echo(f"error: {_one_line(exc.format_message())}{where}", err=True)
            code = 2
        except _parser_errors.ClickException as exc:
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
            code = exc.exit_code if exc.exit_code else 2
        except typer.Abort:
            typer.echo("error: interrupted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rcl — Residual Contrastive Learning: pre-train restoration networks on noisy "
                       "images, fine-tune with few labels, restore and measure.")


class UsageError(ValueError):
    """A bad combination of command-line options."""


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "value"
        parts.append(f"--{loc.replace('_', '-')}: {err['msg']}")
    return "; ".join(parts)


def _errors_to_exit(fn):
    """Turn expected errors into 'error: …' on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .checkpoint import CheckpointError
        from .data.io import ImageReadError

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            msg = _format_validation(exc)
        except (ImageReadError, CheckpointError, UsageError, OSError, ValueError, FloatingPointError) as exc:
            msg = str(exc)
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(130) from None
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2)

    return wrapper


class Consistency(str, Enum):
    blindspot = "blindspot"
    fidelity = "fidelity"
    recorruption = "recorruption"
    none = "none"


class Arch(str, Enum):
    unet = "unet"
    dncnn = "dncnn"


class Similarity(str, Enum):
    emd = "emd"
    l2 = "l2"
    cosine = "cosine"


NoiseOpt = Annotated[str, typer.Option(
    "--noise", help="Noise model, σ on 0-255: gaussian:25, gaussian:5-50 (σ per image), poisson:30, "
                    "poisson-gaussian, or real (images are already noisy).")]
SeedOpt = Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                       help="Random seed (crops, masks, weights, synthetic noise).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace existing output files (inputs are never replaced).")]


class Task(str, Enum):
    denoise = "denoise"
    sr = "sr"
    jdd = "jdd"


TaskNoiseOpt = Annotated[Optional[str], typer.Option(
    "--noise", help="Noise model, σ on 0-255: gaussian:25, gaussian:5-50 (σ per image), poisson:30, "
                    "poisson-gaussian, or real. Default: gaussian:5-50 (denoise, sr), poisson-gaussian (jdd).")]
PatternOpt = Annotated[str, typer.Option(help="Bayer pattern for --task jdd: RGGB, BGGR, GRBG or GBRG.")]


def _default_noise(noise: Optional[str], task: "Task") -> str:
    if noise is not None:
        return noise
    return "poisson-gaussian" if task == Task.jdd else "gaussian:5-50"


def _input_files(paths: list[Optional[Path]]) -> set[Path]:
    """Resolved paths of every input file: the files themselves and the images inside folders."""
    from .data.io import IMAGE_SUFFIXES

    files: set[Path] = set()
    for p in paths:
        if p is None or not p.exists():
            continue
        if p.is_dir():
            files.update(q.resolve() for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.add(p.resolve())
    return files


def _check_writable_target(path: Path, what: str) -> None:
    """Fail early (before any work) if ``path`` cannot be written as a file."""
    if path.is_dir():
        raise UsageError(f"{path}: {what} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: {what} cannot be created ({parent} is not a folder)")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: {what} cannot be written ({parent} is not writable)")


def _check_replace(path: Path, what: str, overwrite: bool) -> None:
    """The one rule of every command: an existing output is replaced only with --overwrite."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: {what} exists; pass --overwrite to replace it")


def _check_outputs(outputs: dict[str, Optional[Path]], inputs: list[Optional[Path]],
                   overwrite: bool = False) -> None:
    """Outputs (name → path) must be writable files, distinct, never one of the inputs, and new
    unless ``overwrite``."""
    given = {k: v for k, v in outputs.items() if v is not None}
    ins = _input_files(inputs)
    seen: dict[Path, str] = {}
    for what, path in given.items():
        _check_writable_target(path, what)
        r = path.resolve()
        if r in ins:
            raise UsageError(f"{path}: {what} would overwrite an input file; choose another name")
        if r in seen:
            raise UsageError(f"{path}: given as both {seen[r]} and {what}")
        seen[r] = what
        _check_replace(path, what, overwrite)


def _check_output_file(out: Path, inputs: list[Optional[Path]], suffix: str = ".safetensors",
                       log: Optional[Path] = None, overwrite: bool = False) -> None:
    if out.suffix != suffix:
        raise UsageError(f"{out}: output file must end in {suffix}")
    _check_outputs({"--out": out, "--log": log}, inputs, overwrite)


def _load_training_images(data: Path, noise_spec: str, channels: Optional[int], crop: int):
    from .data.datasets import load_image_set
    from .data.noise import parse_noise_spec

    noise = parse_noise_spec(noise_spec)
    if channels is not None and channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    images = load_image_set(data, channels=channels, min_size=crop)
    return images, noise


@app.command()
@_errors_to_exit
def pretrain(
    data: Annotated[Path, typer.Argument(help="Folder (or file) of training images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors).")],
    noise: TaskNoiseOpt = None,
    task: Annotated[Task, typer.Option(help="denoise/sr: pre-train on the noisy images; jdd: on noisy Bayer "
                                            "mosaics made from RGB images (packed to 4 channels).")] = Task.denoise,
    pattern: PatternOpt = "RGGB",
    channels: Annotated[Optional[int], typer.Option(help="Convert images to 1 or 3 channels (default: as read).")] = None,
    arch: Annotated[Arch, typer.Option(help="Network architecture.")] = Arch.unet,
    width: Annotated[int, typer.Option(help="Network width (channels of the first stage).")] = 16,
    depth: Annotated[int, typer.Option(help="U-Net down-sampling stages / DnCNN layers.")] = 3,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 800,
    batch_images: Annotated[int, typer.Option(help="Images per batch (2 crops each).")] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature τ.")] = 0.1,
    contrastive_weight: Annotated[float, typer.Option(help="Weight of the residual NT-Xent term.")] = 0.01,
    consistency: Annotated[Consistency, typer.Option(help="Consistency term.")] = Consistency.blindspot,
    consistency_weight: Annotated[float, typer.Option(help="Weight λ of the consistency term.")] = 1.0,
    similarity: Annotated[Similarity, typer.Option(help="Residual similarity (emd = RCL).")] = Similarity.emd,
    seed: SeedOpt = 0,
    log: Annotated[Optional[Path], typer.Option(help="CSV log of the loss per step.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: OverwriteOpt = False,
):
    """Pre-train a network with RCL on noisy images alone (no clean targets are used).

    With a synthetic --noise the images are taken as clean and noised once (seeded), which
    simulates a user's noisy collection; with --noise real they are used as they are.
    """
    from .checkpoint import save_checkpoint
    from .data.datasets import add_noise_per_image
    from .models import ModelConfig
    from .training import PretrainConfig
    from .training import pretrain as run_pretrain

    _check_output_file(out, [data], log=log, overwrite=overwrite)
    noise = _default_noise(noise, task)
    cfg = PretrainConfig(steps=steps, batch_images=batch_images, crop_size=crop_size, lr=lr,
                         temperature=temperature, contrastive_weight=contrastive_weight,
                         consistency=consistency.value, consistency_weight=consistency_weight,
                         similarity=similarity.value, seed=seed)
    images, noise_model = _load_training_images(data, noise, channels, crop_size)
    if len(images) < 2:
        raise UsageError(f"{data}: RCL pre-training needs at least 2 images (negatives come from other images)")
    extra = {}
    if task == Task.jdd:
        from .data.degradations import check_pattern
        from .training.downstream import packed_noisy_mosaics

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
        extra = {"data": "packed-bayer", "pattern": pattern}
    else:
        noisy = images if not noise_model.synthetic else add_noise_per_image(images, noise_model, seed)[0]
    mcfg = ModelConfig(arch=arch.value, in_channels=noisy.channels, out_channels=noisy.channels,
                       width=width, depth=depth)
    model, hist = run_pretrain(noisy, mcfg, cfg, log_path=log, progress=progress)
    save_checkpoint(out, model, mcfg, stage="pretrain", method="rcl", noise=noise,
                    training=cfg.model_dump(), n_images=len(images), final_loss=hist[-1]["loss"], **extra)
    typer.echo(f"wrote {out} (final loss {hist[-1]['loss']:.4g} after {cfg.steps} steps on {len(images)} images)")


@app.command()
@_errors_to_exit
def finetune(
    data: Annotated[Path, typer.Argument(help="Folder of clean training images (the labels).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors).")],
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
    arch: Annotated[Arch, typer.Option(help="Architecture when training from scratch.")] = Arch.unet,
    width: Annotated[int, typer.Option(help="Width when training from scratch.")] = 16,
    depth: Annotated[int, typer.Option(help="Depth when training from scratch.")] = 3,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels (of the clean/high-res image).")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 5e-4,
    loss: Annotated[str, typer.Option(help="l2 or l1.")] = "l2",
    seed: SeedOpt = 0,
    log: Annotated[Optional[Path], typer.Option(help="CSV log of the loss per step.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: OverwriteOpt = False,
):
    """Fine-tune on a label fraction of clean images (from --init, or from scratch), for denoising,
    super-resolution (--task sr --scale 2|4) or joint demosaicking + denoising (--task jdd)."""
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data.datasets import load_image_set
    from .data.noise import parse_noise_spec
    from .models import ModelConfig
    from .training import FinetuneConfig
    from .training import finetune as run_finetune

    _check_output_file(out, [data, init, noisy], log=log, overwrite=overwrite)
    noise = _default_noise(noise, task)
    cfg = FinetuneConfig(steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr, loss=loss,
                         label_fraction=label_fraction, seed=seed)
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
    images, noise_model = _load_training_images(data, noise, channels, crop_size)
    pairs = None
    if noisy is not None:
        pairs = load_image_set(noisy, channels=channels, min_size=crop_size)
        if pairs.names != images.names:
            raise UsageError(f"{noisy}: file names must match those of {data} one to one")
        for a, b, name in zip(images.images, pairs.images, images.names):
            if a.shape != b.shape:
                raise UsageError(f"{name}: clean {tuple(a.shape)} and noisy {tuple(b.shape)} sizes differ")
    body_channels = 4 if task == Task.jdd else images.channels
    if task == Task.jdd and images.channels != 3:
        raise UsageError(f"{data}: --task jdd needs clean RGB images, got {images.channels} channel(s)")
    init_model, meta = None, {}
    if init is not None:
        init_model, meta = load_checkpoint(init)
        mcfg = ModelConfig(**meta["model"])
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
    else:
        mcfg = ModelConfig(arch=arch.value, in_channels=body_channels, out_channels=body_channels,
                           width=width, depth=depth)
    if mcfg.in_channels != body_channels:
        hint = f"; use --channels {mcfg.in_channels}" if task != Task.jdd else ""
        raise UsageError(f"{data}: the task needs a model taking {body_channels} channel(s) but the model "
                         f"({init or 'new'}) takes {mcfg.in_channels}{hint}")
    if task != Task.denoise and mcfg.arch != "unet":
        raise UsageError(f"--task {task.value} builds on a U-Net body; got arch {mcfg.arch}")
    extra = {}
    if task == Task.denoise:
        model, hist, labelled = run_finetune(images, noise_model if pairs is None else None, cfg, mcfg,
                                             init=init_model, noisy=pairs, log_path=log, progress=progress)
    elif task == Task.sr:
        from .training.downstream import finetune_sr

        model, hist, labelled = finetune_sr(images, noise_model, scale, cfg, mcfg, init=init_model,
                                            log_path=log, progress=progress)
        extra = {"task": "sr", "scale": scale, "skip": True}
    else:
        from .data.degradations import check_pattern
        from .training.downstream import finetune_jdd

        model, hist, labelled = finetune_jdd(images, noise_model, check_pattern(pattern), cfg, mcfg,
                                             init=init_model, log_path=log, progress=progress)
        extra = {"task": "jdd", "pattern": check_pattern(pattern), "skip": model.skip}
    save_checkpoint(out, model, mcfg, stage="finetune", init=str(init) if init else None,
                    init_stage=meta.get("stage"), noise=noise, training=cfg.model_dump(),
                    labelled_images=labelled, final_loss=hist[-1]["loss"], **extra)
    shown = ", ".join(labelled[:5]) + (f", … ({len(labelled) - 5} more)" if len(labelled) > 5 else "")
    typer.echo(f"wrote {out} ({task.value}; {len(labelled)} labelled image(s): {shown}; "
               f"final loss {hist[-1]['loss']:.4g})")


MIN_TILE = 32  # below this, tiled output drifts far from whole-image output (measured: JDD, tile 8 → 77/255)


def _check_tile(tile: Optional[int]) -> None:
    if tile is not None and tile < MIN_TILE:
        raise UsageError(f"--tile must be >= {MIN_TILE} (smaller tiles leave the network too little context "
                         f"and change the output), got {tile}")


@app.command()
@_errors_to_exit
def evaluate(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more checkpoints of the same task to compare.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of clean test images.")],
    noise: Annotated[Optional[str], typer.Option(
        "--noise", help="Noise spec, σ on 0-255 (gaussian:25, gaussian:5-50, poisson:30, poisson-gaussian). "
                        "Default: gaussian:25 (denoise, sr), poisson-gaussian (jdd).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Noise seed of the protocol.")] = 0,
    channels: Annotated[Optional[int], typer.Option(help="Convert test images to 1 or 3 channels.")] = None,
    tile: Annotated[Optional[int], typer.Option(help="Tile size in pixels (default: the whole image, or tiles chosen "
                                                     "automatically when it would exceed the memory budget).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write per-image scores as JSON.")] = None,
    overwrite: OverwriteOpt = False,
):
    """Score checkpoints on clean test images with fixed-seed synthetic degradations (docs/protocol.md).

    Denoising: PSNR/SSIM (uint8, peak 255) beside the noisy input. SR: Y-channel PSNR/SSIM with a
    border of `scale` px beside bicubic up-sampling. JDD: RGB PSNR/SSIM beside bilinear demosaicking.
    """
    from .checkpoint import load_checkpoint
    from .data.datasets import load_image_set
    from .data.io import atomic_write_bytes
    from .data.noise import parse_noise_spec
    from .evaluation import evaluate as run_evaluate
    from .evaluation import model_denoiser
    from .evaluation.tasks import task_from_metadata
    from .reporting import finite_json, print_table

    if channels is not None and channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    _check_tile(tile)
    if json_out is not None:
        _check_outputs({"--json": json_out}, [data, *checkpoints], overwrite)
    models = [(ck, *load_checkpoint(ck)) for ck in checkpoints]
    tasks = {(task_from_metadata(m).describe()) for _, _, m in models}
    if len(tasks) > 1:
        raise UsageError(f"checkpoints of different tasks cannot be compared in one table: {sorted(tasks)}")
    task = task_from_metadata(models[0][2])
    noise = noise if noise is not None else ("poisson-gaussian" if task.name == "jdd" else "gaussian:25")
    noise_model = parse_noise_spec(noise)
    if not noise_model.synthetic:
        raise UsageError("evaluation needs clean images and a synthetic --noise, not 'real'")
    test = load_image_set(data, channels=channels, min_size=11 * task.scale,
                          min_size_reason=f"{11 * task.scale} px (SSIM's 11×11 window"
                                          f"{f' at scale {task.scale}' if task.scale > 1 else ''}); drop the file")
    denoisers = {}
    for ck, model, meta in models:
        want = meta["model"]["in_channels"]
        if task.name == "jdd":
            if test.channels != 3:
                raise UsageError(f"{data}: JDD evaluation needs RGB test images, got {test.channels} channel(s)")
        elif want != test.channels:
            raise UsageError(f"{ck}: model takes {want} channel(s), test images have "
                             f"{test.channels}; use --channels {want}")
        name, k = ck.name, 2
        while name in denoisers:
            name, k = f"{ck.name} ({k})", k + 1
        denoisers[name] = model_denoiser(model, tile)
    results, _ = run_evaluate(denoisers, test, noise_model, seed, task=task)
    rows = [{"method": task.reference_name, "psnr": r.mean("psnr_noisy"), "ssim": r.mean("ssim_noisy")}
            for r in list(results.values())[:1]]
    rows += [{"method": k, "psnr": r.mean("psnr"), "ssim": r.mean("ssim")} for k, r in results.items()]
    metric = " (Y channel)" if task.name == "sr" else ""
    print_table(f"{data} — {task.describe()}{metric}, {noise_model.describe()}, seed {seed}, {len(test)} images", rows)
    if json_out is not None:
        payload = {"data": str(data), "task": task.name, "scale": task.scale, "noise": noise, "seed": seed,
                   "results": {k: r.to_dict() for k, r in results.items()}}
        text = json.dumps(finite_json(payload), indent=2, allow_nan=False)
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(text))
        typer.echo(f"wrote {json_out}")


def restore(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (denoising, SR or JDD).")],
    inputs: Annotated[Path, typer.Argument(help="Noisy image file or folder of images (JDD: one-channel Bayer mosaics).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if needed).")],
    suffix: Annotated[str, typer.Option(help="Appended to each output file's stem.")] = "",
    tile: Annotated[Optional[int], typer.Option(help="Tile size in pixels (default: the whole image, or tiles "
                                                     "chosen automatically when it would exceed the memory "
                                                     "budget, RCL_INFERENCE_MEMORY).")] = None,
    overwrite: OverwriteOpt = False,
    skip_existing: Annotated[bool, typer.Option(help="Skip inputs whose output exists already (outputs are written "
                                                     "atomically, so an existing one is complete): continues an "
                                                     "interrupted folder restore.")] = False,
):
    """Restore image files with a checkpoint: denoise, super-resolve (SR) or demosaic + denoise (JDD).

    Output keeps each input's format and sample type (8/16-bit integer, float32 TIFF); denoising
    keeps the channel count, SR multiplies the size by the scale, JDD turns a one-channel mosaic
    into RGB. Images too large for the memory budget are restored in overlapping tiles that
    cover the network's receptive field (one line says so).
    """
    from .checkpoint import load_checkpoint
    from .data.io import check_output_format, image_paths, read_image, write_image
    from .evaluation.inference import MEMORY_ENV, auto_tile, default_inference_bytes, predict, tile_overlap
    from .evaluation.tasks import task_from_metadata

    _check_tile(tile)
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other: choose one")
    budget = default_inference_bytes()  # a bad RCL_INFERENCE_MEMORY fails before any work
    model, meta = load_checkpoint(checkpoint)
    if meta.get("data") == "packed-bayer":
        raise UsageError(f"{checkpoint}: an RCL pre-training on packed Bayer mosaics, not a restoration model; "
                         "fine-tune it with `rcl finetune --task jdd`")
    task = task_from_metadata(meta)
    if any(c in suffix for c in ("/", "\\", os.sep)) or ".." in suffix:
        raise UsageError(f"--suffix {suffix!r}: must not contain path separators or '..'")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: --output must be a folder, and this is a file")
    paths = image_paths(inputs)
    ins = {p.resolve() for p in paths} | {checkpoint.resolve()}
    want = meta["model"]["in_channels"]
    plan, skipped = [], []
    for p in paths:
        dest = output / f"{p.stem}{suffix}{p.suffix}"
        check_output_format(dest, 8)  # a format rcl cannot write (e.g. .gif) fails before any work
        if dest.resolve() in ins:
            raise UsageError(f"{dest}: output would overwrite an input file; choose another --output or --suffix")
        if dest.exists() and not dest.is_file():
            raise UsageError(f"{dest}: exists and is not a regular file")
        if dest.exists() and skip_existing:
            skipped.append(dest)
            continue
        _check_replace(dest, "output", overwrite)
        plan.append((p, dest))
    if len({d.resolve() for _, d in plan}) != len(plan):
        raise UsageError(f"{inputs}: two inputs map to the same output name (same stem and suffix)")
    _check_writable_target(output / "x", "--output")
    if tile is not None and task.name == "jdd" and tile % 2:
        raise UsageError(f"--tile must be even for a JDD model (Bayer phase), got {tile}")
    # Read and check every input before writing anything (each is read again below, so that only
    # one image is in memory at a time).
    for p, dest in plan:
        img, info = read_image(p)
        try:
            task.check_model_input(info.channels, want, str(p), size=tuple(img.shape[-2:]))
        except ValueError as exc:
            raise UsageError(f"{exc} ({checkpoint.name} is a {task.describe()} model)") from None
        check_output_format(dest, info.bit_depth)
        del img
    if skipped:
        typer.echo(f"skipped {len(skipped)} input(s) whose output exists (--skip-existing)")
    for p, dest in plan:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warnings were shown during the check above
            img, info = read_image(p)
        use = tile if tile is not None else auto_tile(model, (1, *img.shape), max_bytes=budget)
        if tile is None and use is not None:
            typer.echo(f"note: {p.name} is {img.shape[-1]}×{img.shape[-2]} px; restoring it in {use}-px tiles "
                       f"(overlap {tile_overlap(model)} px, exact) to stay within {budget / 2**30:.2g} GiB "
                       f"({MEMORY_ENV})")
        out = predict(model, img, tile=use)  # overlap None: the receptive-field overlap
        del img
        write_image(dest, out, info.bit_depth)
        typer.echo(f"{p} -> {dest}")


app.command("restore")(_errors_to_exit(restore))
app.command("denoise", help="Alias of `rcl restore` (kept so that existing commands keep working).")(
    _errors_to_exit(restore))


@app.command()
@_errors_to_exit
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="A <1-minute smoke run (tiny budget; numbers not meaningful).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/demo-<time>).")] = None,
    seed: SeedOpt = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """RCL end to end on scikit-image's bundled photographs (grayscale, σ ~ U[5, 50] per photo).

    Pre-trains with RCL on the noisy training photos, fine-tunes with ONE labelled photo from the
    RCL weights and from scratch (same steps), and evaluates on held-out photos.
    """
    from .demo import run_demo

    run_demo(out=out, quick=quick, seed=seed, progress=progress)


@app.command()
@_errors_to_exit
def benchmark(
    config: Annotated[str, typer.Argument(help="Preset name (smoke, default, colour, smoke-tasks, sr-gray, sr-colour, jdd) or a YAML config file.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder the config's data paths are relative to "
                                                          "(e.g. ../shared/data).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/benchmark-<config>); "
                                                                    "rerunning the same command resumes it.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar over the cells.")] = True,
):
    """Label-efficiency benchmark: pre-train each method once, fine-tune per label fraction and seed,
    evaluate on the test sets, and write a report (tables, plots, claims). Resumable."""
    import torch

    from .benchmark import load_config, run_benchmark

    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    cfg = load_config(config, data_root)
    if threads is not None:
        torch.set_num_threads(threads)
    name = Path(config).stem if config.endswith((".yaml", ".yml")) else config
    out = (out if out is not None else Path("runs") / f"benchmark-{name}").resolve()
    report = run_benchmark(cfg, out, progress=progress, command=" ".join(["rcl"] + sys.argv[1:]))
    typer.echo(f"report: {report}")


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:  # console-script entry point
    """Run the CLI; SIGTERM and Ctrl-C end it cleanly (exit 130, partial outputs removed)."""
    import signal

    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
