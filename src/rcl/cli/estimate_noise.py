"""`rcl estimate-noise`: the noise level σ of noisy images, read from a pre-trained denoiser's residual
through a calibration on synthetic noise (rcl.evaluation.noise_level)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..configs import MAX_SEED
from .common import (DeviceOpt, OverwriteOpt, ThreadsOpt, UsageError, check_outputs, check_tile, load_denoiser,
                     errors_to_exit, path_argument, path_option, set_threads, tile_help)

MIN_SIDE = 16
"""The smallest side of an image or calibration image (the estimators beside the network's σ̂
down-sample by 3 and need a few pixels left)."""


def _print(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """A rich table on a terminal, Markdown rows otherwise (as the other commands)."""
    import sys

    from ..reporting import markdown_table

    if not sys.stdout.isatty():
        sys.stdout.write(f"{title}\n\n{markdown_table(rows, columns)}")
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, (_, head, _) in enumerate(columns):
        table.add_column(head, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*(str(r[k]) for k, _, _ in columns))
    Console().print(table)


@errors_to_exit
def estimate_noise(
    checkpoint: Annotated[Path, path_argument(help="A denoising checkpoint (e.g. from rcl pretrain).")],
    images: Annotated[Path, path_argument(help="Noisy image file or folder.")],
    calibration: Annotated[Path, path_option(
        "--calibration", help="Folder of clean images (not your test images): Gaussian noise at σ = 5, 10, …, 50 "
                              "is added to them to calibrate the residual std.")],
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the calibration noise.")] = 0,
    tile: Annotated[Optional[int], typer.Option(help=tile_help())] = None,
    json_out: Annotated[Optional[Path], path_option(
        "--json", help="Write the per-image values and the calibration as JSON.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Estimate the noise level σ (0–255) of each image from a pre-trained network's residual.

    The residual n̂ = y − f(y) of the network f grows with the noise, but its std is not σ (f leaves
    some noise and removes some detail). The relation is calibrated first: white Gaussian noise at
    σ = 5, 10, …, 50 (seeded) is added to the --calibration images, the mean residual std is measured
    at each σ, made monotone (isotonic fit) and inverted by piecewise-linear interpolation (linear
    extension outside, marked "extrapolated"). Beside each image: scikit-image's estimate_sigma
    (wavelet) and rcl's default estimator from the image alone. A 1-channel model runs on each channel
    of an RGB image. The calibration assumes white Gaussian noise and calibration images like yours:
    measured on BSD68 it is less accurate than estimate_sigma, and on real PolyU camera noise with a
    Train400 calibration it read σ̂ = 0 for every crop (docs/real-noise/README.md, "rcl estimate-noise").
    """
    from ..data.datasets import load_image_set
    from ..data.io import atomic_write_bytes, image_paths, read_image
    from ..data.noise import SCALE
    from ..evaluation.noise_level import (CALIBRATION_SIGMAS, DEFAULT_ESTIMATOR, calibrate, estimate_sigma,
                                          image_residual_std)
    from ..reporting import finite_json
    from ..training import describe_device, resolve_device

    check_tile(tile)
    set_threads(threads)
    dev = resolve_device(device)
    if json_out is not None:
        check_outputs({"--json": json_out}, [checkpoint, images, calibration], overwrite)
    model, meta, task = load_denoiser(checkpoint, device, "the residual y − f(y)")
    want = meta["model"]["in_channels"]
    paths = image_paths(images)
    noisy = []
    for p in paths:  # every input checked before the calibration's work
        y, info = read_image(p)
        if min(y.shape[1:]) < MIN_SIDE:
            raise UsageError(f"{p}: image is {y.shape[2]}×{y.shape[1]}, smaller than {MIN_SIDE} px")
        if info.channels != want and not (want == 1 and info.channels == 3):
            raise UsageError(f"{p}: {info.channels} channel(s), but {checkpoint.name} takes {want} (a 1-channel model "
                             f"also takes RGB images, channel by channel)")
        noisy.append((p, y))
    cal_images = load_image_set(calibration, channels=want, min_size=MIN_SIDE,
                                min_size_reason=f"{MIN_SIDE} px (--calibration)")
    try:
        cal = calibrate(model, cal_images, CALIBRATION_SIGMAS, seed=seed, tile=tile)
    except ValueError as exc:  # the network cannot be calibrated: name it
        raise UsageError(f"{checkpoint}: {exc}") from None

    rows, per_image = [], []
    for p, y in noisy:
        r = image_residual_std(model, y, per_channel=y.shape[0] != want, tile=tile)
        try:
            wavelet, default = estimate_sigma(y, "wavelet"), estimate_sigma(y, DEFAULT_ESTIMATOR)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None
        item = {"image": p.name, "residual_std": r * SCALE, "sigma": cal(r) * SCALE, "in_range": cal.in_range(r),
                "estimate_sigma_wavelet": wavelet * SCALE, f"estimate_sigma_{DEFAULT_ESTIMATOR}": default * SCALE}
        per_image.append(item)
        rows.append({"method": p.name, "residual": f"{r * SCALE:.2f}",
                     "sigma": f"{cal(r) * SCALE:.2f}" + ("" if item["in_range"] else " (extrapolated)"),
                     "wavelet": f"{wavelet * SCALE:.2f}", "default": f"{default * SCALE:.2f}"})
    cols = [("method", "image", ""), ("residual", "residual std", ""), ("sigma", "σ̂ (network)", ""),
            ("wavelet", "estimate_sigma (wavelet)", ""), ("default", f"{DEFAULT_ESTIMATOR}", "")]
    c = cal.to_dict()
    _print(f"{images}: σ on the 0–255 scale, from {checkpoint.name} calibrated on {len(cal_images)} image(s) of "
                f"{calibration} (σ {c['sigmas'][0]:g}–{c['sigmas'][-1]:g} ↦ residual std "
                f"{c['fitted'][0]:.2f}–{c['fitted'][-1]:.2f}), on {describe_device(dev)}", rows, cols)
    if json_out is not None:
        payload = {"checkpoint": str(checkpoint), "images": str(images), "calibration_images": str(calibration),
                   "sigma_scale": "0-255", "device": describe_device(dev), "default_estimator": DEFAULT_ESTIMATOR,
                   "calibration": c, "per_image": per_image}
        text = json.dumps(finite_json(payload), indent=2, allow_nan=False)
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(text))
        typer.echo(f"wrote {json_out}")
