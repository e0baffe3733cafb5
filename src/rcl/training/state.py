"""Resumable training states: safetensors tensors plus JSON metadata; nothing is unpickled.

A state holds the network's and the extra parameters' tensors, Adam's moments and step counts,
the learning-rate schedule, the fp16 gradient scaler, the step, the history so far, torch's global
RNG states (CPU and CUDA) and the run's fingerprint. The data draws need no state: step t's
batch comes from (seed, t) alone (:mod:`rcl.data.draws`). Written atomically by rank 0.

Format (``format: rcl-training-state``, ``version: 1``) — tensors: ``model/<name>``,
``extra/<i>``, ``optim/<param index>/<key>``, ``best/<name>`` (the best validation's weights, when
validating), ``rng/cpu``, ``rng/cuda/<i>``; metadata (JSON in the safetensors header): step,
fingerprint, scheduler, optimiser groups, scaler, history, best (step and score, or null).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..distributed import is_main

FORMAT = "rcl-training-state"
VERSION = 1


class StateError(ValueError):
    """A training state that cannot be resumed here (unreadable, another run, another format)."""


def save_state(path: Path, step: int, model: nn.Module, extra: list[nn.Parameter], opt: torch.optim.Optimizer,
               sched, scaler, fingerprint: str, history: list[dict], best: dict | None = None) -> None:
    """Write the state after ``step`` to ``path`` atomically (rank 0 only; other ranks return).

    ``best``: the best validation so far (``{"step", "score", "state"}``; its weights are saved as
    ``best/<name>``), or None."""
    if not is_main():
        return
    from ..data.io import atomic_write_bytes

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model/{k}"] = v.detach().cpu().contiguous()
    for i, p in enumerate(extra):
        tensors[f"extra/{i}"] = p.detach().cpu().contiguous()
    sd = opt.state_dict()
    for pi, st in sd["state"].items():
        for key, val in st.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            tensors[f"optim/{pi}/{key}"] = t.detach().cpu().contiguous()
    if best is not None:
        for k, v in best["state"].items():
            tensors[f"best/{k}"] = v.detach().cpu().contiguous()
    tensors["rng/cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    sched_sd = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    meta = {
        "format": FORMAT, "version": VERSION, "step": step, "fingerprint": fingerprint,
        "scheduler": sched_sd, "optim_groups": sd["param_groups"], "scaler": scaler.state_dict(),
        "history": history,
        "best": {"step": best["step"], "score": best["score"]} if best is not None else None,
    }
    header = {"rcl": json.dumps(meta, separators=(",", ":"), allow_nan=True)}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=header)

    atomic_write_bytes(Path(path), write)


def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of a training state.

    Raises:
        StateError: missing, unreadable or not a training state (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise StateError(f"{path}: no such training state")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            header = fh.metadata() or {}
        meta = json.loads(header.get("rcl", "null"))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: not a readable training state ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StateError(f"{path}: not an rcl training state (a checkpoint? --resume takes the file "
                         "written by --save-every)")
    if meta.get("version") != VERSION:
        raise StateError(f"{path}: training state version {meta.get('version')!r}; this rcl reads version {VERSION}")
    return tensors, meta


def _match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's strides (states are saved dense row-major).

    The fused Adam kernel walks a parameter and its moments as flat memory, so a channels-last
    parameter with row-major moments would pair the wrong elements."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key, val in st.items():
                if isinstance(val, torch.Tensor) and val.shape == p.shape and val.stride() != p.stride():
                    st[key] = torch.empty_like(p, dtype=val.dtype).copy_(val)


def load_state(path, model: nn.Module, extra: list[nn.Parameter], opt, sched, scaler, fingerprint: str,
               steps: int) -> tuple[int, list[dict], dict | None]:
    """Restore a state into a freshly built run; returns ``(step, history, best)`` (``best``: the
    best validation so far, ``{"step", "score", "state"}``, or None).

    Raises:
        StateError: unreadable, another run (fingerprint), or a step beyond ``steps``.
    """
    tensors, meta = read_state(path)
    if meta.get("fingerprint") != fingerprint:
        raise StateError(f"{path}: this state belongs to another run (method, config, network or data "
                         "differ); resume with the options that started it")
    step = meta.get("step")
    if not isinstance(step, int) or not 0 < step < steps:
        raise StateError(f"{path}: saved at step {step!r}, not within this run's {steps} steps")
    try:
        own = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        model.load_state_dict(own, strict=True)
        for i, p in enumerate(extra):
            with torch.no_grad():
                p.copy_(tensors[f"extra/{i}"])
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim/"):
                _, pi, key = k.split("/", 2)
                state.setdefault(int(pi), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": meta["optim_groups"]})
        _match_layouts(opt)
        sched.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(opt.param_groups)})
        scaler.load_state_dict(meta["scaler"]) if meta.get("scaler") else None
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise StateError(f"{path}: does not fit this run ({str(exc).splitlines()[0][:160]})") from None
    torch.set_rng_state(tensors["rng/cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    best = None
    raw = meta.get("best")
    state_best = {k[len("best/"):]: v for k, v in tensors.items() if k.startswith("best/")}
    if raw is not None or state_best:
        import math

        ok = (isinstance(raw, dict) and set(raw) == {"step", "score"} and isinstance(raw["step"], int)
              and not isinstance(raw["step"], bool) and 0 < raw["step"] <= step
              and isinstance(raw["score"], (int, float)) and not isinstance(raw["score"], bool)
              and math.isfinite(raw["score"]))
        if not ok:
            raise StateError(f"{path}: its best-validation record is malformed (best={str(raw)[:60]})")
        if set(state_best) != set(model.state_dict()):
            raise StateError(f"{path}: its best-validation weights do not fit this network")
        recorded = [r for r in meta.get("history", []) if isinstance(r, dict) and r.get("step") == raw["step"]]
        if not recorded or recorded[0].get("val_psnr") != raw["score"]:
            raise StateError(f"{path}: its best-validation record (step {raw['step']}) is not in its history")
        best = {"step": raw["step"], "score": float(raw["score"]), "state": state_best}
    return step, list(meta.get("history", [])), best
