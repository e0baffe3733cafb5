"""`rcl evaluate`: score checkpoints with the fixed-seed evaluation protocol, on clean test images
with synthetic degradations (``--data``) or on real noisy/clean pairs matched by file name
(``--noisy``/``--clean``)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..configs import MAX_SEED
from ..tasks import TASKS
from .common import (DeviceOpt, OverwriteOpt, ThreadsOpt, UsageError, check_channels, check_outputs, check_restorer,
                     checkpoint_path,
                     check_tile, errors_to_exit, path_argument, path_option, set_threads, tile_help)
from .task_options import EvalNoiseOpt


class Reference(str, Enum):
    """Network-free references that ``--reference`` adds to the table."""

    bm3d = "bm3d"
    bm3d_oracle = "bm3d-oracle"
    bm3d_estimated = "bm3d-estimated"


def _check_sources(data: Optional[Path], noisy: Optional[Path], clean: Optional[Path], noise: Optional[str]) -> None:
    """Exactly one source of test images: --data (clean images, synthetic noise) or --noisy with
    --clean (real pairs)."""
    if data is not None and clean is not None:
        raise UsageError(f"--data {data} and --clean {clean} exclude each other: give --data (clean images, "
                         "synthetic --noise) or --noisy with --clean (real pairs)")
    if data is not None and noisy is not None:
        raise UsageError(f"--data {data} and --noisy {noisy} exclude each other: real pairs are --noisy with --clean")
    if (noisy is None) != (clean is None):
        given, missing = ("--noisy", "--clean") if clean is None else ("--clean", "--noisy")
        raise UsageError(f"{given} needs {missing}: real pairs are a folder of noisy images and a folder of "
                         "clean images with the same file names")
    if data is None and noisy is None:
        raise UsageError("give --data TEST_DIR (clean images, synthetic --noise) or --noisy NOISY_DIR --clean "
                         "CLEAN_DIR (real pairs)")
    if noisy is not None and clean is not None and noisy.resolve() == clean.resolve():
        raise UsageError(f"--noisy {noisy} and --clean {clean} are the same folder: the noisy images would be "
                         f"scored against themselves")
    if noisy is not None and noise is not None and noise.strip().lower() != "real":
        raise UsageError(f"--noise {noise} and --noisy exclude each other: the noisy images are the inputs")


def _load_pairs(noisy: Path, clean: Path, channels: Optional[int], min_size: int, why: Optional[str]):
    """Real pairs matched by file name (:func:`rcl.data.real_pairs.matched_pairs`: unmatched names
    and sizes refused; :func:`~rcl.data.real_pairs.check_pair_images`: channels, sizes, identical
    pixels) as two ImageSets in the same order."""
    from ..data.datasets import load_image_set
    from ..data.io import held_warnings
    from ..data.real_pairs import check_pair_files, check_pair_images, matched_pairs

    pairs = matched_pairs(noisy, clean)
    check_pair_files(pairs)
    with held_warnings():  # an error about either folder comes alone, without the other's warnings
        ys, xs = (load_image_set(folder, channels=channels, min_size=min_size, min_size_reason=why)
                  for folder in (noisy, clean))
        if not (ys.names == xs.names == [p.name for p in pairs]):  # the same listing rule: cannot differ
            raise UsageError(f"{noisy} and {clean}: the images read differ from the pairs matched by file name")
        for name, y, x in zip(ys.names, ys.images, xs.images):
            check_pair_images(noisy / name, clean / name, y, x, scored=True)
    return ys, xs


@errors_to_exit
def evaluate(
    checkpoints: Annotated[list[Path], typer.Argument(
        parser=checkpoint_path, help="One or more checkpoints of the same task to compare (a file, or a network "
                                     "shipped with rcl: pretrained:gray, pretrained:colour).")],
    data: Annotated[Optional[Path], path_option("--data", help="Folder of clean test images (synthetic --noise).")] = None,
    noisy: Annotated[Optional[Path], path_option(
        "--noisy", help="Folder of real noisy images, scored against --clean (pairs matched by file name).")] = None,
    clean: Annotated[Optional[Path], path_option(
        "--clean", help="Folder of clean references of the --noisy images (same file names and sizes).")] = None,
    noise: EvalNoiseOpt = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Noise seed of the protocol (synthetic --noise).")] = 0,
    channels: Annotated[Optional[int], typer.Option(help="Convert test images to 1 or 3 channels.")] = None,
    tile: Annotated[Optional[int], typer.Option(help=tile_help())] = None,
    json_out: Annotated[Optional[Path], path_option("--json", help="Write per-image scores as JSON.")] = None,
    reference: Annotated[Optional[list[Reference]], typer.Option(
        help="Add a classical reference row under the same protocol (repeat for several; denoising models "
             "only): bm3d = BM3D (CBM3D on RGB) given each image's true σ (Gaussian --noise); bm3d-oracle = "
             "given σ = std(noisy − clean) of each real pair (--noisy/--clean; an upper bound); "
             "bm3d-estimated = given σ estimated from the noisy image alone.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
):
    # the help (docstring) is set below, from the tasks
    from ..checkpoint import load_checkpoint
    from ..data.datasets import load_image_set
    from ..data.io import atomic_write_bytes
    from ..data.noise import SCALE, parse_noise_spec
    from ..evaluation import evaluate as run_evaluate
    from ..evaluation import (BM3D_ESTIMATED_ROW, BM3D_ORACLE_ROW, BM3D_ROW, bm3d_estimated_reference,
                              bm3d_oracle_reference, bm3d_reference, model_denoiser)
    from ..reporting import finite_json, print_table
    from ..tasks import TASKS, task_from_metadata

    from ..training import describe_device, resolve_device

    _check_sources(data, noisy, clean, noise)
    real = noisy is not None
    check_channels(channels)
    check_tile(tile)
    set_threads(threads)
    dev = resolve_device(device)
    if json_out is not None:
        check_outputs({"--json": json_out}, [data, noisy, clean, *checkpoints], overwrite)
    from ..pretrained import describe as describe_pretrained

    models = [(ck, *load_checkpoint(ck)) for ck in checkpoints]
    for _, model, _ in models:
        model.to(dev)
    for ck, _, meta in models:
        check_restorer(meta, ck)
    tasks = {(task_from_metadata(m).describe()) for _, _, m in models}
    if len(tasks) > 1:
        raise UsageError(f"checkpoints of different tasks cannot be compared in one table: {sorted(tasks)}")
    task = task_from_metadata(models[0][2])
    if real and not task.input_is_noisy_target:
        takes = ", ".join(name for name, cls in TASKS.items() if cls.input_is_noisy_target)
        raise UsageError(f"--noisy/--clean real pairs score models whose output is a clean copy of their input "
                         f"({takes}), not a {task.describe()} model")
    noise = "real" if real else (noise if noise is not None else task.eval_noise)
    noise_model = parse_noise_spec(noise)
    if not real and not noise_model.synthetic:
        raise UsageError("--noise 'real' needs real pairs: give --noisy NOISY_DIR --clean CLEAN_DIR instead of --data")
    references = {}
    for ref in dict.fromkeys(reference or []):  # each once, in the order given
        try:
            if ref is Reference.bm3d:
                if real:
                    raise ValueError("real pairs have no known σ; use bm3d-oracle (σ = std(noisy − clean)) or "
                                     "bm3d-estimated")
                references[BM3D_ROW] = bm3d_reference(task, noise_model)
            elif ref is Reference.bm3d_oracle:
                references[BM3D_ORACLE_ROW] = bm3d_oracle_reference(task, noise_model)
            else:
                references[BM3D_ESTIMATED_ROW] = bm3d_estimated_reference(task)
        except ValueError as exc:
            raise UsageError(f"--reference {ref.value}: {exc}") from None
    min_size, why = task.min_test_size()  # the task's one rule (also the benchmark's)
    if real:
        inputs, test = _load_pairs(noisy, clean, channels, min_size, why)
    else:
        inputs, test = None, load_image_set(data, channels=channels, min_size=min_size, min_size_reason=why)
    source = data if not real else clean
    denoisers = {}
    for ck, model, meta in models:
        want = meta["model"]["in_channels"]
        need = task.output_channels(want)
        if test.channels != need and need == want:
            raise UsageError(f"{ck}: model takes {want} channel(s), test images have {test.channels}; "
                             f"use --channels {want}")
        if test.channels != need:
            raise UsageError(f"{source}: a {task.describe()} model is scored on {need}-channel test images, "
                             f"got {test.channels} channel(s)")
        label = describe_pretrained(ck)  # pretrained:gray, not the shipped file's name
        label = label if label.startswith("pretrained:") else ck.name
        name, k = label, 2
        while name in denoisers:
            name, k = f"{label} ({k})", k + 1
        denoisers[name] = model_denoiser(model, tile)
    reference_names = set()
    for name, restorer in references.items():  # in the same call: the same noisy inputs, the same scores
        while name in denoisers:
            name += " (reference)"
        denoisers[name] = restorer
        reference_names.add(name)
    results, _ = run_evaluate(denoisers, test, noise_model, seed, noisy=inputs, task=task)
    rows = [{"method": task.reference_name, "psnr": r.mean("psnr_noisy"), "ssim": r.mean("ssim_noisy")}
            for r in list(results.values())[:1]]
    rows += [{"method": k, "psnr": r.mean("psnr"), "ssim": r.mean("ssim")} for k, r in results.items()]
    if real:
        title = (f"{noisy} vs {clean} — {task.describe()}{task.score_note}, real noisy/clean pairs, {len(test)} images, "
                 f"on {describe_device(dev)}")
    else:
        title = (f"{data} — {task.describe()}{task.score_note}, {noise_model.describe()}, seed {seed}, "
                 f"{len(test)} images, on {describe_device(dev)}")
    print_table(title, rows)
    if json_out is not None:
        payload = {"data": None if real else str(data), "noisy": str(noisy) if real else None,
                   "clean": str(clean) if real else None, "task": task.name, "scale": task.scale, "noise": noise,
                   "seed": None if real else seed, "device": describe_device(dev),
                   "sigma": "per image, 0-255: std(noisy - clean)" if real else "per image, 0-255: the noise's σ",
                   "results": {k: {**r.to_dict(), "reference": k in reference_names} for k, r in results.items()}}
        for name, restorer in denoisers.items():
            used = getattr(restorer, "sigmas_used", None)
            if name in reference_names and used is not None:
                payload["results"][name]["estimator"] = restorer.estimator
                for im, s_used in zip(payload["results"][name]["images"], used):
                    im["sigma_used"] = s_used * SCALE
        text = json.dumps(finite_json(payload), indent=2, allow_nan=False)
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(text))
        typer.echo(f"wrote {json_out}")


evaluate.__doc__ = (
    "Score checkpoints on clean test images with fixed-seed synthetic degradations (--data), or on real "
    "noisy/clean pairs matched by file name (--noisy, --clean; denoising), under one protocol "
    "(docs/protocol.md).\n\n"
    + " ".join(f"{cls.name}: {cls.protocol_help}." for cls in TASKS.values() if cls.protocol_help))
