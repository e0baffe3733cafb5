"""The single training loop that every method plugs into.

A *method* is any object with ``loss(model, generator) -> (loss_tensor, logs_dict)`` that draws
its own batch; the loop owns the optimiser (Adam), the cosine learning-rate schedule, gradient
clipping, the progress bar and the per-step CSV log.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm


class Method(Protocol):
    name: str

    def loss(self, model: nn.Module, generator: torch.Generator) -> tuple[torch.Tensor, dict]: ...


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init) and return a generator for data sampling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train(model: nn.Module, method: Method, steps: int, lr: float, generator: torch.Generator,
          log_path: str | os.PathLike | None = None, progress: bool = True, desc: str | None = None,
          extra_params: list[nn.Parameter] | None = None, grad_clip: float = 1.0) -> list[dict]:
    """Optimise ``model`` for ``steps`` steps of ``method.loss``.

    Adam with a cosine decay of the learning rate to 1 % of ``lr``. The per-step logs (step, lr
    and whatever the method reports) are returned and, if ``log_path`` is given, written as CSV
    (to ``<log>.part`` while training, renamed when done).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the step is named).
    """
    params = list(model.parameters()) + list(extra_params or [])
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    history: list[dict] = []
    writer = fh = None
    part = None
    if log_path is not None:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        part = log_path.with_name(log_path.name + ".part")
        fh = open(part, "w", newline="")
    try:
        bar = tqdm(range(1, steps + 1), desc=desc or method.name, disable=not progress, leave=False,
                   dynamic_ncols=True)
        for step in bar:
            loss, logs = method.loss(model, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method.name}: loss is {float(loss.detach())} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            row = {"step": step, "lr": sched.get_last_lr()[0], **logs}
            sched.step()
            history.append(row)
            if fh is not None:
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
            if step % 10 == 0 or step == steps:
                bar.set_postfix(loss=f"{logs.get('loss', loss.item()):.4g}")
        if fh is not None:
            fh.close()
            os.replace(part, log_path)
    except BaseException:
        if fh is not None:
            fh.close()
            part.unlink(missing_ok=True)  # never leave a half-written log behind
        raise
    model.eval()
    return history
