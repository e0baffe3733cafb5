"""Baseline pre-training methods: each self-supervised loss trains a tiny U-Net on real noisy
images, the SimCLR head is trained, the registry and run_pretraining dispatch correctly."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from skimage import data

from rcl.data.datasets import ImageSet, add_noise_per_image, rgb_to_gray
from rcl.data.noise import GaussianNoise
from rcl.evaluation import predict, psnr
from rcl.losses.noise2self import n2s_predict
from rcl.models import ModelConfig, build_model
from rcl.training.baselines import (PRETRAINING_METHODS, BaselineConfig, Ne2NePretraining, SimCLRPretraining,
                                    color_jitter, run_pretraining)
from rcl.training.methods import RCLPretraining
from rcl.training.trainer import seed_everything, train

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
    cfg = dict(steps=steps, batch_size=4, crop_size=48, lr=3e-3, seed=0)
    model, history = run_pretraining(name, noisy, TINY, cfg, progress=False)
    assert len(history) == steps and all(np.isfinite(r["loss"]) for r in history)
    if name == "n2s":
        # a residual network trained with a deterministic replacement passes the pixel's own value
        # through; Noise2Self's J-invariant inference is the method's prediction
        out = n2s_predict(model, noisy_test, grid=4)
    else:
        out = predict(model, noisy_test)
    base = psnr(noisy_test, clean_test)
    print(f"{name}: noisy {base:.2f} dB, output {psnr(out, clean_test):.2f} dB")
    assert psnr(out, clean_test) > base + 1.5


def test_ne2ne_gamma_ramps_linearly(images):
    noisy = images[0]
    method = Ne2NePretraining(noisy, BaselineConfig(steps=5, batch_size=1, crop_size=16, gamma=2.0))
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    gammas = [method.loss(model, torch.Generator().manual_seed(0))[1]["gamma"] for _ in range(6)]
    assert gammas == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0, 2.0])


def test_simclr_trains_head_and_encoder(images):
    noisy = ImageSet([im[:, :64, :64] for im in images[0].images], images[0].names)
    cfg = BaselineConfig(steps=3, batch_images=4, crop_size=32)
    gen = seed_everything(0)
    model = build_model(TINY)
    method = SimCLRPretraining(noisy, cfg, model.feature_channels)
    extra = method.extra_parameters()
    assert extra and all(p.requires_grad for p in extra)
    head0 = [p.detach().clone() for p in extra]
    enc0 = [p.detach().clone() for p in model.enc.parameters()]
    history = train(model, method, cfg.steps, cfg.lr, gen, progress=False, extra_params=extra)
    assert len(history) == 3 and all(np.isfinite(r["loss"]) for r in history)
    assert any(not torch.equal(a, b) for a, b in zip(head0, method.head.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(enc0, model.enc.parameters()))


def test_simclr_needs_two_images(images):
    with pytest.raises(ValueError):
        SimCLRPretraining(images[0].subset([0]), BaselineConfig(), 32)


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


def test_registry_and_dispatch(images):
    assert set(PRETRAINING_METHODS) == {"rcl", "simclr", "n2v", "n2s", "ne2ne", "none"}
    assert PRETRAINING_METHODS["none"] is None and PRETRAINING_METHODS["rcl"] is RCLPretraining
    noisy = ImageSet([im[:, :64, :64] for im in images[0].images], images[0].names)
    with pytest.raises(ValueError, match="unknown pre-training method"):
        run_pretraining("n2x", noisy, TINY, {})
    with pytest.raises(ValidationError):
        run_pretraining("n2v", noisy, TINY, {"stepz": 3})
    with pytest.raises(ValueError, match="channel"):
        run_pretraining("n2v", noisy, ModelConfig(in_channels=3, out_channels=3), {})
    model, history = run_pretraining("none", noisy, TINY, {"seed": 3})
    assert history == [] and not model.training
    model2, _ = run_pretraining("none", noisy, TINY, {"seed": 3})
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    _, history = run_pretraining("rcl", noisy, TINY, dict(steps=2, batch_images=2, crop_size=32), progress=False)
    assert len(history) == 2 and "contrastive" in history[0]
    for name in ("simclr", "n2v", "n2s", "ne2ne"):
        cfg = dict(steps=2, batch_size=2, batch_images=2, crop_size=32)
        _, history = run_pretraining(name, noisy, ModelConfig(arch="dncnn", width=8, depth=3), cfg, progress=False)
        assert len(history) == 2 and np.isfinite(history[-1]["loss"])


def test_log_written(images, tmp_path):
    noisy = ImageSet([im[:, :64, :64] for im in images[0].images], images[0].names)
    log = tmp_path / "n2s.csv"
    run_pretraining("n2s", noisy, TINY, dict(steps=2, batch_size=2, crop_size=32), log_path=log, progress=False)
    assert log.read_text().splitlines()[0].startswith("step,lr,loss")
