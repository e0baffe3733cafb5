"""The per-task differences of the benchmark: the ONE place that knows denoising, SR and JDD apart.

The planner (:mod:`.plan`), the runner (:mod:`.runner`), the statistics and the figures work on
any :class:`TaskSpec`; everything that differs between the tasks is a method or attribute here:

* naming and caching: key prefix, cache folders, the task's fields in the cell hashes and in
  the checkpoint metadata;
* configuration: the task section (methods, fractions, seeds, fine-tuning config, test limits),
  the network body, the training images and noise;
* data: the pre-training collection, the test-image crop and minimum size, how the protocol
  degrades a test image (:mod:`rcl.evaluation.tasks`);
* training: which fine-tuning function runs (``finetune``, ``finetune_sr``, ``finetune_jdd``);
* evaluation: the classical (network-free) rows and their restorers.

The hash fields are part of the cache format: changing one invalidates cached cells. (Next wave:
these specs delegate to the task objects of :mod:`rcl.tasks`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..models.factory import ModelConfig
from .config import BenchmarkConfig
from .sections import TaskSection, TestSetConfig
from .validation import sr_min_size


class TaskSpec:
    """One task of a benchmark config. ``scale`` is the SR factor (1 for the other tasks).

    The defaults are those of the denoising benchmark (configured at the top level of the config);
    the SR and JDD specs override what differs."""

    name: str = ""
    key_prefix: str = ""  # prefix of the cell keys ("" | "sr x2 " | "jdd ")
    train_key: str = "data"  # training images: "data" (data.train, shared by denoise and SR) | "jdd"
    multiple: int | None = None  # test images cropped to a multiple of this (None: not cropped, not hashed)
    train_multiple: int | None = None  # training images cropped to a multiple of this (JDD: whole Bayer tiles)

    def __init__(self, cfg: BenchmarkConfig, scale: int = 1):
        self.cfg, self.scale = cfg, scale

    # -- configuration --------------------------------------------------------------------

    @property
    def section(self) -> TaskSection | None:
        """The task section of the config (None: denoising, configured at the top level)."""
        return None

    @property
    def methods(self) -> list[str]:
        return self.cfg.methods

    @property
    def fractions(self) -> list[float]:
        return self.cfg.label_fractions

    @property
    def seeds(self) -> list[int]:
        return self.cfg.seeds

    @property
    def tests(self) -> list[TestSetConfig]:
        return self.cfg.data.test

    def finetune_base(self):
        """The fine-tuning config of the task (label_fraction and seed set per cell)."""
        return self.cfg.finetune

    @property
    def model_cfg(self) -> ModelConfig:
        """The network body every cell of the task trains."""
        return self.cfg.model

    @property
    def train_noise(self) -> str:
        """Noise spec of the fine-tuning crops."""
        return self.cfg.train_noise

    @property
    def collection_noise(self) -> str:
        """Noise spec of the fixed pre-training collection of the task's training images (SR shares
        the denoising collection, noised with the top-level ``train_noise``)."""
        return self.cfg.train_noise

    @property
    def pretrain_section(self):
        """The ``pretrain`` section the task's pre-training cells use."""
        return self.cfg.pretrain

    def pretrain_config(self, method: str, overrides: dict | None = None) -> dict:
        """The pre-training config of ``method`` (rcl: with an ablation's ``overrides``) as a dict."""
        sec = self.pretrain_section
        return (sec.rcl_config(overrides) if method == "rcl" else sec.baseline_config(method)).model_dump()

    def train_source(self) -> tuple[Path, int | None, int]:
        """(training images, max_train_images, channels)."""
        d = self.cfg.data
        return d.train, d.max_train_images, d.channels

    def test_limit(self, t: TestSetConfig, extra: int | None = None) -> int | None:
        """At most this many images of test set ``t`` (``extra``: a row's own limit, e.g. BM3D)."""
        sec = self.section
        lim = t.max_images if t.max_images is not None else (
            sec.max_test_images if sec is not None and sec.max_test_images is not None else self.cfg.max_test_images)
        if extra is not None:
            lim = extra if lim is None else min(lim, extra)
        return lim

    # -- naming, caching, hashing -----------------------------------------------------------

    def model_dir(self, cache: Path) -> Path:
        return cache

    def eval_dir(self, cache: Path, rel: str) -> Path:
        return cache / "eval" / rel

    def eval_hash_fields(self) -> dict:
        """The task's fields in an evaluation cell's hash."""
        return {}

    def pretrain_hash_fields(self) -> dict:
        return {"train_noise": self.cfg.train_noise, "noise_seed": self.cfg.noise_seed}

    def finetune_hash_fields(self) -> dict:
        return {}

    def pretrain_meta(self) -> dict:
        return {}

    def finetune_meta(self) -> dict:
        return {}

    def stat_key(self, test: str, noise: str) -> tuple:
        """The (test, noise[, scale]) end of the task's statistics keys."""
        return (test, noise)

    # -- data and training ------------------------------------------------------------------

    def pretraining_collection(self, clean, noise, seed: int):
        """The fixed noisy collection every pre-training method of the task sees."""
        from ..data.datasets import add_noise_per_image

        noisy, _ = add_noise_per_image(clean, noise, seed)
        return noisy

    @property
    def noise_seed(self) -> int:
        """Seed of the one-time noising of the pre-training collection."""
        return self.cfg.noise_seed

    @property
    def test_min_size(self) -> tuple[int, str | None]:
        """(smallest test-image side, the reason for the error message)."""
        return 11, None

    def finetune(self, clean, noise, cell, init, progress: bool) -> tuple[Any, list[str], dict]:
        """Fine-tune ``cell`` on the clean training images; (model, labelled names, extra metadata)."""
        from ..training.api import finetune

        model, _, labelled = finetune(clean, noise, cell.training, self.model_cfg, init=init, progress=progress,
                                      desc=cell.key)
        return model, labelled, {}

    def protocol_task(self):
        """The degradation of :func:`rcl.evaluation.protocol.evaluate` (None: additive noise)."""
        return None

    def eval_kwargs(self, inputs, t: TestSetConfig, noise: str, limit: int | None) -> dict:
        """Keyword arguments of :func:`rcl.evaluation.protocol.evaluate` for a test set and noise:
        denoising passes the (cached) fixed-seed noisy images, the other tasks their degradation."""
        _, noisy, sigmas = inputs.noisy_test(t, noise, limit, self)
        return {"noisy": noisy, "sigmas": sigmas}

    def payload_fields(self) -> dict:
        """The task's fields at the head of an evaluation cell's JSON."""
        return {}

    def extra_scores(self, result) -> dict:
        """Scores stored after the protocol's (``result``: an :class:`EvalResult`)."""
        return {}

    # -- classical rows ---------------------------------------------------------------------

    def reference_rows(self) -> list[list[tuple[tuple, str, int | None]]]:
        """The network-free rows of the task as groups of (row, predictor, max_images); the planner
        adds each group for every test set × noise in turn (the denoising BM3D rows are planned on
        their own ``bm3d.where`` selection)."""
        return []

    def classical_source(self, predictor: str) -> dict:
        """What a network-free row depends on (part of its hash)."""
        return {"bm3d": self.cfg.bm3d.profile}

    def classical_restorer(self, predictor: str) -> Callable:
        """The protocol restorer ``(input, sigma) -> output`` of a network-free row."""
        if predictor == "bm3d":
            from ..evaluation.bm3d_baseline import bm3d_denoiser

            return bm3d_denoiser(profile=self.cfg.bm3d.profile)
        raise ValueError(f"unknown predictor {predictor!r}")


class DenoiseSpec(TaskSpec):
    """Denoising: the top-level config (the defaults of :class:`TaskSpec`); test images centre-cropped only."""

    name = "denoise"


class _DownstreamSpec(TaskSpec):
    """What SR and JDD share: their own task section (None fields: the top-level values), the task
    named in the cell JSON, RGB PSNR beside the protocol's scores."""

    @property
    def methods(self) -> list[str]:
        return self.cfg.task_methods(self.section)

    @property
    def fractions(self) -> list[float]:
        return self.cfg.task_fractions(self.section)

    @property
    def seeds(self) -> list[int]:
        return self.cfg.task_seeds(self.section)

    @property
    def tests(self) -> list[TestSetConfig]:
        return self.section.test

    def finetune_base(self):
        return self.cfg.task_finetune(self.section)

    def eval_kwargs(self, inputs, t, noise, limit) -> dict:
        return {"task": self.protocol_task()}

    def payload_fields(self) -> dict:
        return {"task": self.name, "scale": self.scale}

    def extra_scores(self, result) -> dict:
        rgb = [sc.psnr_rgb for sc in result.scores if sc.psnr_rgb is not None]
        return {"psnr_rgb": sum(rgb) / len(rgb) if rgb else None}


class SRSpec(_DownstreamSpec):
    """Super-resolution ×``scale``: the denoising training images (and pre-training), SRNet fine-tuning."""

    name = "sr"

    def __init__(self, cfg: BenchmarkConfig, scale: int = 1):
        super().__init__(cfg, scale)
        self.multiple = scale  # HR test images: whole LR pixels
        self.key_prefix = f"sr x{scale} "

    @property
    def section(self):
        return self.cfg.tasks.sr

    @property
    def train_noise(self) -> str:
        return self.cfg.sr_noise

    def model_dir(self, cache: Path) -> Path:
        return cache / "sr" / f"x{self.scale}"

    def eval_dir(self, cache: Path, rel: str) -> Path:
        return cache / "sr" / "eval" / f"x{self.scale}" / rel

    def eval_hash_fields(self) -> dict:
        return {"task": "sr", "scale": self.scale, "pattern": None}

    def finetune_hash_fields(self) -> dict:
        return {"task": "sr", "scale": self.scale}

    def finetune_meta(self) -> dict:
        return {"task": "sr", "scale": self.scale, "skip": True}

    def stat_key(self, test: str, noise: str) -> tuple:
        return (test, noise, self.scale)

    @property
    def test_min_size(self) -> tuple[int, str | None]:
        n = sr_min_size(self.scale)
        return n, f"{n} px (SSIM's 11×11 window after the {self.scale}-px border); drop the file"

    def finetune(self, clean, noise, cell, init, progress: bool):
        from ..data.noise import parse_noise_spec
        from ..training.downstream import finetune_sr

        model, _, labelled = finetune_sr(clean, parse_noise_spec(self.train_noise), self.scale, cell.training,
                                         self.model_cfg, init=init, progress=progress, desc=cell.key)
        return model, labelled, {}

    def protocol_task(self):
        from ..evaluation.tasks import SRTask

        return SRTask(self.scale)

    def reference_rows(self):
        return [[(("ref",), "bicubic", None)]]

    def classical_source(self, predictor: str) -> dict:
        return {"classical": predictor}

    def classical_restorer(self, predictor: str) -> Callable:
        if predictor == "bicubic":
            from ..data.degradations import bicubic_upscale

            sc = self.scale
            return lambda y, sigma: bicubic_upscale(y.unsqueeze(0), sc)[0]
        raise ValueError(f"unknown predictor {predictor!r}")


class JDDSpec(_DownstreamSpec):
    """Joint demosaicking + denoising: its own RGB training images, packed-mosaic pre-training of a
    4 → 4 body, JDDNet fine-tuning, Bayer-aligned test crops."""

    name = "jdd"
    key_prefix = "jdd "
    train_key = "jdd"
    multiple = 2
    train_multiple = 2

    @property
    def section(self):
        return self.cfg.tasks.jdd

    @property
    def model_cfg(self) -> ModelConfig:
        return self.cfg.jdd_model()

    @property
    def train_noise(self) -> str:
        return self.section.noise

    @property
    def collection_noise(self) -> str:
        return self.section.noise

    @property
    def pretrain_section(self):
        return self.cfg.jdd_pretrain()

    def train_source(self) -> tuple[Path, int | None, int]:
        path, limit = self.cfg.jdd_train
        return path, limit, 3

    @property
    def noise_seed(self) -> int:
        return self.cfg.jdd_noise_seed

    def model_dir(self, cache: Path) -> Path:
        return cache / "jdd"

    def eval_dir(self, cache: Path, rel: str) -> Path:
        return cache / "jdd" / "eval" / rel

    def eval_hash_fields(self) -> dict:
        return {"task": "jdd", "scale": 1, "pattern": self.section.pattern}

    def pretrain_hash_fields(self) -> dict:
        j = self.section
        return {"task": "jdd", "pattern": j.pattern, "noise": j.noise, "noise_seed": self.cfg.jdd_noise_seed}

    def finetune_hash_fields(self) -> dict:
        return {"task": "jdd", "pattern": self.section.pattern, "skip": "malvar"}

    def pretrain_meta(self) -> dict:
        return {"data": "packed-bayer", "pattern": self.section.pattern}

    def finetune_meta(self) -> dict:
        return {"task": "jdd", "pattern": self.section.pattern}

    def stat_key(self, test: str, noise: str) -> tuple:
        return (test, noise, 1)

    def pretraining_collection(self, clean, noise, seed: int):
        """Packed noisy mosaics (4, H/2, W/2) of the clean RGB images."""
        from ..training.downstream import packed_noisy_mosaics

        return packed_noisy_mosaics(clean, self.section.pattern, noise, seed)

    @property
    def test_min_size(self) -> tuple[int, str | None]:
        return 12, "12 px (SSIM's 11×11 window)"

    def finetune(self, clean, noise, cell, init, progress: bool):
        from ..training.downstream import finetune_jdd

        model, _, labelled = finetune_jdd(clean, noise, self.section.pattern, cell.training, self.model_cfg,
                                          init=init, progress=progress, desc=cell.key)
        return model, labelled, {"skip": model.skip}

    def protocol_task(self):
        from ..evaluation.tasks import JDDTask

        return JDDTask(self.section.pattern)

    def reference_rows(self):
        j = self.section
        first = [(("ref",), "bilinear", None)] + ([(("classical", "malvar"), "malvar", None)] if j.malvar else [])
        return [first] + ([[(("classical", "malvar+bm3d"), "malvar+bm3d", j.bm3d.max_images)]] if j.bm3d.enabled
                          else [])

    def classical_source(self, predictor: str) -> dict:
        if predictor == "malvar+bm3d":
            return {"classical": predictor, "bm3d_profile": self.section.bm3d.profile}
        return {"classical": predictor}

    def classical_restorer(self, predictor: str) -> Callable:
        from ..data.degradations import demosaic_classical

        j = self.section
        if predictor in ("bilinear", "malvar"):
            return lambda y, sigma: demosaic_classical(y, j.pattern, predictor)
        if predictor == "malvar+bm3d":
            from ..evaluation.bm3d_baseline import bm3d_denoise

            # sigma: the noise model's per-image σ on [0, 1] (root of the variance averaged over the mosaic)
            return lambda y, sigma: bm3d_denoise(demosaic_classical(y, j.pattern, "malvar"), sigma, j.bm3d.profile)
        raise ValueError(f"unknown predictor {predictor!r}")


def task_spec(cfg: BenchmarkConfig, name: str, scale: int = 1) -> TaskSpec:
    """The spec of task ``name`` ("denoise", "sr" with its ``scale``, "jdd")."""
    specs = {"denoise": DenoiseSpec, "sr": SRSpec, "jdd": JDDSpec}
    if name not in specs:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(specs)}")
    return specs[name](cfg, scale)
