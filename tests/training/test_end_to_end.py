"""Short RCL pre-training + fine-tuning on real photographs raises PSNR over the noisy input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rcl.data.datasets import add_noise_per_image, load_image_set
from rcl.data.noise import GaussianNoise, GaussianRangeNoise
from rcl.demo import load_photos
from rcl.evaluation import evaluate, model_denoiser
from rcl.evaluation.residual import sigma_correlation
from rcl.models import ModelConfig
from rcl.training import FinetuneConfig, PretrainConfig, finetune, pretrain

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def photos():
    train = load_photos(("chelsea", "coffee", "rocket", "brick", "coins", "moon"))
    test = load_photos(("camera",), size=128)
    return train, test


def test_pretrain_then_finetune_raises_psnr(photos):
    train, test = photos
    noise = GaussianRangeNoise(20 / 255, 30 / 255)
    noisy, _ = add_noise_per_image(train, noise, seed=1)
    mcfg = ModelConfig(width=8, depth=2)
    model, hist = pretrain(noisy, mcfg, PretrainConfig(steps=150, batch_images=6, crop_size=32, seed=0,
                                                       mask_ratio=0.05, lr=3e-3), progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    tuned, _, labelled = finetune(train, noise, FinetuneConfig(steps=80, batch_size=8, crop_size=32, lr=3e-3,
                                                               label_fraction=1 / 6), mcfg, init=model,
                                  progress=False)
    assert len(labelled) == 1
    res, _ = evaluate({"rcl": model_denoiser(model), "tuned": model_denoiser(tuned)}, test, GaussianNoise(25 / 255))
    noisy_psnr = res["rcl"].mean("psnr_noisy")
    # 150 pre-training steps only start the blind-spot denoiser (docs/consistency.md needs ~400+):
    # here we check that it is no worse than the input and that fine-tuning from it works.
    assert res["rcl"].mean("psnr") > noisy_psnr - 0.5, res["rcl"].summary()
    assert res["tuned"].mean("psnr") > noisy_psnr + 2.0, res["tuned"].summary()


@pytest.mark.skipif(not (SHARED / "train" / "Train400").is_dir(), reason="../shared/data/train/Train400 not present")
def test_residual_std_tracks_sigma_on_train400():
    clean = load_image_set(SHARED / "train" / "Train400", channels=1, limit=40)
    noisy, sigmas = add_noise_per_image(clean, GaussianRangeNoise(), seed=1)
    # 150 steps were too few: on some CPUs' float kernels the residual was still mostly image
    # (r = 0.83, std ratio 0.17); from 300 steps on it carries the noise (r 0.98/0.99 and std ratio
    # 0.98/0.82 at seeds 0/1 on the development machine).
    model, _ = pretrain(noisy, ModelConfig(width=8, depth=2),
                        PretrainConfig(steps=300, batch_images=16, crop_size=32, lr=3e-3, mask_ratio=0.05),
                        progress=False)
    corr = sigma_correlation(model, noisy, sigmas)
    assert corr["pearson_r"] > 0.9, corr
    assert 0.6 < corr["mean_ratio"] < 1.4, corr  # the residual's std estimates σ, not only ranks it
