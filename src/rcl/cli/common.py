"""What the commands share: options, the error-to-exit rule, output checks, training-image loading."""

from __future__ import annotations

import functools
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from ..configs import MAX_SEED


class UsageError(ValueError):
    """A bad combination of command-line options."""


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "value"
        parts.append(f"--{loc.replace('_', '-')}: {err['msg']}")
    return "; ".join(parts)


def errors_to_exit(fn):
    """Turn expected errors into 'error: …' on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..checkpoint import CheckpointError
        from ..data.io import ImageReadError

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


# --- options shared by several commands (the help text is part of the interface) ---

class Arch(str, Enum):
    unet = "unet"
    dncnn = "dncnn"


def nonempty_path(value: str) -> Path:
    """The parser of every path argument and option: an empty string is refused (it would be read
    as the current folder), naming the option."""
    if value == "":
        raise typer.BadParameter("empty path; give a file or folder name (use . for the current folder)")
    return Path(value)


def path_argument(help: str, **kw):
    """A path argument (empty refused, :func:`nonempty_path`)."""
    return typer.Argument(help=help, parser=nonempty_path, **kw)


def path_option(*names: str, help: str, **kw):
    """A path option (empty refused, :func:`nonempty_path`)."""
    return typer.Option(*names, help=help, parser=nonempty_path, **kw)


SeedOpt = Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                       help="Random seed (crops, masks, weights, synthetic noise).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace existing output files (inputs are never replaced).")]
CheckpointOutOpt = Annotated[Path, path_option("--out", "-o", help="Checkpoint to write (.safetensors).")]
StepsOpt = Annotated[int, typer.Option(help="Optimisation steps.")]
LrOpt = Annotated[float, typer.Option(help="Adam learning rate.")]
LogOpt = Annotated[Optional[Path], path_option(help="CSV log of the loss per step.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]

_TILE_HELP = ("Tile size in pixels (default: the whole image, or tiles chosen automatically when it would "
              "exceed the memory budget{}).")


def tile_help(budget: str = "") -> str:
    """The help of --tile; ``budget`` names where the memory budget comes from."""
    return _TILE_HELP.format(budget)


MIN_TILE = 32  # below this, tiled output drifts far from whole-image output (measured: JDD, tile 8 → 77/255)


def check_tile(tile: Optional[int]) -> None:
    if tile is not None and tile < MIN_TILE:
        raise UsageError(f"--tile must be >= {MIN_TILE} (smaller tiles leave the network too little context "
                         f"and change the output), got {tile}")


def check_restorer(meta: dict, checkpoint: Path) -> None:
    """Only restoration models restore and are scored: not a pre-training whose network restores
    nothing (e.g. on packed Bayer mosaics; :func:`rcl.tasks.pretraining_task`)."""
    from ..tasks import pretraining_task

    pre = pretraining_task(meta)
    if pre is not None:
        raise UsageError(f"{checkpoint}: a pre-training on {pre.pretraining_name}, not a restoration model; "
                         f"fine-tune it with `rcl finetune --task {pre.name}`")


def check_channels(channels: Optional[int]) -> None:
    if channels is not None and channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")


# --- outputs: written atomically, never over an input, replaced only with --overwrite ---

def _input_files(paths: list[Optional[Path]]) -> set[Path]:
    """Resolved paths of every input file: the files themselves and the images inside folders."""
    from ..data.io import IMAGE_SUFFIXES

    files: set[Path] = set()
    for p in paths:
        if p is None or not p.exists():
            continue
        if p.is_dir():
            files.update(q.resolve() for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.add(p.resolve())
    return files


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that the file system of ``folder`` (or of its nearest
    existing parent) accepts; 255 when it does not say."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def name_too_long(path: Path) -> Optional[str]:
    """Why the file name of ``path`` is too long for its folder's file system (None: it fits)."""
    size, limit = len(os.fsencode(path.name)), name_max(path.parent)
    return f"{size} bytes, over the file system's limit of {limit}" if size > limit else None


def check_writable_target(path: Path, what: str) -> None:
    """Fail early (before any work) if ``path`` cannot be written as a file."""
    too_long = name_too_long(path)
    if too_long:
        raise UsageError(f"{what}: the file name is {too_long}; choose a shorter name")
    if path.is_dir():
        raise UsageError(f"{path}: {what} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: {what} cannot be created ({parent} is not a folder)")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: {what} cannot be written ({parent} is not writable)")


def check_replace(path: Path, what: str, overwrite: bool) -> None:
    """The one rule of every command: an existing output is replaced only with --overwrite."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: {what} exists; pass --overwrite to replace it")


def check_outputs(outputs: dict[str, Optional[Path]], inputs: list[Optional[Path]],
                  overwrite: bool = False) -> None:
    """Outputs (name → path) must be writable files, distinct, never one of the inputs, and new
    unless ``overwrite``."""
    given = {k: v for k, v in outputs.items() if v is not None}
    ins = _input_files(inputs)
    seen: dict[Path, str] = {}
    for what, path in given.items():
        check_writable_target(path, what)
        r = path.resolve()
        if r in ins:
            raise UsageError(f"{path}: {what} would overwrite an input file; choose another name")
        if r in seen:
            raise UsageError(f"{path}: given as both {seen[r]} and {what}")
        seen[r] = what
        check_replace(path, what, overwrite)


def check_output_file(out: Path, inputs: list[Optional[Path]], suffix: str = ".safetensors",
                      log: Optional[Path] = None, overwrite: bool = False) -> None:
    """A checkpoint output (``--out``, with its ``--log``): the right suffix, and the output rules."""
    if out.suffix != suffix:
        raise UsageError(f"{out}: output file must end in {suffix}")
    check_outputs({"--out": out, "--log": log}, inputs, overwrite)


def load_training_images(data: Path, noise_spec: str, channels: Optional[int], crop: int):
    """The training images (each at least ``crop`` px) and the parsed noise model."""
    from ..data.datasets import load_image_set
    from ..data.noise import parse_noise_spec

    noise = parse_noise_spec(noise_spec)
    check_channels(channels)
    images = load_image_set(data, channels=channels, min_size=crop)
    return images, noise
