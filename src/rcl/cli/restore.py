"""`rcl restore` (alias `rcl denoise`): restore image files with a checkpoint."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (OverwriteOpt, UsageError, check_replace, check_tile, check_writable_target, errors_to_exit,
                     tile_help)
from .task_branches import check_restorable, check_restore_tile

DENOISE_ALIAS_HELP = "Alias of `rcl restore` (kept so that existing commands keep working)."


def _plan(inputs: Path, output: Path, suffix: str, checkpoint: Path, overwrite: bool, skip_existing: bool):
    """(input, output) pairs to restore and the outputs skipped; fails before any work on a bad output."""
    from ..data.io import check_output_format, image_paths

    paths = image_paths(inputs)
    ins = {p.resolve() for p in paths} | {checkpoint.resolve()}
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
        check_replace(dest, "output", overwrite)
        plan.append((p, dest))
    if len({d.resolve() for _, d in plan}) != len(plan):
        raise UsageError(f"{inputs}: two inputs map to the same output name (same stem and suffix)")
    return plan, skipped


@errors_to_exit
def restore(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (denoising, SR or JDD).")],
    inputs: Annotated[Path, typer.Argument(help="Noisy image file or folder of images (JDD: one-channel Bayer mosaics).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if needed).")],
    suffix: Annotated[str, typer.Option(help="Appended to each output file's stem.")] = "",
    tile: Annotated[Optional[int], typer.Option(help=tile_help(", RCL_INFERENCE_MEMORY"))] = None,
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
    from ..checkpoint import load_checkpoint
    from ..data.io import check_output_format, read_image, write_image
    from ..evaluation.inference import MEMORY_ENV, auto_tile, default_inference_bytes, predict, tile_overlap
    from ..evaluation.tasks import task_from_metadata

    check_tile(tile)
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other: choose one")
    budget = default_inference_bytes()  # a bad RCL_INFERENCE_MEMORY fails before any work
    model, meta = load_checkpoint(checkpoint)
    check_restorable(meta, checkpoint)  # TASK-SPECIFIC
    task = task_from_metadata(meta)
    if any(c in suffix for c in ("/", "\\", os.sep)) or ".." in suffix:
        raise UsageError(f"--suffix {suffix!r}: must not contain path separators or '..'")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: --output must be a folder, and this is a file")
    want = meta["model"]["in_channels"]
    plan, skipped = _plan(inputs, output, suffix, checkpoint, overwrite, skip_existing)
    check_writable_target(output / "x", "--output")
    check_restore_tile(task, tile)  # TASK-SPECIFIC
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
