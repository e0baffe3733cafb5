"""Every registered task: metadata round trip (also through a checkpoint), degrade / training_batch
/ network shapes that fit together, and the reference row of the protocol."""

import math
import warnings

import pytest
import torch

from rcl.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from rcl.data.datasets import ImageSet
from rcl.data.degradations import CropWarning
from rcl.data.noise import GaussianNoise
from rcl.evaluation import evaluate, model_denoiser
from rcl.models import ModelConfig
from rcl.tasks import TASKS, DenoiseTask, JDDTask, SRTask, Task, TaskFieldError, get_task, task_from_metadata

# one default instance of every registered task, plus variants of the built-in ones
VARIANTS = [get_task(name) for name in TASKS] + [SRTask(3, skip=False), SRTask(4), JDDTask("gbrg", skip=None),
                                                 JDDTask("BGGR", skip="bilinear")]
IDS = [repr(t) for t in VARIANTS]
RGB_BODY = ModelConfig(in_channels=3, out_channels=3, width=4, depth=1)


def _body(task: Task) -> ModelConfig:
    """A body config for the task, from a 3-channel one (JDD: the 4-channel packed-mosaic body)."""
    return task.pretrain_model_config(RGB_BODY)


def _clean(n=2, h=37, w=46, seed=0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet([torch.rand(3, h + k, w - k, generator=g) for k in range(n)], [f"c{k}.png" for k in range(n)])


@pytest.fixture(autouse=True)
def _no_crop_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CropWarning)
        yield


def test_builtin_tasks_and_lookup():
    assert list(TASKS)[:3] == ["denoise", "sr", "jdd"]
    assert get_task("sr", scale=4) == SRTask(4) and get_task("sr", scale=4) != SRTask(2)
    with pytest.raises(ValueError, match="unknown task 'segment'; use one of denoise, sr, jdd"):
        get_task("segment")
    with pytest.raises(TaskFieldError) as exc:
        task_from_metadata({"task": "segment"})
    assert exc.value.field == "task"
    assert task_from_metadata({}) == DenoiseTask()  # old checkpoints without a task field


def test_every_registered_task_is_covered():
    assert {t.name for t in VARIANTS} == set(TASKS)


@pytest.mark.parametrize("task", VARIANTS, ids=IDS)
def test_identity_and_metadata_round_trip(task, tmp_path):
    assert isinstance(task, Task) and TASKS[task.name] is type(task)
    assert task.describe() and task.reference_name and task.train_noise and task.eval_noise
    meta = task.metadata()
    assert meta["task"] == task.name and meta["scale"] == task.scale
    assert task_from_metadata(meta) == task
    assert hash(task_from_metadata(meta)) == hash(task)
    # through a checkpoint: the same task and the same network come back
    body = _body(task)
    torch.manual_seed(0)
    model = task.build_model(body)
    path = save_checkpoint(tmp_path / "t.safetensors", model, body, **task.metadata())
    assert task_from_metadata(read_metadata(path)) == task
    loaded, _ = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("task", VARIANTS, ids=IDS)
def test_degrade_and_network_shapes(task):
    clean = _clean()
    inputs, targets, sigmas = task.degrade(clean, GaussianNoise(0.1), seed=4)
    assert len(inputs) == len(targets) == len(clean) and sigmas.shape == (len(clean),)
    assert inputs.names == targets.names == clean.names
    body = _body(task)
    model = task.build_model(body).eval()
    for x, y, c in zip(inputs.images, targets.images, clean.images):
        m = task.input_multiple
        assert y.shape == (3, c.shape[1] - c.shape[1] % m, c.shape[2] - c.shape[2] % m)
        assert x.shape[-2:] == (y.shape[1] // task.scale, y.shape[2] // task.scale)
        task.check_model_input(x.shape[0], body.in_channels, "x", size=tuple(x.shape[-2:]))
        with torch.no_grad():
            out = model(x[None])[0]
        assert out.shape == y.shape  # SR: ×scale
    again, _, _ = task.degrade(clean, GaussianNoise(0.1), seed=4)
    assert all(torch.equal(a, b) for a, b in zip(inputs.images, again.images))  # seeded per image


@pytest.mark.parametrize("task", VARIANTS, ids=IDS)
def test_training_batch_shapes(task):
    clean = _clean()
    model = task.build_model(_body(task))
    g = torch.Generator().manual_seed(1)
    x, y = task.training_batch(clean, None, GaussianNoise(0.1), 3, 12, g)
    assert y.shape == (3, 3, 12, 12)
    assert model(x).shape == y.shape
    inputs, targets, _ = task.degrade(clean, GaussianNoise(0.1), seed=0)
    x2, y2 = task.training_batch(targets, inputs, None, 3, 12, g)
    assert x2.shape == x.shape and y2.shape == y.shape
    # the pre-training data feed the task's pre-training network
    pre = task.pretraining_data(clean, GaussianNoise(0.1), seed=0)
    assert pre.channels == task.pretrain_model_config(_body(task)).in_channels


@pytest.mark.parametrize("task", VARIANTS, ids=IDS)
def test_reference_row(task):
    clean = _clean(1)
    noise = GaussianNoise(0.05)
    inputs, targets, _ = task.degrade(clean, noise, seed=0)
    ref = task.reference(inputs.images[0])
    assert ref.shape == targets.images[0].shape
    scores = task.score(ref, targets.images[0])
    assert {"psnr", "ssim"} <= set(scores) and all(math.isfinite(v) for v in scores.values())
    model = task.build_model(_body(task))
    res, _ = evaluate({"net": model_denoiser(model)}, clean, noise, seed=0, task=task)
    assert res["net"].scores[0].psnr_noisy == pytest.approx(scores["psnr"])
    assert res["net"].scores[0].ssim_noisy == pytest.approx(scores["ssim"])


@pytest.mark.parametrize("meta,field", [({"task": "sr", "scale": 5}, "scale"), ({"task": "denoise", "scale": 2}, "scale"),
                                        ({"task": "jdd", "pattern": "XXXX"}, "pattern"),
                                        ({"task": "jdd", "skip": "foo"}, "skip"),
                                        ({"task": "sr", "skip": "yes"}, "skip")])
def test_bad_metadata_names_the_field(meta, field):
    with pytest.raises(TaskFieldError) as exc:
        task_from_metadata(meta)
    assert exc.value.field == field and str(exc.value).startswith(f"{field}: ")
