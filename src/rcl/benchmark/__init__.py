"""`rcl benchmark`: every pre-training method × label fraction × seed × test set/noise, resumable.

What is measured (all through the one protocol, :func:`rcl.evaluation.protocol.evaluate`, seed 0):

1. The training images of ``data.train`` are noised **once** with ``train_noise`` and
   ``noise_seed``: this fixed noisy collection is what every pre-training method sees.
2. Pre-training, one network per method of the :mod:`rcl.methods` registry through
   :func:`rcl.training.fit` (each with its own config, :attr:`rcl.methods.Method.Config`, built
   from ``pretrain``: ``steps``/``seed``, the ``baselines`` fields it declares, its own section;
   ``none`` = random initialisation).
3. Fine-tuning from each of them on every label fraction with every seed: the labelled subset
   of the *clean* training images with fresh synthetic noise per crop (``fit`` with the
   ``supervised`` method; ``none`` = supervised training from scratch).
4. Evaluation of every network on every test set × noise; the methods whose networks restore
   without labels (trait ``zero_label``: ``rcl``, ``n2v``, ``ne2ne`` by a plain forward pass,
   ``n2s`` with its own predictor, :func:`rcl.methods.n2s_predict`) are also evaluated directly;
   BM3D with the known σ where asked.
5. Ablations: named overrides of RCL's pre-training config, each evaluated directly and after
   fine-tuning at one label fraction with the first seed.

Every unit of work is a *cell* with its own output under ``<out>/cache/``: a checkpoint per
pre-training and fine-tuning (:func:`rcl.checkpoint.save_checkpoint`, atomic), a small JSON per
evaluation (atomic). Each output records a hash of the configuration it depends on; a rerun
skips the cells whose output exists with the same hash and recomputes the others (a changed
fine-tuning config recomputes the fine-tuning cells and their evaluations, nothing else).

The run folder is assembled as ``.<out>.partial`` and renamed to ``<out>`` when the report is
written; an interrupted run leaves the ``.partial`` folder, and the next run resumes from it.
A finished folder is reopened the same way (renamed to ``.partial`` while the rerun works).

Downstream tasks (optional ``tasks`` section; every key is optional)::

    tasks:
      denoise: true            # the denoising benchmark above (false: SR/JDD only; data.test may
                               # then be empty, and bm3d/ablations must stay off)
      sr:                      # super-resolution, noisy LR -> clean HR (rcl.evaluation.SRTask)
        scales: [2, 4]
        test: [{name: Set12, path: test/Set12, noises: ["gaussian:15"]}]   # channels = data.channels
        train_noise: "gaussian:15"   # noise on the LR fine-tuning crops (default: train_noise)
        methods: [rcl, simclr, n2v, none]   # default: methods
        label_fractions: [0.01, 0.1, 1.0]   # default: label_fractions (of data.train)
        seeds: [0, 1]                       # default: seeds
        finetune: {crop_size: 96}           # FinetuneConfig fields over `finetune` (HR crop,
                                            # a multiple of every scale)
        max_test_images: null
      jdd:                     # joint demosaicking + denoising, noisy Bayer mosaic -> clean RGB
        train: train/LIVE1     # clean RGB images (default: data.train when data.channels is 3)
        max_train_images: null
        pattern: RGGB
        noise: poisson-gaussian   # pre-training mosaics and fine-tuning (fresh per crop)
        noise_seed: null          # seed of the one-time noisy mosaics (default: noise_seed)
        test: [{name: Kodak24, path: test/Kodak24, noises: [poisson-gaussian]}]
        methods / label_fractions / seeds: as for sr
        model: {}                 # arch/width/depth over `model` (channels are always 4 -> 4)
        pretrain: {}              # deep-merged over `pretrain` (e.g. {steps: 400})
        finetune: {crop_size: 96} # over `finetune` (even crop size)
        malvar: true              # Malvar-He-Cutler demosaic row
        bm3d: {enabled: true, max_images: 4, profile: np}   # Malvar + CBM3D row (slow)
        max_test_images: null

* **SR**: the denoising pre-training cells of the same ``data.train``/channels/model (shared with
  the denoising benchmark, same cache files) initialise the body of an
  :class:`rcl.models.sr.SRNet` (zero-initialised sub-pixel tail, bicubic skip), fine-tuned per
  scale × method × fraction × seed (``fit`` with :class:`rcl.tasks.SRTask`); ``none`` = a fresh
  SRNet. Rows: bicubic up-sampling of the noisy LR input (the task's reference) and the
  networks; PSNR/SSIM on the Y channel (BT.601) with a ``scale``-px border, RGB PSNR for colour.
  HR test images are cropped at the bottom/right to a multiple of the scale.
* **JDD**: the clean RGB training images are mosaicked (``pattern``), noised once
  (``noise``, ``noise_seed``) and packed to (4, H/2, W/2); each method pre-trains a UNet(4, 4) on
  them (``fit`` with :class:`rcl.tasks.JDDTask`; none: fresh weights), then ``fit`` fine-tunes a
  :class:`rcl.models.jdd.JDDNet` (Malvar skip). Rows: bilinear demosaicking of the noisy mosaic
  (the task's reference), Malvar demosaicking, Malvar + BM3D (CBM3D on the demosaicked RGB with
  the σ the protocol passes: the noise model's per-image σ on [0, 1], averaged over the mosaic; on
  ``bm3d.max_images`` images) and the networks.
* **Any other registered task** (:mod:`rcl.tasks`) under its name, e.g. ``tasks: {my-task: {test:
  [...]}}`` (:class:`~.sections.RegisteredTaskSection`: ``params`` of its constructor, ``train``,
  ``noise``, ``noise_seed`` and the fields shared with SR): benchmarked like JDD, through the
  task object alone (its pre-training data, network, degradation, reference row and metrics).

Their cells are hashed, cached and resumed exactly like the denoising cells (under
``cache/sr/``, ``cache/jdd/`` and ``cache/<name>/``); the report gets a section per task with
tables and the figures ``sr_psnr_vs_fraction.png``, ``sr_samples_x<scale>.png``,
``jdd_psnr_vs_fraction.png``, ``jdd_samples.png`` (another task: ``<name>_psnr_vs_fraction.png``).

Outputs: ``report.md``, ``results.json``, ``psnr_vs_fraction.png``, ``samples.png`` (denoising),
the task figures, ``config.yaml``, ``benchmark.log`` and ``cache/``.

Package layout (one concern per module; each imports only modules listed above it)::

    validation.py   error messages with full field paths; field checks; the methods (registry, roles)
    sections.py     the config sections (data, test sets, BM3D, ablations, pretrain, tasks.sr/jdd)
    config.py       BenchmarkConfig, the presets, load_config, config_dict/config_yaml
    cells.py        ModelCell/EvalCell, config_hash, cache status, file identities, atomic JSON
    taskspec.py     TaskSpec: the config of each task around its rcl.tasks object (the only place)
    inputs.py       training/test images (loaded once), centre crops, noisy test images, file ids
    plan.py         Plan: every cell (key, cache path, hash) in run order
    runner.py       Runner: training and evaluation of the missing cells; the read API
    stats.py        Stat, aggregation over seeds, comparisons, verdicts, formatting
    claims.py       the four claims and their report section
    published.py    the published reference numbers (published.yaml: data with sources)
    report_tasks.py the SR and JDD report sections
    report.py       report.md and the results.json summary (header, denoising sections)
    figures.py      the figures
    run.py          run_benchmark: the run folder, resumption, outputs

The report, statistics and figures read a run only through the runner's read API
(:class:`Runner`: ``plan``, ``scores``, ``spec``, ``model``, ``restorer``, ``inputs``).
"""

from .cells import CELL_FORMAT, EVAL_SEED, EvalCell, ModelCell, config_hash, file_ids
from .claims import judge_claims
from .config import PRESETS, BenchmarkConfig, config_dict, config_yaml, load_config, preset_path
from .plan import Plan
from .published import published_numbers
from .report import log_history
from .run import MARKER, run_benchmark
from .runner import Runner
from .sections import (AblationConfig, BM3DConfig, DataConfig, JDDSection, PretrainSection, RegisteredTaskSection,
                       Selection, SRSection, TasksSection, TestSetConfig)
from .stats import Stat, aggregate, compare, verdict
from .taskspec import DenoiseSpec, JDDSpec, SectionSpec, SRSpec, TaskSpec, downstream_specs, task_spec
from .validation import METHODS, BenchmarkConfigError, pretraining_methods, role_method, role_methods

__all__ = [
    "AblationConfig", "BM3DConfig", "BenchmarkConfig", "BenchmarkConfigError", "CELL_FORMAT", "DataConfig",
    "DenoiseSpec", "EVAL_SEED", "EvalCell", "JDDSection", "JDDSpec", "MARKER", "METHODS", "ModelCell", "PRESETS",
    "Plan", "PretrainSection", "RegisteredTaskSection", "Runner", "SRSection", "SRSpec", "SectionSpec", "Selection",
    "Stat", "TaskSpec", "TasksSection", "TestSetConfig", "aggregate", "compare", "config_dict", "config_hash",
    "config_yaml", "downstream_specs", "file_ids", "judge_claims", "load_config", "log_history", "preset_path",
    "pretraining_methods", "published_numbers", "role_method", "role_methods", "run_benchmark", "task_spec",
    "verdict",
]
