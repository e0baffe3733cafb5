"""Computing the cells of a :class:`~.plan.Plan`: training, evaluation, the cache, the log.

Every training cell runs :func:`rcl.training.fit` with the cell's task object (``spec.task``):
pre-training with the cell's method of :mod:`rcl.methods` and its config, fine-tuning with the
``supervised`` method (:class:`rcl.methods.Supervised`). Every evaluation runs the one protocol,
:func:`rcl.evaluation.protocol.evaluate`, with the task object.

The read API used by the statistics, the report and the figures (nothing else of the runner
is meant for them): :attr:`Runner.plan`, :meth:`Runner.scores`, :meth:`Runner.spec`,
:meth:`Runner.model`, :meth:`Runner.restorer`, :attr:`Runner.inputs`, :attr:`Runner.computed`,
:attr:`Runner.cached` and :attr:`Runner.log_path`.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..reporting import finite_json
from .cells import EVAL_SEED, EvalCell, ModelCell, atomic_json, eval_payload, model_done
from .config import BenchmarkConfig
from .inputs import Inputs
from .plan import PLAIN, Plan
from .taskspec import TaskSpec, task_spec


def engine_tag(engine) -> dict | None:
    """What of the engine changes a training cell's result, for its hash: None on the CPU in fp32
    (so CPU caches keep their hashes), else the device type and precision."""
    if engine.device.type == "cpu" and engine.precision == "fp32":
        return None
    return {"device": engine.device.type, "precision": engine.precision}


class Runner:
    """Plans the cells of a config (in ``work/cache``) and computes the missing ones (:meth:`run`)."""

    def __init__(self, cfg: BenchmarkConfig, work: Path, progress: bool, engine=None, save_every: int | None = None):
        from ..training import Engine

        self.cfg, self.work, self.progress = cfg, Path(work), progress
        self.engine = engine or Engine(device="cpu", progress=progress)
        self.save_every = save_every
        self.log_path = self.work / "benchmark.log"
        self.computed: list[str] = []  # keys of the cells computed by this run
        self.cached: list[str] = []  # keys of the cells reused from the cache
        self.results: dict[str, dict] = {}  # eval cell key → payload
        self.inputs = Inputs(cfg)
        self.plan = Plan(cfg, self.work / "cache", self.inputs, engine_tag=engine_tag(self.engine))
        self._models: dict[str, Any] = {}
        self._specs: dict[tuple, TaskSpec] = {}

    # -- read API ---------------------------------------------------------------------------

    @property
    def all_cells(self) -> list:
        return self.plan.all_cells

    def spec(self, task: str, scale: int = 1) -> TaskSpec:
        """The :class:`TaskSpec` of a task (``scale``: SR's factor)."""
        if (task, scale) not in self._specs:
            self._specs[(task, scale)] = task_spec(self.cfg, task, scale)
        return self._specs[(task, scale)]

    def spec_of(self, cell: ModelCell | EvalCell) -> TaskSpec:
        return self.spec(cell.task, cell.scale)

    def scores(self, task: str) -> list[tuple[EvalCell, dict]]:
        """(cell, payload) of every evaluation of ``task`` (all scales), in plan order."""
        return [(c, self.results[c.key]) for c in self.plan.all_cells if isinstance(c, EvalCell) and c.task == task]

    def model(self, cell: ModelCell):
        """The network of a model cell (loaded from its checkpoint once)."""
        if cell.key not in self._models:
            from ..checkpoint import load_checkpoint

            self._models[cell.key], _ = load_checkpoint(cell.path, expect=cell.model_cfg)
        return self._models[cell.key]

    def restorer(self, predictor: str, model_cell: ModelCell | None, spec: TaskSpec) -> Callable:
        """The protocol restorer ``(input, sigma) -> output`` of a row: a network (``plain``: forward
        pass, tiled with ``tile``; a method's name: that method's :meth:`rcl.methods.Method.predictor`
        with the cell's config, e.g. n2s's ``n2s_predict``) or, without ``model_cell``, the task's
        network-free method (:meth:`rcl.tasks.Task.classical_restorer`: BM3D, bicubic, Malvar, …)."""
        from ..evaluation.protocol import model_denoiser
        from ..methods import get_method

        if model_cell is None:
            return spec.classical_restorer(predictor)
        model = self.model(model_cell)
        if predictor == PLAIN:
            return model_denoiser(model, tile=self.cfg.tile)
        cls = get_method(predictor)  # ValueError for an unknown predictor
        return cls.predictor(model, cls.Config(**model_cell.training))

    # -- compute ----------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} {line}\n")

    def train(self, cell: ModelCell) -> tuple[Any, dict]:
        """Train a model cell through :func:`rcl.training.fit`: (network, checkpoint metadata of the run).

        Pre-training: the cell's method on the task's fixed noisy collection (the network
        :meth:`rcl.tasks.Task.pretrain_model_config` of the body). Fine-tuning: the supervised
        method on the labelled clean images, fresh ``train_noise`` per crop, from the cell's
        pre-trained network (:meth:`rcl.tasks.Task.init_model`; None: fresh weights)."""
        from ..data.noise import parse_noise_spec
        from ..methods import Supervised
        from ..training.fit import fit

        spec = self.spec_of(cell)
        clean, collection, _ = self.inputs.training(spec)
        engine = self.cell_engine(cell)
        if cell.kind == "pretrain":
            res = fit(spec.task, cell.method, collection, cell.training, spec.model_cfg, progress=self.progress,
                      engine=engine)
            return res.model, {"stage": "pretrain", "method": cell.method, "noise": spec.collection_noise,
                               "noise_seed": spec.noise_seed}
        init = self.model(cell.init) if cell.init is not None else None
        res = fit(spec.task, Supervised, clean, cell.training, spec.model_cfg, init=init,
                  noise=parse_noise_spec(spec.train_noise), progress=self.progress, desc=cell.key, engine=engine)
        return res.model, {"stage": "finetune", "method": cell.method, "init_stage": "pretrain" if cell.init else None,
                           "noise": spec.train_noise, "labelled_images": res.labelled,
                           "validation_images": res.validation, "best_step": res.best_step,
                           "best_val_psnr": res.best_psnr, "val_curve": res.val_curve}

    def state_path(self, cell: ModelCell) -> Path:
        """Where a training cell's resumable state goes (beside its checkpoint)."""
        return cell.path.with_name(cell.path.name.removesuffix(".safetensors") + ".state.safetensors")

    def cell_engine(self, cell: ModelCell):
        """The runner's engine for one cell: with ``save_every``, saving the cell's state, and resuming
        from a state of the same cell (a state of another run is set aside, with a warning)."""
        import dataclasses

        from ..training.state import StateError, read_state

        if not self.save_every:
            return dataclasses.replace(self.engine, save_every=None, state_path=None, resume=None)
        state = self.state_path(cell)
        resume = None
        if state.exists():
            try:
                read_state(state)
                resume = state
                self._log(f"resuming {cell.key} from {state.name}")
            except StateError as exc:
                warnings.warn(f"{exc}; the cell starts again")
                state.unlink()
        return dataclasses.replace(self.engine, save_every=self.save_every, state_path=state, resume=resume)

    def compute_model(self, cell: ModelCell) -> None:
        from ..checkpoint import save_checkpoint
        from ..training import describe_device
        from ..training.state import StateError

        t0 = time.time()
        try:
            model, meta = self.train(cell)
        except StateError as exc:  # a state of this cell's path but another run: start the cell again
            warnings.warn(f"{exc}; the cell starts again")
            self.state_path(cell).unlink(missing_ok=True)
            model, meta = self.train(cell)
        secs = time.time() - t0
        save_checkpoint(cell.path, model, cell.model_cfg, cell_hash=cell.hash, seconds=secs,
                        benchmark=self.cfg.name, device=describe_device(self.engine.device),
                        precision=self.engine.precision, **{**cell.meta, **meta})
        self.state_path(cell).unlink(missing_ok=True)
        self._models[cell.key] = model

    def compute_eval(self, cell: EvalCell) -> dict:
        """Evaluate one cell through the protocol and write its JSON; returns the payload."""
        from ..data.noise import parse_noise_spec
        from ..evaluation.protocol import evaluate

        spec = self.spec_of(cell)
        t0 = time.time()
        clean = self.inputs.test_images(cell.test_cfg, cell.max_images, spec)
        kwargs = spec.eval_kwargs(self.inputs, cell.test_cfg, cell.noise, cell.max_images)
        res, _ = evaluate({cell.key: self.restorer(cell.predictor, cell.model, spec)}, clean,
                          parse_noise_spec(cell.noise), seed=EVAL_SEED, **kwargs)
        r = res[cell.key]
        payload = {"hash": cell.hash, "key": cell.key, **spec.payload_fields(), "row": list(cell.row),
                   "test": cell.test, "noise": cell.noise, "predictor": cell.predictor, "protocol_seed": EVAL_SEED,
                   "seconds": time.time() - t0, **r.to_dict(), **spec.extra_scores(r)}
        atomic_json(cell.path, finite_json(payload))
        return payload

    def run(self) -> None:
        """Compute every cell whose output is missing or of another hash (in plan order)."""
        from tqdm.auto import tqdm

        cells = self.plan.all_cells
        import sys

        # a bar only on a terminal: carriage returns must not reach a log file
        bar = tqdm(total=len(cells), desc="benchmark", unit="cell", disable=not (self.progress and sys.stderr.isatty()),
                   dynamic_ncols=True)

        def tick(key: str, computed: bool, secs: float = 0.0):
            (self.computed if computed else self.cached).append(key)
            self._log(f"{'computed' if computed else 'cached  '} {key}" + (f" ({secs:.1f} s)" if computed else ""))
            bar.update(1)
            bar.set_postfix_str(f"{len(self.computed)} computed, {len(self.cached)} cached, "
                                f"{len(cells) - bar.n} left")

        try:
            self._log(f"start: {len(cells)} cells")
            for mc in self.plan.model_cells:
                if model_done(mc):
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
            for ec in self.plan.ref_cells + self.plan.bm3d_cells:
                self._eval(ec, bar, tick)
        finally:
            bar.close()

    def _eval(self, ec: EvalCell, bar, tick) -> None:
        payload = eval_payload(ec)
        if payload is not None:
            self.results[ec.key] = payload
            tick(ec.key, False)
            return
        bar.set_description(ec.key)
        t0 = time.time()
        self.results[ec.key] = self.compute_eval(ec)
        tick(ec.key, True, time.time() - t0)
