"""The one :func:`fit` every pre-training and fine-tuning goes through, for every task and method.

The order in which random numbers are drawn is part of the contract (same seed → same weights):

* self-supervised (``not method.supervised``): channel check → ``gen = seed_everything(seed)``
  (torch's global RNG and the data generator) → the network (fresh from the global RNG, or a
  copy of ``init``) → ``none``: returned in eval mode → the method (SimCLR draws its projection
  head here, after the network) → :func:`rcl.training.trainer.train`;
* supervised: checks → :func:`labelled_subset` (its own generator) → with ``cfg.val_every``, the
  validation split held out of the labelled images (:func:`validation_subset`, its own generator;
  its inputs made by the evaluation protocol from ``seed``) → fixed inputs (real pairs
  ``noisy.subset(idx)``, or ``task.degrade(labelled, noise, seed)`` when not
  ``cfg.resample_noise``, per-image generators) → ``gen = seed_everything(seed)`` →
  ``task.init_model(body, init)`` → the method → ``train``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.datasets import ImageSet
from ..data.noise import NoiseModel
from ..methods import Method, get_method
from ..models.factory import ModelConfig, build_model
from ..tasks.base import Task
from .engine import Engine
from .trainer import seed_everything, train


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained network, in eval mode.
        history: one dict per step (step, lr and the method's logs, e.g. loss); empty for ``none``.
        labelled: names of the labelled images that trained the network (supervised methods),
            else None.
        validation: names of the labelled images held out for validation (empty without it).
        best_step, best_psnr: the step whose weights were kept and its validation PSNR (dB), or
            None without validation.
        val_curve: ``[step, validation PSNR]`` of every validation, in step order (empty without).
    """

    model: nn.Module
    history: list[dict]
    labelled: list[str] | None = None
    validation: list[str] = field(default_factory=list)
    best_step: int | None = None
    best_psnr: float | None = None
    val_curve: list[list[float]] = field(default_factory=list)


def labelled_subset(n_images: int, fraction: float, seed: int) -> list[int]:
    """Indices of the labelled images: ``max(1, round(fraction · n))`` drawn by a seeded permutation.

    The subsets are nested: a larger fraction with the same seed contains every smaller one.

    Raises:
        ValueError: ``fraction`` not in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    k = max(1, round(fraction * n_images))
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[:k])


def validation_subset(labelled: list[int], cfg, seed: int) -> tuple[list[int], list[int]]:
    """Split labelled indices into ``(train, validation)``: :func:`rcl.training.validation.validation_split`
    images drawn by a permutation seeded by ``seed + 1``; none without ``cfg.val_every`` or when the
    run is too short to validate twice (``2 · val_every > steps``)."""
    from .validation import validation_split

    # at least two validations (at val_every and at the end), else holding labels out selects nothing
    on = cfg.val_every and 2 * cfg.val_every <= cfg.steps
    n_val = validation_split(len(labelled), cfg.val_fraction, cfg.val_min_labels) if on else 0
    if not n_val:
        return list(labelled), []
    perm = torch.randperm(len(labelled), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    val = sorted(labelled[j] for j in perm[:n_val])
    return [i for i in labelled if i not in set(val)], val


def _method_and_config(method: str | type[Method], cfg) -> tuple[type[Method], object]:
    cls = get_method(method) if isinstance(method, str) else method
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"method must be a registered name or a Method subclass, got {method!r}")
    if isinstance(cfg, dict):
        cfg = cls.Config(**cfg)
    elif cfg is None:
        cfg = cls.Config()
    if not isinstance(cfg, cls.Config):
        raise TypeError(f"method {cls.name!r} takes a {cls.Config.__name__} (or a dict of its fields), "
                        f"got {type(cfg).__name__}")
    return cls, cfg


def fit(task: Task, method: str | type[Method], data: ImageSet, cfg, body: ModelConfig, *,
        init: nn.Module | None = None, noise: NoiseModel | None = None, noisy: ImageSet | None = None,
        log_path: str | os.PathLike | None = None, progress: bool = True, desc: str | None = None,
        engine: Engine | None = None) -> FitResult:
    """Train a network of ``task`` with ``method``.

    Args:
        task: the task (:mod:`rcl.tasks`).
        method: a registered method name or a :class:`rcl.methods.Method` subclass.
        data: self-supervised methods: the noisy collection, e.g. ``task.pretraining_data(...)``
            (JDD: packed (4, H/2, W/2) mosaics); supervised: all clean training images (C, H, W),
            of which a fraction ``cfg.label_fraction`` is used.
        cfg: the method's config (``method.Config``), or a dict of its fields (validated).
        body: the network's body config (recorded as ``model`` in checkpoints); self-supervised
            methods train ``task.pretrain_model_config(body)``.
        init: self-supervised: a network to continue from (a copy is trained); supervised: the
            network to start from (``task.init_model``: a copy, or its weights in a new body);
            None: fresh weights.
        noise: supervised: the synthetic noise applied to clean crops (or to make fixed
            realisations); self-supervised: passed to the method.
        noisy: supervised: real noisy counterparts of ``data`` (same order and sizes).
        log_path: optional per-step CSV log (written as ``<log>.part``, renamed when done).
        progress: show a progress bar (or plain log lines); ``desc`` its label.
        engine: device, precision, resumable states, signals (:class:`rcl.training.Engine`;
            default: the CPU). Under torch.distributed every rank calls ``fit`` with the same
            arguments; each computes its share of the global batch.

    The trained network is returned on the CPU, in the contiguous layout, whatever the device.

    Returns:
        :class:`FitResult`; ``init`` and ``data`` are left untouched.

    Raises:
        ValueError: channel mismatch, too few or too small images, a config or data the task
            refuses (``task.check_training``), unknown method name.
        TypeError: a config of another method, or an ``init`` the task cannot start from.
        pydantic.ValidationError: a config dict with unknown or out-of-range fields.
        FloatingPointError: the loss became NaN or infinite.
        rcl.training.TrainingStopped: SIGTERM / SIGINT (a state is saved when ``engine.save_every``).
        rcl.training.state.StateError: ``engine.resume`` is not a state of this run.
    """
    cls, cfg = _method_and_config(method, cfg)
    engine = engine or Engine(device="cpu", progress=progress)
    if cls.supervised:
        return _fit_supervised(task, cls, data, cfg, body, init, noise, noisy, log_path, progress, desc, engine)
    net_cfg = task.pretrain_model_config(body)
    if data.channels != net_cfg.in_channels:
        raise ValueError(f"images have {data.channels} channel(s) but the model takes {net_cfg.in_channels}")
    seed_everything(cfg.seed)
    model = copy.deepcopy(init) if init is not None else build_model(net_cfg)
    if not cls.trains:
        model.eval()
        return FitResult(model, [])
    model, restore = _prepare(model, engine)
    runner = cls(data, cfg, task=task, model=model, noise=noise, inputs=noisy)
    history = train(model, runner, cfg.steps, cfg.lr, cfg.seed, log_path, progress,
                    desc=desc or f"pretrain ({cls.name})", extra_params=runner.extra_parameters(),
                    engine=engine, fingerprint=_run_id(engine, task, cls, cfg, net_cfg, data, noise, noisy, init))
    return FitResult(restore(model), history)


def _fit_supervised(task: Task, cls: type[Method], clean: ImageSet, cfg, body: ModelConfig,
                    init: nn.Module | None, noise: NoiseModel | None, noisy: ImageSet | None,
                    log_path, progress: bool, desc: str | None, engine: Engine) -> FitResult:
    task.check_training(clean, body, cfg, noise=noise, inputs=noisy)
    idx, val_idx = validation_subset(labelled_subset(len(clean), cfg.label_fraction, cfg.seed), cfg, cfg.seed)
    labelled = clean.subset(idx)
    inputs = noisy.subset(idx) if noisy is not None else None
    validation = None
    if val_idx:
        from .validation import Validation

        validation = Validation(task, clean.subset(val_idx), noise, cfg.val_every, cfg.seed,
                                noisy.subset(val_idx) if noisy is not None else None)
    if inputs is None and not cfg.resample_noise:
        inputs, labelled, _ = task.degrade(labelled, noise, cfg.seed)
    seed_everything(cfg.seed)
    model = task.init_model(body, init)
    model, restore = _prepare(model, engine)
    runner = cls(labelled, cfg, task=task, model=model, noise=noise, inputs=inputs)
    history = train(model, runner, cfg.steps, cfg.lr, cfg.seed, log_path, progress,
                    desc=desc or f"finetune ({task.name})", extra_params=runner.extra_parameters(),
                    engine=engine, fingerprint=_run_id(engine, task, cls, cfg, body, clean, noise, noisy, init),
                    validation=validation)
    result = FitResult(restore(model), history, list(labelled.names))
    if validation is not None:
        result.val_curve = [[r["step"], r["val_psnr"]] for r in history if not math.isnan(r.get("val_psnr", math.nan))]
        step, score = max(result.val_curve, key=lambda c: c[1])  # max keeps the earliest of equal scores
        result.validation, result.best_step, result.best_psnr = validation.names, step, score
    return result


def _prepare(model: nn.Module, engine: Engine):
    """Move ``model`` to the engine's device (channels-last if asked; BatchNorm → SyncBatchNorm under
    torch.distributed, weights broadcast from rank 0); returns it and the function that gives the
    trained network back on the CPU, contiguous, with plain BatchNorm."""
    from ..distributed import is_distributed

    template = copy.deepcopy(model) if is_distributed() else None
    model = model.to(engine.device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if is_distributed():
        import torch.distributed as dist

        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if has_bn and engine.device.type != "cuda":
            raise ValueError("a network with BatchNorm (DnCNN deeper than 2 layers) trains on several ranks on "
                             "CUDA only (SyncBatchNorm has no CPU kernel); use --arch unet, or one process")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t, 0)

    def restore(trained: nn.Module) -> nn.Module:
        out = template if template is not None else trained
        state = {k: v.detach().to("cpu").contiguous() for k, v in trained.state_dict().items()}
        out = out.to("cpu", memory_format=torch.contiguous_format)
        out.load_state_dict(state)
        return out.eval()

    return model, restore


def fingerprint(task: Task, cls: type[Method], cfg, body: ModelConfig, data, noise, noisy, init,
                engine: Engine | None = None) -> str:
    """What identifies a training run in its resumable states: task, method, config, network, data,
    noise, the initial network's weights and the engine's precision (a SHA-256 hex digest).

    In-memory images count by their pixels (so another folder with the same names and sizes, or
    another synthetic noise baked into a pre-training collection, is another run); file-backed ones
    by path, byte size and modification time, and their per-image transforms (e.g. the noise)."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((task.metadata(), cls.name, cfg.model_dump_json(), body.model_dump_json(),
                   noise.describe() if noise is not None else None,
                   engine.precision if engine is not None else None)).encode())
    for ims in (data, noisy):
        if ims is None:
            continue
        h.update(repr((list(ims.names), ims.sizes() if hasattr(ims, "sizes") else None)).encode())
        if hasattr(ims, "paths"):  # file-backed: never decode a whole collection to identify it
            for path in ims.paths:
                st = os.stat(path)
                h.update(repr((str(path), st.st_size, st.st_mtime_ns)).encode())
            h.update(repr([_describe_transform(t) for t in getattr(ims, "transforms", ())]).encode())
        else:
            for im in ims.images:
                h.update(im.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if init is not None:
        for k, v in init.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _run_id(engine: Engine, *args) -> str:
    """:func:`fingerprint` when the run saves or resumes a state (hashing the pixels costs a pass
    over the collection), else empty."""
    return fingerprint(*args, engine) if (engine.save_every or engine.resume is not None) else ""


def _describe_transform(t) -> str:
    """A stable description of a file-backed collection's transform (its noise and seed)."""
    noise = getattr(t, "noise", None)
    if noise is not None:
        return f"{type(t).__name__}({noise.describe()}, seed={getattr(t, 'seed', None)})"
    return type(t).__qualname__
