"""The ``rcl`` command line. Every command has ``--help``.

Noise levels σ are given on the 0–255 scale, as in the literature (``--noise gaussian:25``,
``--noise gaussian:5-50``). Bad input ends with a one-line error naming the culprit and exit
status 2; outputs are written atomically and inputs are never overwritten.
"""

from __future__ import annotations

import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rcl — Residual Contrastive Learning: pre-train restoration networks on noisy "
                       "images, fine-tune with few labels, restore and measure.")


class UsageError(ValueError):
    """A bad combination of command-line options."""


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "value"
        parts.append(f"--{loc.replace('_', '-')}: {err['msg']}")
    return "; ".join(parts)


def _errors_to_exit(fn):
    """Turn expected errors into 'error: …' on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .checkpoint import CheckpointError
        from .data.io import ImageReadError

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            msg = _format_validation(exc)
        except (ImageReadError, CheckpointError, UsageError, FileNotFoundError, NotADirectoryError,
                FileExistsError, IsADirectoryError, PermissionError, ValueError, FloatingPointError) as exc:
            msg = str(exc)
        except KeyboardInterrupt:
            msg = "interrupted; no unfinished output was left in place"
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2)

    return wrapper


class Consistency(str, Enum):
    blindspot = "blindspot"
    fidelity = "fidelity"
    recorruption = "recorruption"
    none = "none"


class Arch(str, Enum):
    unet = "unet"
    dncnn = "dncnn"


class Similarity(str, Enum):
    emd = "emd"
    l2 = "l2"
    cosine = "cosine"


NoiseOpt = Annotated[str, typer.Option(
    "--noise", help="Noise model, σ on 0-255: gaussian:25, gaussian:5-50 (σ per image), poisson:30, "
                    "poisson-gaussian, or real (images are already noisy).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (crops, masks, weights, synthetic noise).")]


def _check_output_file(out: Path, inputs: list[Path], suffix: str = ".safetensors") -> None:
    if out.suffix != suffix:
        raise UsageError(f"{out}: output file must end in {suffix}")
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give a file name ending in {suffix}")
    for p in inputs:
        if p is not None and p.exists() and out.resolve() == p.resolve():
            raise UsageError(f"{out}: refusing to overwrite an input file")


def _load_training_images(data: Path, noise_spec: str, channels: Optional[int], crop: int):
    from .data.datasets import load_image_set
    from .data.noise import parse_noise_spec

    noise = parse_noise_spec(noise_spec)
    if channels is not None and channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    images = load_image_set(data, channels=channels, min_size=crop)
    return images, noise


@app.command()
@_errors_to_exit
def pretrain(
    data: Annotated[Path, typer.Argument(help="Folder (or file) of training images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors).")],
    noise: NoiseOpt = "gaussian:5-50",
    channels: Annotated[Optional[int], typer.Option(help="Convert images to 1 or 3 channels (default: as read).")] = None,
    arch: Annotated[Arch, typer.Option(help="Network architecture.")] = Arch.unet,
    width: Annotated[int, typer.Option(help="Network width (channels of the first stage).")] = 16,
    depth: Annotated[int, typer.Option(help="U-Net down-sampling stages / DnCNN layers.")] = 3,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 800,
    batch_images: Annotated[int, typer.Option(help="Images per batch (2 crops each).")] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature τ.")] = 0.1,
    contrastive_weight: Annotated[float, typer.Option(help="Weight of the residual NT-Xent term.")] = 0.01,
    consistency: Annotated[Consistency, typer.Option(help="Consistency term.")] = Consistency.blindspot,
    consistency_weight: Annotated[float, typer.Option(help="Weight λ of the consistency term.")] = 1.0,
    similarity: Annotated[Similarity, typer.Option(help="Residual similarity (emd = RCL).")] = Similarity.emd,
    seed: SeedOpt = 0,
    log: Annotated[Optional[Path], typer.Option(help="CSV log of the loss per step.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Pre-train a network with RCL on noisy images alone (no clean targets are used).

    With a synthetic --noise the images are taken as clean and noised once (seeded), which
    simulates a user's noisy collection; with --noise real they are used as they are.
    """
    from .checkpoint import save_checkpoint
    from .data.datasets import add_noise_per_image
    from .models import ModelConfig
    from .training import PretrainConfig
    from .training import pretrain as run_pretrain

    _check_output_file(out, [data])
    cfg = PretrainConfig(steps=steps, batch_images=batch_images, crop_size=crop_size, lr=lr,
                         temperature=temperature, contrastive_weight=contrastive_weight,
                         consistency=consistency.value, consistency_weight=consistency_weight,
                         similarity=similarity.value, seed=seed)
    images, noise_model = _load_training_images(data, noise, channels, crop_size)
    if len(images) < 2:
        raise UsageError(f"{data}: RCL pre-training needs at least 2 images (negatives come from other images)")
    mcfg = ModelConfig(arch=arch.value, in_channels=images.channels, out_channels=images.channels,
                       width=width, depth=depth)
    noisy = images if not noise_model.synthetic else add_noise_per_image(images, noise_model, seed)[0]
    model, hist = run_pretrain(noisy, mcfg, cfg, log_path=log, progress=progress)
    save_checkpoint(out, model, mcfg, stage="pretrain", method="rcl", noise=noise,
                    training=cfg.model_dump(), n_images=len(images), final_loss=hist[-1]["loss"])
    typer.echo(f"wrote {out} (final loss {hist[-1]['loss']:.4g} after {cfg.steps} steps on {len(images)} images)")


@app.command()
@_errors_to_exit
def finetune(
    data: Annotated[Path, typer.Argument(help="Folder of clean training images (the labels).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors).")],
    init: Annotated[Optional[Path], typer.Option(help="Checkpoint to start from (e.g. from `rcl pretrain`); "
                                                     "omit to train from scratch.")] = None,
    noisy: Annotated[Optional[Path], typer.Option(help="Folder of real noisy images matching DATA by file "
                                                       "name; omit to synthesise noise with --noise.")] = None,
    noise: NoiseOpt = "gaussian:5-50",
    label_fraction: Annotated[float, typer.Option(help="Fraction 0 < f <= 1 of DATA used as labels (at least one image).")] = 1.0,
    channels: Annotated[Optional[int], typer.Option(help="Convert images to 1 or 3 channels.")] = None,
    arch: Annotated[Arch, typer.Option(help="Architecture when training from scratch.")] = Arch.unet,
    width: Annotated[int, typer.Option(help="Width when training from scratch.")] = 16,
    depth: Annotated[int, typer.Option(help="Depth when training from scratch.")] = 3,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 5e-4,
    loss: Annotated[str, typer.Option(help="l2 or l1.")] = "l2",
    seed: SeedOpt = 0,
    log: Annotated[Optional[Path], typer.Option(help="CSV log of the loss per step.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Fine-tune for denoising on a label fraction of clean images (from --init, or from scratch)."""
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data.datasets import load_image_set
    from .models import ModelConfig
    from .training import FinetuneConfig
    from .training import finetune as run_finetune

    _check_output_file(out, [data, init, noisy])
    cfg = FinetuneConfig(steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr, loss=loss,
                         label_fraction=label_fraction, seed=seed)
    from .data.noise import parse_noise_spec

    if noisy is None and not parse_noise_spec(noise).synthetic:
        raise UsageError("--noise real needs --noisy (noisy/clean pairs); or give a synthetic --noise")
    images, noise_model = _load_training_images(data, noise, channels, crop_size)
    pairs = None
    if noisy is not None:
        pairs = load_image_set(noisy, channels=channels, min_size=crop_size)
        if pairs.names != images.names:
            raise UsageError(f"{noisy}: file names must match those of {data} one to one")
        for a, b, name in zip(images.images, pairs.images, images.names):
            if a.shape != b.shape:
                raise UsageError(f"{name}: clean {tuple(a.shape)} and noisy {tuple(b.shape)} sizes differ")
    init_model, meta = None, {}
    if init is not None:
        init_model, meta = load_checkpoint(init)
        mcfg = ModelConfig(**meta["model"])
        if meta.get("task", "denoise") != "denoise":
            raise UsageError(f"{init}: a {meta['task']} checkpoint cannot initialise a denoising fine-tune")
    else:
        mcfg = ModelConfig(arch=arch.value, in_channels=images.channels, out_channels=images.channels,
                           width=width, depth=depth)
    if mcfg.in_channels != images.channels:
        raise UsageError(f"{data}: images have {images.channels} channel(s) but the model "
                         f"({init or 'new'}) takes {mcfg.in_channels}; use --channels {mcfg.in_channels}")
    model, hist, labelled = run_finetune(images, noise_model if pairs is None else None, cfg, mcfg, init=init_model,
                                         noisy=pairs, log_path=log, progress=progress)
    save_checkpoint(out, model, mcfg, stage="finetune", init=str(init) if init else None,
                    init_stage=meta.get("stage"), noise=noise, training=cfg.model_dump(),
                    labelled_images=labelled, final_loss=hist[-1]["loss"])
    typer.echo(f"wrote {out} ({len(labelled)} labelled image(s), final loss {hist[-1]['loss']:.4g})")


@app.command()
@_errors_to_exit
def evaluate(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more checkpoints to compare.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of clean test images.")],
    noise: NoiseOpt = "gaussian:25",
    seed: Annotated[int, typer.Option(help="Noise seed of the protocol.")] = 0,
    channels: Annotated[Optional[int], typer.Option(help="Convert test images to 1 or 3 channels.")] = None,
    tile: Annotated[Optional[int], typer.Option(help="Tile size for large images (default: whole image).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write per-image scores as JSON.")] = None,
):
    """Score checkpoints on clean test images with fixed-seed synthetic noise (PSNR/SSIM, uint8, peak 255)."""
    from .checkpoint import load_checkpoint
    from .data.datasets import load_image_set
    from .data.io import atomic_write_bytes
    from .data.noise import parse_noise_spec
    from .evaluation import evaluate as run_evaluate
    from .evaluation import model_denoiser
    from .reporting import print_table

    noise_model = parse_noise_spec(noise)
    if not noise_model.synthetic:
        raise UsageError("evaluation needs clean images and a synthetic --noise, not 'real'")
    test = load_image_set(data, channels=channels, min_size=11)
    denoisers = {}
    for ck in checkpoints:
        model, meta = load_checkpoint(ck)
        if meta["model"]["in_channels"] != test.channels:
            raise UsageError(f"{ck}: model takes {meta['model']['in_channels']} channel(s), test images have "
                             f"{test.channels}; use --channels {meta['model']['in_channels']}")
        denoisers[ck.name if ck.name not in denoisers else str(ck)] = model_denoiser(model, tile)
    results, _ = run_evaluate(denoisers, test, noise_model, seed)
    rows = [{"method": "noisy input", "psnr": r.mean("psnr_noisy"), "ssim": r.mean("ssim_noisy")}
            for r in list(results.values())[:1]]
    rows += [{"method": k, "psnr": r.mean("psnr"), "ssim": r.mean("ssim")} for k, r in results.items()]
    print_table(f"{data} — {noise_model.describe()}, seed {seed}, {len(test)} images", rows)
    if json_out is not None:
        payload = {"data": str(data), "noise": noise, "seed": seed,
                   "results": {k: r.to_dict() for k, r in results.items()}}
        atomic_write_bytes(json_out, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
        typer.echo(f"wrote {json_out}")


@app.command()
@_errors_to_exit
def denoise(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint of a denoising network.")],
    inputs: Annotated[Path, typer.Argument(help="Noisy image file or folder of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if needed).")],
    suffix: Annotated[str, typer.Option(help="Appended to each output file's stem.")] = "",
    tile: Annotated[Optional[int], typer.Option(help="Tile size for large images (default: whole image).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files (inputs are never replaced).")] = False,
):
    """Restore image files. Output keeps each input's format, bit depth and channel count."""
    from .checkpoint import load_checkpoint
    from .data.io import image_paths, read_image, write_image
    from .evaluation.inference import predict

    model, meta = load_checkpoint(checkpoint)
    paths = image_paths(inputs)
    want = meta["model"]["in_channels"]
    plan = []
    for p in paths:
        dest = output / f"{p.stem}{suffix}{p.suffix}"
        if dest.resolve() == p.resolve():
            raise UsageError(f"{dest}: output would overwrite the input; choose another --output or --suffix")
        if dest.exists() and not overwrite:
            raise FileExistsError(f"{dest}: exists; pass --overwrite to replace it")
        plan.append((p, dest))
    # Read and check every input before writing anything.
    for p, _ in plan:
        img, info = read_image(p)
        if info.channels != want:
            raise UsageError(f"{p}: has {info.channels} channel(s); the model {checkpoint.name} takes {want}")
    for p, dest in plan:
        img, info = read_image(p)
        out = predict(model, img, tile=tile)
        write_image(dest, out, info.bit_depth)
        typer.echo(f"{p} -> {dest}")


@app.command()
@_errors_to_exit
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="A <1-minute smoke run (tiny budget; numbers not meaningful).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/demo-<time>).")] = None,
    seed: SeedOpt = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """RCL end to end on scikit-image's bundled photographs (grayscale, σ ~ U[5, 50] per photo).

    Pre-trains with RCL on the noisy training photos, fine-tunes with ONE labelled photo from the
    RCL weights and from scratch (same steps), and evaluates on held-out photos.
    """
    from .demo import run_demo

    run_demo(out=out, quick=quick, seed=seed, progress=progress)


@app.command()
@_errors_to_exit
def benchmark(
    config: Annotated[str, typer.Argument(help="Preset name (smoke, default, colour) or a YAML config file.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder the config's data paths are relative to "
                                                          "(e.g. ../shared/data).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/benchmark-<config>); "
                                                                    "rerunning the same command resumes it.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar over the cells.")] = True,
):
    """Label-efficiency benchmark: pre-train each method once, fine-tune per label fraction and seed,
    evaluate on the test sets, and write a report (tables, plots, claims). Resumable."""
    import torch

    from .benchmark import load_config, run_benchmark

    cfg = load_config(config, data_root)
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    name = Path(config).stem if config.endswith((".yaml", ".yml")) else config
    out = out if out is not None else Path("runs") / f"benchmark-{name}"
    report = run_benchmark(cfg, out, progress=progress, command=" ".join(["rcl"] + sys.argv[1:]))
    typer.echo(f"report: {report}")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
