"""Label-efficient denoising on REAL camera noise (PolyU): the ``real-polyu`` experiment (GitHub issue
"Real camera noise"). Resumable; ``--smoke`` runs a tiny version in well under two minutes.

    OMP_NUM_THREADS=2 python benchmarks/real_polyu.py --polyu ../shared/data/real/PolyU \\
        --live1 ../shared/data/train/LIVE1 --config benchmarks/real-polyu.yaml --out runs/real-polyu \\
        --threads 2 --report docs/real-noise/polyu.md
    OMP_NUM_THREADS=1 python benchmarks/real_polyu.py --polyu ../shared/data/real/PolyU \\
        --live1 ../shared/data/train/LIVE1 --config benchmarks/real-polyu.yaml --out /tmp/polyu-smoke --smoke

**Data.** ``--polyu DIR`` holds ``noisy/NAME.jpg`` and ``clean/NAME.jpg`` (the PolyU real-world noisy
image dataset: Xu, Li, Liang, Zhang, Zhang, "Real-world Noisy Image Denoising: A New Benchmark",
arXiv 1804.02603; 512×512 sRGB crops; **non-commercial research use only**), paired by file name
(:func:`rcl.data.real_pairs.matched_pairs`); ``--live1 DIR`` clean RGB photographs (LIVE1) for the
synthetic-noise network. Images are (3, H, W) float tensors in [0, 1].

**What runs** (config ``benchmarks/real-polyu.yaml``, validated by :class:`RealPolyUConfig`). For
each seed s of ``seeds``, the pairs are split by scene, ``scene_split(names, (0.6, 0.2, 0.2),
seed=s)`` (no scene in two parts), and s also seeds every training of that split:

1. pre-training on the NOISY images of the training scenes only (no clean image, no validation or
   test image), ``pretrain.steps`` steps for every method, through :func:`rcl.training.fit`:
   RCL with pixel-shuffle down-sampling (PD) and without (Residual Contrastive Learning: Dong et
   al., IJCAI 2022, arXiv 2106.10070), Noise2Void with PD (Krull, Buchholz, Jug, CVPR 2019) and
   Neighbor2Neighbor (Huang et al., CVPR 2021). PD: Zhou et al., AAAI 2020; AP-BSN, Lee, Son, Lee,
   CVPR 2022 (stride 2, chosen on seed 0's validation scenes in docs/design.md);
2. supervised fine-tuning on K real pairs of the training scenes (K in ``label_counts``;
   :func:`rcl.methods.supervised.fraction_for_label_count`), from fresh weights ("scratch") and
   from each pre-trained network, with one budget (``finetune``) for all;
3. zero-label rows: each pre-trained network as it is, restoring at its own inference PD stride
   (``pretrain.pd.inference``, written to its checkpoint as ``pd_stride_inference``);
4. CBM3D (Dabov, Foi, Katkovnik, Egiazarian, 2007; bm3d's RGB path as
   :mod:`rcl.evaluation.bm3d_baseline` wraps it) with σ estimated per noisy image
   (:func:`rcl.evaluation.noise_level.estimate_sigma`, ``bm3d.estimator``) and with the oracle
   σ = std(noisy − clean) (an upper bound);
5. a network trained on SYNTHETIC noise: clean LIVE1, fresh ``gaussian:5-50`` noise per crop,
   supervised; trained once and scored on every seed's test pairs.

Every row is scored on the test scenes' pairs by :func:`rcl.evaluation.protocol.evaluate` with
:class:`rcl.data.noise.RealNoise` (PSNR in dB and SSIM on uint8-quantised outputs, with the noisy
input's scores; σ per image = the oracle std(noisy − clean) on the [0, 1] scale).

**Cells.** Each training and each evaluation is a cell: a folder ``OUT/cells/LABEL-HASH`` keyed by a
SHA-256 of what determines it (its config, the network it starts from, the SHA-256 of every image
file it reads, the centre crop). Checkpoints are written by :func:`rcl.checkpoint.save_checkpoint`
(atomic), the cell record ``cell.json`` last (temp file + ``os.replace``), with the cell's wall and
CPU time. A cell whose ``cell.json`` exists is reused: rerunning the command resumes an interrupted
run and computes nothing once it is complete.

**Outputs.** The Markdown report (``--report``, default ``OUT/report.md``), a results JSON beside it
(the report's name with ``.json``) and ``polyu_crops.png`` beside it.

**Errors.** Bad input (a folder without ``noisy/`` or ``clean/``, unpaired or unparsable file names,
an unreadable or invalid config, an unknown config key, a K larger than a training part, crops larger
than the images, …) prints one line ``error: …`` naming the culprit and exits with status 2 before
anything is written.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

REPO = Path(__file__).resolve().parents[1]
try:  # a checkout without `pip install -e .`: use its sources
    import rcl  # noqa: F401
except ImportError:  # pragma: no cover - depends on the install
    sys.path.insert(0, str(REPO / "src"))

from pydantic import Field, ValidationError, field_validator, model_validator  # noqa: E402

from rcl.configs import Seed, StrictConfig  # noqa: E402
from rcl.methods.n2v import N2VConfig  # noqa: E402
from rcl.methods.ne2ne import Ne2NeConfig  # noqa: E402
from rcl.methods.rcl import RCLConfig  # noqa: E402

CELL_VERSION = 1
"""Part of every cell key: bump it when a change of this script changes what a cell computes."""

LICENCE = ("PolyU real-world noisy image dataset: non-commercial research use only (the dataset's "
           "licence); no image of it is redistributed here, the figure shows one crop for research use.")
SOURCE = ('Xu, Li, Liang, Zhang, Zhang, "Real-world Noisy Image Denoising: A New Benchmark", '
          "arXiv 1804.02603 (2018)")

NOISY_ROW = "noisy input"
CBM3D_EST_ROW = "CBM3D (σ estimated)"
CBM3D_ORACLE_ROW = "CBM3D (σ oracle)"
SYNTH_ROW = "synthetic-noise network"
SCRATCH_ROW = "scratch"


@dataclass(frozen=True)
class Pretrained:
    """One pre-trained network: its key, row name, rcl method name, whether it trains with PD."""

    key: str
    row: str
    method: str
    pd: bool


PRETRAINED = (Pretrained("rcl_pd", "RCL (PD)", "rcl", True),
              Pretrained("rcl", "RCL (no PD)", "rcl", False),
              Pretrained("n2v_pd", "N2V (PD)", "n2v", True),
              Pretrained("ne2ne", "Ne2Ne", "ne2ne", False))
"""The pre-trained networks, in the order of the tables."""

ZERO_LABEL_ROWS = (NOISY_ROW, CBM3D_EST_ROW, CBM3D_ORACLE_ROW, SYNTH_ROW, *(p.row for p in PRETRAINED))
"""Rows of the zero-label table."""


def k_rows(k: int) -> tuple[str, ...]:
    """Rows of the table for K labelled pairs."""
    return (NOISY_ROW, CBM3D_EST_ROW, CBM3D_ORACLE_ROW, SYNTH_ROW,
            *(f"{name} + {k}" for name in (SCRATCH_ROW, *(p.row for p in PRETRAINED))))


SMOKE = {
    "seeds": [0], "label_counts": [1, 2], "center_crop": 64,
    "model": {"width": 4, "depth": 2},
    "pretrain": {"steps": 3, "rcl": {"batch_images": 2, "crop_size": 16}, "n2v": {"batch_size": 2, "crop_size": 16},
                 "ne2ne": {"batch_size": 2, "crop_size": 16}},
    "finetune": {"steps": 3, "batch_size": 2, "crop_size": 16},
    "synthetic": {"steps": 3, "batch_size": 2, "crop_size": 16},
    "bm3d": {"max_images": 1},
    "figure": {"label_count": 2, "crop": 64},
    "targets": {"label_count": 2},
}
"""What ``--smoke`` replaces in the config (merged key by key; the rest of the config stays)."""


class InputError(Exception):
    """Bad input: printed as one ``error: …`` line, exit status 2, nothing written."""


# ============================================================================ config

OWNED = ("steps", "seed", "pd_stride", "pd_stride_inference")
"""Fields of the methods' configs that the runner sets (pretrain.steps, the seed, pretrain.pd)."""


class SplitSection(StrictConfig):
    """Scene-disjoint split (:func:`rcl.data.real_pairs.scene_split`).

    Attributes:
        fractions: (train, validation, test) shares of the crops, non-negative, summing to 1.
        by: "scene" (the scene word, across cameras) or "capture" (camera + settings + scene).
    """

    fractions: Annotated[list[float], Field(min_length=3, max_length=3)] = [0.6, 0.2, 0.2]
    by: Literal["scene", "capture"] = "scene"

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v):
        if any(f < 0 for f in v) or abs(sum(v) - 1) > 1e-6 or v[0] <= 0 or v[2] <= 0:
            raise ValueError(f"must be three non-negative shares summing to 1 with positive train and test "
                             f"shares, got {v}")
        return v


class NetworkSection(StrictConfig):
    """The network of every row (RGB → RGB): ``rcl.models.ModelConfig`` without the channels."""

    arch: Literal["unet", "dncnn"] = "unet"
    width: int = Field(16, ge=1, le=512)
    depth: int = Field(3, ge=0, le=8)


class PDInference(StrictConfig):
    """Inference PD stride (1 to 16; 1: the full image) of the zero-label PD networks."""

    rcl: int = Field(1, ge=1, le=16)
    n2v: int = Field(2, ge=1, le=16)


class PDSection(StrictConfig):
    """PD of RCL (PD) and N2V (PD): training ``stride`` (2 to 16) and the inference strides."""

    stride: int = Field(2, ge=2, le=16)
    inference: PDInference = PDInference()


class PretrainSection(StrictConfig):
    """Self-supervised pre-training (``steps`` for every method; per-method config fields)."""

    steps: int = Field(800, ge=1)
    pd: PDSection = PDSection()
    rcl: RCLConfig = RCLConfig()
    n2v: N2VConfig = N2VConfig()
    ne2ne: Ne2NeConfig = Ne2NeConfig()

    @model_validator(mode="after")
    def _runner_fields(self):
        for name in ("rcl", "n2v", "ne2ne"):
            owned = [k for k in OWNED if k in getattr(self, name).model_fields_set]
            if owned:
                raise ValueError(f"pretrain.{name}.{owned[0]} is set by the runner (pretrain.steps, the seeds, "
                                 f"pretrain.pd); remove it")
        return self


class FinetuneSection(StrictConfig):
    """Supervised fine-tuning on K real pairs (the same budget for every row)."""

    steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(5e-4, gt=0, le=1)
    loss: Literal["l2", "l1"] = "l2"


class SyntheticSection(StrictConfig):
    """The synthetic-noise network: supervised on clean LIVE1 with fresh synthetic ``noise`` per crop."""

    noise: str = "gaussian:5-50"
    steps: int = Field(800, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(5e-4, gt=0, le=1)
    seed: Seed = 0

    @field_validator("noise")
    @classmethod
    def _noise(cls, v):
        from rcl.data.noise import parse_noise_spec

        if not parse_noise_spec(v).synthetic:
            raise ValueError(f"must be a synthetic noise (e.g. gaussian:5-50), got {v!r}")
        return v


class BM3DSection(StrictConfig):
    """CBM3D rows: the σ estimator, bm3d's profile, and at most ``max_images`` test images (null: all)."""

    estimator: str = "wavelet-box3"
    profile: Literal["np", "refilter", "vn", "high", "lc", "vn_old", "deb"] = "np"
    max_images: Optional[int] = Field(None, ge=1)

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, v):
        from rcl.evaluation.noise_level import ESTIMATORS

        if v not in ESTIMATORS:
            raise ValueError(f"unknown estimator {v!r}; choose one of {', '.join(ESTIMATORS)}")
        return v


class FigureSection(StrictConfig):
    """The crops figure: fine-tuned rows with ``label_count`` labels, one test image, a crop window."""

    label_count: int = Field(5, ge=1)
    image: Optional[str] = None
    crop: int = Field(128, ge=8)


class TargetsSection(StrictConfig):
    """The targets: RCL (PD) + ``label_count`` against the other rows; the oracle margin in dB."""

    label_count: int = Field(5, ge=1)
    oracle_margin_db: float = Field(0.3, ge=0)


class RealPolyUConfig(StrictConfig):
    """The ``real-polyu`` config (benchmarks/real-polyu.yaml); strict: unknown keys are refused."""

    name: str = "real-polyu"
    split: SplitSection = SplitSection()
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0, 1]
    center_crop: Optional[int] = Field(None, ge=8)
    model: NetworkSection = NetworkSection()
    pretrain: PretrainSection = PretrainSection()
    finetune: FinetuneSection = FinetuneSection()
    label_counts: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [1, 5, 10]
    synthetic: SyntheticSection = SyntheticSection()
    bm3d: BM3DSection = BM3DSection()
    figure: FigureSection = FigureSection()
    targets: TargetsSection = TargetsSection()

    @model_validator(mode="after")
    def _consistent(self):
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeated seed in {self.seeds}")
        if len(set(self.label_counts)) != len(self.label_counts):
            raise ValueError(f"label_counts: repeated count in {self.label_counts}")
        for where, k in (("figure.label_count", self.figure.label_count),
                         ("targets.label_count", self.targets.label_count)):
            if k not in self.label_counts:
                raise ValueError(f"{where} {k} is not one of label_counts {self.label_counts}")
        for p in PRETRAINED:  # every derived method config must validate, and suit the network
            self.pretrain_config(p, self.seeds[0])
        self.finetune_config(self.label_counts[0], max(self.label_counts), self.seeds[0])
        return self

    def dump(self) -> dict:
        """The config as JSON-able data, without the method fields the runner sets (:data:`OWNED`)."""
        owned = set(OWNED)
        return self.model_dump(mode="json", exclude={"pretrain": {"rcl": owned, "n2v": owned, "ne2ne": owned}})

    # --- the configs the runner trains with

    def body(self):
        """The :class:`rcl.models.ModelConfig` of every network (3 → 3 channels)."""
        from rcl.models import ModelConfig

        return ModelConfig(arch=self.model.arch, in_channels=3, out_channels=3, width=self.model.width,
                           depth=self.model.depth)

    def pretrain_config(self, p: Pretrained, seed: int):
        """The method config of pre-trained network ``p`` for ``seed`` (steps, seed and PD set here).

        Raises:
            ValueError: the config does not validate, or PD sub-images are below the network's minimum.
        """
        from rcl.methods.rcl import check_pd_network
        from rcl.models import build_model

        base = getattr(self.pretrain, p.method)
        fields = {**base.model_dump(), "steps": self.pretrain.steps, "seed": seed}
        if p.pd:
            fields.update(pd_stride=self.pretrain.pd.stride,
                          pd_stride_inference=getattr(self.pretrain.pd.inference, p.method))
        try:
            cfg = type(base).model_validate(fields)
        except ValidationError as exc:
            raise ValueError(f"pretrain.{p.method} ({p.row}): {_pydantic_line(exc)}") from None
        if p.pd:
            try:
                check_pd_network(cfg, build_model(self.body()))
            except ValueError as exc:
                raise ValueError(f"pretrain.{p.method} ({p.row}): {exc}") from None
        return cfg

    def finetune_config(self, k: int, n_train: int, seed: int):
        """The supervised config that fine-tunes on exactly ``k`` of ``n_train`` pairs."""
        from rcl.methods.supervised import FinetuneConfig, fraction_for_label_count

        return FinetuneConfig(**self.finetune.model_dump(), label_fraction=fraction_for_label_count(k, n_train),
                              seed=seed, val_every=0)

    def synthetic_config(self):
        """The supervised config of the synthetic-noise network (every LIVE1 image labelled)."""
        from rcl.methods.supervised import FinetuneConfig

        s = self.synthetic
        return FinetuneConfig(steps=s.steps, batch_size=s.batch_size, crop_size=s.crop_size, lr=s.lr,
                              label_fraction=1.0, seed=s.seed, val_every=0)


def _pydantic_line(exc: ValidationError) -> str:
    """The first error of a pydantic ValidationError on one line: ``a.b: message (and N more)``."""
    errs = exc.errors()
    e = errs[0]
    loc = ".".join(str(x) for x in e["loc"])
    msg = str(e["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return " ".join(f"{loc + ': ' if loc else ''}{msg}{more}".split())


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path, smoke: bool = False, seeds: str | None = None) -> RealPolyUConfig:
    """Read and validate the YAML config (``smoke``: with :data:`SMOKE` merged in first).

    Raises:
        InputError: unreadable file, invalid YAML or a repeated key, not a mapping, an unknown key
            or a bad value (one line naming the file and the key).
    """
    from rcl.configs import ConfigFileError, load_yaml

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the config ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = load_yaml(text, str(path))
    except ConfigFileError as exc:
        raise InputError(str(exc)) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    if smoke:
        data = _merge(data, SMOKE)
    if seeds is not None:
        try:
            data = {**data, "seeds": [int(x) for x in seeds.split(",")]}
        except ValueError:
            raise InputError(f"--seeds {seeds}: give comma-separated integers, e.g. 0 or 0,1") from None
    try:
        return RealPolyUConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}{' (with the --smoke settings)' if smoke else ''}: {_pydantic_line(exc)}") from None


# ============================================================================ data

@dataclass
class Data:
    """The PolyU pairs and LIVE1, loaded (and centre-cropped) once.

    Attributes:
        noisy, clean: ImageSets of the pairs, in the same (sorted) order; (3, H, W) in [0, 1].
        live1: the clean LIVE1 images (3, H, W).
        sha: file name → (noisy SHA-256, clean SHA-256) of the PolyU files.
        live1_sha: LIVE1 file name → SHA-256.
    """

    noisy: Any
    clean: Any
    live1: Any
    sha: dict
    live1_sha: dict

    def index(self, names) -> list[int]:
        pos = {n: i for i, n in enumerate(self.noisy.names)}
        return [pos[n] for n in names]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _center_crop(images, side: int | None, folder: Path):
    from rcl.data.datasets import ImageSet

    if side is None:
        return images
    out = []
    for name, im in zip(images.names, images.images):
        h, w = im.shape[1:]
        if min(h, w) < side:
            raise InputError(f"{folder / name}: {w}×{h} px, smaller than center_crop {side}")
        t, left = (h - side) // 2, (w - side) // 2
        out.append(im[:, t:t + side, left:left + side].contiguous())
    return ImageSet(out, list(images.names))


def load_data(polyu: Path, live1: Path, cfg: RealPolyUConfig) -> Data:
    """Pair, read and check the images (nothing is written).

    Raises:
        InputError: a missing folder (``noisy/`` or ``clean/`` of ``polyu``, ``live1``), unpaired
            or unreadable files, names that are not PolyU-style, images that are not RGB or that
            are smaller than the centre crop or a training crop.
    """
    from rcl.data.datasets import load_image_set
    from rcl.data.real_pairs import matched_pairs, parse_name

    polyu, live1 = Path(polyu), Path(live1)
    if not polyu.is_dir():
        raise InputError(f"--polyu {polyu}: no such folder")
    for sub in ("noisy", "clean"):
        if not (polyu / sub).is_dir():
            raise InputError(f"--polyu {polyu}: no {sub}/ folder in it (a PolyU folder holds noisy/NAME.jpg and "
                             f"clean/NAME.jpg)")
    if not live1.is_dir():
        raise InputError(f"--live1 {live1}: no such folder")
    try:
        pairs = matched_pairs(polyu / "noisy", polyu / "clean")
        for p in pairs:
            parse_name(p.name)
        noisy = load_image_set(polyu / "noisy", channels=None)
        clean = load_image_set(polyu / "clean", channels=None)
        live = load_image_set(live1, channels=3)
    except (OSError, ValueError) as exc:
        raise InputError(" ".join(str(exc).split())) from None
    if not (noisy.names == clean.names == [p.name for p in pairs]):
        raise InputError(f"--polyu {polyu}: the images read differ from the pairs matched by file name")
    for ims, folder in ((noisy, polyu / "noisy"), (clean, polyu / "clean")):
        if ims.channels != 3:
            raise InputError(f"{folder / ims.names[0]}: {ims.channels} channel(s); the PolyU pairs must be RGB")
    noisy = _center_crop(noisy, cfg.center_crop, polyu / "noisy")
    clean = _center_crop(clean, cfg.center_crop, polyu / "clean")
    live = _center_crop(live, cfg.center_crop, live1)
    for ims, folder, crop, what in (
            (noisy, polyu / "noisy", max(cfg.pretrain.rcl.crop_size, cfg.pretrain.n2v.crop_size,
                                         cfg.pretrain.ne2ne.crop_size, cfg.finetune.crop_size), "a training crop"),
            (live, live1, cfg.synthetic.crop_size, "synthetic.crop_size")):
        for name, im in zip(ims.names, ims.images):
            if min(im.shape[1:]) < crop:
                raise InputError(f"{folder / name}: {im.shape[2]}×{im.shape[1]} px"
                                 f"{' after the centre crop' if cfg.center_crop else ''}, smaller than {what} "
                                 f"({crop} px)")
    sha = {p.name: (_sha(p.noisy), _sha(p.clean)) for p in pairs}
    live_sha = {name: _sha(live1 / name) for name in live.names}
    return Data(noisy, clean, live, sha, live_sha)


def make_splits(names: list[str], cfg: RealPolyUConfig) -> dict[int, dict]:
    """Per seed: the scene-disjoint split (file names and scenes of train / val / test).

    Raises:
        InputError: the split is impossible, a part that must hold images is empty, or a K (or
            RCL's 2 images) exceeds a training part.
    """
    from rcl.data.real_pairs import scene_key, scene_split

    out = {}
    for s in cfg.seeds:
        try:
            sp = scene_split(names, tuple(cfg.split.fractions), seed=s, by=cfg.split.by)
        except ValueError as exc:
            raise InputError(f"split (seed {s}): {exc}") from None
        parts = {"train": list(sp.train), "val": list(sp.val), "test": list(sp.test)}
        for part in ("train", "test"):
            if not parts[part]:
                raise InputError(f"split (seed {s}): the {part} part is empty; give more scenes")
        n = len(parts["train"])
        if max(cfg.label_counts) > n or n < 2:
            raise InputError(f"split (seed {s}): {n} training pair(s), but label_counts go up to "
                             f"{max(cfg.label_counts)} (and RCL needs 2 images)")
        out[s] = {**parts, "scenes": {k: sorted({scene_key(x, cfg.split.by) for x in v}) for k, v in parts.items()}}
    if cfg.figure.image is not None and cfg.figure.image not in out[cfg.seeds[0]]["test"]:
        raise InputError(f"figure.image {cfg.figure.image!r} is not a test image of seed {cfg.seeds[0]}")
    return out


# ============================================================================ cells

def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically (temp file beside ``path``, then ``os.replace``)."""
    from rcl.data.io import atomic_write_bytes
    from rcl.reporting import finite_json

    text = json.dumps(finite_json(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_bytes(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def key_hash(key: dict) -> str:
    """SHA-256 hex digest of a cell key (canonical JSON)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Cells:
    """The resumable cells of a run folder: ``root/cells/LABEL-HASH16/`` with ``cell.json`` written last."""

    def __init__(self, root: Path, threads: int, t0: float):
        self.root = Path(root) / "cells"
        self.threads, self.t0 = threads, t0
        self.records: list[dict] = []
        self._seen: dict[str, dict] = {}

    @property
    def computed(self) -> int:
        return sum(r["computed_now"] for r in self.records)

    def get(self, label: str, key: dict, compute: Callable[[Path], dict]) -> dict:
        """The record of the cell ``key`` (computed by ``compute(cell_dir) -> result dict`` if not done).

        The record: label, hash, key, result, wall_s, cpu_s, threads, finished, dir; plus
        ``computed_now`` (not stored)."""
        key = {"cell_version": CELL_VERSION, **key}
        h = key_hash(key)
        if h in self._seen:  # asked for again in this invocation (e.g. a CBM3D image of the figure)
            return self._seen[h]
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        d = self.root / f"{label}-{h[:16]}"
        rec_path = d / "cell.json"
        if rec_path.is_file():
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
            rec["computed_now"] = False
            self._log(f"reused   {label} ({rec['wall_s']:.1f} s when computed)")
        else:
            import torch

            d.mkdir(parents=True, exist_ok=True)
            self._log(f"start    {label}")
            w0, c0 = time.perf_counter(), time.process_time()
            result = compute(d)
            rec = {"label": label, "hash": h, "key": key, "result": result,
                   "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
                   "threads": torch.get_num_threads(),
                   "finished": datetime.datetime.now().isoformat(timespec="seconds"), "dir": d.name}
            write_json(rec_path, rec)
            rec["computed_now"] = True
            self._log(f"computed {label} ({rec['wall_s']:.1f} s)")
        rec["path"] = str(d)
        self.records.append(rec)
        self._seen[h] = rec
        return rec

    def _log(self, msg: str) -> None:
        print(f"real_polyu [{time.perf_counter() - self.t0:7.1f} s] {msg}", file=sys.stderr, flush=True)


# ============================================================================ the experiment

class Experiment:
    """Runs (or reuses) every cell of the experiment and collects the per-seed evaluation records."""

    def __init__(self, cfg: RealPolyUConfig, data: Data, splits: dict, cells: Cells):
        from rcl.data.noise import RealNoise
        from rcl.tasks import DenoiseTask

        self.cfg, self.data, self.splits, self.cells = cfg, data, splits, cells
        self.task, self.real = DenoiseTask(), RealNoise()
        self.body = cfg.body()
        self.evals: dict[int, dict[str, dict]] = {s: {} for s in cfg.seeds}
        """seed → row name → {"result": the protocol's result (means and per-image scores), "cells": the
        evaluation cell records behind it (one per network; one per image for CBM3D)}."""
        self.train_cells: dict[int, dict[str, dict]] = {s: {} for s in cfg.seeds}
        """seed → row name → the training cell behind it (fine-tuning, pre-training; synthetic)."""
        self.figure: dict | None = None

    # --- keys of the data a cell reads

    def _pairs_key(self, names, noisy_only: bool = False) -> dict:
        files = {n: (self.data.sha[n][0] if noisy_only else list(self.data.sha[n])) for n in names}
        return {"files": files, "center_crop": self.cfg.center_crop}

    def _subset(self, which, names):
        return which.subset(self.data.index(names))

    # --- cells

    def synthetic(self) -> dict:
        """The synthetic-noise network (trained once, on clean LIVE1)."""
        from rcl.checkpoint import save_checkpoint
        from rcl.data.noise import parse_noise_spec
        from rcl.training import fit

        scfg = self.cfg.synthetic_config()
        key = {"kind": "synthetic", "method": "supervised", "cfg": scfg.model_dump(), "noise": self.cfg.synthetic.noise,
               "body": self.body.model_dump(),
               "live1": {"files": self.data.live1_sha, "center_crop": self.cfg.center_crop}}

        def compute(d: Path) -> dict:
            res = fit(self.task, "supervised", self.data.live1, scfg, self.body,
                      noise=parse_noise_spec(self.cfg.synthetic.noise), progress=False, desc="synthetic")
            save_checkpoint(d / "model.safetensors", res.model, self.body, stage="finetune",
                            noise=self.cfg.synthetic.noise, training=scfg.model_dump(),
                            labelled_images=res.labelled, final_loss=res.history[-1]["loss"])
            return _train_result(res, len(self.data.live1))

        return self.cells.get("synthetic", key, compute)

    def pretrain(self, seed: int, p: Pretrained) -> dict:
        """Pre-training of ``p`` on the noisy training images of ``seed``'s split."""
        from rcl.checkpoint import save_checkpoint
        from rcl.training import fit

        names = self.splits[seed]["train"]
        mcfg = self.cfg.pretrain_config(p, seed)
        key = {"kind": "pretrain", "method": p.method, "cfg": mcfg.model_dump(), "body": self.body.model_dump(),
               "noisy_train": self._pairs_key(names, noisy_only=True)}

        def compute(d: Path) -> dict:
            noisy = self._subset(self.data.noisy, names)  # the noisy training images: nothing else
            res = fit(self.task, p.method, noisy, mcfg, self.body, progress=False, desc=f"pretrain {p.key}")
            inf = getattr(mcfg, "pd_stride_inference", 1)
            save_checkpoint(d / "model.safetensors", res.model, self.body, stage="pretrain", method=p.method,
                            noise="real", training=mcfg.model_dump(), n_images=len(noisy),
                            final_loss=res.history[-1]["loss"], **({"pd_stride_inference": inf} if inf != 1 else {}))
            return _train_result(res, len(noisy))

        return self.cells.get(f"s{seed}-pretrain-{p.key}", key, compute)

    def finetune(self, seed: int, k: int, init: dict | None, tag: str) -> dict:
        """Supervised fine-tuning on ``k`` real training pairs of ``seed``, from ``init`` (a
        pre-training cell record; None: fresh weights)."""
        from rcl.checkpoint import load_checkpoint, save_checkpoint
        from rcl.training import fit

        names = self.splits[seed]["train"]
        fcfg = self.cfg.finetune_config(k, len(names), seed)
        key = {"kind": "finetune", "label_count": k, "cfg": fcfg.model_dump(), "body": self.body.model_dump(),
               "init": init["hash"] if init else None, "train_pairs": self._pairs_key(names)}

        def compute(d: Path) -> dict:
            start = load_checkpoint(Path(init["path"]) / "model.safetensors", expect=self.body)[0] if init else None
            clean, noisy = self._subset(self.data.clean, names), self._subset(self.data.noisy, names)
            res = fit(self.task, "supervised", clean, fcfg, self.body, init=start, noisy=noisy, progress=False,
                      desc=f"finetune {tag} K={k}")
            if len(res.labelled) != k:  # fraction_for_label_count's contract
                raise RuntimeError(f"fine-tuning used {len(res.labelled)} labelled pairs, not {k}")
            save_checkpoint(d / "model.safetensors", res.model, self.body, stage="finetune", noise="real",
                            init=init["hash"] if init else None, training=fcfg.model_dump(),
                            labelled_images=res.labelled, label_count=k, final_loss=res.history[-1]["loss"])
            return {**_train_result(res, len(names)), "labelled": res.labelled}

        return self.cells.get(f"s{seed}-finetune-{tag}-K{k}", key, compute)

    def _test_sets(self, seed: int):
        names = self.splits[seed]["test"]
        return names, self._subset(self.data.clean, names), self._subset(self.data.noisy, names)

    def evaluate_network(self, seed: int, row: str, train: dict) -> dict:
        """``row``: the network of training cell ``train`` on ``seed``'s test pairs, restoring at
        its checkpoint's ``pd_stride_inference``."""
        names, clean, noisy = self._test_sets(seed)
        key = {"kind": "eval", "network": train["hash"], "restorer": "protocol.model_denoiser (checkpoint's PD)",
               "test_pairs": self._pairs_key(names)}

        def compute(d: Path) -> dict:
            from rcl.checkpoint import load_checkpoint
            from rcl.evaluation import evaluate, model_denoiser

            model, meta = load_checkpoint(Path(train["path"]) / "model.safetensors", expect=self.body)
            results, _ = evaluate({row: model_denoiser(model)}, clean, self.real, noisy=noisy, task=self.task)
            return {**results[row].to_dict(), "pd_stride_inference": meta.get("pd_stride_inference", 1)}

        rec = self.cells.get(f"s{seed}-eval-{_slug(row)}", key, compute)
        self.evals[seed][row] = {"result": rec["result"], "cells": [rec]}
        self.train_cells[seed][row] = train
        return rec

    def bm3d_image(self, name: str, oracle: bool) -> dict:
        """CBM3D on one pair ``name`` through the protocol, with the oracle σ = std(noisy − clean) or
        σ estimated from the noisy image (``bm3d.estimator``); the output is kept as a uint8
        (H, W, 3) array (``output.npz``) for the figure. One cell per image: seeds whose test
        parts share an image share the cell, and an interrupted CBM3D row loses one image at most."""
        b = self.cfg.bm3d
        row = CBM3D_ORACLE_ROW if oracle else CBM3D_EST_ROW
        key = {"kind": "eval-image", "restorer": "bm3d-oracle" if oracle else f"bm3d-estimated:{b.estimator}",
               "profile": b.profile, "pair": self._pairs_key([name])}

        def compute(d: Path) -> dict:
            from rcl.data.noise import SCALE
            from rcl.evaluation import bm3d_estimated_reference, bm3d_oracle_reference, evaluate

            clean, noisy = self._subset(self.data.clean, [name]), self._subset(self.data.noisy, [name])
            fn = (bm3d_oracle_reference(self.task, self.real, b.profile) if oracle
                  else bm3d_estimated_reference(self.task, b.estimator, b.profile))
            results, outputs = evaluate({row: fn}, clean, self.real, noisy=noisy, keep_outputs=True, task=self.task)
            _save_uint8(d / "output.npz", outputs[row][0])
            out = results[row].to_dict()
            if not oracle:
                out["estimator"] = b.estimator
                out["images"][0]["sigma_used"] = fn.sigmas_used[0] * SCALE
            return out

        stem = Path(name).stem
        return self.cells.get(f"bm3d-{'oracle' if oracle else 'est'}-{stem}", key, compute)

    def evaluate_bm3d(self, seed: int, oracle: bool) -> dict:
        """The CBM3D row (oracle or estimated σ) of ``seed``: :meth:`bm3d_image` on its first
        ``bm3d.max_images`` test pairs (all by default); returns the merged protocol result."""
        names = self.splits[seed]["test"][: self.cfg.bm3d.max_images]
        row = CBM3D_ORACLE_ROW if oracle else CBM3D_EST_ROW
        recs = [self.bm3d_image(n, oracle) for n in names]
        images = [im for r in recs for im in r["result"]["images"]]
        result = {"method": row, "n_images": len(images),
                  **{k: statistics.fmean(im[k] for im in images) for k in ("psnr_noisy", "ssim_noisy", "psnr", "ssim")},
                  "images": images}
        self.evals[seed][row] = {"result": result, "cells": recs}
        return result

    def figure_cell(self, seed: int, k: int, networks: dict[str, dict]) -> dict:
        """Restorations of one test image of ``seed`` by ``networks`` (row → training cell), through
        the protocol with ``keep_outputs``, saved as uint8 (H, W, 3) arrays (``panels.npz``); the
        CBM3D panels come from :meth:`bm3d_image`."""
        name = self.cfg.figure.image or self.splits[seed]["test"][0]
        bm3d = {CBM3D_EST_ROW: self.bm3d_image(name, False), CBM3D_ORACLE_ROW: self.bm3d_image(name, True)}
        key = {"kind": "figure", "image": self._pairs_key([name]),
               "networks": {r: c["hash"] for r, c in networks.items()}}

        def compute(d: Path) -> dict:
            import numpy as np

            from rcl.checkpoint import load_checkpoint
            from rcl.data.io import atomic_write_bytes, quantize
            from rcl.evaluation import evaluate, model_denoiser

            clean, noisy = self._subset(self.data.clean, [name]), self._subset(self.data.noisy, [name])
            fns = {row: model_denoiser(load_checkpoint(Path(cell["path"]) / "model.safetensors", expect=self.body)[0])
                   for row, cell in networks.items()}
            results, outputs = evaluate(fns, clean, self.real, noisy=noisy, keep_outputs=True, task=self.task)
            arrays = {f"p{i}": quantize(outputs[row][0]) for i, row in enumerate(fns)}

            def save(tmp: Path) -> None:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **arrays)

            atomic_write_bytes(d / "panels.npz", save)
            return {"image": name, "seed": seed, "label_count": k,
                    "psnr_noisy": results[next(iter(fns))].scores[0].psnr_noisy,
                    "panels": [{"title": row, "psnr": results[row].scores[0].psnr} for row in fns]}

        rec = self.cells.get(f"s{seed}-figure", key, compute)
        self.figure = {"cell": rec, "bm3d": bm3d}
        return rec

    # --- the whole run

    def run(self) -> None:
        """Every cell, in an order that gives the first seed's numbers first."""
        cfg = self.cfg
        synth = self.synthetic()
        for s in cfg.seeds:
            self.evaluate_network(s, SYNTH_ROW, synth)
            pre = {}
            for p in PRETRAINED:
                pre[p.key] = self.pretrain(s, p)
                self.evaluate_network(s, p.row, pre[p.key])
            for k in cfg.label_counts:
                rec = self.finetune(s, k, None, "scratch")
                self.evaluate_network(s, f"{SCRATCH_ROW} + {k}", rec)
                for p in PRETRAINED:
                    rec = self.finetune(s, k, pre[p.key], p.key)
                    self.evaluate_network(s, f"{p.row} + {k}", rec)
            self.evaluate_bm3d(s, oracle=False)
            self.evaluate_bm3d(s, oracle=True)
        s0, kf = cfg.seeds[0], cfg.figure.label_count
        nets = {SYNTH_ROW: synth, **{r: self.train_cells[s0][r] for r in
                                     (f"{n} + {kf}" for n in (SCRATCH_ROW, *(p.row for p in PRETRAINED)))}}
        self.figure_cell(s0, kf, nets)


def _train_result(res, n_images: int) -> dict:
    """What a training cell records: steps, images, final loss and a thinned loss curve."""
    hist = res.history
    every = max(1, len(hist) // 50)
    return {"steps": len(hist), "images": n_images, "final_loss": float(hist[-1]["loss"]) if hist else None,
            "loss_curve": [[h["step"], float(h["loss"])] for h in hist[::every]]}


def _save_uint8(path: Path, img) -> None:
    """Save a (C, H, W) image in [0, 1] as a quantised uint8 (H, W, C) array (``rcl.data.io.quantize``)
    in an .npz file, atomically."""
    import numpy as np

    from rcl.data.io import atomic_write_bytes, quantize

    arr = quantize(img)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, image=arr)

    atomic_write_bytes(path, save)


def _load_uint8(path: Path, key: str = "image"):
    """A (C, H, W) float tensor in [0, 1] from an array saved by :func:`_save_uint8` (or ``panels.npz``)."""
    import numpy as np
    import torch

    with np.load(path) as z:
        return torch.from_numpy(z[key].astype(np.float32) / 255.0).permute(2, 0, 1)


def _slug(row: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in row)
    return "_".join(x for x in out.split("_") if x)


# ============================================================================ report

def _stats(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)


def _pm(mean: float, std: float, fmt: str) -> str:
    if not math.isfinite(mean):
        return "—"
    return format(mean, fmt) + (f" ± {format(std, fmt)}" if math.isfinite(std) else "")


def row_scores(exp: Experiment, row: str) -> dict[int, dict]:
    """seed → {psnr (dB), ssim (0–1), n_images, images: {name: (psnr, ssim)}}: the protocol's
    per-image scores of ``row`` and their means over the test images (the noisy input:
    the protocol's noisy-input scores, from the synthetic network's evaluation on the whole test part)."""
    out = {}
    for s in exp.cfg.seeds:
        if row == NOISY_ROW:
            r = exp.evals[s][SYNTH_ROW]["result"]
            ims = {im["name"]: (im["psnr_noisy"], im["ssim_noisy"]) for im in r["images"]}
        else:
            r = exp.evals[s][row]["result"]
            ims = {im["name"]: (im["psnr"], im["ssim"]) for im in r["images"]}
        out[s] = {"psnr": statistics.fmean(v[0] for v in ims.values()),
                  "ssim": statistics.fmean(v[1] for v in ims.values()), "n_images": len(ims), "images": ims}
    return out


def row_seconds(exp: Experiment, row: str) -> float:
    """Wall time of a row's cells summed over seeds: its training cell (for fine-tuned rows the
    fine-tuning only) and its evaluation cells (CBM3D: one per image); a cell shared by seeds counts once."""
    if row == NOISY_ROW:
        return math.nan
    seen, total = set(), 0.0
    for s in exp.cfg.seeds:
        train = exp.train_cells[s].get(row)
        recs = ([train] if train is not None else []) + exp.evals[s][row]["cells"]
        for rec in recs:
            if rec["hash"] not in seen:
                seen.add(rec["hash"])
                total += rec["wall_s"]
    return total


def table_rows(exp: Experiment, rows) -> list[dict]:
    """The rows of one results table (means ± std over seeds, per-seed PSNR, images, wall time)."""
    out = []
    n_test = {s: len(exp.splits[s]["test"]) for s in exp.cfg.seeds}
    for row in rows:
        sc = row_scores(exp, row)
        pm, ps = _stats([v["psnr"] for v in sc.values()])
        sm, ss = _stats([v["ssim"] for v in sc.values()])
        imgs = "/".join(f"{v['n_images']}" + ("" if v["n_images"] == n_test[s] else f" of {n_test[s]}")
                        for s, v in sc.items())
        out.append({"row": row, "psnr": _pm(pm, ps, ".2f"), "ssim": _pm(sm, ss, ".4f"),
                    "per_seed": " / ".join(f"{v['psnr']:.2f}" for v in sc.values()), "images": imgs,
                    "time": "—" if row == NOISY_ROW else f"{row_seconds(exp, row):.1f}",
                    "_json": {"row": row, "psnr_mean": pm, "psnr_std": ps, "ssim_mean": sm, "ssim_std": ss,
                              "per_seed": {str(s): {k: v[k] for k in ("psnr", "ssim", "n_images")}
                                           for s, v in sc.items()},
                              "wall_s": None if row == NOISY_ROW else row_seconds(exp, row)}})
    return out


def compare(exp: Experiment, a: str, b: str) -> dict:
    """PSNR (dB) and SSIM of row ``a`` minus row ``b``: per seed on the test images both scored, then the
    mean (and std) over seeds; ``wins``: seeds where ``a`` has the higher PSNR."""
    sa, sb = row_scores(exp, a), row_scores(exp, b)
    per_seed = {}
    for s in exp.cfg.seeds:
        common = sorted(set(sa[s]["images"]) & set(sb[s]["images"]))
        dp = statistics.fmean(sa[s]["images"][n][0] - sb[s]["images"][n][0] for n in common)
        ds = statistics.fmean(sa[s]["images"][n][1] - sb[s]["images"][n][1] for n in common)
        per_seed[s] = {"psnr": dp, "ssim": ds, "n_images": len(common)}
    m, sd = _stats([v["psnr"] for v in per_seed.values()])
    return {"a": a, "b": b, "psnr_diff": m, "psnr_diff_std": sd,
            "ssim_diff": statistics.fmean(v["ssim"] for v in per_seed.values()),
            "per_seed": {str(s): v for s, v in per_seed.items()},
            "wins": sum(v["psnr"] > 0 for v in per_seed.values()), "seeds": len(per_seed)}


def judge_targets(exp: Experiment) -> dict:
    """The targets, from the numbers: (a) RCL (PD) + K beats scratch + K and CBM3D (σ estimated)
    and is within ``oracle_margin_db`` of CBM3D (σ oracle) or above; (b) RCL with PD beats RCL
    without PD (zero labels and every K). A comparison holds when its mean PSNR difference over
    seeds holds."""
    k, margin = exp.cfg.targets.label_count, exp.cfg.targets.oracle_margin_db
    ours = f"{PRETRAINED[0].row} + {k}"
    a = {"vs_scratch": compare(exp, ours, f"{SCRATCH_ROW} + {k}"),
         "vs_cbm3d_estimated": compare(exp, ours, CBM3D_EST_ROW),
         "vs_cbm3d_oracle": compare(exp, ours, CBM3D_ORACLE_ROW)}
    a["vs_scratch"]["holds"] = a["vs_scratch"]["psnr_diff"] > 0
    a["vs_cbm3d_estimated"]["holds"] = a["vs_cbm3d_estimated"]["psnr_diff"] > 0
    a["vs_cbm3d_oracle"]["holds"] = a["vs_cbm3d_oracle"]["psnr_diff"] >= -margin
    settings = [(0, PRETRAINED[0].row, PRETRAINED[1].row)]
    settings += [(kk, f"{PRETRAINED[0].row} + {kk}", f"{PRETRAINED[1].row} + {kk}") for kk in exp.cfg.label_counts]
    b = []
    for kk, x, y in settings:
        c = compare(exp, x, y)
        c["label_count"], c["holds"] = kk, c["psnr_diff"] > 0
        b.append(c)
    return {"label_count": k, "oracle_margin_db": margin,
            "a": {"holds": all(v["holds"] for v in a.values()), **a},
            "b": {"holds": all(c["holds"] for c in b), "settings_held": sum(c["holds"] for c in b),
                  "settings": len(b), "comparisons": b}}


def _diff_text(c: dict) -> str:
    per = ", ".join(f"seed {s}: {v['psnr']:+.2f}" for s, v in c["per_seed"].items())
    sd = f" ± {c['psnr_diff_std']:.2f}" if math.isfinite(c["psnr_diff_std"]) else ""
    return (f"{c['psnr_diff']:+.2f}{sd} dB (SSIM {c['ssim_diff']:+.4f}; {per}; higher in {c['wins']} of "
            f"{c['seeds']} seed(s))")


def _yes(x: bool) -> str:
    return "**yes**" if x else "**no**"


def _git() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _split_lines(exp: Experiment) -> list[str]:
    md = []
    what = {"train": "train (noisy images for pre-training; K pairs of them for fine-tuning)",
            "val": "validation (not used by this run)", "test": "test (every number below)"}
    for s, sp in exp.splits.items():
        md.append(f"**Seed {s}** (`scene_split(names, {tuple(exp.cfg.split.fractions)}, seed={s}, "
                  f"by={exp.cfg.split.by!r})`):\n")
        for part in ("train", "val", "test"):
            md.append(f"- {what[part]}: {len(sp[part])} crops, {len(sp['scenes'][part])} scenes "
                      f"({', '.join(sp['scenes'][part]) or '—'}): {', '.join(f'`{n}`' for n in sp[part]) or '—'}")
        md.append("")
    return md


def write_report(exp: Experiment, report: Path, command: str, threads: int, smoke: bool, started: float) -> dict:
    """Write the Markdown report, the results JSON (``report`` with ``.json``) and
    ``polyu_crops.png`` beside the report; returns the results dict."""
    import torch
    import yaml

    import rcl
    from rcl.benchmark.report import cpu_name
    from rcl.evaluation.noise_level import DEFAULT_ESTIMATOR
    from rcl.reporting import markdown_table, plot_restorations

    cfg = exp.cfg
    targets = judge_targets(exp)
    cols = [("row", "row", ""), ("psnr", "PSNR (dB)", ""), ("ssim", "SSIM", ""), ("per_seed", "PSNR per seed", ""),
            ("images", "test images", ""), ("time", "wall time (s)", "")]
    tables = {"0": table_rows(exp, ZERO_LABEL_ROWS)}
    for k in cfg.label_counts:
        tables[str(k)] = table_rows(exp, k_rows(k))
    pc = cfg.pretrain
    md = [f"# Label-efficient denoising on real camera noise (PolyU){' — SMOKE RUN' if smoke else ''}", ""]
    if smoke:
        md += ["> **Smoke run** (`--smoke`): tiny networks, a few steps, images centre-cropped to "
               f"{cfg.center_crop}², CBM3D on at most {cfg.bm3d.max_images} image(s). These numbers test the "
               "script, not the methods.", ""]
    md += ["## Data and licence", "",
           f"**Licence:** {LICENCE}", "",
           f"**Source:** {SOURCE}. {len(exp.data.noisy)} noisy/clean pairs (sRGB JPEG"
           f"{f', centre-cropped to {cfg.center_crop}²' if cfg.center_crop else ''}), paired by file name; "
           f"{len(exp.data.live1)} clean LIVE1 photographs for the synthetic-noise network.", "",
           "## Command and machine", "", "```bash", command, "```", "",
           f"CPU: {cpu_name()}; torch threads: {threads} "
           f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); "
           f"rcl {rcl.__version__}, torch {torch.__version__}, Python {platform.python_version()}; "
           f"git {_git() or 'unknown'}. Cells computed by this invocation: {exp.cells.computed} of "
           f"{len(exp.cells.records)} ({sum(r['wall_s'] for r in exp.cells.records if r['computed_now']):.0f} s); "
           f"wall time of all cells when computed: {sum(r['wall_s'] for r in exp.cells.records):.0f} s, "
           f"CPU time {sum(r['cpu_s'] for r in exp.cells.records):.0f} s.", "",
           "## Setup", "",
           f"- Network of every row: {cfg.model.arch} (width {cfg.model.width}, depth {cfg.model.depth}), RGB → RGB.",
           f"- Pre-training ({pc.steps} steps for every method, on the noisy training-scene images only; seed = the "
           f"split seed): RCL (Dong et al., IJCAI 2022, arXiv 2106.10070) with PD stride {pc.pd.stride} (restoring at "
           f"PD {pc.pd.inference.rcl}) and without PD; N2V (Krull et al., CVPR 2019) with PD stride {pc.pd.stride} "
           f"(restoring at PD {pc.pd.inference.n2v}); Neighbor2Neighbor (Huang et al., CVPR 2021). PD: Zhou et al., "
           f"AAAI 2020; AP-BSN, Lee et al., CVPR 2022. Configs: "
           + "; ".join(f"{p.row}: `{json.dumps(cfg.pretrain_config(p, 0).model_dump(exclude={'seed'}))}`"
                       for p in PRETRAINED) + ".",
           f"- Fine-tuning (supervised, L2 unless the config says otherwise) on K ∈ {cfg.label_counts} real pairs of "
           f"the training scenes (the labelled subset drawn by the split seed, nested in K), from fresh weights "
           f"(scratch) and from each pre-trained network (restoring at full resolution after fine-tuning): "
           f"`{json.dumps(cfg.finetune.model_dump())}`.",
           f"- Synthetic-noise network: supervised on the {len(exp.data.live1)} clean LIVE1 images with fresh "
           f"`{cfg.synthetic.noise}` noise per crop, `{json.dumps(cfg.synthetic.model_dump())}`; trained once, scored "
           f"on every seed's test pairs.",
           f"- CBM3D (Dabov et al., 2007; `bm3d.bm3d_rgb`, profile `{cfg.bm3d.profile}`, through "
           f"`rcl.evaluation.bm3d_baseline`): with σ estimated from each noisy image by `{cfg.bm3d.estimator}` "
           f"(`rcl.evaluation.noise_level.estimate_sigma`"
           + (": the package default, wavelet MAD of scikit-image on the image box-averaged 3×3, ×3; chosen on "
              "seed 0's training scenes in docs/real-noise/README.md"
              if cfg.bm3d.estimator == DEFAULT_ESTIMATOR == "wavelet-box3"
              else "") + "), and with the oracle σ = std(noisy − clean) of each pair (an upper bound: no user holds "
           "the clean image)" + (f"; on at most {cfg.bm3d.max_images} test image(s) per seed" if cfg.bm3d.max_images
                                 else "") + ".",
           "- Every number: `rcl.evaluation.protocol.evaluate` with `RealNoise` on the test scenes' pairs (outputs "
           "clamped to [0, 1] and quantised to uint8; PSNR peak 255, SSIM Gaussian σ = 1.5 per channel); mean over "
           "the test images per seed, then mean ± sample std over seeds (no ± with one seed).", "",
           "## Splits", "", "No scene has crops in two parts of a split (`rcl.data.real_pairs.scene_split`).", "",
           *_split_lines(exp),
           "## Results", "",
           "Wall time: the row's training cell (fine-tuned rows: fine-tuning only; zero-label rows: pre-training) "
           "plus its evaluation, summed over seeds, as measured when the cell was computed.", "",
           "### Zero labels", "", markdown_table(tables["0"], cols)]
    for k in cfg.label_counts:
        md += [f"### K = {k} labelled pairs", "", markdown_table(tables[str(k)], cols)]
    ta, tb = targets["a"], targets["b"]
    kt = targets["label_count"]
    md += ["## Targets", "",
           "Computed from the numbers above (PSNR differences per seed on the test images both rows scored, then "
           "the mean over seeds; a target holds when the mean difference does).", "",
           f"**(a) RCL (PD) + {kt} beats scratch + {kt} and CBM3D (σ estimated), and comes within "
           f"{targets['oracle_margin_db']:g} dB of CBM3D (σ oracle) or beats it:** {_yes(ta['holds'])}", "",
           f"- vs scratch + {kt}: {_diff_text(ta['vs_scratch'])} → {_yes(ta['vs_scratch']['holds'])}",
           f"- vs CBM3D (σ estimated): {_diff_text(ta['vs_cbm3d_estimated'])} → "
           f"{_yes(ta['vs_cbm3d_estimated']['holds'])}",
           f"- vs CBM3D (σ oracle): {_diff_text(ta['vs_cbm3d_oracle'])} → "
           f"{_yes(ta['vs_cbm3d_oracle']['holds'])} (needs ≥ −{targets['oracle_margin_db']:g} dB)", "",
           f"**(b) RCL with PD beats RCL without PD:** {_yes(tb['holds'])} (in {tb['settings_held']} of "
           f"{tb['settings']} settings).", ""]
    for c in tb["comparisons"]:
        where = "zero labels" if c["label_count"] == 0 else f"K = {c['label_count']}"
        md.append(f"- {where}: {_diff_text(c)} → {_yes(c['holds'])}")
    crops = "/".join(str(len(exp.splits[s]["test"])) for s in cfg.seeds)
    md += ["", f"With {len(cfg.seeds)} seed(s) and {crops} test crops per split, "
           "differences smaller than the seed-to-seed spread are not evidence either way.", ""]
    fig = exp.figure
    if fig is not None:
        res, bm3d = fig["cell"]["result"], fig["bm3d"]
        i = exp.data.index([res["image"]])[0]

        def title(row, psnr):
            return row + (f"\n{psnr:.2f} dB" if psnr is not None else "")

        panels = [(title(NOISY_ROW, res["psnr_noisy"]), [exp.data.noisy.images[i]])]
        for row, rec in bm3d.items():
            img = _load_uint8(Path(rec["path"]) / "output.npz")
            panels.append((title(row, rec["result"]["images"][0]["psnr"]), [img]))
        for j, p in enumerate(res["panels"]):
            img = _load_uint8(Path(fig["cell"]["path"]) / "panels.npz", f"p{j}")
            panels.append((title(p["title"], p["psnr"]), [img]))
        panels.append(("clean", [exp.data.clean.images[i]]))
        side = min(cfg.figure.crop, *exp.data.clean.images[i].shape[1:])
        plot_restorations(panels, [res["image"]], report.parent / "polyu_crops.png", crop=side)
        md += ["## Figure", "", "![one test crop](polyu_crops.png)", "",
               f"`polyu_crops.png`: test image `{res['image']}` (seed {res['seed']}), the {side}×{side} window where "
               f"the clean image has the most detail: noisy input, CBM3D (σ estimated, σ oracle), the "
               f"synthetic-noise network, and the networks fine-tuned on K = {res['label_count']} pairs, then the "
               f"clean image; PSNR of the whole image under the protocol. Shown for research use under the PolyU "
               f"licence.", ""]
    md += ["## Wall time per cell", "", markdown_table(
        [{"cell": r["label"], "wall": r["wall_s"], "cpu": r["cpu_s"], "threads": r["threads"],
          "now": "computed" if r["computed_now"] else "reused"} for r in exp.cells.records],
        [("cell", "cell", ""), ("wall", "wall (s)", ".1f"), ("cpu", "CPU (s)", ".1f"), ("threads", "threads", ""),
         ("now", "this invocation", "")]),
           "## Caveats", "",
           "- The PD stride (2) and N2V's inference stride were chosen on seed 0's validation scenes, and the σ "
           "estimator on seed 0's training scenes (docs/design.md, docs/real-noise/README.md); for other seeds some "
           "of those crops are test crops, so those two choices saw some test scenes of the other splits.",
           "- noisy − clean of a real pair also holds the reference's residual noise and shot-to-shot mismatch: the "
           "oracle σ and every PSNR measure against an imperfect reference.",
           "- PolyU's crops are lightly noisy (σ ≈ 2–6/255); small test parts (a few scenes) make per-seed means "
           "vary with the split.", "",
           "## Config", "", "```yaml", yaml.safe_dump(cfg.dump(), sort_keys=False,
                                                      allow_unicode=True).rstrip(), "```", ""]
    text = "\n".join(md)
    from rcl.data.io import atomic_write_bytes

    atomic_write_bytes(report, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    results = {
        "what": "label-efficient denoising on real camera noise (PolyU), benchmarks/real_polyu.py",
        "licence": LICENCE, "source": SOURCE, "command": command, "smoke": smoke,
        "cpu": cpu_name(), "threads": threads, "rcl": rcl.__version__, "torch": torch.__version__, "git": _git(),
        "config": cfg.dump(),
        "splits": {str(s): sp for s, sp in exp.splits.items()},
        "tables": {k: [r["_json"] for r in rows] for k, rows in tables.items()},
        "targets": targets,
        "figure": exp.figure["cell"]["result"] if exp.figure else None,
        "cells": [{k: r[k] for k in ("label", "hash", "wall_s", "cpu_s", "threads", "computed_now", "dir")}
                  for r in exp.cells.records],
        "cells_computed": exp.cells.computed, "cells_total": len(exp.cells.records),
        "wall_s_this_invocation": time.perf_counter() - started,
    }
    write_json(report.with_suffix(".json"), results)
    return results


# ============================================================================ main

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage first)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None):
    p = _Parser(prog="python benchmarks/real_polyu.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--polyu", type=Path, required=True, help="PolyU folder with noisy/ and clean/ (same file names)")
    p.add_argument("--live1", type=Path, required=True, help="folder of clean RGB photographs (LIVE1)")
    p.add_argument("--config", type=Path, default=REPO / "benchmarks" / "real-polyu.yaml", help="the YAML config")
    p.add_argument("--out", type=Path, required=True, help="run folder (cells; rerun to resume)")
    p.add_argument("--report", type=Path, help="Markdown report (default OUT/report.md); JSON and figure beside it")
    p.add_argument("--smoke", action="store_true", help="tiny version of the run (see SMOKE)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seeds", help="comma-separated seeds (split permutations) to run instead of the config's, "
                                   "e.g. 0 for the first one only; finished cells of other seeds stay cached")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Run the experiment; returns the exit status (0; 2 on bad input, after one ``error:`` line)."""
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    try:
        if a.threads < 1:
            raise InputError(f"--threads {a.threads}: must be at least 1")
        report = a.report if a.report is not None else a.out / "report.md"
        if a.out.exists() and not a.out.is_dir():
            raise InputError(f"--out {a.out}: exists and is not a folder")
        if report.is_dir():
            raise InputError(f"--report {report}: is a folder")
        if a.report is not None and not report.parent.is_dir():
            raise InputError(f"--report {report}: folder {report.parent} does not exist")
        # the report, its JSON and its figure never replace an input nor land in a data folder
        for written in (report, report.with_suffix(".json"), report.parent / "polyu_crops.png"):
            r = written.resolve()
            if r == Path(a.config).resolve() or any(r.is_relative_to(Path(d).resolve()) for d in (a.polyu, a.live1)):
                raise InputError(f"--report {report}: would write {written}, an input or inside a data folder; "
                                 "choose another place")
        cfg = load_config(a.config, a.smoke, a.seeds)
        import torch

        torch.set_num_threads(a.threads)
        data = load_data(a.polyu, a.live1, cfg)
        splits = make_splits(list(data.noisy.names), cfg)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python benchmarks/real_polyu.py " + shlex.join(argv)
    cells = Cells(a.out, a.threads, started)
    exp = Experiment(cfg, data, splits, cells)
    exp.run()
    res = write_report(exp, report, command, a.threads, a.smoke, started)
    print(f"real_polyu: {res['cells_computed']} cell(s) computed, {res['cells_total'] - res['cells_computed']} reused; "
          f"wrote {report}, {report.with_suffix('.json')} and {report.parent / 'polyu_crops.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
