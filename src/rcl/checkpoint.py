"""Checkpoints: safetensors weights plus JSON metadata in the safetensors header.

One file holds both, so a checkpoint cannot lose its description. Loading never unpickles
(safetensors stores raw tensors only). The metadata records the architecture
(:class:`rcl.models.ModelConfig`), the task and scale, the noise model, the training config,
the training stage and the package version.

Checkpoints are treated as untrusted input. Before any network is allocated:

* the raw metadata string may hold at most :data:`MAX_METADATA_BYTES` (1 MiB) of UTF-8 and nest
  JSON arrays/objects at most :data:`MAX_METADATA_DEPTH` (32) levels deep; non-finite numbers
  (``NaN``, ``Infinity``, ``-Infinity``, or a literal such as ``1e999`` that overflows) are
  refused anywhere in it;
* the fields that decide what is built are validated in full: ``model`` (a
  :class:`~rcl.models.ModelConfig`, strict types), ``task`` (a name of :data:`rcl.tasks.TASKS`),
  then the task's own fields by its :meth:`~rcl.tasks.Task.from_metadata` and
  :meth:`~rcl.tasks.Task.check_body`: ``scale`` (SR: an int in :data:`SR_SCALES`; denoise/JDD: 1
  or absent), ``pattern`` (one of :data:`rcl.data.degradations.PATTERNS`), ``skip`` (SR: a bool;
  JDD: one of :data:`JDD_SKIPS` or null), the body's ``arch`` / ``in_channels``;
  ``pd_stride_inference`` (optional, default 1: an integer from 1 to
  :data:`rcl.evaluation.inference.MAX_PD_STRIDE`, 1 for up-scaling networks) is the
  pixel-shuffle down-sampling stride that :func:`rcl.evaluation.inference.predict` applies to a
  loaded network (written by ``rcl pretrain --pd-stride-inference``). Other keys (training
  config, noise, …) are informational and kept as they are;
* the network is built on PyTorch's ``meta`` device (no memory) and its tensor names and shapes
  are compared with those in the safetensors header (read without tensor data). Only a file
  whose tensors are exactly those of the described network is then built on the CPU and loaded,
  so the memory used is bounded by the size of the file.

Every failure is a :class:`CheckpointError` with a one-line message naming the file (and the
field), e.g. ``ckpt.safetensors: bad metadata: scale: must be one of 2, 3, 4, 8 (got 1000000)``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from . import __version__
from .data.io import atomic_write_bytes
from .models.factory import ModelConfig
from .models.jdd import JDD_SKIPS  # noqa: F401  (documented here: the accepted ``skip`` of JDD checkpoints)
from .tasks import Task, TaskFieldError, task_from_metadata
from .tasks.sr import SR_SCALES  # noqa: F401  (documented here: the accepted ``scale`` of SR checkpoints)

FORMAT = "rcl-checkpoint"
FORMAT_VERSION = 1

MAX_METADATA_BYTES = 1 << 20
"""Largest accepted rcl metadata string, in bytes of UTF-8 (1 MiB)."""
MAX_METADATA_DEPTH = 32
"""Deepest accepted nesting of JSON arrays/objects in the metadata (the top-level object is 1)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, not an rcl checkpoint, or does not fit; names the file."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, model_cfg: ModelConfig,
                    **metadata: Any) -> Path:
    """Write ``model``'s weights and metadata atomically to ``path`` (.safetensors).

    ``metadata`` entries must be JSON-serialisable (e.g. task, scale, noise, stage, training).
    """
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "rcl_version": __version__,
            "model": model_cfg.model_dump(), "task": "denoise", "scale": 1}
    meta.update(metadata)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, lambda tmp: save_file(state, str(tmp), metadata={"rcl": json.dumps(meta)}))
    return path


# --------------------------------------------------------------------------------------------
# metadata: raw bounds, then the fields that drive construction

def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit] + "…"


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "…"


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _NonFinite(text if len(text) <= 30 else text[:30] + "…")
    return x


_STRUCTURAL = re.compile(r'[\[\]{}"\\]')


def _nesting_depth_exceeds(raw: str, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than ``limit`` (linear scan, no recursion;
    brackets inside strings do not count)."""
    depth, in_str, skip = 0, False, -1
    for m in _STRUCTURAL.finditer(raw):
        i = m.start()
        if i == skip:
            continue
        c = raw[i]
        if in_str:
            if c == "\\":
                skip = i + 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _parse_metadata(raw: str, path: Path) -> dict:
    size = len(raw) if len(raw) > MAX_METADATA_BYTES else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_METADATA_BYTES:
        raise CheckpointError(f"{path}: bad metadata: {size} bytes, more than the {MAX_METADATA_BYTES} "
                              f"allowed (MAX_METADATA_BYTES)")
    if _nesting_depth_exceeds(raw, MAX_METADATA_DEPTH):
        raise CheckpointError(f"{path}: bad metadata: nested deeper than {MAX_METADATA_DEPTH} levels "
                              f"(MAX_METADATA_DEPTH)")
    try:
        meta = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        raise CheckpointError(f"{path}: bad metadata: non-finite number {exc} (NaN and infinities "
                              f"are not allowed)") from None
    except RecursionError:  # not reachable after the depth check; never let it escape
        raise CheckpointError(f"{path}: bad metadata: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal with too many digits
        raise CheckpointError(f"{path}: rcl metadata is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: rcl metadata is not a JSON object; not an rcl checkpoint")
    return meta


@dataclass(frozen=True)
class _Spec:
    """What a checkpoint's metadata says to build: a body config and the task around it."""

    cfg: ModelConfig
    task: Task

    def describe(self) -> str:
        return self.task.describe_network(_describe(self.cfg))


def _bad(path, field: str, msg: str) -> CheckpointError:
    return CheckpointError(f"{path}: bad metadata: {field}: {msg}")


def _model_config(raw: Any, path) -> ModelConfig:
    if raw is None:
        raise _bad(path, "model", "missing (the architecture record)")
    try:
        return ModelConfig.model_validate(raw, strict=True)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(['model', *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors()[:5])
        raise CheckpointError(f"{path}: bad metadata: bad architecture record: {_one_line(errs)}") from None


def _task_fields(meta: dict, cfg: ModelConfig, path) -> _Spec:
    """Validate the task fields of ``meta`` (task, then the task's own: scale / pattern / skip) and
    that ``cfg`` (already validated) can serve as its body, through the task registry."""
    try:
        task = task_from_metadata(meta)
        task.check_body(cfg)
    except TaskFieldError as exc:
        raise _bad(path, exc.field, exc.reason) from None
    return _Spec(cfg, task)


def _validate(meta: dict, path) -> _Spec:
    spec = _task_fields(meta, _model_config(meta.get("model"), path), path)
    pd_stride_inference(meta, path)
    return spec


def pd_stride_inference(meta: dict, path: Path | str = "checkpoint") -> int:
    """The checkpoint's inference-time PD stride (metadata ``pd_stride_inference``; 1 when absent).

    Raises:
        CheckpointError: not an integer from 1 to ``MAX_PD_STRIDE``, or > 1 with a ``scale`` ≠ 1.
    """
    from .evaluation.inference import MAX_PD_STRIDE

    s = meta.get("pd_stride_inference", 1)
    if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_PD_STRIDE:
        raise _bad(path, "pd_stride_inference", f"must be an integer from 1 to {MAX_PD_STRIDE} (got {_short(s)})")
    if s > 1 and meta.get("scale", 1) != 1:
        raise _bad(path, "pd_stride_inference", f"{s} needs a network without up-scaling (scale is {meta.get('scale')})")
    return s


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict of a checkpoint, without loading weights, validated.

    The raw metadata is bounded (:data:`MAX_METADATA_BYTES`, :data:`MAX_METADATA_DEPTH`, finite
    numbers only) and the fields that drive construction (``model``, ``task``, ``scale``,
    ``pattern``, ``skip``) are checked as described in the module docstring; other keys are
    returned as they are.

    Raises:
        CheckpointError: missing, truncated or foreign file, or metadata out of these bounds.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("rcl")
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                              f"{_one_line(exc)}") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without rcl metadata; not an rcl checkpoint")
    meta = _parse_metadata(raw, path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rcl checkpoint (format={_short(meta.get('format'))})")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: rcl metadata has no integer format_version >= 1 (got {_short(version)})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this rcl "
                              f"(reads {FORMAT_VERSION}); upgrade rcl")
    _validate(meta, path)
    return meta


# --------------------------------------------------------------------------------------------
# building and the shape pre-check

def _describe(cfg: ModelConfig) -> str:
    return f"{cfg.arch}(width={cfg.width}, depth={cfg.depth}, {cfg.in_channels}→{cfg.out_channels} channels)"


def _build(spec: _Spec, path) -> nn.Module:
    try:
        return spec.task.build_model(spec.cfg)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad metadata: {spec.task.name} record: {_one_line(exc)}") from None


def _meta_shapes(spec: _Spec, path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the network ``spec`` describes, built on the meta device (no memory)."""
    import torch

    with torch.device("meta"):
        net = _build(spec, path)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _file_shapes(path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in a safetensors file, from its header (no tensor data)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read the tensor list (truncated or corrupt?): "
                              f"{_one_line(exc)}") from None


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _check_fit(path, want: dict[str, tuple], have: dict[str, tuple], what: str) -> None:
    """CheckpointError unless the file's tensors (``have``) are exactly ``want`` (names and shapes)."""
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    misshapen = [k for k in want if k in have and have[k] != want[k]]
    if not (missing or unexpected or misshapen):
        return
    n_want = sum(math.prod(s) for s in want.values())
    n_have = sum(math.prod(s) for s in have.values())
    details = []
    if missing:
        k = missing[0]
        details.append(f"{len(missing)} missing tensor(s), first {_short(k)} {list(want[k])}")
    if unexpected:
        k = unexpected[0]
        details.append(f"{len(unexpected)} unexpected tensor(s), first {_short(k)} {_short(list(have[k]))}")
    if misshapen:
        k = misshapen[0]
        details.append(f"{len(misshapen)} misshapen tensor(s), first {_short(k)}: {_short(list(have[k]))} "
                       f"in the file, {list(want[k])} expected")
    raise CheckpointError(f"{path}: weights do not fit: {what} with {_count(n_want)} parameters but the file "
                          f"holds {_count(n_have)} ({'; '.join(details)})")


def build_task_model(cfg: ModelConfig, meta: dict, path: Path | str = "checkpoint") -> nn.Module:
    """The network for a checkpoint's task (:meth:`rcl.tasks.Task.build_model` of the task its
    metadata records): a denoiser, an SRNet (``scale``) or a JDDNet (``pattern``).

    ``meta``'s task/scale/pattern/skip are validated as in :func:`read_metadata` first.

    Raises:
        CheckpointError: a field out of bounds, or a record the network builders refuse.
    """
    return _build(_task_fields(meta, cfg, path), path)


def _check_finite(path: Path, state: dict) -> None:
    """Refuse weights with NaN or infinite values (a network computed from them restores every
    image to NaN, which an 8-bit writer turns into a black image)."""
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: weight {k} holds NaN or infinite values; not a usable network")


def load_checkpoint(path: str | os.PathLike, expect: ModelConfig | None = None) -> tuple[nn.Module, dict]:
    """Build the network a checkpoint describes and load its weights (in eval mode).

    The metadata is validated (:func:`read_metadata`) and the tensor names and shapes it implies
    (network built on the meta device) are compared with the file's header before any memory is
    allocated for the network.

    Args:
        path: a file written by :func:`save_checkpoint`.
        expect: if given, the architecture must equal it.

    Returns:
        ``(model, metadata)``; a ``pd_stride_inference`` > 1 is set on the model
        (:func:`rcl.evaluation.inference.set_inference_pd_stride`), so :func:`predict` honours it.

    Raises:
        CheckpointError: missing/truncated/foreign file, metadata out of bounds, another
            architecture than ``expect``, weights that do not fit the recorded architecture, or
            weights with NaN or infinite values.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    spec = _validate(meta, path)
    if expect is not None and spec.cfg != expect:
        raise CheckpointError(f"{path}: checkpoint holds {_describe(spec.cfg)}, but {_describe(expect)} was requested")
    _check_fit(path, _meta_shapes(spec, path), _file_shapes(path), f"the metadata describes {spec.describe()}")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt?): {_one_line(exc)}") from None
    _check_finite(path, state)
    model = _build(spec, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {spec.describe()}: {_one_line(exc)}") from None
    model.eval()
    from .evaluation.inference import set_inference_pd_stride

    set_inference_pd_stride(model, pd_stride_inference(meta, path))  # predict() then applies it
    return model, meta


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> dict:
    """Load a checkpoint's weights into an existing model (e.g. an SR network with a new tail).

    The tensor names and shapes are taken from the file's header first: with ``strict=True``
    they must equal the model's before anything is read; with ``strict=False`` only tensors whose
    names and shapes match are read and copied.

    Returns:
        The checkpoint metadata, with ``"loaded_keys"`` / ``"skipped_keys"`` counts added.

    Raises:
        CheckpointError: unreadable file or metadata, (strict) weights that do not fit the model,
            or weights with NaN or infinite values.
    """
    from safetensors import safe_open

    path = Path(path)
    meta = read_metadata(path)
    have = _file_shapes(path)
    own = model.state_dict()
    want = {k: tuple(v.shape) for k, v in own.items()}
    if strict:
        _check_fit(path, want, have, f"the model is a {type(model).__name__}")
        keys = list(have)
    else:
        keys = [k for k, s in have.items() if want.get(k) == s]
        if not keys:
            raise CheckpointError(f"{path}: no weight of the checkpoint fits the model")
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in keys}
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt?): {_one_line(exc)}") from None
    _check_finite(path, state)
    if strict:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the model: {_one_line(exc)}") from None
        return {**meta, "loaded_keys": len(state), "skipped_keys": 0}
    own.update(state)
    model.load_state_dict(own)
    return {**meta, "loaded_keys": len(state), "skipped_keys": len(have) - len(state)}
