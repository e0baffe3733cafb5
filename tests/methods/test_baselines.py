"""The baseline pre-training methods (rcl.methods): each self-supervised loss trains a tiny U-Net on
real noisy images, the SimCLR head is trained, Ne2Ne's γ ramps, and fit dispatches by name."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from skimage import data

from rcl.data.datasets import ImageSet, add_noise_per_image, rgb_to_gray
from rcl.data.noise import GaussianNoise
from rcl.evaluation import psnr
from rcl.methods import Ne2Ne, Ne2NeConfig, SimCLR, SimCLRConfig, color_jitter, get_method
from rcl.models import ModelConfig, build_model
from rcl.tasks import DenoiseTask
from rcl.training import fit, seed_everything, train

SIGMA = 25 / 255
TINY = ModelConfig(width=8, depth=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Train on one thread: on a shared 2-core machine, torch's thread pool can make these many small
    ops an order of magnitude slower (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images():
    """Noisy training images (4 gray 256² tiles of camera / astronaut) and a held-out noisy test crop."""
    cam = torch.from_numpy(data.camera().astype(np.float32) / 255)[None]
    ast = rgb_to_gray(torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1))
    tiles = [cam[:, :256, :256], cam[:, :256, 256:], ast[:, :256, :256], ast[:, 256:, 256:]]
    noisy, _ = add_noise_per_image(ImageSet(tiles, [f"tile{i}" for i in range(4)]), GaussianNoise(SIGMA), 0)
    clean_test = cam[:, 300:396, 300:396]  # not in any training tile
    noisy_test, _ = add_noise_per_image(ImageSet([clean_test], ["test"]), GaussianNoise(SIGMA), 1)
    return noisy, clean_test, noisy_test.images[0]


# A few hundred steps of 4 crops: a tiny U-Net gains ≥ 2.7 dB over seeds 0–2 (measured); the bound
# leaves room for platform differences.
@pytest.mark.parametrize("name,steps", [("n2v", 300), ("ne2ne", 300), ("n2s", 200)])
def test_self_supervised_pretraining_denoises(images, name, steps):
    noisy, clean_test, noisy_test = images
    method = get_method(name)
    cfg = method.Config(steps=steps, batch_size=4, crop_size=48, lr=3e-3, seed=0)
    res = fit(DenoiseTask(), method, noisy, cfg, TINY, progress=False)
    assert len(res.history) == steps and all(np.isfinite(r["loss"]) for r in res.history)
    # the method's own prediction: n2s is J-invariant inference (a residual network trained with a
    # deterministic replacement passes the pixel's own value through), the others a forward pass
    out = method.predictor(res.model, cfg)(noisy_test, math.nan)
    base = psnr(noisy_test, clean_test)
    print(f"{name}: noisy {base:.2f} dB, output {psnr(out, clean_test):.2f} dB")
    assert psnr(out, clean_test) > base + 1.5


def test_ne2ne_gamma_ramps_linearly(images):
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    method = Ne2Ne(images[0], Ne2NeConfig(steps=5, batch_size=1, crop_size=16, gamma=2.0), task=DenoiseTask(),
                   model=model)
    gammas = [method.loss(model, torch.Generator().manual_seed(0))[1]["gamma"] for _ in range(6)]
    assert gammas == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0, 2.0])


def test_simclr_trains_head_and_encoder(images):
    noisy = ImageSet([im[:, :64, :64] for im in images[0].images], images[0].names)
    cfg = SimCLRConfig(steps=3, batch_images=4, crop_size=32)
    gen = seed_everything(0)
    model = build_model(TINY)
    method = SimCLR(noisy, cfg, task=DenoiseTask(), model=model)
    extra = method.extra_parameters()
    assert extra and all(p.requires_grad for p in extra)
    head0 = [p.detach().clone() for p in extra]
    enc0 = [p.detach().clone() for p in model.enc.parameters()]
    history = train(model, method, cfg.steps, cfg.lr, 0, progress=False, extra_params=extra)
    assert len(history) == 3 and all(np.isfinite(r["loss"]) for r in history)
    assert any(not torch.equal(a, b) for a, b in zip(head0, method.head.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(enc0, model.enc.parameters()))


def test_simclr_needs_two_images(images):
    with pytest.raises(ValueError, match="at least 2"):
        fit(DenoiseTask(), "simclr", images[0].subset([0]), SimCLRConfig(), TINY, progress=False)


def test_color_jitter_is_mild_and_per_image():
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = color_jitter(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    assert (y - x).abs().max() < 0.35
    # an affine map per image, shared by its channels: y = a·x + b
    for i in range(8):
        a, b = np.polyfit(x[i].flatten().numpy(), y[i].flatten().numpy(), 1)
        assert 0.8 - 1e-4 <= a <= 1.2 + 1e-4
        assert torch.allclose(y[i], a * x[i] + b, atol=1e-5)


def test_fit_dispatch_and_errors(images):
    noisy = ImageSet([im[:, :64, :64] for im in images[0].images], images[0].names)
    task = DenoiseTask()
    with pytest.raises(ValueError, match="unknown method 'n2x'"):
        fit(task, "n2x", noisy, {}, TINY)
    with pytest.raises(ValidationError):
        fit(task, "n2v", noisy, {"stepz": 3}, TINY)
    with pytest.raises(ValidationError):  # a field of another method
        fit(task, "n2v", noisy, {"grid": 3}, TINY)
    with pytest.raises(TypeError, match="N2VConfig"):
        fit(task, "n2v", noisy, SimCLRConfig(), TINY)
    with pytest.raises(ValueError, match="channel"):
        fit(task, "n2v", noisy, {}, ModelConfig(in_channels=3, out_channels=3))
    res = fit(task, "none", noisy, {"seed": 3}, TINY)
    assert res.history == [] and res.labelled is None and not res.model.training
    res2 = fit(task, "none", noisy, {"seed": 3}, TINY)
    assert all(torch.equal(a, b) for a, b in zip(res.model.parameters(), res2.model.parameters()))
    res = fit(task, "rcl", noisy, dict(steps=2, batch_images=2, crop_size=32), TINY, progress=False)
    assert len(res.history) == 2 and "contrastive" in res.history[0]
    for name in ("simclr", "n2v", "n2s", "ne2ne"):
        cfg = {k: v for k, v in dict(steps=2, batch_size=2, batch_images=2, crop_size=32).items()
               if k in get_method(name).Config.model_fields}
        res = fit(task, name, noisy, cfg, ModelConfig(arch="dncnn", width=8, depth=3), progress=False)
        assert len(res.history) == 2 and np.isfinite(res.history[-1]["loss"])


def test_log_written(images, tmp_path):
    noisy = ImageSet([im[:, :64, :64] for im in images[0].images], images[0].names)
    log = tmp_path / "n2s.csv"
    fit(DenoiseTask(), "n2s", noisy, dict(steps=2, batch_size=2, crop_size=32), TINY, log_path=log, progress=False)
    assert log.read_text().splitlines()[0].startswith("step,lr,loss")
