"""Planning: every cell of a benchmark config, its key, cache path and hash, in the order they run.

Order (part of the behaviour: the report and ``results.json`` list cells in it):

1. pre-training on ``data.train``, one cell per method of the denoising benchmark and of SR
   (shared: the same cache file and hash), with the 0-label evaluations of the denoisers;
2. denoising fine-tuning (method × fraction × seed) with its evaluations, then (with
   ``compute_matched_scratch``) scratch trained for pre-training + fine-tuning steps;
3. the ablations (pre-training, then fine-tuning, each with its evaluations);
4. SR, per scale: fine-tuning (method × fraction × seed) with its evaluations, then the
   reference (bicubic) rows;
5. JDD: pre-training on packed mosaics, fine-tuning, then the classical rows;
6. every other registered task with a ``tasks.<name>`` section, like JDD;
7. the denoising BM3D rows.

Everything that differs between the tasks comes from their :class:`~.taskspec.TaskSpec` (and so
from the task objects of :mod:`rcl.tasks`); what differs between the methods from the traits of
:mod:`rcl.methods` (``trains``: a pre-training cell; ``zero_label``: evaluated with 0 labels;
:meth:`~rcl.methods.Method.predictor_id`: restores with its own predictor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..methods import get_method
from .cells import EVAL_SEED, EvalCell, ModelCell, config_hash, frac_tag, slug
from .config import BenchmarkConfig
from .inputs import Inputs
from .sections import TestSetConfig
from .taskspec import DenoiseSpec, TaskSpec, downstream_specs
from .validation import role_method

PLAIN = "plain"  # the predictor of a network evaluated by a plain forward pass
MATCHED = "scratch-matched"  # the row of scratch trained for pre-training + fine-tuning steps


def matched_steps(cfg: BenchmarkConfig) -> int:
    """Steps of the compute-matched scratch row: RCL's pre-training steps plus the fine-tuning steps."""
    return cfg.pretrain.method_config(role_method("ours")).steps + cfg.finetune.steps


class Plan:
    """The cells of a config under the cache folder ``cache``.

    Attributes:
        model_cells: training cells in run order, each with its evaluations (``evals``).
        ref_cells: the network-free rows of the other tasks (bicubic, bilinear, Malvar, Malvar + BM3D, …).
        bm3d_cells: the denoising BM3D rows.
        pretrained: method → pre-training cell on ``data.train`` (denoising and SR).
        task_pretrained: task name → method → pre-training cell of a task with its own (JDD, …).
    """

    def __init__(self, cfg: BenchmarkConfig, cache: Path, inputs: Inputs | None = None,
                 engine_tag: dict | None = None):
        self.cfg, self.cache = cfg, Path(cache)
        self.engine_tag = engine_tag
        self.inputs = inputs or Inputs(cfg)
        self.model_cells: list[ModelCell] = []
        self.ref_cells: list[EvalCell] = []
        self.bm3d_cells: list[EvalCell] = []
        self.pretrained: dict[str, ModelCell] = {}
        self.task_pretrained: dict[str, dict[str, ModelCell]] = {}
        self._n_train: dict[str, int] = {}
        self._train_ids: dict[str, dict] = {}
        self._finetuned: dict[tuple, ModelCell] = {}

        den = DenoiseSpec(cfg)
        others = downstream_specs(cfg)
        for spec in [den] + others:
            if spec.train_key not in self._n_train:
                self._identify(spec)
        self._plan_denoise(den, [s for s in others if not s.own_pretraining])
        for spec in others:
            pretrained = self.pretrained
            if spec.own_pretraining:
                pretrained = self.task_pretrained.setdefault(spec.name, {})
                for m in spec.methods:
                    if get_method(m).trains:
                        pretrained[m] = self._pretrain(spec, m)
            self._plan_downstream(spec, pretrained)
        if cfg.tasks.denoise and cfg.bm3d.enabled:
            for t, n in cfg.expand(cfg.bm3d.where):
                self.bm3d_cells.append(self.eval_cell(den, "BM3D (σ known)", "bm3d", ("bm3d",), cfg.test_set(t), n,
                                                      "bm3d", None, cfg.bm3d.max_images))

    # -- read API ---------------------------------------------------------------------------

    @property
    def all_cells(self) -> list:
        """Every cell in run order: each training cell followed by its evaluations, then the
        reference rows and the BM3D rows."""
        out: list = []
        for c in self.model_cells:
            out.append(c)
            out += c.evals
        return out + self.ref_cells + self.bm3d_cells

    def train_count(self, spec: TaskSpec) -> int:
        """Number of training images of a task (label fractions are shares of it)."""
        return self._n_train[spec.train_key]

    def finetuned(self, spec: TaskSpec, method: str, fraction: float, seed: int) -> ModelCell:
        """The fine-tuning cell of a task (not of an ablation) at one label fraction and seed."""
        return self._finetuned[(spec.name, spec.scale, method, fraction, seed)]

    # -- cells ------------------------------------------------------------------------------

    def _identify(self, spec: TaskSpec) -> None:
        n, ident = self.inputs.train_id(spec)
        self._n_train[spec.train_key], self._train_ids[spec.train_key] = n, ident

    def _engine_fields(self) -> dict:
        """Fields of every training cell's hash: the sampler version (:data:`rcl.data.draws.SAMPLER`)
        and, off the CPU or fp32, the engine (:func:`rcl.benchmark.runner.engine_tag`)."""
        from ..data.draws import SAMPLER

        return {"sampler": SAMPLER, **({"engine": self.engine_tag} if self.engine_tag else {})}

    def pretrain_cell(self, spec: TaskSpec, key: str, path: Path, method: str, pcfg: dict) -> ModelCell:
        """A pre-training cell of ``method`` with the config ``pcfg`` on the task's collection."""
        model_cfg = spec.pretrain_model_cfg()
        h = config_hash({"kind": "pretrain", "method": method, "model": model_cfg.model_dump(),
                         "train": self._train_ids[spec.train_key], "cfg": pcfg, **spec.pretrain_hash_fields(),
                         **self._engine_fields()})
        return ModelCell(key, path, h, "pretrain", method, meta={"training": pcfg, **spec.pretrain_meta()},
                         model_cfg=model_cfg, task=spec.name, scale=spec.scale, training=pcfg)

    def finetune_cell(self, spec: TaskSpec, key: str, path: Path, method: str, init: ModelCell | None,
                      frac: float, seed: int, steps: int | None = None) -> ModelCell:
        """A fine-tuning cell (from ``init``, None: fresh weights) at one label fraction and seed
        (``steps``: instead of the fine-tuning config's)."""
        fcfg = spec.finetune_base().model_copy(update={"label_fraction": frac, "seed": seed,
                                                       **({"steps": steps} if steps else {})})
        model_cfg = spec.model_cfg
        h = config_hash({"kind": "finetune", "init": init.hash if init else None, "model": model_cfg.model_dump(),
                         "train": self._train_ids[spec.train_key], "noise": spec.train_noise,
                         "cfg": fcfg.model_dump(), **spec.finetune_hash_fields(), **self._engine_fields()})
        meta = {"training": fcfg.model_dump(), "fraction": frac, "seed": seed, **spec.finetune_meta()}
        return ModelCell(key, path, h, "finetune", method, meta=meta, model_cfg=model_cfg, task=spec.name,
                         scale=spec.scale, training=fcfg, init=init)

    def eval_cell(self, spec: TaskSpec, label: str, rel: str, row: tuple, t: TestSetConfig, noise: str,
                  predictor: str, model: ModelCell | None, max_images: int | None = None) -> EvalCell:
        """The evaluation of a network (``model``) or of a network-free row on one test set/noise;
        key ``eval <task prefix><label> | <test> <noise>``, JSON under the task's eval folder/``rel``."""
        limit = spec.test_limit(t, max_images)
        src: Any = model.hash if model is not None else spec.classical_source(predictor)
        pred = predictor
        if model is not None and predictor != PLAIN:  # a method's own predictor (n2s: n2s_predict)
            cls = get_method(predictor)
            pred = cls.predictor_id(cls.Config(**model.training))
        h = config_hash({"kind": "eval", **spec.eval_hash_fields(), "model": src, "predictor": pred,
                         "test": self.inputs.test_id(t, limit, spec), "noise": noise, "seed": EVAL_SEED,
                         "tile": self.cfg.tile if predictor == PLAIN else None})
        path = spec.eval_dir(self.cache, rel) / slug(t.name) / f"{slug(noise)}.json"
        return EvalCell(f"eval {spec.key_prefix}{label} | {t.name} {noise}", path, h, row, t.name, noise, predictor,
                        model, limit, task=spec.name, scale=spec.scale, test_cfg=t)

    def _pretrain(self, spec: TaskSpec, method: str) -> ModelCell:
        cell = self.pretrain_cell(spec, f"{spec.key_prefix}pretrain {method}",
                                  spec.model_dir(self.cache) / "pretrain" / f"{method}.safetensors", method,
                                  spec.pretrain_config(method))
        self.model_cells.append(cell)
        return cell

    def _finetune_grid(self, spec: TaskSpec, pretrained: dict[str, ModelCell],
                       tests: list[tuple[TestSetConfig, str]]) -> None:
        """Fine-tuning cells method × fraction × seed, each evaluated on ``tests``."""
        for m in spec.methods:
            for f in spec.fractions:
                for s in spec.seeds:
                    tag = f"f{frac_tag(f)}_s{s}"
                    cell = self.finetune_cell(spec, f"{spec.key_prefix}finetune {m} f={f:g} seed={s}",
                                              spec.model_dir(self.cache) / "finetune" / m / f"{tag}.safetensors", m,
                                              pretrained.get(m), f, s)
                    cell.evals = [self.eval_cell(spec, f"{m} f={f:g} seed={s}", f"finetune/{m}/{tag}",
                                                 ("ft", m, f, s), t, n, PLAIN, cell) for t, n in tests]
                    self.model_cells.append(cell)
                    self._finetuned[(spec.name, spec.scale, m, f, s)] = cell

    def _matched_grid(self, spec: TaskSpec, tests: list[tuple[TestSetConfig, str]]) -> None:
        """Scratch (fresh weights) for :func:`matched_steps` steps, fraction × seed: row ``MATCHED``."""
        steps, scratch = matched_steps(self.cfg), role_method("scratch")
        for f in spec.fractions:
            for s in spec.seeds:
                tag = f"f{frac_tag(f)}_s{s}"
                cell = self.finetune_cell(spec, f"finetune {MATCHED} f={f:g} seed={s}",
                                          spec.model_dir(self.cache) / "finetune" / MATCHED / f"{tag}.safetensors",
                                          scratch, None, f, s, steps=steps)
                cell.meta["compute_matched"] = True
                cell.evals = [self.eval_cell(spec, f"{MATCHED} f={f:g} seed={s}", f"finetune/{MATCHED}/{tag}",
                                             ("ft", MATCHED, f, s), t, n, PLAIN, cell) for t, n in tests]
                self.model_cells.append(cell)

    # -- per task ---------------------------------------------------------------------------

    def _plan_denoise(self, den: DenoiseSpec, sharing: list[TaskSpec]) -> None:
        """The denoising cells; ``sharing``: the tasks whose networks start from its pre-training (SR)."""
        cfg = self.cfg
        on = cfg.tasks.denoise
        pairs = [(cfg.test_set(t), n) for t, n in cfg.expand(None)] if on else []
        # one pre-training cell per method, shared by denoising and SR (same cache file and hash)
        wanted = list(cfg.methods) if on else []
        for spec in sharing:
            wanted += [m for m in spec.methods if m not in wanted]
        for m in wanted:
            cls = get_method(m)
            if not cls.trains:
                continue
            cell = self._pretrain(den, m)
            if on and m in cfg.methods and cls.zero_label:
                # a method with a predictor of its own is evaluated with it (the predictor is its name)
                pred = PLAIN if cls.predictor_id(cls.Config(**cell.training)) is None else m
                cell.evals = [self.eval_cell(den, f"{m} (0 labels)", f"direct/{m}", ("direct", m), t, n, pred, cell)
                              for t, n in pairs]
            self.pretrained[m] = cell
        if not on:
            return
        self._finetune_grid(den, self.pretrained, pairs)
        if cfg.compute_matched_scratch:
            self._matched_grid(den, pairs)
        abl_pairs = [(cfg.test_set(t), n) for t, n in cfg.expand(cfg.ablation_eval)]
        fa, s0 = cfg.abl_fraction, cfg.seeds[0]
        ours = role_method("ours")  # the ablations are variants of RCL's pre-training
        for a in cfg.ablations:
            d, rel = self.cache / "ablation" / slug(a.name), f"ablation/{slug(a.name)}"
            pre = self.pretrain_cell(den, f"ablation {a.name} pretrain", d / "pretrain.safetensors", ours,
                                     den.pretrain_config(ours, a.rcl))
            pre.meta["ablation"] = a.name
            pre.evals = [self.eval_cell(den, f"ablation {a.name} (0 labels)", f"{rel}/direct",
                                        ("abl-direct", a.name), t, n, PLAIN, pre) for t, n in abl_pairs]
            ft = self.finetune_cell(den, f"ablation {a.name} finetune f={fa:g} seed={s0}",
                                    d / f"finetune_f{frac_tag(fa)}_s{s0}.safetensors", ours, pre, fa, s0)
            ft.meta["ablation"] = a.name
            ft.evals = [self.eval_cell(den, f"ablation {a.name} f={fa:g} seed={s0}", f"{rel}/finetune",
                                       ("abl-ft", a.name), t, n, PLAIN, ft) for t, n in abl_pairs]
            self.model_cells += [pre, ft]

    def _plan_downstream(self, spec: TaskSpec, pretrained: dict[str, ModelCell]) -> None:
        """SR (one scale), JDD or another registered task: the fine-tuning grid, then the network-free rows."""
        tests = [(t, n) for t in spec.tests for n in t.noises]
        self._finetune_grid(spec, pretrained, tests)
        for group in spec.reference_rows():
            for t, n in tests:
                for row, predictor, max_images in group:
                    self.ref_cells.append(self.eval_cell(spec, predictor, predictor, row, t, n, predictor, None,
                                                         max_images))
