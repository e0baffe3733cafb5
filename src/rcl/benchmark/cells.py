"""Cells, the benchmark's units of work, and their cache: hashing, cache status, atomic JSON.

A :class:`ModelCell` is a network produced by training (a checkpoint under ``<out>/cache/``), an
:class:`EvalCell` the protocol's scores of one restorer on one test set under one noise (a small
JSON). Each output records the hash of the configuration it depends on (:func:`config_hash`); a
cell is done when its output exists with the same hash (:func:`model_done`, :func:`eval_payload`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.factory import ModelConfig
from .sections import TestSetConfig

EVAL_SEED = 0  # the protocol's noise seed for test images
CELL_FORMAT = 1  # part of every cell hash: bump to invalidate all caches after a format change


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (sorted keys)."""
    blob = json.dumps({"format": CELL_FORMAT, "obj": obj}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def slug(text: str) -> str:
    """``text`` made safe as a file name (``gaussian:5-50`` → ``gaussian_5-50``)."""
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text.replace(":", "_"))


def frac_tag(f: float) -> str:
    return f"{f:g}"


@dataclass
class ModelCell:
    """A network produced by training (pre-training or fine-tuning), saved as a checkpoint.

    ``task``/``scale`` say which task trains it (see :mod:`rcl.benchmark.taskspec`), ``training``
    is its training config (pre-training: the method's config as a dict; fine-tuning: the
    :class:`FinetuneConfig` with the cell's label fraction and seed), ``init`` the pre-training
    cell it starts from (None: fresh weights)."""

    key: str
    path: Path
    hash: str
    kind: str  # pretrain | finetune
    method: str
    meta: dict = field(default_factory=dict)
    evals: list["EvalCell"] = field(default_factory=list)
    model_cfg: ModelConfig | None = None  # architecture in the checkpoint
    task: str = "denoise"  # denoise | sr | jdd
    scale: int = 1  # SR scale (1 otherwise)
    training: Any = None
    init: "ModelCell | None" = None


@dataclass
class EvalCell:
    """The protocol's scores of one restorer on one test set under one noise, saved as JSON."""

    key: str
    path: Path
    hash: str
    row: tuple  # ("direct", m) | ("ft", m, frac, seed) | ("bm3d",) | ("abl-direct", name) | ("abl-ft", name)
    #             tasks: ("ref",) | ("classical", name) | ("ft", m, frac, seed)
    test: str
    noise: str
    predictor: str  # plain | n2s | bm3d; tasks: plain | bicubic | bilinear | malvar | malvar+bm3d
    model: ModelCell | None = None
    max_images: int | None = None
    task: str = "denoise"  # denoise | sr | jdd
    scale: int = 1  # SR scale (1 otherwise)
    test_cfg: TestSetConfig | None = None


# -- cache status ---------------------------------------------------------------------------

def model_done(cell: ModelCell) -> bool:
    """Whether the cell's checkpoint exists and carries the cell's hash."""
    from ..checkpoint import CheckpointError, read_metadata

    if not cell.path.is_file():
        return False
    try:
        return read_metadata(cell.path).get("cell_hash") == cell.hash
    except CheckpointError:
        return False


def eval_payload(cell: EvalCell) -> dict | None:
    """The cell's cached scores, or None if missing, unreadable or of another hash."""
    if not cell.path.is_file():
        return None
    try:
        payload = json.loads(cell.path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) and payload.get("hash") == cell.hash else None


def file_ids(files) -> list:
    """(name, size, SHA-1 of the bytes) per file: part of every cell hash, so an image edited in
    place (same name and size, e.g. an uncompressed BMP/TIFF) invalidates the cells that used it.
    The digest is memoised on (path, size, mtime), so planning many cells reads each file once."""
    out = []
    for p in files:
        st = p.stat()
        out.append((p.name, st.st_size, _sha1_of(str(p), st.st_size, st.st_mtime_ns)))
    return out


@functools.lru_cache(maxsize=8192)
def _sha1_of(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


# -- atomic outputs -------------------------------------------------------------------------

def atomic_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically (paths as strings, non-finite floats as null)."""
    from ..data.io import atomic_write_bytes

    data = json.dumps(payload, indent=1, default=_json_default).encode()
    atomic_write_bytes(path, lambda tmp: tmp.write_bytes(data))


def atomic_text(path: Path, text: str) -> None:
    from ..data.io import atomic_write_bytes

    atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
