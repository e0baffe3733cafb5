"""A new method and a new task, defined here and registered, run through fit(), the protocol and
checkpoints without any change to src/ (issue "One definition per method and per task")."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from rcl.checkpoint import load_checkpoint, save_checkpoint
from rcl.configs import Seed, StrictConfig
from rcl.data.datasets import ImageSet, add_noise_per_image, crop_batch
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


def test_unregistered_after_the_test():
    assert "toy-deblur" not in TASKS and "toy-meanmatch" not in METHODS
