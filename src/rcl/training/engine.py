"""The training engine's settings: device, precision, compilation, memory layout, resumable states,
stop signals and what a user sees during a long run. None of these change what is learned on one
device (apart from the precision): they are how :func:`rcl.training.trainer.train` runs.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


class DeviceError(ValueError):
    """A device that this machine does not have (the CLI prints it as one ``error:`` line)."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The device of ``--device``: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N``
    or ``mps``. A device the machine lacks is an error, never a silent fall-back to the CPU.

    Raises:
        DeviceError: an unknown spec, or CUDA/MPS (or GPU N) not available here.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    from ..distributed import launched_by_torchrun, local_rank

    if launched_by_torchrun() and text in ("auto", "cuda") and torch.cuda.is_available():
        text = f"cuda:{local_rank()}"  # one GPU per rank
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: MPS (Apple GPU) is not available on this machine")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if text.startswith("cuda:") and not index.isdigit():
            raise DeviceError(f"--device {spec}: use cuda or cuda:N with N a GPU number")
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceError(f"--device {spec}: CUDA is not available on this machine ({why}); "
                              "use --device cpu or auto")
        n = torch.cuda.device_count()
        i = int(index) if index else torch.cuda.current_device()
        if i >= n:
            raise DeviceError(f"--device {spec}: this machine has {n} CUDA GPU(s) (cuda:0 to cuda:{n - 1})")
        return torch.device("cuda", i)
    raise DeviceError(f"--device {spec}: use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def describe_device(device: torch.device) -> str:
    """``cpu (2 threads)``, ``cuda:0 (NVIDIA H200)``, ``mps``: for logs and reports."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'' if n == 1 else 's'})"
    return str(device)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``--precision`` (None for fp32).

    Raises:
        ValueError: not fp32, bf16 or fp16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision}: use fp32, bf16 or fp16")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass
class Engine:
    """How a training runs.

    Attributes:
        device: where it runs (:func:`resolve_device`; default: auto).
        precision: fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler).
        compile: run the network through ``torch.compile``.
        channels_last: train in the channels-last memory layout (faster convolutions on CPU).
        retain_freed_memory: on the CPU with glibc, keep freed blocks of up to 32 MiB in the
            process's heap for reuse instead of handing them back to the kernel
            (:func:`retain_freed_memory`; 10–12 % more steps/s, docs/benchmarks.md).
        workers: DataLoader worker processes decoding a file-backed collection (0: in the main
            process).
        save_every: write a resumable training state every this many steps (None: never).
        state_path: where that state goes (written atomically).
        resume: a training state to continue from.
        progress: show a progress bar when stderr is a terminal; otherwise (or False) print a plain
            log line every ``log_every`` steps.
        log_every: steps between plain log lines (0: every ⌈steps/20⌉ steps, at most 20 lines per run; −1: none).
        handle_signals: SIGTERM / SIGINT stop the run after the current step (saving a state when
            ``save_every`` is on), raising :class:`TrainingStopped`.
        announce: print one line (device, precision, ranks, resumed step) when training starts.
    """

    device: torch.device | str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    channels_last: bool = True
    retain_freed_memory: bool = True
    workers: int = 0
    save_every: int | None = None
    state_path: Path | None = None
    resume: Path | None = None
    progress: bool = True
    log_every: int = 0
    handle_signals: bool = True
    announce: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.device = resolve_device(self.device)
        autocast_dtype(self.precision)
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"--save-every must be >= 1, got {self.save_every}")
        if self.save_every is not None and self.state_path is None:
            raise ValueError("save_every needs a state_path")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        if self.precision == "fp16" and self.device.type == "cpu":
            pass  # allowed: autocast fp16 and the scaler both exist on CPU (slow; for tests)
        self.state_path = Path(self.state_path) if self.state_path is not None else None
        self.resume = Path(self.resume) if self.resume is not None else None


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1 << 30
_malloc_tuned: bool | None = None


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks of up to 32 MiB for reuse (once per process).

    A training step on the CPU allocates and frees the same activation and gradient tensors
    (up to 14 MiB each for the default U-Net) every step. By default glibc serves such blocks with
    ``mmap`` and hands them back with ``munmap`` (or trims the heap), so every step faults the
    same memory in again, page by page: about 10,000 minor page faults per RCL pre-training step,
    about a tenth of its time on 2 cores (paired speed-up 1.11×, docs/benchmarks.md). With the
    mmap threshold at 32 MiB and heap trimming above 1 GiB, freed blocks stay in the heap and are
    reused without faults.

    The cost: memory freed by the process is not returned to the kernel (the resident size stays
    at its high-water mark; blocks over 32 MiB are still returned), and the peak can rise a little
    as freed blocks of other sizes stay in the heap: 1217 → 1355 MiB in the large-collection run
    (docs/benchmarks.md). Process-wide and permanent; DataLoader workers forked afterwards
    inherit it.

    Returns:
        True if applied (now or earlier), False where the C library is not glibc (macOS,
        Windows, musl: nothing is changed).
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        try:
            import ctypes
            import platform

            if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
                libc = ctypes.CDLL("libc.so.6")
                # the mmap threshold first: setting either one turns off glibc's dynamic thresholds
                ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
                _malloc_tuned = ok and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
        except (OSError, AttributeError):
            _malloc_tuned = False
    return _malloc_tuned


class TrainingStopped(Exception):
    """SIGTERM or SIGINT stopped a training after ``step``; ``state`` is the resumable state written
    then (None when ``save_every`` was off)."""

    def __init__(self, step: int, signum: int, state: Path | None):
        name = signal.Signals(signum).name
        hint = f"; resume with --resume {state}" if state is not None else " (no --save-every: nothing saved)"
        super().__init__(f"stopped by {name} after step {step}{hint}")
        self.step, self.signum, self.state = step, signum, state


class StopFlag:
    """Set by SIGTERM / SIGINT while :meth:`installed`; the training loop reads it after each step."""

    def __init__(self):
        self.signum: int | None = None

    @contextmanager
    def installed(self, enabled: bool = True):
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum, frame):
            if self.signum is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self.signum = signum

        for s in old:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def to_json(obj) -> str:
    """Compact JSON of a training state's metadata (floats round-trip exactly)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


def env_int(name: str, default: int) -> int:
    """An integer environment variable (``default`` when unset or malformed)."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
