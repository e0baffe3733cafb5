"""The sections of a benchmark config (:class:`rcl.benchmark.BenchmarkConfig`): data and test sets,
BM3D, ablations, pre-training (per-method configs of the :mod:`rcl.methods` registry), and the
downstream task sections (``tasks.sr``, ``tasks.jdd`` and any other task of the :mod:`rcl.tasks`
registry under its name; their format is documented in :mod:`rcl.benchmark`). Every model is strict
(:class:`rcl.configs.StrictConfig`: no bool/str/float for an int, no unknown fields, finite floats);
the sections that take registry names as keys (``pretrain``, ``tasks``) refuse any other key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from ..configs import Channels, PathField, Seed, StrictConfig
from .validation import (FractionList, MethodList, NestedConfigError, NoiseList, NoiseSpec, SeedList, TaskFinetune,
                         TrainPath, build, check_exists, check_name, check_noise, check_unique_noises,
                         check_unique_tests, checked, pretraining_methods, role_method)

UNKNOWN = "unknown field (not allowed here)"


class TestSetConfig(StrictConfig):
    """One test set: clean images, evaluated under each noise spec.

    Attributes:
        name: short name used in tables and file names (e.g. BSD68).
        path: folder (or file) of clean test images; relative paths resolve against ``data_root``.
        channels: 1 or 3 (default: the training channels).
        noises: noise specs, σ on 0–255 (``gaussian:25``, ``gaussian:5-50``).
        max_images: use only the first N images (sorted by name); overrides ``max_test_images``.
        crop: centre-crop every image to at most crop×crop (to bound time; None = whole images).
    """

    name: Annotated[str, checked(check_name, "test set name")]
    path: Annotated[PathField, checked(check_exists, "test set path")]
    channels: Channels | None = None
    noises: Annotated[list[str], Field(min_length=1), AfterValidator(check_unique_noises)]
    max_images: int | None = Field(None, ge=1)
    crop: int | None = Field(None, ge=16)


class DataConfig(StrictConfig):
    """Training and test data.

    Attributes:
        train: folder of clean training images (noised once for pre-training; clean labels for
            fine-tuning); relative paths resolve against ``data_root``.
        channels: 1 (grayscale, BT.601 luma) or 3 (RGB); images are converted on loading.
        max_train_images: use only the first N training images (sorted by name).
        test: the denoising test sets (may be empty only with ``tasks.denoise: false``).
    """

    train: TrainPath
    channels: Channels = 1
    max_train_images: int | None = Field(None, ge=2)
    test: list[TestSetConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self):
        check_unique_tests(self.test)
        return self


class Selection(StrictConfig):
    """A test set and some of its noises (None = all of them)."""

    test: str
    noises: NoiseList | None = None


class BM3DConfig(StrictConfig):
    """BM3D/CBM3D with the known σ on chosen test sets/noises.

    Attributes:
        enabled: run BM3D at all.
        where: test sets/noises to run it on (empty: every test set and noise).
        max_images: at most N images per test set (BM3D costs seconds per image).
        profile: bm3d package profile ("np" = normal).
    """

    enabled: bool = False
    where: list[Selection] = Field(default_factory=list)
    max_images: int | None = Field(None, ge=1)
    profile: Literal["np", "refilter", "vn", "high", "deb"] = "np"


class AblationConfig(StrictConfig):
    """A named variant of RCL pre-training: fields of :class:`rcl.methods.RCLConfig` that differ from
    ``pretrain.rcl`` (e.g. ``{similarity: l2}``, ``{consistency: none}``, ``{temperature: 0.5}``)."""

    name: Annotated[str, checked(check_name, "ablation name")]
    rcl: dict[str, Any] = Field(min_length=1)


class PretrainSection(StrictConfig):
    """Pre-training of every method: each method's own config (:attr:`rcl.methods.Method.Config`)
    built by :meth:`method_config` from, in increasing priority, ``steps``/``seed``, the
    ``baselines`` fields its Config declares (methods other than "ours"), and its own section.

    Attributes:
        steps: optimisation steps of every method (a method's own ``steps`` overrides it).
        seed: seed of every pre-training (one pre-trained network per method).
        rcl: fields of :class:`rcl.methods.RCLConfig` for RCL.
        baselines: fields shared by the other methods; each takes those its Config declares
            (a field that no such method declares is refused).
        simclr, n2v, n2s, ne2ne: fields of that method's Config, over ``baselines``.
        (any other registered pre-training method): its own section under its name.
    """

    model_config = ConfigDict(extra="allow")  # sections of registered methods, checked below

    steps: int = Field(800, ge=1)
    seed: Seed = 0
    rcl: dict[str, Any] = Field(default_factory=dict)
    baselines: dict[str, Any] = Field(default_factory=dict)
    simclr: dict[str, Any] = Field(default_factory=dict)
    n2v: dict[str, Any] = Field(default_factory=dict)
    n2s: dict[str, Any] = Field(default_factory=dict)
    ne2ne: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validate_all(self):
        from ..methods import get_method

        known = pretraining_methods()
        for k, v in (self.model_extra or {}).items():
            if k not in known:
                raise NestedConfigError([(k, UNKNOWN)])
            if not isinstance(v, dict):
                raise NestedConfigError([(k, f"must be a mapping of the method's config fields, "
                                             f"got {type(v).__name__}")])
        shared = {f for m in known if get_method(m).claim_role != "ours" for f in get_method(m).Config.model_fields}
        for k in self.baselines:
            if k not in shared:
                raise NestedConfigError([(f"baselines.{k}", UNKNOWN)])
        for m in known:  # every method's section, also of those that do not train (``none: {seed}``)
            self.method_config(m)
        return self

    def method_section(self, name: str) -> dict:
        """The section of method ``name`` (a field for the built-in methods, else an extra key; {} if absent)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return (self.model_extra or {}).get(name, {})

    def method_config(self, name: str, overrides: dict | None = None, where: str | None = None):
        """The config (an instance of ``get_method(name).Config``) of method ``name``, with an
        ablation's ``overrides`` last. Errors name the field's path (``n2v.lr``; a bad shared value
        ``baselines.lr``; ``where`` replaces the method name)."""
        from ..methods import get_method

        cls = get_method(name)
        fields = cls.Config.model_fields
        own = {**self.method_section(name), **(overrides or {})}
        shared = {} if cls.claim_role == "ours" else {k: v for k, v in self.baselines.items() if k in fields}
        common = {k: v for k, v in (("steps", self.steps), ("seed", self.seed)) if k in fields}
        where = where or name
        try:
            return build(cls.Config, {**common, **shared, **own}, where)
        except NestedConfigError as exc:
            parts = []
            for loc, msg in exc.parts:
                rest = loc[len(where) + 1:] if loc.startswith(where + ".") else None
                if rest is not None and rest.split(".")[0] in shared and rest.split(".")[0] not in own:
                    loc = f"baselines.{rest}"
                parts.append((loc, msg))
            raise NestedConfigError(parts) from None

    def rcl_config(self, overrides: dict | None = None, where: str | None = None):
        """The config of the "ours" method (RCL's :class:`rcl.methods.RCLConfig`), with an ablation's ``overrides``."""
        return self.method_config(role_method("ours"), overrides, where)


class TaskSection(StrictConfig):
    """Fields shared by the SR and JDD sections (None = the top-level value)."""

    test: list[TestSetConfig] = Field(min_length=1)
    methods: MethodList | None = None
    label_fractions: FractionList | None = None
    seeds: SeedList | None = None
    finetune: TaskFinetune = Field(default_factory=dict)
    max_test_images: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _unique(self):
        check_unique_tests(self.test)
        return self


class SRSection(TaskSection):
    """Super-resolution on top of the denoising pre-training (``tasks.sr``; format in :mod:`rcl.benchmark`).

    Attributes:
        scales: integer SR factors (2, 3, 4 or 8).
        test: clean HR test sets (channels = ``data.channels``), each evaluated under its noises
            (added to the bicubic-downscaled LR image).
        train_noise: noise on the LR fine-tuning crops (None: the top-level ``train_noise``).
        methods, label_fractions, seeds: None = the top-level lists.
        finetune: :class:`FinetuneConfig` fields over the top-level ``finetune`` (crop_size is the
            HR crop; it must be a multiple of every scale).
        max_test_images: at most N images per test set (a test set's max_images overrides it).
    """

    scales: list[int] = Field(default_factory=lambda: [2, 4])
    train_noise: Annotated[str, checked(check_noise, "train_noise")] | None = None

    @field_validator("scales")
    @classmethod
    def _scales(cls, v):
        if not v:
            raise ValueError("list at least one SR scale, e.g. [2, 4]")
        for x in v:
            if x not in (2, 3, 4, 8):
                raise ValueError(f"SR scale {x} is not supported; use 2, 3, 4 or 8")
        if len(set(v)) != len(v):
            raise ValueError(f"scales repeat: {v}")
        return sorted(v)


class JDDBM3DConfig(StrictConfig):
    """The Malvar + BM3D (CBM3D, σ known) row of JDD: slow (≈ 20-25 s per 768×512 image on 2 cores)."""

    enabled: bool = False
    max_images: int | None = Field(None, ge=1)
    profile: Literal["np", "refilter", "vn", "high", "deb"] = "np"


class JDDSection(TaskSection):
    """Joint demosaicking + denoising with its own pre-training on packed noisy mosaics (``tasks.jdd``).

    Attributes:
        train: clean RGB training images (None: ``data.train``, which must then be RGB).
        max_train_images: first N training images (None: ``data.max_train_images`` when ``train``
            is None).
        pattern: Bayer pattern (RGGB, BGGR, GRBG, GBRG).
        noise: noise on the mosaics, for pre-training (once) and fine-tuning (fresh per crop).
        noise_seed: seed of the one-time noisy pre-training mosaics (None: top-level ``noise_seed``).
        test: clean RGB test sets, each evaluated under its noises (on the mosaic).
        model: :class:`ModelConfig` fields (arch/width/depth) over the top-level ``model``; the
            body always has 4 → 4 channels (packed mosaic).
        pretrain: deep-merged over the top-level ``pretrain`` section.
        finetune: :class:`FinetuneConfig` fields over the top-level ``finetune`` (even crop size).
        malvar: add the Malvar-He-Cutler demosaicking row.
        bm3d: the Malvar + BM3D row.
    """

    train: TrainPath | None = None
    max_train_images: int | None = Field(None, ge=2)
    pattern: str = "RGGB"
    noise: NoiseSpec = "poisson-gaussian"
    noise_seed: Seed | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    pretrain: dict[str, Any] = Field(default_factory=dict)
    malvar: bool = True
    bm3d: JDDBM3DConfig = Field(default_factory=JDDBM3DConfig)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v):
        from ..data.degradations import check_pattern

        return check_pattern(v)

    @field_validator("model")
    @classmethod
    def _model(cls, v):
        bad = sorted(set(v) & {"in_channels", "out_channels"})
        if bad:
            raise ValueError(f"{', '.join(bad)}: the JDD body always takes and returns the packed mosaic (4 channels)")
        return v


class RegisteredTaskSection(TaskSection):
    """Any other task of the :mod:`rcl.tasks` registry, under its name (``tasks.<name>``), benchmarked
    through the task object alone: each method pre-trains on the task's
    :meth:`~rcl.tasks.Task.pretraining_data` of its training images (noised once), the
    ``supervised`` method fine-tunes :meth:`~rcl.tasks.Task.init_model` on the labelled clean images,
    and the protocol scores the networks and the task's reference row with the task's degradation
    and metrics.

    Attributes:
        params: keyword arguments of the task's constructor (``rcl.tasks.get_task(name, **params)``).
        train: clean training images (None: ``data.train``), read with ``data.channels``.
        max_train_images: first N training images (None: ``data.max_train_images`` when ``train``
            is None).
        noise: noise of the pre-training collection (once) and of fine-tuning (fresh per crop);
            None: ``train_noise``.
        noise_seed: seed of the one-time noising (None: ``noise_seed``).
        test, methods, label_fractions, seeds, finetune, max_test_images: as for ``tasks.sr``.
    """

    params: dict[str, Any] = Field(default_factory=dict)
    train: TrainPath | None = None
    max_train_images: int | None = Field(None, ge=2)
    noise: NoiseSpec | None = None
    noise_seed: Seed | None = None


class TasksSection(StrictConfig):
    """Which tasks run: the denoising benchmark (default on), the optional SR and JDD sections, and
    any other registered task under its name (:class:`RegisteredTaskSection`)."""

    model_config = ConfigDict(extra="allow")  # sections of registered tasks, checked below

    denoise: bool = True
    sr: SRSection | None = None
    jdd: JDDSection | None = None

    @model_validator(mode="after")
    def _registered(self):
        from ..tasks import TASKS

        extra = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        for name, raw in list(extra.items()):
            if name not in TASKS:
                raise NestedConfigError([(name, f"{UNKNOWN}; the registered tasks are {', '.join(TASKS)}")])
            if not isinstance(raw, RegisteredTaskSection):
                if not isinstance(raw, dict):
                    raise NestedConfigError([(name, f"must be a mapping (the task's section), "
                                                    f"got {type(raw).__name__}")])
                extra[name] = build(RegisteredTaskSection, raw, name)
        return self

    @property
    def registered(self) -> dict[str, RegisteredTaskSection]:
        """The sections of the other registered tasks, by task name (config order)."""
        return dict(self.__pydantic_extra__ or {})
