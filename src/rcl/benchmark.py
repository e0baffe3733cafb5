"""`rcl benchmark`: every pre-training method × label fraction × seed × test set/noise, resumable.

What is measured (all through the one protocol, :func:`rcl.evaluation.protocol.evaluate`, seed 0):

1. The training images of ``data.train`` are noised **once** with ``train_noise`` and
   ``noise_seed``: this fixed noisy collection is what every pre-training method sees.
2. Pre-training, one network per method (``rcl`` via :class:`rcl.training.PretrainConfig`,
   ``simclr``/``n2v``/``n2s``/``ne2ne`` via :class:`rcl.training.baselines.BaselineConfig`;
   ``none`` = random initialisation).
3. Fine-tuning from each of them on every label fraction with every seed: the labelled subset
   of the *clean* training images with fresh synthetic noise per crop
   (:func:`rcl.training.finetune`; ``none`` = supervised training from scratch).
4. Evaluation of every network on every test set × noise; the self-supervised networks are also
   evaluated directly (0 labels: ``rcl``, ``n2v``, ``ne2ne`` by a plain forward pass, ``n2s``
   with :func:`rcl.losses.noise2self.n2s_predict`); BM3D with the known σ where asked.
5. Ablations: named overrides of RCL's pre-training config, each evaluated directly and after
   fine-tuning at one label fraction with the first seed.

Every unit of work is a *cell* with its own output under ``<out>/cache/``: a checkpoint per
pre-training and fine-tuning (:func:`rcl.checkpoint.save_checkpoint`, atomic), a small JSON per
evaluation (atomic). Each output records a hash of the configuration it depends on; a rerun
skips the cells whose output exists with the same hash and recomputes the others (a changed
fine-tuning config recomputes the fine-tuning cells and their evaluations, nothing else).

The run folder is assembled as ``.<out>.partial`` and renamed to ``<out>`` when the report is
written; an interrupted run leaves the ``.partial`` folder, and the next run resumes from it.
A finished folder is reopened the same way (renamed to ``.partial`` while the rerun works).

Outputs: ``report.md``, ``results.json``, ``psnr_vs_fraction.png``, ``samples.png``,
``config.yaml``, ``benchmark.log`` and ``cache/``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .models.factory import ModelConfig
from .training.baselines import BaselineConfig
from .training.config import FinetuneConfig, PretrainConfig

METHODS = ("rcl", "simclr", "n2v", "n2s", "ne2ne", "none")
BASELINES = ("simclr", "n2v", "n2s", "ne2ne")
DIRECT_METHODS = ("rcl", "n2v", "n2s", "ne2ne")  # self-supervised denoisers usable with 0 labels
SELF_SUPERVISED_BASELINES = ("n2v", "n2s", "ne2ne")
EVAL_SEED = 0  # the protocol's noise seed for test images
CELL_FORMAT = 1  # part of every cell hash: bump to invalidate all caches after a format change
MARKER = ".rcl-benchmark"
PRESETS = ("smoke", "default", "colour")

BM3D_CHECK = {"test": "bsd68", "noise": "gaussian:25", "published": 28.57, "tolerance": 0.3}

# Published reference numbers (PSNR, dB). "ours" names the row of this benchmark printed beside it.
PUBLISHED = [
    {"test": "BSD68", "noise": "gaussian:25", "method": "BM3D", "psnr": 28.57,
     "source": "Dabov et al. 2007, as reported by Zhang et al. 2017 (DnCNN, IEEE TIP), Table II",
     "ours": ("bm3d",)},
    {"test": "BSD68", "noise": "gaussian:25", "method": "DnCNN-S (supervised)", "psnr": 29.23,
     "source": "Zhang et al. 2017 (DnCNN, IEEE TIP), Table II", "ours": ("ft", "none", 1.0)},
    {"test": "Kodak24", "noise": "gaussian:25", "method": "CBM3D", "psnr": 31.87,
     "source": "as reported by Huang et al. 2021 (Neighbor2Neighbor, CVPR), Table 1", "ours": ("bm3d",)},
    {"test": "Kodak24", "noise": "gaussian:25", "method": "Noise2Void", "psnr": 30.32,
     "source": "as reported by Huang et al. 2021 (Neighbor2Neighbor, CVPR), Table 1", "ours": ("direct", "n2v")},
    {"test": "Kodak24", "noise": "gaussian:25", "method": "Neighbor2Neighbor", "psnr": 32.08,
     "source": "Huang et al. 2021 (Neighbor2Neighbor, CVPR), Table 1", "ours": ("direct", "ne2ne")},
    {"test": "Kodak24", "noise": "gaussian:25", "method": "supervised (noisy-to-clean)", "psnr": 32.43,
     "source": "as reported by Huang et al. 2021 (Neighbor2Neighbor, CVPR), Table 1", "ours": ("ft", "none", 1.0)},
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*$")


class BenchmarkConfigError(ValueError):
    """A benchmark config that cannot be read or validated; the message names the field/file."""


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _format_errors(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        loc = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") in ("extra_forbidden",):
            msg = "unknown field (not allowed here)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _build(cls, data: dict, where: str):
    try:
        return cls(**data)
    except ValidationError as exc:
        raise ValueError(_format_errors(exc, where)) from None
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_name(v: str, what: str) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise ValueError(f"{what} {v!r} may contain only letters, digits and _ . + = - (it names files)")
    return v


def _check_noise(spec: str, what: str = "noise") -> str:
    from .data.noise import parse_noise_spec

    model = parse_noise_spec(spec)  # ValueError names the spec and the accepted forms
    if not model.synthetic:
        raise ValueError(f"{what} {spec!r}: 'real' noise has no clean reference; the benchmark needs "
                         "synthetic noise (e.g. gaussian:25 or gaussian:5-50)")
    return spec.strip().lower()


def _check_exists(p: Path, what: str) -> Path:
    if not Path(p).exists():
        hint = "" if Path(p).is_absolute() else " (relative to the current folder; pass a data root)"
        raise ValueError(f"{what}: no such file or folder: {p}{hint}")
    return Path(p)


class TestSetConfig(_Strict):
    """One test set: clean images, evaluated under each noise spec.

    Attributes:
        name: short name used in tables and file names (e.g. BSD68).
        path: folder (or file) of clean test images; relative paths resolve against ``data_root``.
        channels: 1 or 3 (default: the training channels).
        noises: noise specs, σ on 0–255 (``gaussian:25``, ``gaussian:5-50``).
        max_images: use only the first N images (sorted by name); overrides ``max_test_images``.
        crop: centre-crop every image to at most crop×crop (to bound time; None = whole images).
    """

    name: str
    path: Path
    channels: Literal[1, 3] | None = None
    noises: list[str] = Field(min_length=1)
    max_images: int | None = Field(None, ge=1)
    crop: int | None = Field(None, ge=16)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _check_name(v, "test set name")

    @field_validator("path")
    @classmethod
    def _path(cls, v):
        return _check_exists(v, "test set path")

    @field_validator("noises")
    @classmethod
    def _noises(cls, v):
        out = [_check_noise(s) for s in v]
        if len(set(out)) != len(out):
            raise ValueError(f"noise specs repeat: {v}")
        return out


class DataConfig(_Strict):
    """Training and test data.

    Attributes:
        train: folder of clean training images (noised once for pre-training; clean labels for
            fine-tuning); relative paths resolve against ``data_root``.
        channels: 1 (grayscale, BT.601 luma) or 3 (RGB); images are converted on loading.
        max_train_images: use only the first N training images (sorted by name).
        test: the test sets.
    """

    train: Path
    channels: Literal[1, 3] = 1
    max_train_images: int | None = Field(None, ge=2)
    test: list[TestSetConfig] = Field(min_length=1)

    @field_validator("train")
    @classmethod
    def _train(cls, v):
        return _check_exists(v, "training images")

    @model_validator(mode="after")
    def _unique(self):
        names = [t.name.lower() for t in self.test]
        if len(set(names)) != len(names):
            raise ValueError(f"test set names repeat: {[t.name for t in self.test]}")
        return self


class Selection(_Strict):
    """A test set and some of its noises (None = all of them)."""

    test: str
    noises: list[str] | None = None

    @field_validator("noises")
    @classmethod
    def _noises(cls, v):
        return None if v is None else [_check_noise(s) for s in v]


class BM3DConfig(_Strict):
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


class AblationConfig(_Strict):
    """A named variant of RCL pre-training: fields of :class:`PretrainConfig` that differ from
    ``pretrain.rcl`` (e.g. ``{similarity: l2}``, ``{consistency: none}``, ``{temperature: 0.5}``)."""

    name: str
    rcl: dict[str, Any] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _check_name(v, "ablation name")


class PretrainSection(_Strict):
    """Pre-training of every method.

    Attributes:
        steps: optimisation steps of every method (a method's own ``steps`` overrides it).
        seed: seed of every pre-training (one pre-trained network per method).
        rcl: fields of :class:`rcl.training.PretrainConfig` for RCL.
        baselines: fields of :class:`rcl.training.baselines.BaselineConfig` shared by the baselines.
        simclr, n2v, n2s, ne2ne: per-method BaselineConfig fields over ``baselines``.
    """

    steps: int = Field(800, ge=1)
    seed: int = 0
    rcl: dict[str, Any] = Field(default_factory=dict)
    baselines: dict[str, Any] = Field(default_factory=dict)
    simclr: dict[str, Any] = Field(default_factory=dict)
    n2v: dict[str, Any] = Field(default_factory=dict)
    n2s: dict[str, Any] = Field(default_factory=dict)
    ne2ne: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validate_all(self):
        self.rcl_config()
        for m in BASELINES:
            self.baseline_config(m)
        return self

    def rcl_config(self, overrides: dict | None = None, where: str = "rcl") -> PretrainConfig:
        """RCL's :class:`PretrainConfig` (with an ablation's ``overrides``)."""
        return _build(PretrainConfig, {"steps": self.steps, "seed": self.seed, **self.rcl, **(overrides or {})},
                      where)

    def baseline_config(self, method: str) -> BaselineConfig:
        """The :class:`BaselineConfig` of a baseline method."""
        return _build(BaselineConfig, {"steps": self.steps, "seed": self.seed, **self.baselines,
                                       **getattr(self, method)}, method)


class BenchmarkConfig(_Strict):
    """Everything `rcl benchmark` runs (see the module docstring and ``rcl/presets/*.yaml``).

    Attributes:
        name: shown in the report.
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
        bm3d: BM3D reference rows.
        ablations: named RCL variants, evaluated directly and fine-tuned at ``ablation_fraction``
            with the first seed.
        ablation_fraction: label fraction of the ablations' fine-tuning (default: the smallest).
        ablation_eval: test sets/noises the ablations are evaluated on (default: all).
        max_test_images: at most N images per test set (a test set's max_images overrides it).
        competitive_db: tolerance (dB) of claim 2 ("competitive with full supervision").
        tile: tiled inference window for large images (None = whole image).
    """

    name: str = "benchmark"
    data_root: Path | None = None
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    methods: list[str] = Field(default_factory=lambda: list(METHODS))
    train_noise: str = "gaussian:5-50"
    noise_seed: int = 1
    pretrain: PretrainSection = Field(default_factory=PretrainSection)
    label_fractions: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.1, 1.0])
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    bm3d: BM3DConfig = Field(default_factory=BM3DConfig)
    ablations: list[AblationConfig] = Field(default_factory=list)
    ablation_fraction: float | None = Field(None, gt=0, le=1)
    ablation_eval: list[Selection] | None = None
    max_test_images: int | None = Field(None, ge=1)
    competitive_db: float = Field(0.5, ge=0)
    tile: int | None = Field(None, ge=64)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, raw):
        if not isinstance(raw, dict):
            return raw
        raw = copy.deepcopy(raw)
        data = raw.get("data")
        root = raw.get("data_root")
        if root is not None and isinstance(data, dict):
            root = Path(root).expanduser()
            if isinstance(data.get("train"), (str, Path)) and not Path(data["train"]).expanduser().is_absolute():
                data["train"] = str(root / data["train"])
            for t in data.get("test") or []:
                if isinstance(t, dict) and isinstance(t.get("path"), (str, Path)) \
                        and not Path(t["path"]).expanduser().is_absolute():
                    t["path"] = str(root / t["path"])
        if isinstance(data, dict):
            ch = data.get("channels", 1)
            model = raw.get("model")
            if model is None or isinstance(model, dict):
                model = dict(model or {})
                model.setdefault("in_channels", ch)
                model.setdefault("out_channels", ch)
                raw["model"] = model
        return raw

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _check_name(v, "benchmark name")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v):
        if not v:
            raise ValueError(f"list at least one method; choose from {', '.join(METHODS)}")
        for m in v:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"methods repeat: {v}")
        return v

    @field_validator("train_noise")
    @classmethod
    def _train_noise(cls, v):
        return _check_noise(v, "train_noise")

    @field_validator("label_fractions")
    @classmethod
    def _fractions(cls, v):
        if not v:
            raise ValueError("list at least one label fraction, e.g. [0.01, 0.05, 0.1, 1.0]")
        for f in v:
            if not (isinstance(f, (int, float)) and 0 < f <= 1):
                raise ValueError(f"label fraction {f:g} is not in (0, 1]: a fraction is the share of training "
                                 "images that have clean labels (at least one image is always used)")
        if len(set(v)) != len(v):
            raise ValueError(f"label fractions repeat: {v}")
        return sorted(float(f) for f in v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if not v:
            raise ValueError("list at least one seed")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v

    @field_validator("finetune")
    @classmethod
    def _finetune(cls, v: FinetuneConfig):
        for f in ("label_fraction", "seed"):
            if f in v.model_fields_set:
                other = "label_fractions" if f == "label_fraction" else "seeds"
                raise ValueError(f"{f} is set per cell; list the values in the top-level {other!r} instead")
        return v

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
        return self

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


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_path(name: str):
    """The packaged preset ``name`` (smoke, default, colour) as an importlib resource."""
    return resources.files("rcl").joinpath("presets", f"{name}.yaml")


def load_config(path_or_preset: str, data_root: Path | None = None, overrides: dict | None = None
                ) -> BenchmarkConfig:
    """Read a benchmark config from a YAML file or a packaged preset name (smoke, default, colour).

    Relative data paths resolve against ``data_root`` if given, else against the YAML's own
    ``data_root:`` entry (relative to the YAML's folder), else against the current folder.
    ``overrides`` is deep-merged into the YAML mapping before validation.

    Raises:
        FileNotFoundError: neither a file nor a preset of that name.
        BenchmarkConfigError: invalid YAML or config; the message names the field and the file.
    """
    import yaml

    p = Path(path_or_preset).expanduser()
    base_dir: Path | None
    if p.is_file():
        text, source, base_dir = p.read_text(), str(p), p.resolve().parent
    else:
        name = str(path_or_preset)
        name = name[:-5] if name.endswith(".yaml") else name
        res = preset_path(name) if re.fullmatch(r"[A-Za-z0-9_-]+", name) else None
        if res is None or not res.is_file():
            raise FileNotFoundError(f"{path_or_preset}: no such config file or preset (presets: {', '.join(PRESETS)})")
        text, source, base_dir = res.read_text(), f"preset {name}", None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BenchmarkConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BenchmarkConfigError(f"{source}: the config must be a YAML mapping (key: value), "
                                   f"got {type(raw).__name__}")
    if overrides:
        raw = _deep_merge(raw, overrides)
    if data_root is not None:
        raw["data_root"] = str(Path(data_root).expanduser().resolve())
    elif raw.get("data_root") is not None and base_dir is not None:
        raw["data_root"] = str((base_dir / Path(raw["data_root"]).expanduser()).resolve())
    try:
        return BenchmarkConfig(**raw)
    except ValidationError as exc:
        raise BenchmarkConfigError(f"{source}: {_format_errors(exc)}") from None


# ----------------------------------------------------------------------------------------------
# cells
# ----------------------------------------------------------------------------------------------

def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (sorted keys)."""
    blob = json.dumps({"format": CELL_FORMAT, "obj": obj}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text.replace(":", "_"))


def _frac_tag(f: float) -> str:
    return f"{f:g}"


@dataclass
class ModelCell:
    """A network produced by training (pre-training or fine-tuning), saved as a checkpoint."""

    key: str
    path: Path
    hash: str
    kind: str  # pretrain | finetune
    method: str
    train: Callable[[], Any] | None = None
    meta: dict = field(default_factory=dict)
    evals: list["EvalCell"] = field(default_factory=list)


@dataclass
class EvalCell:
    """The protocol's scores of one denoiser on one test set under one noise, saved as JSON."""

    key: str
    path: Path
    hash: str
    row: tuple  # ("direct", m) | ("ft", m, frac, seed) | ("bm3d",) | ("abl-direct", name) | ("abl-ft", name)
    test: str
    noise: str
    predictor: str  # plain | n2s | bm3d
    model: ModelCell | None = None
    max_images: int | None = None


def _noise_label(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    if kind == "gaussian":
        return f"σ∈[{arg.replace('-', ', ')}]" if "-" in arg.lstrip("-") else f"σ={arg}"
    return spec


def _mean_std(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _atomic_json(path: Path, payload: dict) -> None:
    from .data.io import atomic_write_bytes

    data = json.dumps(payload, indent=1, default=_json_default).encode()
    atomic_write_bytes(path, lambda tmp: tmp.write_bytes(data))


def _atomic_text(path: Path, text: str) -> None:
    from .data.io import atomic_write_bytes

    atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _clean_json(o):
    """NaN/inf → None (strict JSON), recursively."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_json(v) for v in o]
    return o


class _Runner:
    """Plans the cells of a config and computes the missing ones."""

    def __init__(self, cfg: BenchmarkConfig, work: Path, progress: bool):
        from .data.io import image_paths

        self.cfg, self.work, self.progress = cfg, work, progress
        self.cache = work / "cache"
        self.log_path = work / "benchmark.log"
        self.computed: list[str] = []
        self.cached: list[str] = []
        self.results: dict[str, dict] = {}  # eval cell key → payload
        self._models: dict[str, Any] = {}
        self._train: tuple | None = None
        self._tests: dict[tuple, Any] = {}
        self._noisy: dict[tuple, Any] = {}

        d = cfg.data
        files = image_paths(d.train)
        if d.max_train_images:
            files = files[: d.max_train_images]
        self.n_train = len(files)
        # cells depend on the images through their names and byte sizes (cheap; not their contents)
        self.train_id = {"images": [(p.name, p.stat().st_size) for p in files], "channels": d.channels}
        self.test_ids: dict[tuple, dict] = {}
        self.model_dump = cfg.model.model_dump()
        self._plan()

    # -- data --------------------------------------------------------------------------------

    def train_sets(self):
        """(clean training images, the fixed noisy collection), loaded once."""
        if self._train is None:
            from .data.datasets import add_noise_per_image, load_image_set
            from .data.noise import parse_noise_spec

            d = self.cfg.data
            clean = load_image_set(d.train, channels=d.channels, limit=d.max_train_images)
            noise = parse_noise_spec(self.cfg.train_noise)
            noisy, _ = add_noise_per_image(clean, noise, self.cfg.noise_seed)
            self._train = (clean, noisy, noise)
        return self._train

    def _limit(self, t: TestSetConfig, extra: int | None = None) -> int | None:
        lim = t.max_images if t.max_images is not None else self.cfg.max_test_images
        if extra is not None:
            lim = extra if lim is None else min(lim, extra)
        return lim

    def test_id(self, test: str, limit: int | None) -> dict:
        from .data.io import image_paths

        key = (test, limit)
        if key not in self.test_ids:
            t = self.cfg.test_set(test)
            files = image_paths(t.path)
            if limit is not None:
                files = files[:limit]
            self.test_ids[key] = {"images": [(p.name, p.stat().st_size) for p in files], "channels": t.channels,
                                  "crop": t.crop}
        return self.test_ids[key]

    def test_set(self, test: str, limit: int | None):
        key = (test, limit)
        if key not in self._tests:
            from .data.datasets import ImageSet, load_image_set

            t = self.cfg.test_set(test)
            s = load_image_set(t.path, channels=t.channels, limit=limit, min_size=11)
            if t.crop is not None:
                imgs = []
                for im in s.images:
                    _, h, w = im.shape
                    ch, cw = min(h, t.crop), min(w, t.crop)
                    top, left = (h - ch) // 2, (w - cw) // 2
                    imgs.append(im[:, top:top + ch, left:left + cw].contiguous())
                s = ImageSet(imgs, s.names)
            self._tests[key] = s
        return self._tests[key]

    def noisy_test(self, test: str, noise: str, limit: int | None):
        key = (test, noise, limit)
        if key not in self._noisy:
            from .data.noise import parse_noise_spec
            from .evaluation.protocol import make_noisy_test_set

            clean = self.test_set(test, limit)
            self._noisy[key] = (clean,) + make_noisy_test_set(clean, parse_noise_spec(noise), EVAL_SEED)
        return self._noisy[key]

    # -- plan --------------------------------------------------------------------------------

    def _pretrain_cfg(self, method: str, overrides: dict | None = None) -> dict:
        if method == "rcl":
            return self.cfg.pretrain.rcl_config(overrides).model_dump()
        return self.cfg.pretrain.baseline_config(method).model_dump()

    def _pretrain_cell(self, key: str, path: Path, method: str, pcfg: dict) -> ModelCell:
        h = config_hash({"kind": "pretrain", "method": method, "model": self.model_dump, "train": self.train_id,
                         "train_noise": self.cfg.train_noise, "noise_seed": self.cfg.noise_seed, "cfg": pcfg})
        cell = ModelCell(key, path, h, "pretrain", method, meta={"training": pcfg})
        cell.train = lambda: self._run_pretrain(cell, method, pcfg)
        return cell

    def _finetune_cell(self, key: str, path: Path, method: str, init: ModelCell | None, frac: float,
                       seed: int) -> ModelCell:
        fcfg = self.cfg.finetune.model_copy(update={"label_fraction": frac, "seed": seed})
        h = config_hash({"kind": "finetune", "init": init.hash if init else None, "model": self.model_dump,
                         "train": self.train_id, "noise": self.cfg.train_noise, "cfg": fcfg.model_dump()})
        cell = ModelCell(key, path, h, "finetune", method, meta={"training": fcfg.model_dump(), "fraction": frac,
                                                                   "seed": seed})
        cell.train = lambda: self._run_finetune(cell, init, fcfg)
        return cell

    def _eval_cell(self, key_prefix: str, rel: str, row: tuple, test: str, noise: str, predictor: str,
                   model: ModelCell | None, max_images: int | None = None) -> EvalCell:
        t = self.cfg.test_set(test)
        limit = self._limit(t, max_images)
        if model is not None:
            src = model.hash
        else:
            src = {"bm3d": self.cfg.bm3d.profile}
        pred = predictor
        if predictor == "n2s":
            pred = f"n2s_predict(grid={self.cfg.pretrain.baseline_config('n2s').grid})"
        h = config_hash({"kind": "eval", "model": src, "predictor": pred, "test": self.test_id(test, limit),
                         "noise": noise, "seed": EVAL_SEED, "tile": self.cfg.tile if predictor == "plain" else None})
        path = self.cache / "eval" / rel / _slug(t.name) / f"{_slug(noise)}.json"
        return EvalCell(f"{key_prefix} | {t.name} {noise}", path, h, row, t.name, noise, predictor, model, limit)

    def _plan(self):
        cfg = self.cfg
        pairs = cfg.expand(None)
        self.model_cells: list[ModelCell] = []
        self.pretrained: dict[str, ModelCell] = {}
        for m in cfg.methods:
            if m == "none":
                continue
            cell = self._pretrain_cell(f"pretrain {m}", self.cache / "pretrain" / f"{m}.safetensors", m,
                                       self._pretrain_cfg(m))
            if m in DIRECT_METHODS:
                pred = "n2s" if m == "n2s" else "plain"
                cell.evals = [self._eval_cell(f"eval {m} (0 labels)", f"direct/{m}", ("direct", m), t, n, pred, cell)
                              for t, n in pairs]
            self.pretrained[m] = cell
            self.model_cells.append(cell)
        for m in cfg.methods:
            for f in cfg.label_fractions:
                for s in cfg.seeds:
                    tag = f"f{_frac_tag(f)}_s{s}"
                    cell = self._finetune_cell(f"finetune {m} f={f:g} seed={s}",
                                               self.cache / "finetune" / m / f"{tag}.safetensors", m,
                                               self.pretrained.get(m), f, s)
                    cell.evals = [self._eval_cell(f"eval {m} f={f:g} seed={s}", f"finetune/{m}/{tag}",
                                                  ("ft", m, f, s), t, n, "plain", cell) for t, n in pairs]
                    self.model_cells.append(cell)
        abl_pairs = cfg.expand(cfg.ablation_eval)
        fa, s0 = cfg.abl_fraction, cfg.seeds[0]
        for a in cfg.ablations:
            slug = _slug(a.name)
            pre = self._pretrain_cell(f"ablation {a.name} pretrain", self.cache / "ablation" / slug /
                                      "pretrain.safetensors", "rcl", self._pretrain_cfg("rcl", a.rcl))
            pre.meta["ablation"] = a.name
            pre.evals = [self._eval_cell(f"eval ablation {a.name} (0 labels)", f"ablation/{slug}/direct",
                                         ("abl-direct", a.name), t, n, "plain", pre) for t, n in abl_pairs]
            ft = self._finetune_cell(f"ablation {a.name} finetune f={fa:g} seed={s0}",
                                     self.cache / "ablation" / slug / f"finetune_f{_frac_tag(fa)}_s{s0}.safetensors",
                                     "rcl", pre, fa, s0)
            ft.meta["ablation"] = a.name
            ft.evals = [self._eval_cell(f"eval ablation {a.name} f={fa:g} seed={s0}", f"ablation/{slug}/finetune",
                                        ("abl-ft", a.name), t, n, "plain", ft) for t, n in abl_pairs]
            self.model_cells += [pre, ft]
        self.bm3d_cells: list[EvalCell] = []
        if cfg.bm3d.enabled:
            for t, n in cfg.expand(cfg.bm3d.where):
                self.bm3d_cells.append(self._eval_cell("eval BM3D (σ known)", "bm3d", ("bm3d",), t, n, "bm3d", None,
                                                       cfg.bm3d.max_images))

    @property
    def all_cells(self) -> list:
        out: list = []
        for c in self.model_cells:
            out.append(c)
            out += c.evals
        return out + self.bm3d_cells

    # -- status ------------------------------------------------------------------------------

    @staticmethod
    def model_done(cell: ModelCell) -> bool:
        from .checkpoint import CheckpointError, read_metadata

        if not cell.path.is_file():
            return False
        try:
            return read_metadata(cell.path).get("cell_hash") == cell.hash
        except CheckpointError:
            return False

    @staticmethod
    def eval_payload(cell: EvalCell) -> dict | None:
        if not cell.path.is_file():
            return None
        try:
            payload = json.loads(cell.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return payload if isinstance(payload, dict) and payload.get("hash") == cell.hash else None

    # -- compute -----------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} {line}\n")

    def get_model(self, cell: ModelCell):
        if cell.key not in self._models:
            from .checkpoint import load_checkpoint

            self._models[cell.key], _ = load_checkpoint(cell.path, expect=self.cfg.model)
        return self._models[cell.key]

    def _run_pretrain(self, cell: ModelCell, method: str, pcfg: dict):
        from .training.baselines import run_pretraining

        _, noisy, _ = self.train_sets()
        model, _ = run_pretraining(method, noisy, self.cfg.model, pcfg, progress=self.progress)
        return model, {"stage": "pretrain", "method": method, "noise": self.cfg.train_noise,
                       "noise_seed": self.cfg.noise_seed}

    def _run_finetune(self, cell: ModelCell, init: ModelCell | None, fcfg: FinetuneConfig):
        from .training.api import finetune

        clean, _, noise = self.train_sets()
        init_model = self.get_model(init) if init is not None else None
        model, _, labelled = finetune(clean, noise, fcfg, self.cfg.model, init=init_model, progress=self.progress,
                                      desc=cell.key)
        return model, {"stage": "finetune", "method": cell.method, "init_stage": "pretrain" if init else None,
                       "noise": self.cfg.train_noise, "labelled_images": labelled}

    def compute_model(self, cell: ModelCell) -> None:
        from .checkpoint import save_checkpoint

        t0 = time.time()
        model, meta = cell.train()
        secs = time.time() - t0
        save_checkpoint(cell.path, model, self.cfg.model, cell_hash=cell.hash, seconds=secs, benchmark=self.cfg.name,
                        **{**cell.meta, **meta})
        self._models[cell.key] = model

    def denoiser(self, predictor: str, model_cell: ModelCell | None = None):
        """The protocol denoiser of a network (plain forward or n2s_predict) or of BM3D."""
        from .evaluation.protocol import model_denoiser

        if predictor == "bm3d":
            from .evaluation.bm3d_baseline import bm3d_denoiser

            return bm3d_denoiser(profile=self.cfg.bm3d.profile)
        model = self.get_model(model_cell)
        if predictor == "n2s":
            from .losses.noise2self import n2s_predict

            grid = self.cfg.pretrain.baseline_config("n2s").grid
            return lambda noisy, sigma: n2s_predict(model, noisy, grid=grid)
        return model_denoiser(model, tile=self.cfg.tile)

    def compute_eval(self, cell: EvalCell) -> dict:
        from .data.noise import parse_noise_spec
        from .evaluation.protocol import evaluate

        t0 = time.time()
        clean, noisy, sigmas = self.noisy_test(cell.test, cell.noise, cell.max_images)
        res, _ = evaluate({cell.key: self.denoiser(cell.predictor, cell.model)}, clean, parse_noise_spec(cell.noise),
                          seed=EVAL_SEED, noisy=noisy, sigmas=sigmas)
        payload = {"hash": cell.hash, "key": cell.key, "row": list(cell.row), "test": cell.test, "noise": cell.noise,
                   "predictor": cell.predictor, "protocol_seed": EVAL_SEED, "seconds": time.time() - t0,
                   **res[cell.key].to_dict()}
        _atomic_json(cell.path, _clean_json(payload))
        return payload

    def run(self) -> None:
        from tqdm.auto import tqdm

        cells = self.all_cells
        bar = tqdm(total=len(cells), desc="benchmark", unit="cell", disable=not self.progress, dynamic_ncols=True)

        def tick(key: str, computed: bool, secs: float = 0.0):
            (self.computed if computed else self.cached).append(key)
            self._log(f"{'computed' if computed else 'cached  '} {key}" + (f" ({secs:.1f} s)" if computed else ""))
            bar.update(1)
            bar.set_postfix_str(f"{len(self.computed)} computed, {len(self.cached)} cached, "
                                f"{len(cells) - bar.n} left")

        try:
            self._log(f"start: {len(cells)} cells")
            for mc in self.model_cells:
                if self.model_done(mc):
                    tick(mc.key, False)
                else:
                    bar.set_description(mc.key)
                    t0 = time.time()
                    self.compute_model(mc)
                    tick(mc.key, True, time.time() - t0)
                for ec in mc.evals:
                    self._eval(ec, bar, tick)
                if mc.kind == "finetune":
                    self._models.pop(mc.key, None)  # fine-tuned networks are not needed again
            for ec in self.bm3d_cells:
                self._eval(ec, bar, tick)
        finally:
            bar.close()

    def _eval(self, ec: EvalCell, bar, tick) -> None:
        payload = self.eval_payload(ec)
        if payload is not None:
            self.results[ec.key] = payload
            tick(ec.key, False)
            return
        bar.set_description(ec.key)
        t0 = time.time()
        self.results[ec.key] = self.compute_eval(ec)
        tick(ec.key, True, time.time() - t0)


# ----------------------------------------------------------------------------------------------
# aggregation, claims, report
# ----------------------------------------------------------------------------------------------

@dataclass
class Stat:
    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    n: int
    n_images: int


def _aggregate(runner: _Runner) -> dict:
    """Rows keyed by (row kind…, test, noise) → Stat; fine-tuned rows pooled over seeds."""
    by_row: dict[tuple, list[dict]] = {}
    for c in runner.all_cells:
        if isinstance(c, EvalCell):
            p = runner.results[c.key]
            row = c.row
            if row[0] == "ft":
                row = row[:3]
            by_row.setdefault(row + (c.test, c.noise), []).append(p)
    out = {}
    for k, ps in by_row.items():
        pm, pstd = _mean_std([p["psnr"] for p in ps])
        sm, sstd = _mean_std([p["ssim"] for p in ps])
        out[k] = Stat(pm, pstd, sm, sstd, len(ps), ps[0]["n_images"])
    return out


def _noisy_rows(runner: _Runner) -> dict:
    """(test, noise) → (psnr_noisy, ssim_noisy, n_images) from a fine-tuned cell (full test selection)."""
    out = {}
    for mc in runner.model_cells:
        for ec in mc.evals:
            if ec.row[0] == "ft" and (ec.test, ec.noise) not in out:
                p = runner.results[ec.key]
                out[(ec.test, ec.noise)] = (p["psnr_noisy"], p["ssim_noisy"], p["n_images"])
    return out


def _compare(a: Stat | None, b: Stat | None) -> dict | None:
    if a is None or b is None:
        return None
    d = a.psnr - b.psnr
    if a.n < 2 or b.n < 2:
        spread, outcome = math.nan, "tie (one seed)"
    else:
        spread = max(a.psnr_std, b.psnr_std)
        outcome = "win" if d > spread else ("loss" if d < -spread else "tie")
    return {"delta_db": d, "spread_db": spread, "outcome": outcome}


def _verdict(outcomes: list[str], missing: str | None = None) -> str:
    if missing:
        return f"inconclusive (not measured: {missing})"
    if not outcomes:
        return "inconclusive (nothing to compare)"
    if any(o == "loss" for o in outcomes):
        return "does not hold"
    if all(o == "win" for o in outcomes):
        return "holds"
    if all(o == "tie (one seed)" for o in outcomes):
        return "inconclusive (one seed: no spread estimate)"
    return "inconclusive (difference within seed std)"


def _claims(cfg: BenchmarkConfig, stats: dict) -> list[dict]:
    pairs = cfg.expand(None)
    fr = cfg.label_fractions
    small = [f for f in fr if f < 1] or fr
    fmin, fmax = min(fr), max(fr)
    methods = set(cfg.methods)

    def st(m, f, t, n):
        return stats.get(("ft", m, f, t, n))

    def comparisons(a: str, b: str, fracs) -> list[dict]:
        out = []
        for t, n in pairs:
            for f in fracs:
                c = _compare(st(a, f, t, n), st(b, f, t, n))
                if c is not None:
                    out.append({"a": a, "b": b, "test": t, "noise": n, "fraction": f, **c})
        return out

    claims = []
    # (1) RCL vs scratch
    miss = None if {"rcl", "none"} <= methods else "needs methods rcl and none"
    comps = comparisons("rcl", "none", small) if not miss else []
    part_a = _verdict([c["outcome"] for c in comps], miss)
    part_b, detail_b = "inconclusive (needs two label fractions)", ""
    if not miss and fmin < fmax:
        gs, gl, spreads = [], [], []
        for t, n in pairs:
            a_s, b_s = st("rcl", fmin, t, n), st("none", fmin, t, n)
            a_l, b_l = st("rcl", fmax, t, n), st("none", fmax, t, n)
            gs.append(a_s.psnr - b_s.psnr)
            gl.append(a_l.psnr - b_l.psnr)
            spreads.append(max(a_s.psnr_std, b_s.psnr_std, a_l.psnr_std, b_l.psnr_std))
        g_small, g_large = sum(gs) / len(gs), sum(gl) / len(gl)
        spread = sum(spreads) / len(spreads) if all(math.isfinite(s) for s in spreads) else math.nan
        diff = g_small - g_large
        if not math.isfinite(spread):
            part_b = "inconclusive (one seed: no spread estimate)"
        else:
            part_b = "holds" if diff > spread else ("does not hold" if diff < -spread else
                                                    "inconclusive (difference within seed std)")
        detail_b = (f"mean gain over scratch at {fmin:g}: {g_small:+.2f} dB, at {fmax:g}: {g_large:+.2f} dB "
                    f"(difference {diff:+.2f} dB; spread {spread:.2f} dB)")
    overall = _combine([part_a, part_b])
    claims.append({"id": 1, "claim": "Fine-tuning from RCL beats training from scratch (none), most at small "
                                     "label fractions.",
                   "rule": ("(a) for every test set/noise and every label fraction < 100 % "
                            f"({', '.join(f'{f:g}' for f in small)}), "
                            "mean PSNR over seeds of rcl minus that of none exceeds the larger of their seed "
                            "standard deviations ('win'); a difference below minus that spread is a 'loss'. "
                            "(b) the gain at the smallest fraction, averaged over test sets/noises, exceeds the gain "
                            "at the largest fraction by more than the average spread of the four rows involved. "
                            "Holds if (a) and (b) hold; does not hold if either does not hold; otherwise inconclusive."),
                   "verdict": overall, "parts": {"a": part_a, "b": part_b}, "detail": detail_b, "comparisons": comps})
    # (2) few labels vs full supervision
    miss = None
    if not {"rcl", "none"} <= methods:
        miss = "needs methods rcl and none"
    elif 1.0 not in fr or fmin >= 1.0:
        miss = "needs label fraction 1.0 and a smaller one"
    comps2, outs = [], []
    if not miss:
        tol = cfg.competitive_db
        for t, n in pairs:
            a, b = st("rcl", fmin, t, n), st("none", 1.0, t, n)
            c = _compare(a, b)
            gap, spread = c["delta_db"], c["spread_db"]
            if not math.isfinite(spread):
                o = "tie (one seed)"
            else:
                o = "win" if gap + tol > spread else ("loss" if gap + tol < -spread else "tie")
            comps2.append({"a": f"rcl@{fmin:g}", "b": "none@1", "test": t, "noise": n, "fraction": fmin,
                           "delta_db": gap, "spread_db": spread, "outcome": o})
            outs.append(o)
    claims.append({"id": 2, "claim": "With few labels, RCL stays competitive with full supervision.",
                   "rule": (f"rcl fine-tuned at the smallest fraction ({fmin:g}) vs none (scratch) at 100 % labels; "
                            f"the gap is reported in dB. 'Competitive' = gap > −{cfg.competitive_db:g} dB. Holds if "
                            f"gap + {cfg.competitive_db:g} exceeds the larger seed std for every test set/noise; does not "
                            "hold if it is below minus that spread for one; otherwise inconclusive."),
                   "verdict": _verdict(outs, miss), "comparisons": comps2})
    # (3) RCL vs the self-supervised baselines after fine-tuning
    base = [m for m in SELF_SUPERVISED_BASELINES if m in methods]
    miss = None if "rcl" in methods and base else "needs rcl and at least one of n2v, n2s, ne2ne"
    per, comps3 = {}, []
    for b in base if not miss else []:
        cs = comparisons("rcl", b, small)
        comps3 += cs
        per[b] = _verdict([c["outcome"] for c in cs])
    v3 = _combine(list(per.values())) if per else _verdict([], miss)
    claims.append({"id": 3, "claim": "RCL pre-training beats Noise2Void / Noise2Self / Neighbor2Neighbor pre-training "
                                     "after fine-tuning.",
                   "rule": ("per baseline, the rule of claim 1(a) with that baseline in place of none (fractions < 100 %); "
                            "holds if it holds against every baseline run; does not hold if it does not hold against "
                            "one; otherwise inconclusive."),
                   "verdict": v3, "parts": per, "comparisons": comps3,
                   "not_run": [m for m in SELF_SUPERVISED_BASELINES if m not in methods]})
    # (4) RCL vs SimCLR
    miss = None if {"rcl", "simclr"} <= methods else "needs methods rcl and simclr"
    comps4 = comparisons("rcl", "simclr", small) if not miss else []
    claims.append({"id": 4, "claim": "RCL pre-training beats SimCLR pre-training (after fine-tuning).",
                   "rule": "the rule of claim 1(a) with simclr in place of none (fractions < 100 %).",
                   "verdict": _verdict([c["outcome"] for c in comps4], miss), "comparisons": comps4})
    return claims


def _combine(verdicts: list[str]) -> str:
    if any(v == "does not hold" for v in verdicts):
        return "does not hold"
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    reasons = [v for v in verdicts if v.startswith("inconclusive")]
    return reasons[0] if reasons else "inconclusive"


def _fmt(mean: float, std: float, digits: int) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _n_params(cfg: ModelConfig) -> int:
    from .models.factory import build_model

    return sum(p.numel() for p in build_model(cfg).parameters())


def config_dict(cfg: BenchmarkConfig) -> dict:
    """The config as plain JSON-able data that :class:`BenchmarkConfig` reads back (paths absolute)."""
    d = _clean_json(json.loads(cfg.model_dump_json()))
    for k in ("label_fraction", "seed"):  # set per cell, not in the finetune section
        d["finetune"].pop(k, None)
    return d


def _yaml_dump(cfg: BenchmarkConfig) -> str:
    import yaml

    return yaml.safe_dump(config_dict(cfg), sort_keys=False, allow_unicode=True)


def _default_command(out: Path) -> str:
    if Path(sys.argv[0]).name == "rcl":
        return " ".join(["rcl"] + [shlex.quote(a) for a in sys.argv[1:]])
    return f"rcl.benchmark.run_benchmark(config, out={str(out)!r})  # Python API"


def _report(runner: _Runner, out_name: str, command: str, seconds: float, started: str) -> tuple[str, dict]:
    import torch

    from .reporting import markdown_table

    cfg = runner.cfg
    stats = _aggregate(runner)
    noisy = _noisy_rows(runner)
    claims = _claims(cfg, stats)
    n_train = runner.n_train
    fr = cfg.label_fractions
    k_of = {f: max(1, round(f * n_train)) for f in fr}
    pairs = cfg.expand(None)
    mcfg = cfg.model
    n_params = _n_params(mcfg)
    rcl_cfg = cfg.pretrain.rcl_config()
    bcfg = cfg.pretrain.baseline_config("n2v")

    rows_json: list[dict] = []
    md: list[str] = []
    md.append(f"# rcl benchmark — {cfg.name}\n\n")
    md.append(f"Run folder `{out_name}`, started {started}, {seconds / 60:.1f} min of wall time in this run "
              f"({len(runner.computed)} cells computed, {len(runner.cached)} reused from the cache).\n\n")
    md.append(f"Training images: `{cfg.data.train}` ({n_train} images, {cfg.data.channels} channel(s)); "
              f"pre-training collection noised once with `{cfg.train_noise}` (seed {cfg.noise_seed}); fine-tuning on "
              f"the clean labelled images with fresh `{cfg.train_noise}` noise per crop. Test noise drawn by the "
              f"protocol with seed {EVAL_SEED} (docs/protocol.md). PSNR in dB, SSIM in [0, 1]; fine-tuned rows are "
              f"mean ± sample std over seeds {cfg.seeds}; pre-training uses one seed ({cfg.pretrain.seed}), so "
              "0-label rows have no spread.\n\n")
    budget = (f"**Compute budget (read before comparing with published numbers):** {mcfg.arch} width {mcfg.width} "
              f"depth {mcfg.depth} ({n_params / 1e6:.2f} M parameters); pre-training {cfg.pretrain.steps} steps "
              f"(RCL: {rcl_cfg.batch_images} images × 2 crops of {rcl_cfg.crop_size}²; baselines: "
              f"{bcfg.batch_size} crops of {bcfg.crop_size}²); fine-tuning {cfg.finetune.steps} steps of "
              f"{cfg.finetune.batch_size} crops of {cfg.finetune.crop_size}²; CPU only ({_cpu_name()}, "
              f"{torch.get_num_threads()} torch threads). The published networks are larger and trained far longer "
              "on GPUs (DnCNN-S: 17 layers × 64 channels, ≈0.56 M parameters), so expect our numbers below theirs.")
    md.append(budget + "\n\n")

    # -- main tables
    md.append("\n## Results\n")
    frac_cols = [(f"f{_frac_tag(f)}", f"{f * 100:g} % ({k_of[f]} img)") for f in fr]
    for t, n in pairs:
        pn, sn, nimg = noisy[(t, n)]
        tsc = cfg.test_set(t)
        crop = f", centre crops ≤ {tsc.crop}²" if tsc.crop else ""
        md.append(f"\n### {t}, {_noise_label(n)} (`{n}`, {nimg} images{crop})\n")
        for metric, digits, label in (("psnr", 2, "PSNR (dB)"), ("ssim", 4, "SSIM")):
            rows = []
            val = pn if metric == "psnr" else sn
            rows.append({"method": "noisy input", "zero": f"{val:.{digits}f}"})
            if metric == "psnr":
                rows_json.append({"kind": "noisy", "test": t, "noise": n, "psnr": pn, "ssim": sn, "n_images": nimg})
            b = stats.get(("bm3d", t, n))
            if b is not None:
                extra = "" if b.n_images == nimg else f", {b.n_images} of {nimg} images"
                rows.append({"method": f"BM3D (σ known{extra})", "zero": f"{getattr(b, metric):.{digits}f}"})
                if metric == "psnr":
                    rows_json.append({"kind": "bm3d", "test": t, "noise": n, "psnr": b.psnr, "ssim": b.ssim,
                                      "n_images": b.n_images})
            for m in cfg.methods:
                r = {"method": m if m != "none" else "none (scratch)"}
                d = stats.get(("direct", m, t, n))
                r["zero"] = f"{getattr(d, metric):.{digits}f}" if d else "—"
                if d is not None and metric == "psnr":
                    rows_json.append({"kind": "direct", "method": m, "test": t, "noise": n, "psnr": d.psnr,
                                      "ssim": d.ssim, "predictor": "n2s_predict" if m == "n2s" else "forward",
                                      "n_images": d.n_images})
                for f, (key, _) in zip(fr, frac_cols):
                    s = stats.get(("ft", m, f, t, n))
                    r[key] = _fmt(getattr(s, metric), getattr(s, metric + "_std"), digits) if s else "—"
                    if s is not None and metric == "psnr":
                        rows_json.append({"kind": "finetuned", "method": m, "fraction": f, "labelled_images": k_of[f],
                                          "test": t, "noise": n, "psnr_mean": s.psnr, "psnr_std": s.psnr_std,
                                          "ssim_mean": s.ssim, "ssim_std": s.ssim_std, "n_seeds": s.n,
                                          "n_images": s.n_images})
                rows.append(r)
            cols = [("method", "method", ""), ("zero", "0 labels", "")] + [(k, h, "") for k, h in frac_cols]
            md.append(f"\n{label}:\n\n" + markdown_table(rows, cols))
    md.append("\n'0 labels' = the pre-trained network used directly (rcl, n2v, ne2ne: plain forward pass; n2s: "
              "Noise2Self's J-invariant inference, `n2s_predict`); simclr and none are not denoisers without "
              "labels. 'x % (k img)' = fine-tuned on k labelled training images. Figure: `psnr_vs_fraction.png`; "
              "sample restorations: `samples.png`.\n")

    # -- BM3D check
    md.append("\n## BM3D protocol check\n\n")
    chk = None
    for t, n in cfg.expand(cfg.bm3d.where) if cfg.bm3d.enabled else []:
        if t.lower() == BM3D_CHECK["test"] and n == BM3D_CHECK["noise"]:
            b = stats[("bm3d", t, n)]
            full = b.n_images == 68 and cfg.test_set(t).crop is None
            diff = b.psnr - BM3D_CHECK["published"]
            ok = abs(diff) <= BM3D_CHECK["tolerance"]
            chk = {"test": t, "noise": n, "ours": b.psnr, "published": BM3D_CHECK["published"], "diff_db": diff,
                   "within_tolerance": ok, "tolerance_db": BM3D_CHECK["tolerance"], "n_images": b.n_images,
                   "full_test_set": full}
            note = "" if full else (f" — only {b.n_images} image(s){' (cropped)' if cfg.test_set(t).crop else ''}, "
                                    "so not comparable with the published mean")
            md.append(f"BM3D on {t} σ=25: **{b.psnr:.2f} dB** vs published 28.57 dB (Dabov et al. 2007, as reported "
                      f"by Zhang et al. 2017, Table II): difference {diff:+.2f} dB, "
                      f"**{'within' if ok else 'outside'} 0.3 dB**{note}.\n")
    if chk is None:
        md.append("BM3D on BSD68 σ=25 was not run in this configuration (enable `bm3d` with `where` on a test set "
                  "named BSD68 with `gaussian:25`).\n")

    # -- published
    md.append("\n## Published numbers\n\n")
    pub_rows = []
    for p in PUBLISHED:
        ours, what = "—", "not run"
        tsel = [t for t, n in pairs if t.lower() == p["test"].lower() and n == p["noise"]]
        if tsel:
            t = tsel[0]
            kind = p["ours"]
            if kind[0] == "bm3d":
                s, what = stats.get(("bm3d", t, p["noise"])), "our BM3D"
            elif kind[0] == "direct":
                s, what = stats.get(("direct", kind[1], t, p["noise"])), f"our {kind[1]} (0 labels)"
            else:
                s, what = stats.get(("ft", kind[1], kind[2], t, p["noise"])), f"our {kind[1]} @ 100 % labels"
            if s is not None:
                ours = f"{s.psnr:.2f}"
            else:
                what = "not run"
        pub_rows.append({"test": p["test"], "noise": _noise_label(p["noise"]), "method": p["method"],
                         "published": p["psnr"], "source": p["source"], "ours": ours, "what": what})
    md.append(markdown_table(pub_rows, [("test", "test set", ""), ("noise", "noise", ""), ("method", "method", ""),
                                        ("published", "published PSNR", ".2f"), ("source", "source", ""),
                                        ("ours", "ours", ""), ("what", "our row", "")]))
    md.append("\n" + budget + "\n")

    # -- ablations
    abl_json = []
    if cfg.ablations:
        fa, s0 = cfg.abl_fraction, cfg.seeds[0]
        apairs = cfg.expand(cfg.ablation_eval)
        md.append(f"\n## Ablations (RCL pre-training variants)\n\nPSNR (dB) directly after pre-training (0 labels) / "
                  f"after fine-tuning at {fa * 100:g} % labels ({max(1, round(fa * n_train))} img) with seed {s0}; "
                  "one seed, so differences below the seed std of the main tables are not meaningful.\n\n")

        def single(row):
            return {(c.test, c.noise): runner.results[c.key] for c in runner.all_cells
                    if isinstance(c, EvalCell) and c.row == row}

        arows = []
        base_d, base_f = single(("direct", "rcl")), single(("ft", "rcl", fa, s0))
        variants = [("rcl (base config)", "—", base_d, base_f)]
        for a in cfg.ablations:
            ov = ", ".join(f"{k}={v}" for k, v in a.rcl.items())
            variants.append((a.name, ov, single(("abl-direct", a.name)), single(("abl-ft", a.name))))
        for name, ov, dd, ff in variants:
            r = {"variant": name, "overrides": ov}
            for t, n in apairs:
                d, f = dd.get((t, n)), ff.get((t, n))
                r[f"{t}|{n}"] = f"{d['psnr']:.2f} / {f['psnr']:.2f}" if d and f else (
                    f"{d['psnr']:.2f} / —" if d else "—")
                abl_json.append({"kind": "ablation", "variant": name, "overrides": ov, "test": t, "noise": n,
                                 "direct_psnr": d["psnr"] if d else None, "direct_ssim": d["ssim"] if d else None,
                                 "finetuned_psnr": f["psnr"] if f else None, "finetuned_ssim": f["ssim"] if f else None,
                                 "fraction": fa, "seed": s0})
            arows.append(r)
        md.append(markdown_table(arows, [("variant", "variant", ""), ("overrides", "overrides", "")] +
                                 [(f"{t}|{n}", f"{t} {_noise_label(n)}", "") for t, n in apairs]))
        if "rcl" not in cfg.methods or fa not in fr:
            md.append("\nThe base row needs method rcl and the ablation fraction among `label_fractions`.\n")

    # -- claims
    md.append("\n## Claims\n\nEach claim is judged only from the numbers above. A comparison A vs B at one test "
              "set/noise/fraction is a **win** if mean PSNR(A) − mean PSNR(B) over seeds exceeds the larger of the "
              "two seed standard deviations, a **loss** if it is below minus that spread, and a **tie** otherwise "
              "(with one seed there is no spread estimate and every comparison is a tie). A claim **holds** if "
              "every comparison it covers is a win, **does not hold** if any is a loss, and is **inconclusive "
              "(difference within seed std)** otherwise. The network and budget are far smaller than the paper's, "
              "so a verdict here is about this budget only.\n")
    for c in claims:
        comps = c["comparisons"]
        counts = {o: sum(1 for x in comps if x["outcome"] == o) for o in ("win", "tie", "loss", "tie (one seed)")}
        md.append(f"\n**Claim {c['id']}: {c['claim']}** — **{c['verdict']}**.\n\n")
        md.append(f"- Rule: {c['rule']}\n")
        if comps:
            md.append(f"- Comparisons: {counts['win']} win, {counts['tie'] + counts['tie (one seed)']} tie, "
                      f"{counts['loss']} loss (of {len(comps)}); mean Δ = "
                      f"{sum(x['delta_db'] for x in comps) / len(comps):+.2f} dB.\n")
        if c["id"] == 1:
            md.append(f"- (a) beats scratch: {c['parts']['a']}; (b) most at small fractions: {c['parts']['b']}"
                      f"{'; ' + c['detail'] if c['detail'] else ''}.\n")
        if c["id"] == 2 and comps:
            gaps = "; ".join(f"{x['test']} {_noise_label(x['noise'])}: {x['delta_db']:+.2f} dB" for x in comps)
            md.append(f"- Gap rcl@{min(fr):g} − none@100 %: {gaps}.\n")
        if c["id"] == 3:
            if c["parts"]:
                md.append("- Per baseline: " + "; ".join(f"{k}: {v}" for k, v in c["parts"].items()) + ".\n")
            if c["not_run"]:
                md.append(f"- Not run: {', '.join(c['not_run'])}.\n")
        if comps:
            crow = [{"cmp": f"{x['a']} vs {x['b']}", "tn": f"{x['test']} {_noise_label(x['noise'])}",
                     "f": f"{x['fraction']:g}", "d": f"{x['delta_db']:+.2f}",
                     "s": f"{x['spread_db']:.2f}" if math.isfinite(x["spread_db"]) else "—", "o": x["outcome"]}
                    for x in comps]
            md.append("\n<details><summary>all comparisons</summary>\n\n" +
                      markdown_table(crow, [("cmp", "comparison", ""), ("tn", "test set / noise", ""),
                                            ("f", "fraction", ""), ("d", "Δ PSNR (dB)", ""),
                                            ("s", "larger seed std (dB)", ""), ("o", "outcome", "")]) +
                      "\n</details>\n")

    # -- command and config
    md.append(f"\n## Command and config\n\n```\n{command}\n```\n\n```yaml\n{_yaml_dump(cfg)}```\n")
    md.append(f"\nrcl {__import__('rcl').__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
              f"{_cpu_name()}, {torch.get_num_threads()} torch threads.\n")

    summary = {"rows": rows_json + abl_json, "claims": claims, "bm3d_check": chk, "published": pub_rows,
               "budget": {"model": mcfg.model_dump(), "parameters": n_params, "pretrain_steps": cfg.pretrain.steps,
                          "finetune_steps": cfg.finetune.steps, "cpu": _cpu_name(),
                          "torch_threads": torch.get_num_threads()}}
    return "".join(md), summary


def _figures(runner: _Runner, work: Path) -> None:
    from .data.noise import parse_noise_spec
    from .evaluation.protocol import evaluate
    from .reporting import plot_metric_vs_fraction, plot_restorations

    cfg = runner.cfg
    stats = _aggregate(runner)
    noisy = _noisy_rows(runner)
    panels = []
    for t, n in cfg.expand(None):
        series = {}
        for m in cfg.methods:
            pts = [(f, stats[("ft", m, f, t, n)]) for f in cfg.label_fractions if ("ft", m, f, t, n) in stats]
            series[m] = ([f for f, _ in pts], [s.psnr for _, s in pts], [s.psnr_std for _, s in pts])
        hl = {"noisy input": noisy[(t, n)][0]}
        b = stats.get(("bm3d", t, n))
        if b is not None and b.n_images == noisy[(t, n)][2]:
            hl["BM3D"] = b.psnr
        d = stats.get(("direct", "rcl", t, n))
        if d is not None:
            hl["rcl, 0 labels"] = d.psnr
        panels.append((f"{t} {_noise_label(n)}", series, hl))
    plot_metric_vs_fraction(panels, work / "psnr_vs_fraction.png")

    # samples: one image of the first test set, at σ=25 if evaluated, else the first noise
    t0 = cfg.data.test[0]
    noise = "gaussian:25" if "gaussian:25" in t0.noises else t0.noises[0]
    limit = runner._limit(t0)
    clean_all, noisy_all, sig_all = runner.noisy_test(t0.name, noise, limit)
    clean, noisy_img = clean_all.subset([0]), noisy_all.subset([0])
    fmin, s0 = min(cfg.label_fractions), cfg.seeds[0]
    dens = {}
    if cfg.bm3d.enabled:
        from .evaluation.bm3d_baseline import bm3d_denoiser

        dens["BM3D (σ known)"] = bm3d_denoiser(profile=cfg.bm3d.profile)
    cells = {c.key: c for c in runner.model_cells}
    if "rcl" in runner.pretrained:
        dens["rcl, 0 labels"] = runner.denoiser("plain", runner.pretrained["rcl"])
    for m in cfg.methods:
        c = cells[f"finetune {m} f={fmin:g} seed={s0}"]
        dens[f"{m} + {fmin * 100:g} %"] = runner.denoiser("plain", c)
    res, outs = evaluate(dens, clean, parse_noise_spec(noise), seed=EVAL_SEED, noisy=noisy_img, sigmas=sig_all[:1],
                         keep_outputs=True)
    first = next(iter(res.values())).scores[0]
    cols = [(f"noisy\n{first.psnr_noisy:.2f} dB", noisy_img.images)]
    cols += [(f"{k}\n{res[k].scores[0].psnr:.2f} dB", v) for k, v in outs.items()]
    cols += [("clean", clean.images)]
    plot_restorations(cols, [f"{clean.names[0]} ({t0.name}) {_noise_label(noise)}"], work / "samples.png", crop=160)


def run_benchmark(config: BenchmarkConfig, out: Path, progress: bool = True, command: str | None = None) -> Path:
    """Run (or resume) a benchmark into the run folder ``out`` and write its report.

    Cells whose cached output carries the same config hash are reused; the others are computed.
    The folder is built as ``.<out>.partial`` and renamed to ``out`` at the end (an interrupted
    run is resumed from the ``.partial`` folder by the next call; a finished ``out`` is reopened).

    Args:
        config: a validated :class:`BenchmarkConfig` (see :func:`load_config`).
        out: run folder; an existing one must be an rcl benchmark folder (or empty).
        progress: show a tqdm bar over the cells (and the training bars).
        command: the command line to record in the report (default: from ``sys.argv``).

    Returns:
        ``out``.

    Raises:
        FileExistsError: ``out`` exists and is not an rcl benchmark folder, or both ``out`` and
            its ``.partial`` folder exist.
        ValueError / FileNotFoundError / ImageReadError: bad data (names the file).
    """
    out = Path(out)
    work = out.parent / f".{out.name}.partial"
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out}: exists and is not a folder; choose another output folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise FileExistsError(f"{out}: exists and is not an rcl benchmark folder; choose another output folder")
        if work.exists():
            raise FileExistsError(f"both {out} and {work} exist; remove one of them")
        out.rename(work)  # reopen: the cache is reused, the report rewritten
        for f in ("report.md", "results.json"):  # never leave a report that may not match the cells
            (work / f).unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("rcl benchmark run folder (cache/ holds resumable cells)\n")
    command = command or _default_command(out)
    started = f"{datetime.now():%Y-%m-%d %H:%M:%S}"
    t0 = time.time()

    try:
        runner = _Runner(config, work, progress)
        runner.run()
        import torch

        with torch.no_grad():
            _figures(runner, work)
        seconds = time.time() - t0
        md, summary = _report(runner, out.name, command, seconds, started)
        results = {"rcl_version": __import__("rcl").__version__, "name": config.name, "command": command,
                   "started": started, "seconds": seconds, "config": config_dict(config),
                   "cells": {"total": len(runner.computed) + len(runner.cached), "computed": runner.computed,
                             "cached": runner.cached},
                   **summary}
        _atomic_text(work / "config.yaml", _yaml_dump(config))
        _atomic_json(work / "results.json", _clean_json(results))
        _atomic_text(work / "report.md", md)
    except BaseException:
        print(f"benchmark stopped; finished cells are kept in {work} — rerun the same command to resume",
              file=sys.stderr, flush=True)
        raise
    work.rename(out)
    if progress:
        print(f"report: {out / 'report.md'} ({len(runner.computed)} cells computed, {len(runner.cached)} cached, "
              f"{seconds / 60:.1f} min)", flush=True)
    return out
