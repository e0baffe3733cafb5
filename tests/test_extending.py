"""A new method and a new task, defined here and registered, run through fit(), the protocol,
checkpoints and the benchmark (planner, runner, report) without any change to src/ (issue "One
definition per method and per task")."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from rcl.benchmark import BenchmarkConfig, Plan, load_config, run_benchmark
from rcl.checkpoint import load_checkpoint, save_checkpoint
from rcl.configs import Seed, StrictConfig
from rcl.data.datasets import ImageSet, add_noise_per_image, crop_batch
from rcl.data.io import write_image
from rcl.data.noise import GaussianNoise
from rcl.evaluation import evaluate, psnr, ssim
from rcl.methods import METHODS, FinetuneConfig, Method, get_method, register_method
from rcl.models import ModelConfig, build_model
from rcl.tasks import TASKS, DenoiseTask, Task, register_task, task_from_metadata
from rcl.training import fit


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3×3 box blur of a (B, C, H, W) batch (replicate borders)."""
    c = x.shape[1]
    k = torch.full((c, 1, 3, 3), 1 / 9, dtype=x.dtype)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)


class DeblurTask(Task):
    """Toy task: blurred + noisy (C, H, W) → sharp (C, H, W)."""

    name = "toy-deblur"
    reference_name = "blurred input"

    def describe(self):
        return "deblurring (toy)"

    @classmethod
    def from_metadata(cls, meta):
        return cls()

    def build_model(self, body, meta=None):
        return build_model(body)

    def init_model(self, body, init):
        return copy.deepcopy(init) if init is not None else build_model(body)

    def degrade(self, clean, noise, seed):
        blurred = ImageSet([_blur(im[None])[0] for im in clean.images], list(clean.names))
        noisy, sigmas = add_noise_per_image(blurred, noise, seed)
        return noisy, clean, sigmas

    def training_batch(self, clean, inputs, noise, batch, crop, generator):
        if inputs is not None:
            return crop_batch(inputs, batch, crop, generator, targets=clean)
        y, _ = crop_batch(clean, batch, crop, generator)
        x, _ = noise(_blur(y), generator)
        return x, y

    def check_training(self, clean, body, cfg, noise=None, inputs=None):
        if clean.channels != body.in_channels:
            raise ValueError("channels")

    def reference(self, inp):
        return inp

    def score(self, out, target):
        return {"psnr": psnr(out, target), "ssim": ssim(out, target)}


class MeanMatchConfig(StrictConfig):
    steps: int = Field(5, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: Seed = 0
    crop_size: int = Field(16, ge=4)


class MeanMatch(Method):
    """Toy self-supervised method: the output's local mean should match the input's."""

    name = "toy-meanmatch"
    Config = MeanMatchConfig
    zero_label = True

    def loss(self, model, generator):
        x, _ = crop_batch(self.data, 2, self.cfg.crop_size, generator)
        loss = ((F.avg_pool2d(model(x), 4) - F.avg_pool2d(x, 4)) ** 2).mean()
        return loss, {"loss": float(loss.detach())}


@pytest.fixture
def registered():
    register_task(DeblurTask)
    register_method(MeanMatch)
    try:
        yield
    finally:
        TASKS.pop(DeblurTask.name, None)
        METHODS.pop(MeanMatch.name, None)


def _images(n=3, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet([torch.rand(c, 28, 30, generator=g) for _ in range(n)], [f"i{k}.png" for k in range(n)])


def test_toy_method_and_task_run_through_fit(registered, tmp_path):
    task = task_from_metadata({"task": "toy-deblur"})
    assert isinstance(task, DeblurTask) and get_method("toy-meanmatch") is MeanMatch
    body = ModelConfig(width=4, depth=1)
    noise = GaussianNoise(0.05)
    clean = _images()
    # the toy method pre-trains on the toy task's data, and on a built-in task
    pre = fit(task, "toy-meanmatch", task.pretraining_data(clean, noise, 0), {"steps": 3}, body, progress=False)
    assert len(pre.history) == 3 and all(math.isfinite(h["loss"]) for h in pre.history)
    assert fit(DenoiseTask(), MeanMatch, clean, MeanMatchConfig(steps=2), body, progress=False).labelled is None
    # a built-in method (supervised) fine-tunes for the toy task, from the toy pre-training
    cfg = FinetuneConfig(steps=3, batch_size=2, crop_size=16, label_fraction=0.5, resample_noise=False)
    res = fit(task, "supervised", clean, cfg, body, init=pre.model, noise=noise, progress=False)
    assert len(res.history) == 3 and len(res.labelled) == 2
    assert all(math.isfinite(h["loss"]) for h in res.history)
    # the protocol and checkpoints go through the registry
    scores, _ = evaluate({"toy": MeanMatch.predictor(res.model)}, _images(1, seed=5), noise, task=task)
    assert math.isfinite(scores["toy"].mean("psnr")) and math.isfinite(scores["toy"].mean("psnr_noisy"))
    path = save_checkpoint(tmp_path / "toy.safetensors", res.model, body, **task.metadata())
    loaded, meta = load_checkpoint(path)
    assert task_from_metadata(meta) == task
    assert all(torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), loaded.state_dict().values()))


def _toy_data_root(root):
    """train/: 4 grayscale 32² images; test/: 2 of them."""
    g = torch.Generator().manual_seed(3)
    for k in range(4):
        write_image(root / "train" / f"t{k}.png", torch.rand(1, 32, 32, generator=g))
    for k in range(2):
        write_image(root / "test" / f"v{k}.png", torch.rand(1, 32, 32, generator=g))
    return root


def test_toy_method_and_task_run_through_the_benchmark(registered, tmp_path):
    """The toy method is listed like any built-in one (its config: the shared `pretrain` fields it
    declares plus its own section), and the toy task gets a `tasks.<name>` section: both are planned,
    trained through fit, evaluated by the protocol and reported."""
    root = _toy_data_root(tmp_path / "data")
    test = [{"name": "T", "path": "test", "noises": ["gaussian:25"]}]
    raw = {"name": "toy", "data_root": str(root), "data": {"train": "train", "test": test},
           "model": {"width": 4, "depth": 1}, "methods": ["toy-meanmatch", "none"],
           "pretrain": {"steps": 2, "baselines": {"crop_size": 16, "batch_size": 2}, "toy-meanmatch": {"lr": 0.002}},
           "label_fractions": [0.5, 1.0], "seeds": [0], "finetune": {"steps": 2, "batch_size": 2, "crop_size": 16},
           "tasks": {"toy-deblur": {"test": test, "noise": "gaussian:10"}}}
    cfg = BenchmarkConfig.model_validate(raw)
    assert cfg.pretrain.method_config("toy-meanmatch") == MeanMatchConfig(steps=2, lr=0.002, crop_size=16)
    plan = Plan(cfg, tmp_path / "plan")
    keys = [c.key for c in plan.all_cells]
    assert keys[:2] == ["pretrain toy-meanmatch", "eval toy-meanmatch (0 labels) | T gaussian:25"]  # zero_label
    assert "toy-deblur pretrain toy-meanmatch" in keys and "eval toy-deblur reference | T gaussian:25" in keys
    assert not any("pretrain none" in k for k in keys)  # `none` does not train
    assert len([k for k in keys if k.startswith("toy-deblur finetune")]) == 2 * 2  # methods × fractions

    out = run_benchmark(cfg, tmp_path / "run", progress=False, command="toy")
    res = json.loads((out / "results.json").read_text())
    assert res["cells"]["total"] == len(keys) == len(res["cells"]["computed"])
    direct = [r for r in res["rows"] if r["kind"] == "direct"]
    assert [r["method"] for r in direct] == ["toy-meanmatch"] and direct[0]["predictor"] == "forward"
    toy = res["toy-deblur"]
    assert [r["method"] for r in toy if r["kind"] == "reference"] == ["blurred input"]
    ft = [r for r in toy if r["kind"] == "finetuned"]
    assert {(r["method"], r["fraction"]) for r in ft} == {(m, f) for m in ("toy-meanmatch", "none") for f in (0.5, 1.0)}
    assert all(math.isfinite(r["psnr_mean"]) and math.isfinite(r["ssim_mean"]) for r in ft)
    md = (out / "report.md").read_text()
    for needle in ("Tasks: denoising, deblurring (toy).", "## deblurring (toy) (task `toy-deblur`)", "blurred input",
                   "toy-meanmatch", "none (scratch)", "50 % (2 img)", "inconclusive (not measured: needs methods rcl"):
        assert needle in md, needle
    assert (out / "toy-deblur_psnr_vs_fraction.png").is_file() and (out / "samples.png").is_file()
    # the fine-tuned toy network is a checkpoint of the toy task; a rerun from the written config.yaml
    # (with the toy method's and the toy task's sections) recomputes nothing
    model, meta = load_checkpoint(out / "cache" / "toy-deblur" / "finetune" / "none" / "f1_s0.safetensors")
    assert task_from_metadata(meta) == DeblurTask()
    again = load_config(str(out / "config.yaml"))
    assert again.tasks.registered["toy-deblur"].noise == "gaussian:10"
    assert again.pretrain.method_section("toy-meanmatch") == {"lr": 0.002}
    run_benchmark(again, out, progress=False)
    assert not json.loads((out / "results.json").read_text())["cells"]["computed"]


def test_unregistered_after_the_test():
    assert "toy-deblur" not in TASKS and "toy-meanmatch" not in METHODS
