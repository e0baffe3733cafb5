"""`rcl demo`: RCL end to end on scikit-image's bundled photographs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DeviceOpt, Precision, PrecisionOpt, SeedOpt, ThreadsOpt, check_folder_target, errors_to_exit,
                     make_engine, path_option, set_threads)


@errors_to_exit
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run (tiny budget, 10-20 s on idle cores; numbers not meaningful).")] = False,
    out: Annotated[Optional[Path], path_option("--out", "-o", help="Run folder (default runs/demo-<time>).")] = None,
    seed: SeedOpt = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = Precision.fp32,
    threads: ThreadsOpt = None,
):
    """RCL end to end on scikit-image's bundled photographs (grayscale, σ ~ U[5, 50] per photo).

    Pre-trains with RCL on the noisy training photos, fine-tunes with ONE labelled photo from the
    RCL weights, from scratch and from the RCL network shipped with rcl (pretrained:gray; same
    steps), and evaluates on held-out photos beside BM3D given each photo's true σ.
    """
    from ..demo import run_demo

    if out is not None:
        check_folder_target(out, "--out")
    set_threads(threads)
    engine = make_engine(device, precision, progress=progress)
    run_demo(out=out, quick=quick, seed=seed, progress=progress, engine=engine)
