"""The single training loop that every method plugs into.

A *method* is any object with ``loss(model, draws) -> (loss_tensor, logs_dict)`` that draws its
own batch from the step's :class:`rcl.data.draws.Draws`; a :class:`rcl.methods.Method` also splits
it into ``batch(draws)`` (data only, which may run in DataLoader workers) and ``objective(model,
batch, draws)``. The loop owns the optimiser (Adam), the cosine learning-rate schedule, gradient
clipping, mixed precision (autocast; a gradient scaler for fp16), the gradient all-reduce under
torch.distributed (:func:`rcl.distributed.sync_gradients`), resumable training states
(:mod:`rcl.training.state`), stop signals, the progress bar or plain log lines, and the per-step
CSV log.

Every random draw of step t comes from (seed, t) alone, so a run resumed at step t continues
exactly as the uninterrupted run (bit for bit on the CPU).
"""

from __future__ import annotations

import csv
import errno
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.draws import Draws
from ..distributed import all_reduce_sum, is_distributed, is_main, rank, sync_gradients, world_size
from .engine import Engine, StopFlag, TrainingStopped, autocast_dtype, retain_freed_memory


class Method(Protocol):
    name: str

    def loss(self, model: nn.Module, draws: Draws) -> tuple[torch.Tensor, dict]: ...


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init) and return a CPU generator seeded alike."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cosine_factor(step: int, steps: int) -> float:
    """The learning-rate factor after ``step`` of ``steps``: cosine decay from 1 to 0.01."""
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _StepBatches(torch.utils.data.Dataset):
    """Item k: the method's batch of step ``first + k`` (CPU draws; for DataLoader workers)."""

    def __init__(self, method, seed: int, first: int, last: int, rank_: int, world: int):
        self.method, self.seed, self.first, self.n = method, seed, first, last - first + 1
        self.rank, self.world, self.layout = rank_, world, method.layout()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        draws = Draws(self.seed, self.first + k, "batch", "cpu", self.rank, self.world, layout=self.layout)
        return self.method.batch(draws)


def _batches(method, seed: int, first: int, last: int, engine: Engine):
    """The batches of steps first..last, in order: from DataLoader workers when the method's source is
    decoded from files (or ``engine.workers`` > 0 with a file source), else in this process on the
    device."""
    source = getattr(method, "source", None)
    if hasattr(method, "batch") and getattr(source, "decodes_files", False):
        ds = _StepBatches(method, seed, first, last, rank(), world_size())
        loader = torch.utils.data.DataLoader(
            ds, batch_size=None, shuffle=False, num_workers=engine.workers,
            pin_memory=engine.device.type == "cuda", prefetch_factor=2 if engine.workers else None)
        it = iter(loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except Exception as exc:  # re-raised by the DataLoader with the worker's traceback in it
                raise _from_worker(exc) from None
            yield tuple(t.to(engine.device, non_blocking=True) for t in batch)
    for step in range(first, last + 1):
        yield None  # drawn in the loop (on the device)


def _agreed_signal(signum: int | None) -> int | None:
    """The stop signal any rank received (one tiny CPU all-reduce per step under torch.distributed),
    so that every rank stops after the same step and rank 0 saves the state, whichever rank was
    signalled."""
    if not is_distributed():
        return signum
    import torch.distributed as dist

    flag = torch.tensor([signum or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag) or None


def _from_worker(exc: Exception) -> Exception:
    """A worker's exception as the worker raised it: torch re-raises it in the main process with
    "Caught X in DataLoader worker process N. Original Traceback …" as its message; keep only the
    original message (the traceback's last line) so the CLI prints one line."""
    msg = str(exc)
    if "DataLoader worker" not in msg or "Traceback" not in msg:
        return exc
    last = msg.strip().splitlines()[-1]
    name = type(exc).__name__
    for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
            break
    try:
        return type(exc)(last)
    except Exception:
        return RuntimeError(last)


def _floats(rows: list[dict], summed: tuple[str, ...]) -> list[dict]:
    """Turn the pending rows' tensor logs into floats (one host copy); contributions in ``summed``
    are summed over ranks."""
    keys = [k for k, v in rows[0].items() if isinstance(v, torch.Tensor)]
    if keys:
        vals = torch.stack([torch.stack([r[k].float().reshape(()) for k in keys]) for r in rows])
        if is_distributed():
            mask = torch.tensor([k in summed for k in keys], device=vals.device)
            vals = torch.where(mask, all_reduce_sum(vals), vals)
        vals = vals.cpu().tolist()
        for r, v in zip(rows, vals):
            r.update(zip(keys, v))
    return [{k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in r.items()} for r in rows]


def train(model: nn.Module, method, steps: int, lr: float, seed: int = 0,
          log_path: str | os.PathLike | None = None, progress: bool = True, desc: str | None = None,
          extra_params: list[nn.Parameter] | None = None, grad_clip: float = 1.0,
          engine: Engine | None = None, fingerprint: str = "", validation=None) -> list[dict]:
    """Optimise ``model`` (already on ``engine.device``) for ``steps`` steps of the method's loss.

    Adam with a cosine decay of the learning rate to 1 % of ``lr``; the gradient norm is clipped
    to ``grad_clip``. Step t's draws are ``Draws(seed, t, …)`` on the device.

    Args:
        seed: seeds every draw (with the step).
        log_path: per-step CSV log, written to ``<log>.part`` and flushed as training goes, renamed
            when done (rank 0 only).
        progress: progress bar (on a terminal) or plain log lines (otherwise, or ``engine.progress``
            False).
        engine: device, precision, states, signals (:class:`rcl.training.engine.Engine`).
        fingerprint: identifies the run in its training states; resuming a state of another run is
            refused.
        validation: a :class:`rcl.training.validation.Validation`, or None. It scores the network
            every ``validation.every`` steps and after the last step (``val_psnr`` in the history,
            nan on the other steps); the weights of the best score (the earliest on a tie) are
            loaded into ``model`` at the end. Training states keep the best weights so far.

    Returns:
        One dict per step (step, lr, the method's logs as floats and, with ``validation``,
        ``val_psnr``), including the steps before a resume.

    Raises:
        FloatingPointError: the loss became NaN or infinite (the step is named).
        TrainingStopped: SIGTERM / SIGINT (after saving a state when ``engine.save_every``).
        ValueError: ``engine.resume`` is not a state of this run.
    """
    from .state import load_state, save_state

    engine = engine or Engine(device="cpu", progress=progress)
    progress = progress and engine.progress
    device = engine.device
    if device.type == "cpu" and engine.retain_freed_memory:
        retain_freed_memory()
    params = list(model.parameters()) + list(extra_params or [])
    # The fused kernel (one pass over all parameters) is 3× faster than the per-tensor loop that
    # torch picks by default on the CPU (docs/benchmarks.md); MPS keeps the default.
    fast = device.type in ("cpu", "cuda")  # fused / foreach kernels exist there
    opt = torch.optim.Adam(params, lr=lr, fused=fast or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(s, steps))
    dtype = autocast_dtype(engine.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=engine.precision == "fp16")
    fmodel = torch.compile(model) if engine.compile else model
    history: list[dict] = []
    start = 0
    best: dict | None = None  # {"step", "score", "state"}: the best validation so far
    if engine.resume is not None:
        start, history, best = load_state(engine.resume, model, extra_params or [], opt, sched, scaler,
                                          fingerprint, steps)
    model.train()
    main = is_main()
    if engine.announce and main:
        from .engine import describe_device

        ranks = f", {world_size()} ranks" if world_size() > 1 else ""
        resumed = f", resumed at step {start}" if start else ""
        print(f"{desc or getattr(method, 'name', 'train')}: device {describe_device(device)}, precision "
              f"{engine.precision}{ranks}{resumed}", file=sys.stderr, flush=True)
    layout = method.layout() if hasattr(method, "layout") else None
    if layout is not None and world_size() > layout[1]:
        what = "images (--batch-images)" if layout[0] == 2 else "crops (--batch-size)"
        raise ValueError(f"a global batch of {layout[1]} {what} cannot be shared by {world_size()} ranks: "
                         f"every rank needs at least one; use a larger batch or fewer ranks")
    summed = tuple(getattr(method, "summed_logs", ("loss",)))
    flush_every = 1 if device.type == "cpu" else 25
    show_bar = progress and main and sys.stderr.isatty()
    log_every = engine.log_every or -(-steps // 20)  # default: at most 20 lines per run
    label = desc or getattr(method, "name", "train")
    fh = writer = part = None
    made: list[Path] = []  # folders made for the log, removed again (when empty) if training fails
    if log_path is not None and main:
        log_path = Path(log_path)
        for d in reversed([log_path.parent, *log_path.parent.parents]):
            if not d.exists():
                d.mkdir()
                made.append(d)
        # a new file beside the log (never a file of the user's), renamed onto it at the end;
        # rows are flushed as training goes: `tail -f LOG.*.part`
        try:
            fd, name = tempfile.mkstemp(prefix=log_path.name + ".", suffix=".part", dir=log_path.parent)
        except OSError as exc:  # a log name near the file system's limit: a short temporary name
            if exc.errno != errno.ENAMETOOLONG:
                raise
            fd, name = tempfile.mkstemp(prefix=".rcl-log-", suffix=".part", dir=log_path.parent)
        part = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(part, 0o666 & ~umask)  # mkstemp creates 0600; the log gets the usual permissions
        fh = open(fd, "w", newline="")
        if history:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
    stop = StopFlag()
    pending: list[dict] = []
    t0, s0 = time.perf_counter(), start
    try:
        with stop.installed(engine.handle_signals):
            bar = tqdm(total=steps, initial=start, desc=label, disable=not show_bar, leave=False, dynamic_ncols=True)
            batches = _batches(method, seed, start + 1, steps, engine)
            for step, batch in zip(range(start + 1, steps + 1), batches):
                loss_draws = Draws(seed, step, "loss", device, layout=layout)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    if batch is None:  # drawn here, on the device
                        loss, logs = method.loss(fmodel, Draws(seed, step, "batch", device, layout=layout))
                    else:  # from DataLoader workers
                        loss, logs = method.objective(fmodel, batch, loss_draws)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                sync_gradients(params)
                if grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=fast or None)
                scaler.step(opt)
                scaler.update()
                pending.append({"step": step, "lr": sched.get_last_lr()[0], **logs})
                sched.step()
                if validation is not None:
                    score = validation(model) if validation.due(step, steps) else math.nan
                    pending[-1]["val_psnr"] = score
                    if score == score and (best is None or score > best["score"]):
                        best = {"step": step, "score": score,
                                "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                signum = _agreed_signal(stop.signum)
                stopping = signum is not None
                if step % flush_every == 0 or step == steps or stopping or \
                        (engine.save_every and step % engine.save_every == 0):
                    rows = _floats(pending, summed)
                    pending = []
                    for r in rows:
                        if not math.isfinite(r.get("loss", 0.0)):  # at step 1 no update has happened: not the lr
                            why = (", before any update (the starting network's weights, e.g. an --init checkpoint, "
                                   "or a loss weight or temperature out of scale?)" if r["step"] == 1 else
                                   " (a learning rate, loss weight or temperature out of scale?)")
                            raise FloatingPointError(f"{label}: loss is {r['loss']} at step {r['step']}{why}")
                    history.extend(rows)
                    if fh is not None:
                        if writer is None:
                            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                            writer.writeheader()
                        writer.writerows(rows)
                        fh.flush()
                    bar.update(len(rows))
                    if rows and show_bar:
                        bar.set_postfix(loss=f"{rows[-1].get('loss', float('nan')):.4g}")
                    if main and not show_bar and engine.log_every >= 0:
                        _log_lines(rows, log_every, steps, label, t0, s0)
                if engine.save_every and (step % engine.save_every == 0 or stopping) and step < steps:
                    save_state(engine.state_path, step, model, extra_params or [], opt, sched, scaler,
                               fingerprint, history, best)
                if stopping:
                    raise TrainingStopped(step, signum, engine.state_path if engine.save_every else None)
            bar.close()
        if best is not None:
            model.load_state_dict(best["state"])
            if main and engine.announce:
                print(f"{label}: best validation PSNR {best['score']:.2f} dB at step {best['step']}/{steps} "
                      f"(weights of that step kept)", file=sys.stderr, flush=True)
        if fh is not None:
            fh.close()
            os.replace(part, log_path)
    except BaseException:
        if fh is not None:
            fh.close()
            part.unlink(missing_ok=True)  # never leave a half-written log behind
        for d in reversed(made):  # ... nor the empty folders made for it
            try:
                d.rmdir()
            except OSError:
                break
        raise
    model.eval()
    return history


def _log_lines(rows: list[dict], every: int, steps: int, label: str, t0: float, s0: int) -> None:
    """Plain progress lines (no carriage returns) for logs: step, loss, steps/s, ETA."""
    for r in rows:
        step = r["step"]
        if step % every and step != steps:
            continue
        elapsed = time.perf_counter() - t0
        rate = (step - s0) / elapsed if elapsed > 0 else float("nan")
        eta = (steps - step) / rate if rate and rate == rate and rate > 0 else 0.0
        print(f"{label}: step {step}/{steps}  loss {r.get('loss', float('nan')):.5g}  {rate:.2f} steps/s  "
              f"ETA {_fmt_time(eta)}", file=sys.stderr, flush=True)
