"""What the commands share: options, the error-to-exit rule, output checks, training-image loading."""

from __future__ import annotations

import errno
import functools
import os
import tempfile
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
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"--{loc.replace('_', '-')}: {msg}" if loc else msg)  # a check of several options: no name
    return "; ".join(parts)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop (which stops after its step instead): unwinds like Ctrl-C,
    removing partial outputs, and ends with exit status 143."""


def interrupt_message() -> str:
    import sys

    return "stopped by SIGTERM" if isinstance(sys.exc_info()[1], Terminated) else "interrupted"


def interrupt_status() -> int:
    import signal
    import sys

    return 128 + (signal.SIGTERM if isinstance(sys.exc_info()[1], Terminated) else signal.SIGINT)


def errors_to_exit(fn):
    """Turn expected errors into 'error: …' on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:  # the imports too: a SIGTERM while they run (a second or more) is reported like any other
            from ..checkpoint import CheckpointError
            from ..data.io import ImageReadError
            from ..training.engine import TrainingStopped

            return fn(*args, **kwargs)
        except KeyboardInterrupt:  # first: the names below may not be imported yet
            typer.echo(f"error: {interrupt_message()}", err=True)
            raise typer.Exit(interrupt_status()) from None
        except ValidationError as exc:
            msg = _format_validation(exc)
        except (ImageReadError, CheckpointError, UsageError, OSError, ValueError, FloatingPointError) as exc:
            msg = str(exc)
        except RuntimeError as exc:  # Path.resolve() on a symbolic-link loop (Python ≤ 3.12); others propagate
            if not str(exc).startswith("Symlink loop"):
                raise
            msg = str(exc).replace("Symlink loop from", "a symbolic-link loop at", 1) + \
                " (a link that leads back to itself); choose another path"
        except TrainingStopped as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(128 + exc.signum) from None
        # one line, even when a file name holds a line break
        typer.echo("error: " + msg.replace("\r", "\\r").replace("\n", "\\n"), err=True)
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


def checkpoint_path(value: str) -> Path:
    """The parser of options that take a checkpoint: a path, or ``pretrained:NAME`` for a network
    shipped with rcl (:mod:`rcl.pretrained`), resolved to its file."""
    from ..pretrained import is_pretrained, pretrained_path

    if is_pretrained(value):
        try:
            return pretrained_path(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return nonempty_path(value)


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
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar (on a terminal); --no-progress, or a "
                                                "redirected stderr, prints plain log lines instead.")]


# --- the training engine's options (rcl.training.Engine) ---

class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


DeviceOpt = Annotated[str, typer.Option(help="Where to run: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
PrecisionOpt = Annotated[Precision, typer.Option(help="Training precision: fp32, or autocast to bf16 / fp16 "
                                                      "(fp16 with a gradient scaler).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(min=1, max=1024, help="torch CPU threads (default: torch's choice).")]
CompileOpt = Annotated[bool, typer.Option(help="Run the network through torch.compile (see docs/benchmarks.md).")]
SaveEveryOpt = Annotated[Optional[int], typer.Option(min=1, help="Write a resumable training state every N steps "
                                                                "(OUT with .state.safetensors).")]
ResumeOpt = Annotated[Optional[Path], path_option(help="Continue from a training state written by --save-every.")]
LogEveryOpt = Annotated[int, typer.Option(min=0, help="Steps between plain log lines (0: every ⌈steps/20⌉, at most 20 per run).")]


def set_threads(threads: Optional[int]) -> None:
    """Apply ``--threads`` (torch's intra-op CPU threads)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def state_path_for(out: Path) -> Path:
    """Where ``--save-every`` writes the training state of a run whose checkpoint is ``out``."""
    return out.with_name(out.name[: -len(out.suffix)] + ".state" + out.suffix if out.suffix else out.name + ".state")


def make_engine(device: str = "auto", precision: "Precision | str" = "fp32", *, compile: bool = False,
                progress: bool = True, log_every: int = 0, save_every: Optional[int] = None,
                resume: Optional[Path] = None, out: Optional[Path] = None, overwrite: bool = False,
                workers: int = 0, inputs: Optional[list[Optional[Path]]] = None, log: Optional[Path] = None):
    """The :class:`rcl.training.Engine` of a command's options, checked before any work.

    With ``--save-every`` the state is written to ``state_path_for(out)``, which follows the output
    rules: never an input (``inputs``, e.g. --init) or the --log, and an existing file there is
    replaced only when it is the state being resumed or with ``--overwrite``.

    Raises:
        DeviceError (ValueError): a device this machine lacks.
        UsageError / FileExistsError: a missing --resume state; a state path that is an input or
            the log, or that exists (without --resume of it or --overwrite).
    """
    from ..training import Engine

    precision = precision.value if isinstance(precision, Precision) else precision
    if compile and not _cxx_compiler():
        raise UsageError("--compile: torch.compile needs a C++ compiler (g++, c++ or clang++ on PATH, or $CXX); "
                         "install one or leave --compile off")
    state = state_path_for(out) if (out is not None and save_every) else None
    if resume is not None:
        from ..training.state import read_state

        if not resume.is_file():
            raise UsageError(f"{resume}: no such training state (--resume takes the file written by --save-every)")
        read_state(resume)  # unreadable or not a state: refused before any work
    if state is not None:
        r = state.resolve()
        if r in _input_files([i for i in (inputs or []) if i is not None and i != resume]):
            raise UsageError(f"{state}: the training state of --save-every would overwrite an input file; "
                             f"choose another --out")
        if log is not None and log.resolve() == r:
            raise UsageError(f"{state}: given as both --log and the training state of --save-every")
        resuming_it = resume is not None and resume.resolve() == r
        check_writable_target(state, "the training state of --save-every")  # a folder there fails early
        if state.exists() and not resuming_it and not overwrite:
            raise FileExistsError(f"{state}: exists where --save-every writes this run's training state; "
                                  f"continue that run with --resume {state}, or pass --overwrite to replace it")
    return Engine(device=device, precision=precision, compile=compile, progress=progress, log_every=log_every,
                  save_every=save_every, state_path=state, resume=resume, workers=workers, announce=True)


def _cxx_compiler() -> Optional[str]:
    """The C++ compiler torch.compile's inductor would call, if any."""
    import shutil

    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx)
    return next((found for c in ("g++", "c++", "clang++") if (found := shutil.which(c))), None)


def engine_metadata(engine) -> dict:
    """What a checkpoint records about the engine that trained it."""
    from ..distributed import world_size

    return {"device": engine.device.type, "precision": engine.precision, "ranks": world_size()}


def finish_state(engine, out: Path) -> None:
    """Once the run's checkpoint ``out`` is written (rank 0): remove the training state this run
    wrote (``--save-every``), and the state it resumed when that is ``out``'s own state; a state
    resumed from elsewhere is kept."""
    from ..distributed import is_main

    if not is_main():
        return
    own = state_path_for(out)
    if engine.state_path is not None:
        engine.state_path.unlink(missing_ok=True)
    if engine.resume is not None and engine.resume.resolve() == own.resolve():
        own.unlink(missing_ok=True)

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


def load_denoiser(checkpoint: Path, device: str, what: str):
    """``(model on the device, metadata, task)`` of a checkpoint whose output is a clean copy of its input
    (denoising), for commands that use its residual; ``what`` names that use in the refusal.

    Raises:
        UsageError: another task's model (SR, JDD). CheckpointError / DeviceError: as loading does.
    """
    from ..checkpoint import load_checkpoint
    from ..tasks import TASKS, task_from_metadata
    from ..training import resolve_device

    model, meta = load_checkpoint(checkpoint)
    model.to(resolve_device(device))
    check_restorer(meta, checkpoint)
    task = task_from_metadata(meta)
    if not task.input_is_noisy_target:
        takes = ", ".join(name for name, cls in TASKS.items() if cls.input_is_noisy_target)
        raise UsageError(f"{checkpoint}: a {task.describe()} model; {what} needs a model whose output "
                         f"is a clean copy of its input ({takes})")
    return model, meta, task


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


def name_too_long(path: Path, extra: int = 0) -> Optional[str]:
    """Why the file name of ``path`` (plus ``extra`` bytes of a temporary name made from it) is too
    long for its folder's file system (None: it fits)."""
    size, limit = len(os.fsencode(path.name)), name_max(path.parent) - extra
    if size <= limit:
        return None
    return f"{size} bytes, over the file system's limit of {limit + extra}" + \
        (f" less the {extra} of rcl's temporary name" if extra else "")


def check_outside_package(path: Path, what: str) -> None:
    """No output goes inside the installed rcl package (its shipped networks and presets)."""
    package = Path(__file__).resolve().parents[1]
    if path.resolve().is_relative_to(package):
        raise UsageError(f"{path}: {what} is inside the installed rcl package ({package}); choose another place")


def dangling_link(path: Path) -> str:
    """What a symbolic link that does not lead to a file is: "a broken symbolic link" (its target
    is missing) or "a symbolic-link loop" (it leads back to itself)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic-link loop"
    return "a broken symbolic link"


def refuse_dangling(path: Path, what: str, other: str) -> None:
    """Refuse an output that is a symbolic link leading nowhere (broken, or a loop)."""
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{path}: {what} is {dangling_link(path)}; remove it or choose another {other}")


def check_creatable(path: Path, what: str) -> None:
    """``path`` (a file or a folder to be made) can be created: its nearest existing ancestor is a
    writable folder, and it is outside the installed package."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a broken link: "creating" it fails only after the work (EEXIST)
            raise UsageError(f"{path}: {what} cannot be created ({parent} is {dangling_link(parent)})")
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: {what} cannot be created ({parent} is not a folder)")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: {what} cannot be written ({parent} is not writable)")
    check_outside_package(path, what)
    try:  # os.access says yes to root everywhere: a probe file (removed at once) finds /proc, read-only mounts…
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".rcl-probe-")
    except OSError as exc:
        raise UsageError(f"{path}: {what} cannot be written (creating a file in {parent} fails: "
                         f"{exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_folder_target(path: Path, what: str) -> None:
    """An output folder (made or reopened by the command) can be created: not a dangling link,
    nor under one (see :func:`check_creatable`)."""
    refuse_dangling(path, what, "folder")  # mkdir/resolve() would follow the link and create its target
    check_creatable(path, what)


def check_writable_target(path: Path, what: str) -> None:
    """Fail early (before any work) if ``path`` cannot be written as a file."""
    too_long = name_too_long(path)
    if too_long:
        raise UsageError(f"{what}: the file name is {too_long}; choose a shorter name")
    if path.is_dir():
        raise UsageError(f"{path}: {what} is a folder; give a file name")
    refuse_dangling(path, what, "name")  # exists() follows the link: it would be replaced unasked
    check_creatable(path, what)


def check_replace(path: Path, what: str, overwrite: bool) -> None:
    """The one rule of every command: an existing output is replaced only with --overwrite."""
    if path.exists() and not path.is_file():  # a device node, FIFO or socket: never replaced (e.g. /dev/null)
        raise UsageError(f"{path}: {what} exists and is not a regular file; choose another name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: {what} exists; pass --overwrite to replace it")


def check_outputs(outputs: dict[str, Optional[Path]], inputs: list[Optional[Path]],
                  overwrite: bool = False) -> None:
    """Outputs (name → path) must be writable files, distinct, never one of the inputs, never an
    image-suffixed file inside an input folder (it would be read as an input), and new unless
    ``overwrite``."""
    from ..data.io import IMAGE_SUFFIXES

    given = {k: v for k, v in outputs.items() if v is not None}
    ins = _input_files(inputs)
    in_dirs = {p.resolve() for p in inputs if p is not None and p.is_dir()}
    seen: dict[Path, str] = {}
    for what, path in given.items():
        check_writable_target(path, what)
        r = path.resolve()
        if r in ins:
            raise UsageError(f"{path}: {what} would overwrite an input file; choose another name")
        if path.suffix.lower() in IMAGE_SUFFIXES and r.parent in in_dirs:  # it would become an input
            raise UsageError(f"{path}: {what} has an image suffix inside the input folder {path.parent}, where it "
                             f"would be read as an input image; choose another name or folder")
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


class DatasetMode(str, Enum):
    auto = "auto"
    memory = "memory"
    files = "files"


DatasetOpt = Annotated[DatasetMode, typer.Option(
    "--dataset", help="Keep the training images in memory, or decode them from their files on demand "
                      "(collections larger than memory); auto: files when their float32 pixels exceed "
                      "RCL_DATASET_MEMORY (default 1 GiB).")]
WorkersOpt = Annotated[int, typer.Option(
    "--workers", min=0, help="DataLoader worker processes that decode a file-backed collection (0: in the "
                             "training process; unused in memory).")]


def load_training_images(data: Path, noise_spec: str, channels: Optional[int], crop: int,
                         dataset: "DatasetMode | str" = "memory"):
    """The training images (each at least ``crop`` px; in memory, or a file-backed
    :class:`rcl.data.filebank.FileImageSet` by ``dataset``, see
    :func:`rcl.data.filebank.open_collection`) and the parsed noise model.

    Raises:
        UsageError: a bad --channels. ValueError / ImageReadError: a bad noise spec or collection.
    """
    from ..data.filebank import open_collection
    from ..data.noise import parse_noise_spec

    noise = parse_noise_spec(noise_spec)
    check_channels(channels)
    images = open_collection(data, channels=channels, min_size=crop, mode=getattr(dataset, "value", dataset))
    return images, noise
