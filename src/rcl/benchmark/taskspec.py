"""The tasks of a benchmark config: adaptors between the config and the task objects of :mod:`rcl.tasks`.

A :class:`TaskSpec` holds one task object (``spec.task``, a :class:`rcl.tasks.Task`), which is the
one definition of everything the computation needs:

* the degradation: the fixed pre-training collection (:meth:`~rcl.tasks.Task.pretraining_data`),
  the fine-tuning batches (:meth:`~rcl.tasks.Task.training_batch`, through :func:`rcl.training.fit`)
  and the protocol's test inputs (:meth:`~rcl.tasks.Task.degrade`, through
  :func:`rcl.evaluation.protocol.evaluate`);
* the network: :meth:`~rcl.tasks.Task.pretrain_model_config`, :meth:`~rcl.tasks.Task.init_model`
  (through ``fit``), the checkpoint metadata (:meth:`~rcl.tasks.Task.metadata`);
* the evaluation: the metrics and the reference row (:meth:`~rcl.tasks.Task.score`,
  :meth:`~rcl.tasks.Task.reference`), the network-free rows
  (:meth:`~rcl.tasks.Task.classical_restorer`), the crop multiple of test images
  (:attr:`~rcl.tasks.Task.input_multiple`) and their smallest side
  (:meth:`~rcl.tasks.Task.min_test_size`).

What a spec adds is configuration and naming: the config section it reads (methods, fractions,
seeds, fine-tuning config, test sets), the training images, noise and seeds, the cell keys and cache
folders, and the task's fields in the cell hashes. The hash fields are part of the cache format:
changing one invalidates cached cells (so SR and JDD keep theirs).

Specs: :class:`DenoiseSpec` (the top level of the config), :class:`SectionSpec` (any registered
task with a ``tasks.<name>`` section: its own pre-training and fine-tuning), :class:`SRSpec`
(``tasks.sr``, one per scale, on the denoising pre-training) and :class:`JDDSpec` (``tasks.jdd``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..models.factory import ModelConfig
from ..tasks import DenoiseTask, JDDTask, SRTask, Task, get_task
from .config import BenchmarkConfig
from .sections import TaskSection, TestSetConfig


class TaskSpec:
    """One task of a benchmark config around its task object.

    The defaults are those of the denoising benchmark (configured at the top level of the config);
    :class:`SectionSpec` overrides what a task section changes.

    Attributes:
        task: the task object.
        name, scale: the task's registry name and scale (1 but for SR).
        key_prefix: prefix of the cell keys ("" | "sr x2 " | "jdd " | "<name> ").
        train_key: the training images ("data": ``data.train``, shared by denoising and SR; else
            the task's own).
        own_pretraining: the task pre-trains its own cells (JDD, registered tasks); False: its
            networks start from the denoising pre-training cells (SR) or are them (denoising).
    """

    key_prefix: str = ""
    train_key: str = "data"
    own_pretraining: bool = False

    def __init__(self, cfg: BenchmarkConfig, task: Task):
        self.cfg, self.task = cfg, task
        self.name, self.scale = task.name, task.scale

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

    def pretrain_model_cfg(self) -> ModelConfig:
        """The network the task's pre-training cells train (:meth:`rcl.tasks.Task.pretrain_model_config`)."""
        return self.task.pretrain_model_config(self.model_cfg)

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
    def noise_seed(self) -> int:
        """Seed of the one-time noising of the pre-training collection."""
        return self.cfg.noise_seed

    @property
    def pretrain_section(self):
        """The ``pretrain`` section the task's pre-training cells use."""
        return self.cfg.pretrain

    def pretrain_config(self, method: str, overrides: dict | None = None) -> dict:
        """The config of pre-training ``method`` (its :attr:`rcl.methods.Method.Config`; an ablation's
        ``overrides`` last) as a dict."""
        return self.pretrain_section.method_config(method, overrides).model_dump()

    def train_source(self) -> tuple[Path, int | None, int]:
        """(training images, max_train_images, channels)."""
        d = self.cfg.data
        return d.train, d.max_train_images, d.channels

    @property
    def multiple(self) -> int | None:
        """Test images are cropped to a multiple of the task's input multiple (None when 1: not
        cropped, not in the hashes)."""
        m = self.task.input_multiple
        return m if m > 1 else None

    @property
    def train_multiple(self) -> int | None:
        """Training images are cropped to a multiple of this on loading (None: as they are)."""
        return None

    @property
    def test_min_size(self) -> tuple[int, str | None]:
        """(smallest test-image side, the reason for the error message) of the task."""
        return self.task.min_test_size()

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
        """What a pre-training checkpoint records about the task (the task's own record)."""
        return self.task.pretraining_metadata()

    def finetune_meta(self) -> dict:
        """What a fine-tuning checkpoint records about the task (denoising: the checkpoint's defaults)."""
        return {}

    def stat_key(self, test: str, noise: str) -> tuple:
        """The (test, noise[, scale]) end of the task's statistics keys."""
        return (test, noise)

    # -- data and evaluation ----------------------------------------------------------------

    def pretraining_collection(self, clean, noise, seed: int):
        """The fixed noisy collection every pre-training method of the task sees."""
        return self.task.pretraining_data(clean, noise, seed)

    def eval_kwargs(self, inputs, t: TestSetConfig, noise: str, limit: int | None) -> dict:
        """Keyword arguments of :func:`rcl.evaluation.protocol.evaluate` for a test set and noise: the
        task, and for a task whose input is a noisy copy of its target (denoising) the cached
        fixed-seed noisy test images."""
        if not self.task.input_is_noisy_target:
            return {"task": self.task}
        _, noisy, sigmas = inputs.noisy_test(t, noise, limit, self)
        return {"noisy": noisy, "sigmas": sigmas, "task": self.task}

    def payload_fields(self) -> dict:
        """The task's fields at the head of an evaluation cell's JSON."""
        return {}

    def extra_scores(self, result) -> dict:
        """Scores stored after the protocol's (``result``: an :class:`EvalResult`)."""
        return {}

    # -- network-free rows ------------------------------------------------------------------

    def reference_rows(self) -> list[list[tuple[tuple, str, int | None]]]:
        """The network-free rows of the task as groups of (row, predictor, max_images); the planner
        adds each group for every test set × noise in turn (denoising has none here: the noisy row
        is in every payload, and the BM3D rows are planned on their own ``bm3d.where`` selection)."""
        return []

    def classical_options(self) -> dict:
        """Options of :meth:`rcl.tasks.Task.classical_restorer` (the BM3D profile)."""
        return {"profile": self.cfg.bm3d.profile}

    def classical_source(self, predictor: str) -> dict:
        """What a network-free row depends on (part of its hash)."""
        return {"bm3d": self.cfg.bm3d.profile}

    def classical_restorer(self, predictor: str) -> Callable:
        """The protocol restorer ``(input, sigma) -> output`` of a network-free row."""
        return self.task.classical_restorer(predictor, **self.classical_options())


class DenoiseSpec(TaskSpec):
    """Denoising: the top-level config (the defaults of :class:`TaskSpec`); test images centre-cropped only."""

    def __init__(self, cfg: BenchmarkConfig, scale: int = 1):
        super().__init__(cfg, DenoiseTask())


class SectionSpec(TaskSpec):
    """A task with a section of its own (``tasks.<name>``; None fields: the top-level values): its
    own training images (cropped to the task's input multiple), collection and pre-training cells,
    the task named in the cell JSON, RGB PSNR beside the protocol's scores. Used as is for a
    registered task without a section class (:class:`~.sections.RegisteredTaskSection`)."""

    own_pretraining = True

    def __init__(self, cfg: BenchmarkConfig, task: Task | str):
        super().__init__(cfg, get_task(task, **cfg.tasks.registered[task].params) if isinstance(task, str) else task)
        self.key_prefix = f"{self.name} " + (f"x{self.scale} " if self.scale > 1 else "")
        self.train_key = self.name

    @property
    def section(self):
        return self.cfg.tasks.registered[self.name]

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

    @property
    def train_noise(self) -> str:
        return self.section.noise if self.section.noise is not None else self.cfg.train_noise

    @property
    def collection_noise(self) -> str:
        return self.train_noise

    @property
    def noise_seed(self) -> int:
        return self.section.noise_seed if self.section.noise_seed is not None else self.cfg.noise_seed

    @property
    def train_channels(self) -> int:
        return self.cfg.data.channels

    def train_source(self) -> tuple[Path, int | None, int]:
        sec, d = self.section, self.cfg.data
        if sec.train is not None:
            return sec.train, sec.max_train_images, self.train_channels
        return d.train, sec.max_train_images if sec.max_train_images is not None else d.max_train_images, \
            self.train_channels

    @property
    def train_multiple(self) -> int | None:
        return self.multiple

    def _root(self, cache: Path) -> Path:
        return cache / self.name

    def _scale_dir(self, path: Path) -> Path:
        return path / f"x{self.scale}" if self.scale > 1 else path

    def model_dir(self, cache: Path) -> Path:
        return self._scale_dir(self._root(cache))

    def eval_dir(self, cache: Path, rel: str) -> Path:
        return self._scale_dir(self._root(cache) / "eval") / rel

    def eval_hash_fields(self) -> dict:
        return {"task": self.name, "scale": self.scale, "pattern": self.task.metadata().get("pattern")}

    def pretrain_hash_fields(self) -> dict:
        return {"task": self.name, "params": self.section.params, "noise": self.train_noise,
                "noise_seed": self.noise_seed}

    def finetune_hash_fields(self) -> dict:
        return self.task.metadata()

    def finetune_meta(self) -> dict:
        return self.task.metadata()

    def stat_key(self, test: str, noise: str) -> tuple:
        return (test, noise, self.scale)

    def payload_fields(self) -> dict:
        return {"task": self.name, "scale": self.scale}

    def extra_scores(self, result) -> dict:
        rgb = [sc.psnr_rgb for sc in result.scores if sc.psnr_rgb is not None]
        return {"psnr_rgb": sum(rgb) / len(rgb) if rgb else None}

    def reference_rows(self):
        return [[(("ref",), self.task.reference_id, None)]]

    def classical_options(self) -> dict:
        return {}

    def classical_source(self, predictor: str) -> dict:
        return {"classical": predictor}


class SRSpec(SectionSpec):
    """Super-resolution ×``scale`` (``tasks.sr``): the denoising training images and pre-training
    cells (their U-Net bodies start the SRNets), the SR fine-tuning noise."""

    own_pretraining = False

    def __init__(self, cfg: BenchmarkConfig, scale: int = 2):
        super().__init__(cfg, SRTask(scale))
        self.train_key = "data"

    @property
    def section(self):
        return self.cfg.tasks.sr

    @property
    def train_noise(self) -> str:
        return self.cfg.sr_noise

    @property
    def collection_noise(self) -> str:
        return self.cfg.train_noise

    @property
    def noise_seed(self) -> int:
        return self.cfg.noise_seed

    def train_source(self) -> tuple[Path, int | None, int]:
        return TaskSpec.train_source(self)

    @property
    def train_multiple(self) -> int | None:
        return None

    def finetune_hash_fields(self) -> dict:
        return {"task": self.name, "scale": self.scale}


class JDDSpec(SectionSpec):
    """Joint demosaicking + denoising (``tasks.jdd``): its own RGB training images, pre-training of
    a 4 → 4 body on packed mosaics, the Malvar and Malvar + BM3D rows."""

    def __init__(self, cfg: BenchmarkConfig, scale: int = 1):
        super().__init__(cfg, JDDTask(cfg.tasks.jdd.pattern))

    @property
    def section(self):
        return self.cfg.tasks.jdd

    @property
    def model_cfg(self) -> ModelConfig:
        return self.cfg.jdd_model()

    @property
    def pretrain_section(self):
        return self.cfg.jdd_pretrain()

    @property
    def train_channels(self) -> int:
        return 3

    def pretrain_hash_fields(self) -> dict:
        j = self.section
        return {"task": self.name, "pattern": j.pattern, "noise": j.noise, "noise_seed": self.noise_seed}

    def finetune_hash_fields(self) -> dict:
        return {"task": self.name, "pattern": self.section.pattern, "skip": self.task.skip}

    def reference_rows(self):
        j = self.section
        first = [(("ref",), self.task.reference_id, None)] + ([(("classical", "malvar"), "malvar", None)]
                                                                if j.malvar else [])
        return [first] + ([[(("classical", "malvar+bm3d"), "malvar+bm3d", j.bm3d.max_images)]] if j.bm3d.enabled
                          else [])

    def classical_options(self) -> dict:
        return {"profile": self.section.bm3d.profile}

    def classical_source(self, predictor: str) -> dict:
        if predictor == "malvar+bm3d":
            return {"classical": predictor, "bm3d_profile": self.section.bm3d.profile}
        return {"classical": predictor}


SPECS: dict[str, type[TaskSpec]] = {DenoiseTask.name: DenoiseSpec, SRTask.name: SRSpec, JDDTask.name: JDDSpec}
"""The tasks whose config section has an adaptor of its own; any other registered task with a
``tasks.<name>`` section is a :class:`SectionSpec`."""


def task_spec(cfg: BenchmarkConfig, name: str, scale: int = 1) -> TaskSpec:
    """The spec of task ``name`` (``scale``: SR's factor).

    Raises:
        ValueError: a task the config does not configure.
    """
    if name in SPECS:
        return SPECS[name](cfg, scale)
    if name in cfg.tasks.registered:
        return SectionSpec(cfg, name)
    raise ValueError(f"unknown task {name!r}; the tasks are {', '.join([*SPECS, *cfg.tasks.registered])}")


def downstream_specs(cfg: BenchmarkConfig) -> list[TaskSpec]:
    """The configured tasks other than denoising, in plan order: SR per scale, JDD, then the other
    registered tasks in config order."""
    out: list[TaskSpec] = []
    if cfg.tasks.sr is not None:
        out += [SRSpec(cfg, sc) for sc in cfg.tasks.sr.scales]
    if cfg.tasks.jdd is not None:
        out.append(JDDSpec(cfg))
    return out + [SectionSpec(cfg, name) for name in cfg.tasks.registered]
