"""Checkpoints: safetensors weights plus JSON metadata in the safetensors header.

One file holds both, so a checkpoint cannot lose its description. Loading never unpickles
(safetensors stores raw tensors only). The metadata records the architecture
(:class:`rcl.models.ModelConfig`), the task and scale, the noise model, the training config,
the training stage and the package version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from . import __version__
from .data.io import atomic_write_bytes
from .models.factory import ModelConfig, build_model

FORMAT = "rcl-checkpoint"
FORMAT_VERSION = 1


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


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict of a checkpoint, without loading weights.

    Raises:
        CheckpointError: missing, truncated or foreign file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("rcl")
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without rcl metadata; not an rcl checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: rcl metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: rcl metadata is not a JSON object; not an rcl checkpoint")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rcl checkpoint (format={meta.get('format')!r})")
    if not isinstance(meta.get("format_version"), int):
        raise CheckpointError(f"{path}: rcl metadata has no integer format_version")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta['format_version']} is newer than this rcl "
                              f"(reads {FORMAT_VERSION}); upgrade rcl")
    return meta


def _describe(cfg: ModelConfig) -> str:
    return f"{cfg.arch}(width={cfg.width}, depth={cfg.depth}, {cfg.in_channels}→{cfg.out_channels} channels)"


def build_task_model(cfg: ModelConfig, meta: dict, path: Path | str = "checkpoint") -> nn.Module:
    """The network for a checkpoint's task: a denoiser, an SRNet (``scale``) or a JDDNet (``pattern``)."""
    task = meta.get("task", "denoise")
    try:
        if task == "denoise":
            return build_model(cfg)
        if task == "sr":
            from .models.sr import build_sr_model

            return build_sr_model(cfg, int(meta.get("scale", 2)), skip=bool(meta.get("skip", True)))
        if task == "jdd":
            from .models.sr import build_jdd_model

            return build_jdd_model(cfg, meta.get("pattern", "RGGB"), meta.get("skip", "malvar"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad {task} record in metadata: {exc}") from None
    raise CheckpointError(f"{path}: unknown task {task!r} (this rcl knows denoise, sr, jdd)")


def load_checkpoint(path: str | os.PathLike, expect: ModelConfig | None = None) -> tuple[nn.Module, dict]:
    """Build the network a checkpoint describes and load its weights (in eval mode).

    Args:
        path: a file written by :func:`save_checkpoint`.
        expect: if given, the architecture must equal it.

    Returns:
        ``(model, metadata)``.

    Raises:
        CheckpointError: missing/truncated/foreign file, another architecture than ``expect``, or
            weights that do not fit the recorded architecture.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    try:
        cfg = ModelConfig(**meta["model"])
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CheckpointError(f"{path}: bad architecture record in metadata: {errs}") from None
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad architecture record in metadata: {exc!r}") from None
    if expect is not None and cfg != expect:
        raise CheckpointError(f"{path}: checkpoint holds {_describe(cfg)}, but {_describe(expect)} was requested")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt?): {exc}") from exc
    model = build_task_model(cfg, meta, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {_describe(cfg)}: {' '.join(str(exc).split())[:300]}") from exc
    model.eval()
    return model, meta


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> dict:
    """Load a checkpoint's weights into an existing model (e.g. an SR network with a new tail).

    With ``strict=False`` only tensors whose names and shapes match are copied.

    Returns:
        The checkpoint metadata, with ``"loaded_keys"`` / ``"skipped_keys"`` counts added.

    Raises:
        CheckpointError: unreadable file, or (strict) weights that do not fit the model.
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt?): {exc}") from exc
    own = model.state_dict()
    if strict:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the model: {' '.join(str(exc).split())[:300]}") from exc
        return {**meta, "loaded_keys": len(state), "skipped_keys": 0}
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fit:
        raise CheckpointError(f"{path}: no weight of the checkpoint fits the model")
    own.update(fit)
    model.load_state_dict(own)
    return {**meta, "loaded_keys": len(fit), "skipped_keys": len(state) - len(fit)}
