"""`run_benchmark`: a run folder (assembled as ``.<out>.partial``, resumable), the cells, the
figures, ``report.md``, ``results.json`` and ``config.yaml``."""

from __future__ import annotations

import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from ..reporting import finite_json
from .cells import atomic_json, atomic_text
from .config import BenchmarkConfig, config_dict, config_yaml
from .figures import figures
from .report import report
from .runner import Runner

MARKER = ".rcl-benchmark"  # marks a folder as an rcl benchmark run folder (safe to reopen)
PROGRAM = "rcl"  # the console script (pyproject.toml [project.scripts])


def default_command(out: Path) -> str:
    """The command line recorded in the report when none is given (``sys.argv`` of ``rcl``)."""
    if Path(sys.argv[0]).name == PROGRAM:
        return " ".join([PROGRAM] + [shlex.quote(a) for a in sys.argv[1:]])
    return f"rcl.benchmark.run_benchmark(config, out={str(out)!r})  # Python API"


def run_benchmark(config: BenchmarkConfig, out: Path, progress: bool = True, command: str | None = None,
                  engine=None, save_every: int | None = None) -> Path:
    """Run (or resume) a benchmark into the run folder ``out`` and write its report.

    Cells whose cached output carries the same config hash are reused; the others are computed.
    The folder is built as ``.<out>.partial`` and renamed to ``out`` at the end (an interrupted
    run is resumed from the ``.partial`` folder by the next call; a finished ``out`` is reopened).

    Args:
        config: a validated :class:`BenchmarkConfig` (see :func:`load_config`).
        out: run folder; an existing one must be an rcl benchmark folder (or empty).
        progress: show a tqdm bar over the cells (and the training bars).
        command: the command line to record in the report (default: from ``sys.argv``).
        engine: the :class:`rcl.training.Engine` of the training cells (device, precision; default:
            the CPU in fp32). Cells trained on another device or precision have their own hashes.
        save_every: each training cell writes a resumable state every this many steps beside its
            checkpoint (``*.state.safetensors``); an interrupted cell resumes from it.

    Returns:
        ``out``.

    Raises:
        FileExistsError: ``out`` exists and is not an rcl benchmark folder, or both ``out`` and
            its ``.partial`` folder exist.
        ValueError / FileNotFoundError / ImageReadError: bad data (names the file).
    """
    from .inputs import check_inputs

    out = Path(out)
    work = out.parent / f".{out.name}.partial"
    check_inputs(config)  # bad images fail here, before any folder is made or any cell runs
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out}: exists and is not a folder; choose another output folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise FileExistsError(f"{out}: exists and is not an rcl benchmark folder; choose another output folder")
        if work.exists():
            raise FileExistsError(f"both {out} and {work} exist; remove one of them")
        out.rename(work)  # reopen: the cache is reused, the report rewritten
        for f in ("report.md", "results.json"):  # never leave a report that may not match the cells
            (work / f).unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("rcl benchmark run folder (cache/ holds resumable cells)\n")
    command = command or default_command(out)
    started = f"{datetime.now():%Y-%m-%d %H:%M:%S}"
    t0 = time.time()

    try:
        runner = Runner(config, work, progress, engine=engine, save_every=save_every)
        runner.run()
        import torch

        with torch.no_grad():
            figures(runner, work)
        seconds = time.time() - t0
        md, summary = report(runner, out.name, command, seconds, started)
        from ..training import describe_device

        results = {"rcl_version": __import__("rcl").__version__, "name": config.name, "command": command,
                   "device": describe_device(runner.engine.device), "precision": runner.engine.precision,
                   "started": started, "seconds": seconds, "config": config_dict(config),
                   "cells": {"total": len(runner.computed) + len(runner.cached), "computed": runner.computed,
                             "cached": runner.cached},
                   **summary}
        atomic_text(work / "config.yaml", config_yaml(config))
        atomic_json(work / "results.json", finite_json(results))
        atomic_text(work / "report.md", md)
    except BaseException:
        print(f"benchmark stopped; finished cells are kept in {work} — rerun the same command to resume",
              file=sys.stderr, flush=True)
        raise
    work.rename(out)
    if progress:
        print(f"report: {out / 'report.md'} ({len(runner.computed)} cells computed, {len(runner.cached)} cached, "
              f"{seconds / 60:.1f} min)", flush=True)
    return out
