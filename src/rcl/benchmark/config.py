"""The benchmark config (:class:`BenchmarkConfig`, format in :mod:`rcl.benchmark` and
``rcl/presets/*.yaml``), the packaged presets and :func:`load_config`."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationError, model_validator

from ..configs import ConfigFileError, PathField, Seed, StrictConfig, load_yaml
from ..models.factory import ModelConfig
from ..reporting import finite_json
from ..methods import FinetuneConfig
from .sections import (AblationConfig, BM3DConfig, DataConfig, PretrainSection, Selection, TaskSection,
                       TasksSection, TestSetConfig)
from .validation import (METHODS, BenchmarkConfigError, FractionList, MethodList, SeedList, build, check_name,
                         check_noise, checked, deep_merge, format_errors, no_cell_fields)

PRESETS = ("smoke", "default", "colour", "smoke-tasks", "sr-gray", "sr-colour", "jdd", "converged",
           "converged-colour", "paper")


def _top_level_finetune(v: FinetuneConfig) -> FinetuneConfig:
    no_cell_fields(v.model_fields_set, "the top-level ")
    return v


class BenchmarkConfig(StrictConfig):
    """Everything `rcl benchmark` runs (see :mod:`rcl.benchmark` and ``rcl/presets/*.yaml``).

    Attributes:
        name: shown in the report.
        note: a warning shown in bold at the top of the report (e.g. "smoke budget: numbers mean nothing").
        data_root: relative data paths resolve against it (None: the current folder).
        data: training images and test sets.
        model: architecture (:class:`rcl.models.ModelConfig` fields; channels default to
            ``data.channels``).
        methods: pre-training methods, a subset of rcl, simclr, n2v, n2s, ne2ne, none.
        train_noise: noise of the pre-training collection and of the fine-tuning pairs.
        noise_seed: seed of the one-time noising of the pre-training collection.
        pretrain: pre-training steps and per-method options.
        label_fractions: fractions 0 < f ≤ 1 of labelled training images (at least 1 image).
        seeds: fine-tuning seeds (labelled subset, crops, noise, scratch weights); mean ± std over them.
        finetune: :class:`rcl.training.FinetuneConfig` fields except label_fraction and seed.
        compute_matched_scratch: also train scratch (``none``) for as many steps as RCL's
            pre-training plus fine-tuning, at every fraction and seed: the "scratch,
            compute-matched" row, against which a pre-trained row is judged at equal steps.
        bm3d: BM3D reference rows.
        ablations: named RCL variants, evaluated directly and fine-tuned at ``ablation_fraction``
            with the first seed.
        ablation_fraction: label fraction of the ablations' fine-tuning (default: the smallest).
        ablation_eval: test sets/noises the ablations are evaluated on (default: all).
        max_test_images: at most N images per test set (a test set's max_images overrides it).
        competitive_db: tolerance (dB) of claim 2 ("competitive with full supervision").
        tile: tiled inference window for large images (None = whole image; even for JDD).
        tasks: which tasks run: ``denoise`` (default true) and the optional ``sr`` and ``jdd``
            sections (:class:`SRSection`, :class:`JDDSection`; format in :mod:`rcl.benchmark`).
    """

    name: Annotated[str, checked(check_name, "benchmark name")] = "benchmark"
    note: str | None = None
    data_root: PathField | None = None
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    methods: MethodList = Field(default_factory=lambda: list(METHODS))
    train_noise: Annotated[str, checked(check_noise, "train_noise")] = "gaussian:5-50"
    noise_seed: Seed = 1
    pretrain: PretrainSection = Field(default_factory=PretrainSection)
    label_fractions: FractionList = Field(default_factory=lambda: [0.01, 0.05, 0.1, 1.0])
    seeds: SeedList = Field(default_factory=lambda: [0, 1])
    finetune: Annotated[FinetuneConfig, AfterValidator(_top_level_finetune)] = Field(default_factory=FinetuneConfig)
    compute_matched_scratch: bool = False
    bm3d: BM3DConfig = Field(default_factory=BM3DConfig)
    ablations: list[AblationConfig] = Field(default_factory=list)
    ablation_fraction: float | None = Field(None, gt=0, le=1)
    ablation_eval: list[Selection] | None = None
    max_test_images: int | None = Field(None, ge=1)
    competitive_db: float = Field(0.5, ge=0)
    tile: int | None = Field(None, ge=64)
    tasks: TasksSection = Field(default_factory=TasksSection)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, raw):
        if not isinstance(raw, dict):
            return raw
        raw = copy.deepcopy(raw)
        data = raw.get("data")
        root = raw.get("data_root")
        if isinstance(root, (str, Path)):  # anything else is refused by the field's validation
            root = Path(root).expanduser()

            def fix(d: dict, key: str) -> None:
                if isinstance(d.get(key), (str, Path)) and not Path(d[key]).expanduser().is_absolute():
                    d[key] = str(root / d[key])

            sections = [data] if isinstance(data, dict) else []
            tasks = raw.get("tasks")
            if isinstance(tasks, dict):
                sections += [sec for sec in tasks.values() if isinstance(sec, dict)]  # sr, jdd, registered
            for sec in sections:
                fix(sec, "train")
                tests = sec.get("test")
                for t in tests if isinstance(tests, list) else []:
                    if isinstance(t, dict):
                        fix(t, "path")
        if isinstance(data, dict):
            ch = data.get("channels", 1)
            model = raw.get("model")
            if model is None or isinstance(model, dict):
                model = dict(model or {})
                model.setdefault("in_channels", ch)
                model.setdefault("out_channels", ch)
                raw["model"] = model
        return raw

    @model_validator(mode="after")
    def _matched_needs_ours(self):
        from .validation import role_method

        ours = role_method("ours")
        if self.compute_matched_scratch and ours not in self.methods:
            raise ValueError(f"compute_matched_scratch: matches {ours}'s pre-training + fine-tuning steps, but "
                             f"methods does not include {ours}")
        return self

    @model_validator(mode="after")
    def _consistent(self):
        ch = self.data.channels
        if self.model.in_channels != ch or self.model.out_channels != ch:
            raise ValueError(f"model: in/out channels ({self.model.in_channels}/{self.model.out_channels}) must "
                             f"equal data.channels ({ch})")
        for t in self.data.test:
            if t.channels is None:
                t.channels = ch
            elif t.channels != ch:
                raise ValueError(f"data.test {t.name}: channels {t.channels} differ from data.channels {ch}")
        tests = {t.name.lower(): t for t in self.data.test}
        for what, sels in (("bm3d.where", self.bm3d.where), ("ablation_eval", self.ablation_eval or [])):
            for s in sels:
                t = tests.get(s.test.lower())
                if t is None:
                    raise ValueError(f"{what}: unknown test set {s.test!r}; the test sets are "
                                     f"{[t.name for t in self.data.test]}")
                for n in s.noises or []:
                    if n not in t.noises:
                        raise ValueError(f"{what}: test set {t.name} is not evaluated at {n!r} "
                                         f"(its noises: {t.noises})")
        names = [a.name.lower() for a in self.ablations]
        if len(set(names)) != len(names):
            raise ValueError(f"ablation names repeat: {[a.name for a in self.ablations]}")
        for i, a in enumerate(self.ablations):
            self.pretrain.rcl_config(a.rcl, where=f"ablations[{i}] ({a.name}).rcl")
        self._check_tasks()
        return self

    def _check_tasks(self) -> None:
        tk = self.tasks
        if not (tk.denoise or tk.sr or tk.jdd or tk.registered):
            raise ValueError("tasks: nothing to run; keep tasks.denoise: true or add a tasks.sr / tasks.jdd section")
        if tk.denoise and not self.data.test:
            raise ValueError("data.test: list at least one test set (or set tasks.denoise: false for an SR/JDD-only "
                             "benchmark)")
        if not tk.denoise:
            if self.bm3d.enabled:
                raise ValueError("bm3d: the BM3D rows belong to the denoising benchmark, which tasks.denoise: false "
                                 "turns off; set bm3d.enabled: false (JDD has its own tasks.jdd.bm3d)")
            if self.ablations:
                raise ValueError("ablations: the ablations are evaluated on the denoising test sets, which "
                                 "tasks.denoise: false turns off; remove them")
        if (tk.sr or tk.jdd) and self.model.arch != "unet":
            raise ValueError(f"model: SR and JDD networks build on a U-Net body; got arch {self.model.arch!r}")
        if tk.sr is not None:
            from ..tasks import SRTask

            sr = tk.sr
            ch = self.data.channels
            fcfg = self.task_finetune(sr, "tasks.sr.finetune")
            for sc in sr.scales:
                if fcfg.crop_size % SRTask(sc).input_multiple:
                    raise ValueError(f"tasks.sr.finetune: crop_size {fcfg.crop_size} (the HR crop) must be a "
                                     f"multiple of every scale; {sc} does not divide it")
            for t in sr.test:
                if t.channels is None:
                    t.channels = ch
                elif t.channels != ch:
                    raise ValueError(f"tasks.sr.test {t.name}: channels {t.channels} differ from data.channels {ch} "
                                     "(SR fine-tunes the denoising pre-training of data.train)")
                need = SRTask(max(sr.scales)).min_test_size()[0]
                if t.crop is not None and t.crop < need:
                    raise ValueError(f"tasks.sr.test {t.name}: crop {t.crop} is too small; SSIM needs 11 px left "
                                     f"after the {max(sr.scales)}-px border at scale {max(sr.scales)}: use crop >= {need}")
        if tk.jdd is not None:
            from ..tasks import JDDTask

            jdd = tk.jdd
            if jdd.train is None and self.data.channels != 3:
                raise ValueError("tasks.jdd.train: JDD needs clean RGB training images; give tasks.jdd.train "
                                 "(data.train is read as grayscale, data.channels is 1)")
            fcfg = self.task_finetune(jdd, "tasks.jdd.finetune")
            if fcfg.crop_size % JDDTask(jdd.pattern).input_multiple:
                raise ValueError(f"tasks.jdd.finetune: crop_size {fcfg.crop_size} must be even (whole 2×2 Bayer tiles)")
            if self.tile is not None and self.tile % 2:
                raise ValueError(f"tile {self.tile} must be even with tasks.jdd (tiles keep the Bayer phase)")
            self.jdd_model()
            self.jdd_pretrain()
            for t in jdd.test:
                if t.channels is None:
                    t.channels = 3
                elif t.channels != 3:
                    raise ValueError(f"tasks.jdd.test {t.name}: JDD tests on RGB images (channels 3), got {t.channels}")
                if t.crop is not None and t.crop < JDDTask(jdd.pattern).min_test_size()[0]:
                    raise ValueError(f"tasks.jdd.test {t.name}: crop {t.crop} is too small (SSIM needs 11 px)")
        for name, sec in tk.registered.items():
            self._check_registered(name, sec)

    def _check_registered(self, name: str, sec) -> None:
        """A registered task's section against its task object (constructor params, crop multiple,
        test channels and minimum size, network body)."""
        from ..tasks import get_task

        try:
            task = get_task(name, **sec.params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tasks.{name}.params: {exc}") from None
        try:
            task.check_body(self.model)
        except ValueError as exc:
            raise ValueError(f"tasks.{name}: {exc}") from None
        crop = self.task_finetune(sec, f"tasks.{name}.finetune").crop_size
        if crop % task.input_multiple:
            raise ValueError(f"tasks.{name}.finetune: crop_size {crop} must be a multiple of {task.input_multiple} "
                             f"({task.describe()})")
        need = task.min_test_size()[0]
        for t in sec.test:
            if t.channels is None:
                t.channels = self.data.channels
            elif t.channels != self.data.channels:
                raise ValueError(f"tasks.{name}.test {t.name}: channels {t.channels} differ from data.channels "
                                 f"{self.data.channels}")
            if t.crop is not None and t.crop < need:
                raise ValueError(f"tasks.{name}.test {t.name}: crop {t.crop} is too small; use crop >= {need}")

    # -- task helpers ------------------------------------------------------------------------

    def task_methods(self, sec: TaskSection) -> list[str]:
        return sec.methods if sec.methods is not None else self.methods

    def task_fractions(self, sec: TaskSection) -> list[float]:
        return sec.label_fractions if sec.label_fractions is not None else self.label_fractions

    def task_seeds(self, sec: TaskSection) -> list[int]:
        return sec.seeds if sec.seeds is not None else self.seeds

    def task_finetune(self, sec: TaskSection, where: str = "finetune") -> FinetuneConfig:
        """The task's fine-tuning config (label_fraction and seed are set per cell)."""
        base = self.finetune.model_dump(exclude={"label_fraction", "seed"})
        return build(FinetuneConfig, {**base, **sec.finetune}, where)

    @property
    def sr_noise(self) -> str:
        sr = self.tasks.sr
        return sr.train_noise if sr is not None and sr.train_noise is not None else self.train_noise

    def jdd_model(self) -> ModelConfig:
        """The JDD body: the top-level architecture with ``tasks.jdd.model`` over it, 4 → 4 channels."""
        d = {**self.model.model_dump(), **self.tasks.jdd.model, "in_channels": 4, "out_channels": 4}
        m = build(ModelConfig, d, "tasks.jdd.model")
        if m.arch != "unet":
            raise ValueError(f"tasks.jdd.model: the JDD body must be a U-Net, got arch {m.arch!r}")
        return m

    def jdd_pretrain(self) -> PretrainSection:
        """The top-level ``pretrain`` section with ``tasks.jdd.pretrain`` deep-merged over it."""
        merged = deep_merge(self.pretrain.model_dump(), self.tasks.jdd.pretrain)
        return build(PretrainSection, merged, "tasks.jdd.pretrain")

    @property
    def jdd_train(self) -> tuple[Path, int | None]:
        """(training images, max_train_images) of JDD."""
        j = self.tasks.jdd
        if j.train is not None:
            return j.train, j.max_train_images
        return self.data.train, j.max_train_images if j.max_train_images is not None else self.data.max_train_images

    @property
    def jdd_noise_seed(self) -> int:
        j = self.tasks.jdd
        return j.noise_seed if j.noise_seed is not None else self.noise_seed

    # -- helpers -----------------------------------------------------------------------------

    def test_set(self, name: str) -> TestSetConfig:
        for t in self.data.test:
            if t.name.lower() == name.lower():
                return t
        raise KeyError(name)

    def expand(self, sels: list[Selection] | None) -> list[tuple[str, str]]:
        """(test name, noise) pairs of a selection list (None or [] = everything)."""
        if not sels:
            return [(t.name, n) for t in self.data.test for n in t.noises]
        out = []
        for s in sels:
            t = self.test_set(s.test)
            for n in (s.noises or t.noises):
                if (t.name, n) not in out:
                    out.append((t.name, n))
        return out

    @property
    def abl_fraction(self) -> float:
        return self.ablation_fraction if self.ablation_fraction is not None else min(self.label_fractions)


def preset_path(name: str):
    """The packaged preset ``name`` (one of :data:`PRESETS`) as an importlib resource."""
    return resources.files("rcl").joinpath("presets", f"{name}.yaml")


def load_config(path_or_preset: str, data_root: Path | None = None, overrides: dict | None = None
                ) -> BenchmarkConfig:
    """Read a benchmark config from a YAML file or a packaged preset name (:data:`PRESETS`).

    Relative data paths resolve against ``data_root`` if given, else against the YAML's own
    ``data_root:`` entry (relative to the YAML's folder), else against the current folder.
    ``overrides`` is deep-merged into the YAML mapping before validation.

    The YAML is read by :func:`rcl.configs.load_yaml` (a key given twice in one mapping is an
    error; ``1e-3`` is a float) and validated strictly (:class:`rcl.configs.StrictConfig`: no bool,
    string or float where an integer belongs, seeds in [0, 2**63 − 1]).

    Raises:
        FileNotFoundError: neither a file nor a preset of that name.
        BenchmarkConfigError: a file that is not UTF-8 text, invalid YAML (``<file>: duplicate key
            'steps' at line 12 in pretrain (first at line 10)``) or config; the message names the
            field and the file.
    """
    p = Path(path_or_preset).expanduser()
    base_dir: Path | None
    if p.is_file():
        source, base_dir = str(p), p.resolve().parent
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BenchmarkConfigError(f"{source}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                                       f"{exc.start}); save the config as UTF-8") from None
    else:
        name = str(path_or_preset)
        name = name[:-5] if name.endswith(".yaml") else name
        res = preset_path(name) if re.fullmatch(r"[A-Za-z0-9_-]+", name) else None
        if res is None or not res.is_file():
            raise FileNotFoundError(f"{path_or_preset}: no such config file or preset (presets: {', '.join(PRESETS)})")
        text, source, base_dir = res.read_text(), f"preset {name}", None
    try:
        raw = load_yaml(text, source)
    except ConfigFileError as exc:
        raise BenchmarkConfigError(str(exc)) from None
    if not isinstance(raw, dict):
        raise BenchmarkConfigError(f"{source}: the config must be a YAML mapping (key: value), "
                                   f"got {type(raw).__name__}")
    if overrides:
        raw = deep_merge(raw, overrides)
    if data_root is not None:
        raw["data_root"] = str(Path(data_root).expanduser().resolve())
    elif isinstance(raw.get("data_root"), str) and base_dir is not None:
        raw["data_root"] = str((base_dir / Path(raw["data_root"]).expanduser()).resolve())
    try:
        return BenchmarkConfig.model_validate(raw)
    except ValidationError as exc:
        raise BenchmarkConfigError(f"{source}: {format_errors(exc)}") from None


def config_dict(cfg: BenchmarkConfig) -> dict:
    """The config as plain JSON-able data that :class:`BenchmarkConfig` reads back (paths absolute)."""
    d = finite_json(json.loads(cfg.model_dump_json()))
    for k in ("label_fraction", "seed"):  # set per cell, not in the finetune section
        d["finetune"].pop(k, None)
    return d


def config_yaml(cfg: BenchmarkConfig) -> str:
    """:func:`config_dict` as YAML (the run folder's ``config.yaml``, the report's config block)."""
    import yaml

    return yaml.safe_dump(config_dict(cfg), sort_keys=False, allow_unicode=True)
