"""`rcl restore` (alias `rcl denoise`): restore image files with a checkpoint."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..tasks import TASKS
from .common import (DeviceOpt, OverwriteOpt, ThreadsOpt, UsageError, check_replace, check_restorer, check_tile,
                     checkpoint_path,
                     check_outside_package, check_writable_target, errors_to_exit, name_too_long, path_argument, path_option, set_threads,
                     tile_help)
from .task_options import task_check

DENOISE_ALIAS_HELP = "Alias of `rcl restore` (kept so that existing commands keep working)."


def _destination(p: Path, output: Path, suffix: str) -> Path:
    return output / f"{p.stem}{suffix}{p.suffix}"


def _plan(inputs: Path, output: Path, suffix: str, checkpoint: Path, overwrite: bool, skip_existing: bool):
    """(input, output) pairs to restore, the outputs skipped and the earlier outputs left out of the
    inputs; fails before any work on a bad output.

    With ``skip_existing``, a file of the input folder that is the output of another input (same
    stem + suffix, e.g. a rerun with ``-o`` the input folder) is an output of an earlier run, not an
    input: it is left out."""
    from ..data.io import IMAGE_SUFFIXES, check_output_format, image_paths

    paths = image_paths(inputs)
    earlier = []
    if skip_existing:
        planned = {_destination(p, output, suffix).resolve(): p for p in paths}
        earlier = [p for p in paths if planned.get(p.resolve(), p) != p]
        paths = [p for p in paths if p not in earlier]
    ins = {p.resolve() for p in paths} | {checkpoint.resolve()}
    plan, skipped = [], []
    for p in paths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:  # a file given directly (folders list images only)
            raise UsageError(f"{p}: not an image file rcl restores ({', '.join(IMAGE_SUFFIXES)})")
        dest = _destination(p, output, suffix)
        too_long = name_too_long(dest)
        if too_long and suffix and not name_too_long(_destination(p, output, "")):
            raise UsageError(f"--suffix {suffix!r}: the output name of {p} would be {too_long}; "
                             "shorten --suffix or rename the input")
        if too_long:
            raise UsageError(f"{p}: the output name would be {too_long}; rename the input")
        check_output_format(dest, 8)  # a format rcl cannot write (e.g. .gif) fails before any work
        if dest.resolve() in ins:
            hint = ("; if it is an earlier run's output, --skip-existing leaves it out of the inputs"
                    if dest.resolve() != p.resolve() else "")
            raise UsageError(f"{dest}: output would overwrite an input file; choose another --output or --suffix{hint}")
        if dest.exists() and not dest.is_file():
            raise UsageError(f"{dest}: exists and is not a regular file")
        if dest.exists() and skip_existing:
            skipped.append(dest)
            continue
        check_replace(dest, "output", overwrite)
        plan.append((p, dest))
    if len({d.resolve() for _, d in plan}) != len(plan):
        raise UsageError(f"{inputs}: two inputs map to the same output name (same stem and suffix)")
    return plan, skipped, earlier


@errors_to_exit
def restore(
    checkpoint: Annotated[Path, typer.Argument(
        parser=checkpoint_path, help="Checkpoint of a restoration model of any task (a file, or pretrained:gray / "
                                     "pretrained:colour, the RCL networks shipped with rcl).")],
    inputs: Annotated[Path, path_argument(help="Image file or folder of images, of the kind the checkpoint's "
                                               "task takes as input (see above).")],
    output: Annotated[Path, path_option("--output", "--out", "-o", help="Output folder (created if needed); --out is the same option, "
                                                                "spelt as in the other commands.")],
    suffix: Annotated[str, typer.Option(help="Appended to each output file's stem.")] = "",
    tile: Annotated[Optional[int], typer.Option(help=tile_help(", RCL_INFERENCE_MEMORY"))] = None,
    overwrite: OverwriteOpt = False,
    skip_existing: Annotated[bool, typer.Option(help="Skip inputs whose output exists already (outputs are written "
                                                     "atomically, so an existing one is complete): continues an "
                                                     "interrupted folder restore. Files of the input folder that are "
                                                     "the outputs of other inputs are left out.")] = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
):
    # the help (docstring) is set below, from the tasks
    import torch

    from ..checkpoint import load_checkpoint
    from ..data.io import check_output_format, held_warnings, read_image, write_image
    from ..evaluation.inference import MEMORY_ENV, auto_tile, default_inference_bytes, predict, tile_overlap
    from ..tasks import task_from_metadata

    from ..training import resolve_device

    check_tile(tile)
    set_threads(threads)
    dev = resolve_device(device)
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other: choose one")
    budget = default_inference_bytes()  # a bad RCL_INFERENCE_MEMORY fails before any work
    model, meta = load_checkpoint(checkpoint)
    model.to(dev)
    check_restorer(meta, checkpoint)
    task = task_from_metadata(meta)
    if any(c in suffix for c in ("/", "\\", os.sep)) or ".." in suffix:
        raise UsageError(f"--suffix {suffix!r}: must not contain path separators or '..'")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: --output must be a folder, and this is a file")
    want = meta["model"]["in_channels"]
    plan, skipped, earlier = _plan(inputs, output, suffix, checkpoint, overwrite, skip_existing)
    check_outside_package(output, "--output")
    check_writable_target(output / "x", "--output")
    if tile is not None:
        task_check(task.check_tile, tile)
    # Read and check every input before writing anything (each is read again below, so that only
    # one image is in memory at a time).
    # Warnings of this check (e.g. an alpha channel dropped) are shown only once every input has
    # passed it: a refused run prints its one error line and nothing else.
    with held_warnings():
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
    if earlier:
        typer.echo(f"left out {len(earlier)} file(s) of {inputs} that are outputs of an earlier run "
                   f"(--skip-existing; e.g. {earlier[0].name})")
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
        if not bool(torch.isfinite(out).all()):  # never write a black image computed from NaN
            raise UsageError(f"{checkpoint}: the network's output for {p} is NaN or infinite (weights out "
                             f"of range?); {dest} not written")
        write_image(dest, out, info.bit_depth)
        typer.echo(f"{p} -> {dest}")


restore.__doc__ = (
    "Restore image files with a checkpoint of any task: "
    + "; ".join(f"{cls.name} ({cls.summary})" for cls in TASKS.values()) + ".\n\n"
    "Output keeps each input's format and sample type (8/16-bit integer, float32 TIFF). Images too large "
    "for the memory budget are restored in overlapping tiles that cover the network's receptive field "
    "(one line says so).")
