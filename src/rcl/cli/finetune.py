"""`rcl finetune`: supervised fine-tuning on a label fraction or a number of labelled images, for any task of
:mod:`rcl.tasks`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (Arch, CheckpointOutOpt, CompileOpt, DeviceOpt, LogEveryOpt, LogOpt, LrOpt, OverwriteOpt, Precision,
                     PrecisionOpt, ProgressOpt, ResumeOpt, SaveEveryOpt, SeedOpt, StepsOpt, ThreadsOpt, UsageError,
                     check_output_file, checkpoint_path, engine_metadata, errors_to_exit, finish_state,
                     load_training_images, make_engine, path_argument, path_option, set_threads)
from .task_options import (DEFAULT_TASK, PatternOpt, ScaleOpt, TaskName, TrainNoiseOpt, make_task,
                           task_check, task_help)


# FinetuneConfig's defaults (the one definition; written out so that `rcl --help` does not import
# torch; tests/test_cli.py checks that they agree)
_DEFAULT = {"steps": 2000, "batch_size": 8, "crop_size": 64, "lr": 1e-3, "val_every": 250}


# The new network's defaults when training from scratch (with --init the checkpoint's network is used)
_SCRATCH = {"arch": "unet", "width": 16, "depth": 3}


def _from_scratch(what: str, key: str):
    """An option of the new network; with --init it must agree with the checkpoint's network."""
    return typer.Option(help=f"{what} when training from scratch (default {_SCRATCH[key]}); with --init, "
                             f"if given, it must match the checkpoint's network.", show_default=False)


def _check_init_architecture(init: Path, mcfg, given: dict) -> None:
    """Refuse --arch/--width/--depth that differ from the --init checkpoint's network (they were
    silently ignored before): one line naming the option and the checkpoint's value."""
    for key, value in given.items():
        if value is not None and value != getattr(mcfg, key):
            raise UsageError(f"--{key} {value}: --init {init} is a network with {key} {getattr(mcfg, key)}; "
                             f"the architecture options apply only when training from scratch (omit --{key})")


def _load_images_and_pairs(data: Path, noisy: Optional[Path], noise: str, channels: Optional[int], crop_size: int):
    """The clean training images, their noise model and, with ``noisy``, the noisy images paired
    with them by file name (checked by :mod:`rcl.data.real_pairs`)."""
    from ..data.datasets import load_image_set

    images, noise_model = load_training_images(data, noise, channels, crop_size)
    if noisy is None:
        return images, noise_model, None
    from ..data.real_pairs import check_pair_files, check_pair_images, matched_pairs

    if not noisy.is_dir() or not data.is_dir():
        raise UsageError(f"{noisy if not noisy.is_dir() else data}: not a folder; --noisy pairs a folder of "
                         f"noisy images with the folder DATA of their clean images by file name")
    check_pair_files(matched_pairs(noisy, data))  # names the first file without a partner, or of another size
    pairs = load_image_set(noisy, channels=channels, min_size=crop_size)
    if pairs.names != images.names:  # the same listing rule: cannot differ
        raise UsageError(f"{noisy}: file names must match those of {data} one to one")
    for a, b, name in zip(images.images, pairs.images, images.names):
        check_pair_images(noisy / name, data / name, b, a)
    return images, noise_model, pairs


@errors_to_exit
def finetune(
    data: Annotated[Path, path_argument(help="Folder of clean training images (the labels).")],
    out: CheckpointOutOpt,
    init: Annotated[Optional[Path], typer.Option(
        parser=checkpoint_path, help="Checkpoint to start from (e.g. from `rcl pretrain`), or a network shipped "
                                     "with rcl: pretrained:gray, pretrained:colour (RCL pre-trained; see "
                                     "docs/pretrained.md); omit to train from scratch.")] = None,
    noisy: Annotated[Optional[Path], path_option(help="Folder of real noisy images matching DATA by file "
                                                      "name; omit to synthesise noise with --noise.")] = None,
    noise: TrainNoiseOpt = None,
    task: Annotated[TaskName, typer.Option(help=task_help(lambda cls: cls.summary))] = DEFAULT_TASK,
    scale: ScaleOpt = None,
    pattern: PatternOpt = None,
    label_fraction: Annotated[Optional[float], typer.Option(
        help="Fraction 0 < f <= 1 of DATA used as labels (at least one image); default 1.0, all of "
             "DATA. Excludes --labels.")] = None,
    labels: Annotated[Optional[int], typer.Option(
        "--labels", metavar="N", help="Number of labelled images of DATA (of noisy/clean pairs with --noisy), "
                                      "1 to the number of images; chosen exactly as --label-fraction N/len(DATA) "
                                      "chooses them. Excludes --label-fraction.")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Convert images to 1 or 3 channels.")] = None,
    arch: Annotated[Optional[Arch], _from_scratch("Architecture", "arch")] = None,
    width: Annotated[Optional[int], _from_scratch("Width", "width")] = None,
    depth: Annotated[Optional[int], _from_scratch("Depth", "depth")] = None,
    steps: StepsOpt = _DEFAULT["steps"],
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = _DEFAULT["batch_size"],
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels (of the clean/high-res image).")] = _DEFAULT["crop_size"],
    lr: LrOpt = _DEFAULT["lr"],
    loss: Annotated[str, typer.Option(help="l2 or l1.")] = "l2",
    seed: SeedOpt = 0,
    val_every: Annotated[int, typer.Option(
        "--val-every", metavar="N", min=0,
        help="Validate every N steps and after the last step on 10 % of the labelled images, held out of "
             "training (only when at least 10 are labelled and --steps is at least 2N), and keep the weights of "
             "the best validation PSNR; 0: off, the last step's weights.")] = _DEFAULT["val_every"],
    log: LogOpt = None,
    progress: ProgressOpt = True,
    log_every: LogEveryOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = Precision.fp32,
    threads: ThreadsOpt = None,
    compile: CompileOpt = False,
    save_every: SaveEveryOpt = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Fine-tune on a label fraction (or --labels N) of clean images, from --init or from scratch, for one --task.

    Denoising by default; the other tasks (see --task) take their own options.
    """
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..data.io import held_warnings
    from ..distributed import is_main
    from ..data.noise import parse_noise_spec
    from ..methods import Supervised
    from ..methods.supervised import fraction_for_label_count
    from ..models import ModelConfig
    from ..tasks import TASKS, TaskFieldError
    from ..training import fit

    check_output_file(out, [data, init, noisy, resume], log=log, overwrite=overwrite)
    set_threads(threads)
    engine = make_engine(device, precision, compile=compile, progress=progress, log_every=log_every,
                         save_every=save_every, resume=resume, out=out, overwrite=overwrite,
                         inputs=[data, init, noisy, resume], log=log)
    the_task = make_task(task, scale=scale, pattern=pattern)
    if noisy is not None and noise is not None and parse_noise_spec(noise).synthetic:
        raise UsageError(f"--noise {noise} and --noisy exclude each other: the noisy images are the inputs")
    noise = noise if noise is not None else ("real" if noisy is not None else the_task.train_noise)
    if labels is not None and label_fraction is not None:
        raise UsageError(f"--labels {labels} and --label-fraction {label_fraction:g} exclude each other; "
                         f"give the number of labelled images or their fraction")
    cfg = Supervised.Config(steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr, loss=loss,
                            label_fraction=label_fraction if label_fraction is not None else 1.0, seed=seed,
                            val_every=val_every)
    if noisy is not None and not the_task.input_is_noisy_target:
        takes = ", ".join(f"--task {name}" for name, cls in TASKS.items() if cls.input_is_noisy_target)
        raise UsageError(f"--noisy pairs are supported for {takes} only (got --task {the_task.name})")
    if noisy is not None and noisy.resolve() == data.resolve():
        raise UsageError(f"--noisy {noisy} is DATA's own folder: the noisy inputs would be their own clean targets")
    if noisy is None and not parse_noise_spec(noise).synthetic:
        raise UsageError("--noise real needs --noisy (noisy/clean pairs); or give a synthetic --noise")
    task_check(the_task.check_crop_size, crop_size)
    init_model, meta = None, {}
    if init is not None:  # before the images: a checkpoint's error comes without the images' warnings
        init_model, meta = load_checkpoint(init)
        mcfg = ModelConfig(**meta["model"])
        task_check(the_task.check_init, meta, prefix=f"{init}: ")
        _check_init_architecture(init, mcfg, {"arch": arch.value if arch is not None else None,
                                               "width": width, "depth": depth})
    with held_warnings():  # an error about either folder comes alone, without the other's warnings
        images, noise_model, pairs = _load_images_and_pairs(data, noisy, noise, channels, crop_size)
    if labels is not None:  # the count goes through the fraction's one selection (rcl.training.labelled_subset)
        what = f"{data} and {noisy} have {len(images)} noisy/clean pair(s)" if pairs is not None else \
            f"{data} has {len(images)} image(s)"
        if not 1 <= labels <= len(images):
            raise UsageError(f"--labels {labels}: {what}; give 1 to {len(images)}")
        cfg = Supervised.Config(**{**cfg.model_dump(), "label_fraction": fraction_for_label_count(labels, len(images))})
    body_channels = task_check(the_task.body_channels, images.channels, prefix=f"{data}: ")
    if init is None:
        mcfg = ModelConfig(arch=arch.value if arch is not None else _SCRATCH["arch"], in_channels=body_channels,
                           out_channels=body_channels, width=width if width is not None else _SCRATCH["width"],
                           depth=depth if depth is not None else _SCRATCH["depth"])
    if mcfg.in_channels != body_channels:
        hint = f"; use --channels {mcfg.in_channels}" if body_channels == images.channels else ""
        raise UsageError(f"{data}: the task needs a model taking {body_channels} channel(s) but the model "
                         f"({init or 'new'}) takes {mcfg.in_channels}{hint}")
    try:
        the_task.check_body(mcfg)
    except TaskFieldError as exc:
        raise UsageError(f"{init or '--arch ' + mcfg.arch}: {exc.reason}") from None
    res = fit(the_task, Supervised, images, cfg, mcfg, init=init_model,
              noise=noise_model if pairs is None else None, noisy=pairs, log_path=log, progress=progress,
              engine=engine)
    model, hist, labelled = res.model, res.history, res.labelled
    if not is_main():
        return
    from ..pretrained import describe

    save_checkpoint(out, model, mcfg, stage="finetune", init=describe(init) if init else None,
                    init_stage=meta.get("stage"), noise=noise, training=cfg.model_dump(),
                    labelled_images=labelled, label_count=len(labelled) + len(res.validation),
                    validation_images=res.validation, best_step=res.best_step, best_val_psnr=res.best_psnr,
                    final_loss=hist[-1]["loss"],
                    engine=engine_metadata(engine),
                    **the_task.checkpoint_metadata(model))
    finish_state(engine, out)
    shown = ", ".join(labelled[:5]) + (f", … ({len(labelled) - 5} more)" if len(labelled) > 5 else "")
    val = (f"; {len(res.validation)} held out for validation, best PSNR {res.best_psnr:.2f} dB at step "
           f"{res.best_step}") if res.validation else ""
    if cfg.val_every and not res.validation:  # say why --val-every did nothing
        why = (f"{cfg.steps} steps < 2 × --val-every {cfg.val_every}" if 2 * cfg.val_every > cfg.steps else
               f"{len(labelled)} labelled image(s) < {cfg.val_min_labels}")
        val = f"; no validation ({why}): the last step's weights"
    typer.echo(f"wrote {out} ({the_task.name}; {len(labelled)} labelled image(s) trained: {shown}{val}; "
               f"final loss {hist[-1]['loss']:.4g})")
