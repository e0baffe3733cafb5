"""`rcl benchmark`: the resumable label-efficiency benchmark."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DeviceOpt, Precision, PrecisionOpt, SaveEveryOpt, ThreadsOpt, UsageError, check_folder_target, errors_to_exit, make_engine,
                     name_too_long, path_option, set_threads)


@errors_to_exit
def benchmark(
    config: Annotated[str, typer.Argument(help="Preset name (smoke, default, colour, converged, converged-colour, paper, smoke-tasks, sr-gray, "
                                                           "sr-colour, jdd) or a YAML config file.")],
    data_root: Annotated[Optional[Path], path_option(help="Folder the config's data paths are relative to "
                                                         "(e.g. ../shared/data).")] = None,
    out: Annotated[Optional[Path], path_option("--out", "-o", help="Run folder (default runs/benchmark-<config>); "
                                                                   "rerunning the same command resumes it.")] = None,
    threads: ThreadsOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar over the cells.")] = True,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = Precision.fp32,
    save_every: Annotated[Optional[int], typer.Option(min=1, help="Each training cell writes a resumable state "
                                                                  "every N steps; an interrupted cell resumes "
                                                                  "from it on the next run.")] = None,
):
    """Label-efficiency benchmark: pre-train each method once, fine-tune per label fraction and seed,
    evaluate on the test sets, and write a report (tables, plots, claims). Resumable."""
    from ..benchmark import load_config, run_benchmark

    if not config:
        raise UsageError("CONFIG is empty; give a preset name or a YAML config file")
    name = Path(config).stem if config.endswith((".yaml", ".yml")) else config
    out = out if out is not None else Path("runs") / f"benchmark-{name}"
    check_folder_target(out, "-o")
    too_long = name_too_long(out, extra=len(".") + len(".partial"))  # assembled as .<out>.partial
    if too_long:
        raise UsageError(f"{out}: the -o folder name is {too_long}; choose a shorter name")
    cfg = load_config(config, data_root)
    set_threads(threads)
    engine = make_engine(device, precision, progress=progress)
    engine.announce = False
    out = out.resolve()
    report = run_benchmark(cfg, out, progress=progress, command=" ".join(["rcl"] + sys.argv[1:]), engine=engine,
                           save_every=save_every)
    typer.echo(f"report: {report}")
