"""The training engine: device resolution, mixed precision, memory layout, and (marked ``gpu``,
skipped without CUDA) training, checkpoints and draws on a CUDA device."""

import math
import os
import platform
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch

from rcl.checkpoint import load_checkpoint, save_checkpoint
from rcl.data.datasets import ImageSet
from rcl.data.draws import Draws
from rcl.data.noise import GaussianNoise
from rcl.losses.ntxent import FeatureNTXent, ResidualNTXent
from rcl.methods import get_method
from rcl.models import ModelConfig, build_model
from rcl.tasks import get_task
from rcl.training import fit
from rcl.training import engine as engine_mod
from rcl.training.engine import DeviceError, Engine, autocast_dtype, resolve_device

BODY = ModelConfig(width=8, depth=2)
SIGMA25 = GaussianNoise(25 / 255)
SMALL = {  # a few small steps of every method the GPU tests train
    "rcl": {"steps": 3, "batch_images": 4, "crop_size": 32},
    "n2v": {"steps": 3, "batch_size": 4, "crop_size": 32},
    "simclr": {"steps": 3, "batch_images": 4, "crop_size": 32},
    "supervised": {"steps": 3, "batch_size": 4, "crop_size": 32},
}

no_cuda = not torch.cuda.is_available()
gpu = [pytest.mark.gpu, pytest.mark.skipif(no_cuda, reason="no CUDA GPU on this machine")]


def needs_gpu(fn):
    for mark in reversed(gpu):
        fn = mark(fn)
    return fn


def _images(n=6, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet([torch.rand(1, size, size + 4, generator=g) for _ in range(n)], [f"i{k}.png" for k in range(n)])


def _fit(method, cfg=None, device="cpu", precision="fp32", channels_last=True, data=None):
    cfg = dict(SMALL[method] if cfg is None else cfg)
    engine = Engine(device=device, precision=precision, channels_last=channels_last, progress=False,
                    log_every=-1, handle_signals=False)
    noise = SIGMA25 if get_method(method).supervised else None
    return fit(get_task("denoise"), method, data or _images(), cfg, BODY, noise=noise, progress=False,
               engine=engine)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture
def plain_env(monkeypatch):
    """No torchrun environment, whatever the shell running the tests has set."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def no_gpu(plain_env):
    """A machine without CUDA or MPS (also on a machine that has them)."""
    plain_env.setattr(torch.cuda, "is_available", lambda: False)
    plain_env.setattr(engine_mod, "_mps_available", lambda: False)
    return plain_env


@pytest.fixture
def two_gpus(plain_env):
    """A machine with two CUDA GPUs, as far as resolve_device can tell."""
    plain_env.setattr(torch.cuda, "is_available", lambda: True)
    plain_env.setattr(torch.cuda, "device_count", lambda: 2)
    plain_env.setattr(torch.cuda, "current_device", lambda: 0)
    return plain_env


# ------------------------------------------------------------------------- resolve_device

def test_cpu_resolves_to_cpu(plain_env):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_is_cpu_without_gpus(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available() or engine_mod._mps_available(), reason="this machine has a GPU")
def test_auto_is_cpu_on_this_machine(plain_env):
    assert resolve_device("auto") == torch.device("cpu")
    assert Engine().device == torch.device("cpu")


def test_auto_prefers_cuda(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:7", "CUDA:1"])
def test_cuda_without_cuda_is_one_line_error(no_gpu, spec):
    with pytest.raises(DeviceError) as err:
        resolve_device(spec)
    msg = str(err.value)
    assert "CUDA is not available" in msg
    assert "\n" not in msg
    assert spec in msg  # names what the user asked for


def test_engine_refuses_a_missing_device(no_gpu):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Engine(device="cuda")


def test_mps_without_mps_raises(no_gpu):
    with pytest.raises(DeviceError, match="MPS") as err:
        resolve_device("mps")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cuda:-1", "cuda:1.0", "gpu", ""])
def test_unknown_specs_raise(two_gpus, spec):
    with pytest.raises(DeviceError) as err:
        resolve_device(spec)
    assert "\n" not in str(err.value)


def test_gpu_number_beyond_count_reports_the_count(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda:3")
    msg = str(err.value)
    assert "2 CUDA GPU(s)" in msg and "cuda:0 to cuda:1" in msg and "cuda:3" in msg
    assert "\n" not in msg


def test_torchrun_local_rank_picks_the_gpu(two_gpus):
    two_gpus.setenv("WORLD_SIZE", "2")
    two_gpus.setenv("RANK", "1")
    two_gpus.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit GPU is kept
    assert resolve_device("cpu") == torch.device("cpu")
    two_gpus.setenv("LOCAL_RANK", "3")  # more ranks on this machine than GPUs
    with pytest.raises(DeviceError, match="2 CUDA GPU"):
        resolve_device("auto")


def test_torchrun_without_cuda_stays_on_cpu(no_gpu):
    no_gpu.setenv("WORLD_SIZE", "2")
    no_gpu.setenv("RANK", "0")
    no_gpu.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == torch.device("cpu")


def test_autocast_dtypes():
    assert autocast_dtype("fp32") is None
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("fp16") is torch.float16
    with pytest.raises(ValueError, match="fp32, bf16 or fp16"):
        autocast_dtype("fp8")
    with pytest.raises(ValueError):
        Engine(device="cpu", precision="int8")


# ------------------------------------------------------------------------- mixed precision on CPU

def test_bf16_first_rcl_step_within_one_percent_of_fp32():
    """The issue's acceptance: one RCL step under bf16 autocast gives the fp32 loss within 1 %."""
    cfg = {"steps": 1, "batch_images": 4, "crop_size": 32}
    fp32 = _fit("rcl", cfg, precision="fp32").history[0]
    bf16 = _fit("rcl", cfg, precision="bf16").history[0]
    assert _rel(bf16["loss"], fp32["loss"]) < 0.01
    assert _rel(bf16["contrastive"], fp32["contrastive"]) < 0.01
    assert bf16["loss"] != fp32["loss"]  # autocast was really on


def _cpu_fp16_autocast() -> bool:
    try:
        torch.amp.GradScaler("cpu", enabled=True)
        with torch.autocast("cpu", dtype=torch.float16):
            y = torch.nn.functional.conv2d(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 3, 3))
        return y.dtype == torch.float16
    except (RuntimeError, TypeError, ValueError):
        return False


@pytest.mark.skipif(not _cpu_fp16_autocast(), reason="this torch's CPU autocast or GradScaler has no fp16")
def test_fp16_on_cpu_trains_with_the_grad_scaler():
    hist = _fit("rcl", {"steps": 3, "batch_images": 4, "crop_size": 32}, precision="fp16").history
    assert len(hist) == 3
    assert all(math.isfinite(h["loss"]) for h in hist)
    fp32 = _fit("rcl", {"steps": 1, "batch_images": 4, "crop_size": 32}).history[0]["loss"]
    assert _rel(hist[0]["loss"], fp32) < 0.01


def test_emd_logits_stay_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    residuals = (0.1 * torch.randn(8, 1, 16, 16, generator=g)).to(torch.bfloat16)
    loss_fn = ResidualNTXent(0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, rows, std = loss_fn.rows(residuals)
        loss = loss_fn(residuals)
        z = torch.randn(8, 16, generator=g).to(torch.bfloat16)
        feature_loss = FeatureNTXent(0.1)(z)
    assert logits.dtype == torch.float32 and std.dtype == torch.float32
    assert loss.dtype == torch.float32 and feature_loss.dtype == torch.float32
    assert torch.equal(rows, torch.arange(8))
    # the same values computed in fp32 outside autocast: the EMD is not rounded to bf16
    ref = loss_fn.rows(residuals.float())[0]
    torch.testing.assert_close(logits, ref, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(logits[~torch.eye(8, dtype=torch.bool)]).all()


# ------------------------------------------------------------------------- memory layout

@pytest.mark.parametrize("method", ["rcl", "supervised"])
def test_channels_last_does_not_change_the_maths(method):
    last = _fit(method, channels_last=True)
    plain = _fit(method, channels_last=False)
    a = [h["loss"] for h in last.history]
    b = [h["loss"] for h in plain.history]
    assert len(a) == len(b) == SMALL[method]["steps"]
    for x, y in zip(a, b):
        assert _rel(x, y) < 1e-4
    for result in (last, plain):
        tensors = list(result.model.parameters()) + list(result.model.buffers())
        assert all(t.device.type == "cpu" for t in tensors)
        assert all(t.is_contiguous() for t in tensors)
        assert not result.model.training
    # (the weights themselves are not compared: Adam's first steps move a weight whose gradient is
    # ~0 by ±lr according to the gradient's sign, which float rounding of either layout can flip)


# ------------------------------------------------------------------------- on a CUDA GPU

@contextmanager
def _no_tf32():
    """CUDA convolutions in full fp32 (cuDNN uses TF32 by default on Ampere and later)."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


@needs_gpu
@pytest.mark.parametrize("method", ["rcl", "n2v", "simclr", "supervised"])
def test_short_fit_on_cuda(method):
    result = _fit(method, device="cuda")
    losses = [h["loss"] for h in result.history]
    assert len(losses) == SMALL[method]["steps"]
    assert all(math.isfinite(x) for x in losses)
    tensors = list(result.model.parameters()) + list(result.model.buffers())
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)  # given back on the CPU


@needs_gpu
@pytest.mark.parametrize("method", ["rcl", "supervised"])
def test_bf16_on_cuda_within_one_percent_of_fp32(method):
    cfg = dict(SMALL[method], steps=1)
    fp32 = _fit(method, cfg, device="cuda", precision="fp32").history[0]["loss"]
    bf16 = _fit(method, cfg, device="cuda", precision="bf16").history[0]["loss"]
    assert _rel(bf16, fp32) < 0.01


@needs_gpu
def test_fp16_on_cuda_trains_with_the_grad_scaler():
    hist = _fit("rcl", device="cuda", precision="fp16").history
    assert len(hist) == SMALL["rcl"]["steps"]
    assert all(math.isfinite(h["loss"]) for h in hist)


@needs_gpu
def test_checkpoint_of_a_cuda_model_loads_on_cpu(tmp_path):
    trained = _fit("rcl", device="cuda").model
    gpu_model = trained.to("cuda")
    path = save_checkpoint(tmp_path / "cuda.safetensors", gpu_model, BODY, stage="pretrain")
    loaded, meta = load_checkpoint(path)
    assert meta["stage"] == "pretrain"
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())
    for (k, v), w in zip(gpu_model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v.cpu(), w), k
    x = torch.rand(2, 1, 48, 52, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), _no_tf32():  # TF32 convolutions alone would differ by ~1e-3
        on_gpu = gpu_model.eval()(x.cuda()).cpu()
        on_cpu = loaded(x)
    torch.testing.assert_close(on_cpu, on_gpu, rtol=1e-4, atol=1e-4)
    from rcl.evaluation.inference import predict

    with _no_tf32():
        out = predict(gpu_model, x[0])  # a CPU input to a CUDA model: computed there, returned here
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, on_cpu[0], rtol=1e-4, atol=1e-4)


@needs_gpu
@pytest.mark.parametrize("method", ["rcl", "n2v", "simclr", "supervised"])
def test_draws_on_cuda_give_batches_on_the_device(method):
    torch.manual_seed(0)
    model = build_model(BODY).to("cuda")
    cls = get_method(method)
    cfg = cls.Config(**SMALL[method])
    noise = SIGMA25 if cls.supervised else None
    runner = cls(_images(), cfg, task=get_task("denoise"), model=model, noise=noise)
    draws = Draws(0, 1, "batch", "cuda", layout=runner.layout())
    batch = runner.batch(draws)
    assert batch and all(t.device.type == "cuda" for t in batch)
    again = runner.batch(Draws(0, 1, "batch", "cuda", layout=runner.layout()))
    assert all(torch.equal(a, b) for a, b in zip(batch, again))  # (seed, step) fixes the batch
    loss, logs = runner.loss(model, Draws(0, 1, "batch", "cuda", layout=runner.layout()))
    assert loss.device.type == "cuda" and torch.isfinite(loss)
    assert all(v.device.type == "cuda" for v in logs.values() if isinstance(v, torch.Tensor))


_FAULTS = r"""
import resource, sys, torch
from rcl.models.unet import UNet
from rcl.training.engine import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "tuned" else None
torch.manual_seed(0)
net = UNet().to(memory_format=torch.channels_last)
x = torch.rand(32, 1, 48, 48).contiguous(memory_format=torch.channels_last)
def step():  # the default pre-training step's network work: forward + backward of 32 crops of 48²
    net.zero_grad(set_to_none=True)
    (net(x) ** 2).mean().backward()
for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="retain_freed_memory changes glibc's malloc only")
def test_retain_freed_memory_stops_page_faults_of_reallocated_blocks():
    """A training step frees and allocates again the same activation and gradient tensors; under
    glibc's default settings their pages are faulted in again every step (≈ 10,000 minor faults
    per step of the default U-Net on 32 crops of 48², measured), after retain_freed_memory they
    are reused (0 to 900)."""
    runs = {}
    for mode in ("default", "tuned"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split()
        runs[mode] = (out[0], float(out[1]))
    assert runs["tuned"][0] == "True"
    assert runs["default"][1] > 2000, runs  # 8 MiB of pages faulted in again per step
    assert runs["tuned"][1] * 5 < runs["default"][1], runs  # (10 to 50 times fewer, measured)
