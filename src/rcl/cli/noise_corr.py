"""`rcl noise-corr`: how spatially correlated is the noise of some images, and how much does PD remove?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DeviceOpt, OverwriteOpt, ThreadsOpt, UsageError, check_outputs, errors_to_exit, load_denoiser,
                     path_argument, path_option, set_threads)

MAX_STRIDE = 64


def parse_strides(text: str) -> list[int]:
    """``--pd 1,2,3,4`` → [1, 2, 3, 4] (integers in [1, 64], each once, in the order given)."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p.isdigit() for p in parts):
        raise UsageError(f"--pd {text!r}: give PD strides as integers separated by commas, e.g. --pd 1,2,3,4")
    strides = [int(p) for p in parts]
    bad = [s for s in strides if not 1 <= s <= MAX_STRIDE]
    if bad:
        raise UsageError(f"--pd {text!r}: strides must lie in [1, {MAX_STRIDE}], got {bad[0]}")
    if len(set(strides)) != len(strides):
        raise UsageError(f"--pd {text!r}: a stride is given twice")
    return strides


def _pairs(noisy: Path, clean: Path):
    """(name, noisy file, clean file): two folders matched by file name, two files, or a file and
    the file of the same name in a folder."""
    from ..data.real_pairs import image_size, matched_pairs

    if noisy.is_dir() and clean.is_dir():
        return [(p.name, p.noisy, p.clean) for p in matched_pairs(noisy, clean)]
    for p in (noisy, clean):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    if noisy.is_dir():
        raise UsageError(f"--clean {clean}: a file, but NOISY {noisy} is a folder; give a folder of clean images "
                         "with the same file names")
    partner = clean / noisy.name if clean.is_dir() else clean
    if not partner.is_file():
        raise ValueError(f"{noisy}: no clean image of the same name in {clean}")
    a, b = image_size(noisy), image_size(partner)
    if a != b:
        raise ValueError(f"{noisy}: {a[0]}×{a[1]} px, but its clean image {partner} is {b[0]}×{b[1]} px")
    return [(noisy.name, noisy, partner)]


def _print(title: str, rows: list[dict], file=None) -> None:
    """A rich table on a terminal, Markdown rows otherwise (as the other commands)."""
    import sys

    from ..reporting import markdown_table

    cols = [("stride", "PD stride", ""), ("lag1", "lag 1", "+.3f"), ("lag2", "lag 2", "+.3f"),
            ("lag3", "lag 3", "+.3f"), ("h1", "lag 1 horiz.", "+.3f"), ("v1", "lag 1 vert.", "+.3f")]
    out = file if file is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    if not (callable(isatty) and isatty()):
        out.write(f"{title}\n\n{markdown_table(rows, cols)}")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for _, head, _ in cols:
        table.add_column(head, justify="right")
    for r in rows:
        table.add_row(*(format(r[k], f) if f else str(r[k]) for k, _, f in cols))
    Console(file=out).print(table)


@errors_to_exit
def noise_corr(
    noisy: Annotated[Path, path_argument(help="Noisy image file or folder.")],
    clean: Annotated[Optional[Path], path_option(
        "--clean", help="Clean references (file or folder; matched to NOISY by file name): the residual is "
                        "noisy − clean.")] = None,
    checkpoint: Annotated[Optional[Path], path_option(
        "--checkpoint", help="A denoiser f: the residual is noisy − f(noisy).")] = None,
    pd: Annotated[str, typer.Option("--pd", help="PD strides to measure at, comma-separated (1: no PD).")] = "1,2,3,4",
    json_out: Annotated[Optional[Path], path_option(
        "--json", help="Write the table and the per-image values as JSON.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Spatial autocorrelation of the noise at lags 1, 2, 3, after pixel-shuffle down-sampling (PD).

    The residual of each image (noisy − clean, or noisy − f(noisy) with a denoiser) has its mean
    removed per channel and PD sub-image; the table gives, per PD stride s, the correlation of pixels
    1, 2, 3 apart within the sub-images (s, 2s, 3s apart in the image), horizontal and vertical
    averaged, then averaged over the channels and the images. White noise gives about 0; noise that
    a blind-spot network can learn from needs about 0 at lag 1 for the stride it trains with.
    See rcl.evaluation.noise_corr for the exact definition.
    """
    from ..data.io import atomic_write_bytes, image_paths, read_image
    from ..evaluation.noise_corr import DEFAULT_LAGS, noise_autocorrelation

    strides = parse_strides(pd)
    set_threads(threads)
    if (clean is None) == (checkpoint is None):
        raise UsageError("give exactly one of --clean (residual noisy − clean) and --checkpoint "
                         "(residual noisy − f(noisy))")
    if json_out is not None:
        check_outputs({"--json": json_out}, [noisy, clean, checkpoint], overwrite)
    model = None
    if checkpoint is not None:
        from ..evaluation.inference import predict

        model, meta, task = load_denoiser(checkpoint, device, "noisy − f(noisy)")
        want = meta["model"]["in_channels"]
        items = [(p.name, p, None) for p in image_paths(noisy)]
    else:
        items = _pairs(noisy, clean)

    per_image: dict[str, list] = {}
    for name, noisy_path, clean_path in items:
        y, info = read_image(noisy_path)
        if clean_path is not None:
            x, cinfo = read_image(clean_path)
            if x.shape != y.shape:
                raise UsageError(f"{noisy_path}: {info.channels} channel(s), but its clean image {clean_path} has "
                                 f"{cinfo.channels}")
            residual = y - x
        else:
            try:
                task.check_model_input(info.channels, want, str(noisy_path), size=tuple(y.shape[-2:]))
            except ValueError as exc:
                raise UsageError(f"{exc} ({checkpoint.name} is a {task.describe()} model)") from None
            residual = y - predict(model, y)
        try:
            per_image[name] = [noise_autocorrelation(residual, DEFAULT_LAGS, s) for s in strides]
        except ValueError as exc:
            raise ValueError(f"{noisy_path}: {exc}") from None

    n = len(per_image)
    rows, summary = [], []
    for k, s in enumerate(strides):
        hor = [sum(r[k].horizontal[i] for r in per_image.values()) / n for i in range(len(DEFAULT_LAGS))]
        ver = [sum(r[k].vertical[i] for r in per_image.values()) / n for i in range(len(DEFAULT_LAGS))]
        mean = [(a + b) / 2 for a, b in zip(hor, ver)]
        summary.append({"stride": s, "lags": list(DEFAULT_LAGS), "horizontal": hor, "vertical": ver, "mean": mean})
        rows.append({"stride": s, "lag1": mean[0], "lag2": mean[1], "lag3": mean[2], "h1": hor[0], "v1": ver[0]})
    what = f"noisy − clean ({clean})" if clean is not None else f"noisy − f(noisy) ({checkpoint.name})"
    _print(f"{noisy}: noise autocorrelation of {what}, mean over {n} image(s); lag k at PD stride s is k·s px",
           rows)
    if json_out is not None:
        payload = {"noisy": str(noisy), "clean": None if clean is None else str(clean),
                   "checkpoint": None if checkpoint is None else str(checkpoint),
                   "residual": "noisy - clean" if clean is not None else "noisy - f(noisy)",
                   "images": n, "lags": list(DEFAULT_LAGS), "strides": summary,
                   "per_image": {k: [c.to_dict() for c in v] for k, v in per_image.items()}}
        text = json.dumps(payload, indent=2, allow_nan=False)
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(text))
        typer.echo(f"wrote {json_out}")
