"""The benchmark's images: training sets and their fixed noisy pre-training collections, test sets
(centre crop, then a crop to the task's multiple), the protocol's fixed-seed noisy test images,
and the identities of those files that go into the cell hashes. Everything is loaded once."""

from __future__ import annotations

from pathlib import Path

import torch

from .cells import EVAL_SEED, file_ids
from .config import BenchmarkConfig
from .sections import TestSetConfig
from .taskspec import TaskSpec


def centre_crop(img: torch.Tensor, size: int, align: int = 1) -> torch.Tensor:
    """The centre (at most ``size`` × ``size``) of a (C, H, W) image, contiguous; the top-left
    corner rounded down to a multiple of ``align`` (2 keeps the Bayer phase of a mosaic)."""
    _, h, w = img.shape
    ch, cw = min(h, size), min(w, size)
    top, left = (h - ch) // 2, (w - cw) // 2
    top, left = top - top % align, left - left % align
    return img[:, top:top + ch, left:left + cw].contiguous()


def image_files(path: Path, limit: int | None) -> list[Path]:
    """The image files of a folder (sorted by name), the first ``limit`` of them."""
    from ..data.io import image_paths

    files = image_paths(path)
    return files[:limit] if limit is not None else files


def check_inputs(cfg: BenchmarkConfig) -> None:
    """Check, before any cell runs, every image a run of ``cfg`` will read against its task (the
    checks the cells would otherwise meet only after training): each test image's smallest side
    against :meth:`rcl.tasks.Task.min_test_size`, and, for a task that constrains its images'
    channels (:meth:`rcl.tasks.Task.body_channels`, e.g. JDD: RGB), each training and test
    image's own channels (before any conversion).

    Raises:
        ImageReadError / ValueError: the first bad image; the message names the file.
    """
    from ..data.datasets import ImageReadError
    from ..data.io import read_image
    from ..tasks import Task
    from .taskspec import DenoiseSpec, downstream_specs

    specs = ([DenoiseSpec(cfg)] if cfg.tasks.denoise else []) + downstream_specs(cfg)
    seen: set = set()

    def channels_ok(spec: TaskSpec, f: Path, channels: int, where: str) -> None:
        try:
            spec.task.body_channels(channels)
        except ValueError as exc:
            raise ValueError(f"{where}: {f}: {exc}") from None

    for spec in specs:
        picky = type(spec.task).body_channels is not Task.body_channels  # the task constrains channels
        min_size, why = spec.test_min_size
        if picky:
            path, limit, _ = spec.train_source()
            for f in image_files(path, limit):
                if (spec.name, "train", f) not in seen:
                    seen.add((spec.name, "train", f))
                    channels_ok(spec, f, read_image(f)[1].channels, f"tasks.{spec.name}.train")
        for t in spec.tests:
            for f in image_files(t.path, spec.test_limit(t)):
                if (spec.name, min_size, picky, f) in seen:
                    continue
                seen.add((spec.name, min_size, picky, f))
                img, info = read_image(f)
                if min(img.shape[1:]) < min_size:
                    raise ImageReadError(f"{f}: image is {img.shape[2]}×{img.shape[1]}, smaller than {why} "
                                         f"({spec.task.describe()})")
                if picky:
                    channels_ok(spec, f, info.channels, f"{spec.name} test set {t.name}")


class Inputs:
    """Loads (once) and identifies the images of a benchmark config."""

    def __init__(self, cfg: BenchmarkConfig):
        self.cfg = cfg
        self._train: dict[str, tuple] = {}
        self._tests: dict[tuple, object] = {}
        self._noisy: dict[tuple, tuple] = {}
        self._test_ids: dict[tuple, dict] = {}

    # -- identities (cell hashes depend on the images' names, sizes and contents) -------------

    def train_id(self, spec: TaskSpec) -> tuple[int, dict]:
        """(number of training images, their identity) of a task."""
        path, limit, channels = spec.train_source()
        files = image_files(path, limit)
        return len(files), {"images": file_ids(files), "channels": channels}

    def test_id(self, t: TestSetConfig, limit: int | None, spec: TaskSpec) -> dict:
        key = (str(t.path), t.channels, t.crop, limit, spec.multiple)
        if key not in self._test_ids:
            ident = {"images": file_ids(image_files(t.path, limit)), "channels": t.channels, "crop": t.crop}
            if spec.multiple is not None:
                ident["multiple"] = spec.multiple
            self._test_ids[key] = ident
        return self._test_ids[key]

    # -- images ----------------------------------------------------------------------------

    def training(self, spec: TaskSpec) -> tuple:
        """(clean training images, the fixed noisy pre-training collection, the noise model) of a task."""
        if spec.train_key not in self._train:
            from ..data.datasets import ImageSet, load_image_set
            from ..data.degradations import crop_to_multiple
            from ..data.noise import parse_noise_spec

            path, limit, channels = spec.train_source()
            clean = load_image_set(path, channels=channels, limit=limit)
            if spec.train_multiple is not None:
                clean = ImageSet([crop_to_multiple(im, spec.train_multiple)[0] for im in clean.images],
                                 list(clean.names))
            noise = parse_noise_spec(spec.collection_noise)
            collection = spec.pretraining_collection(clean, noise, spec.noise_seed)
            self._train[spec.train_key] = (clean, collection, noise)
        return self._train[spec.train_key]

    def test_images(self, t: TestSetConfig, limit: int | None, spec: TaskSpec):
        """Clean test images: centre crop (``crop``), then a bottom/right crop to a multiple of the
        task's ``multiple`` (the SR scale, or 2 for Bayer tiles), silently (noted in the report)."""
        key = (str(t.path), t.channels, t.crop, limit, spec.multiple, spec.test_min_size[0])
        if key not in self._tests:
            from ..data.datasets import ImageSet, load_image_set
            from ..data.degradations import crop_to_multiple

            min_size, why = spec.test_min_size
            s = load_image_set(t.path, channels=t.channels, limit=limit, min_size=min_size, min_size_reason=why)
            imgs = list(s.images)
            if t.crop is not None:
                imgs = [centre_crop(im, t.crop) for im in imgs]
            if spec.multiple is not None:
                imgs = [crop_to_multiple(im, spec.multiple)[0].contiguous() for im in imgs]
            self._tests[key] = ImageSet(imgs, s.names) if (t.crop is not None or spec.multiple is not None) else s
        return self._tests[key]

    def noisy_test(self, t: TestSetConfig, noise: str, limit: int | None, spec: TaskSpec) -> tuple:
        """(targets, inputs, σ (N,)): the protocol's fixed-seed degraded test images, made once by the
        task's :meth:`rcl.tasks.Task.degrade` (denoising: the noisy images)."""
        key = (spec.name, str(t.path), t.channels, t.crop, limit, spec.multiple, noise)
        if key not in self._noisy:
            from ..data.noise import parse_noise_spec

            inputs, targets, sigmas = spec.task.degrade(self.test_images(t, limit, spec), parse_noise_spec(noise),
                                                        EVAL_SEED)
            self._noisy[key] = (targets, inputs, sigmas)
        return self._noisy[key]
