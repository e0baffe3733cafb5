"""Downstream fine-tuning (SR, JDD): methods, fixed-realisation crops, mosaic pre-training data, and
short fine-tunes that must beat the classical reference on held-out image regions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rcl.data import GaussianNoise, ImageSet, PoissonGaussianNoise
from rcl.data.degradations import (CropWarning, bayer_mosaic, bicubic_downscale, bicubic_upscale,
                                   demosaic_classical, jdd_pair, sr_pair)
from rcl.evaluation import predict, psnr
from rcl.evaluation.sr_metrics import psnr_y
from rcl.models import ModelConfig, build_model
from rcl.models.sr import JDDNet, SRNet, build_jdd_model
from rcl.training import FinetuneConfig, PretrainConfig, RCLPretraining, seed_everything, train
from rcl.training.downstream import (JDDTraining, SRTraining, _aligned_crops, finetune_jdd, finetune_sr,
                                     noisy_lr_images, noisy_mosaics, packed_noisy_mosaics)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _camera() -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(skimage.data.camera().astype(np.float32) / 255)[None]


def _astronaut() -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(skimage.data.astronaut().astype(np.float32) / 255).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- methods and data helpers

def test_sr_training_checks():
    clean = ImageSet([_rand(1, 40, 40)], ["a"])
    with pytest.raises(ValueError, match="multiple of the scale"):
        SRTraining(clean, None, 3, FinetuneConfig(crop_size=32))
    with pytest.raises(ValueError, match="smaller"):
        SRTraining(clean, None, 2, FinetuneConfig(crop_size=48))
    m = SRTraining(clean, GaussianNoise(0.05), 4, FinetuneConfig(crop_size=32, batch_size=3))
    seed_everything(0)
    model = SRNet(build_model(ModelConfig(width=4, depth=1)), 4)
    loss, logs = m.loss(model, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and logs["loss"] > 0


def test_jdd_training_checks():
    rgb = ImageSet([_rand(3, 40, 40)], ["a"])
    with pytest.raises(ValueError, match="even"):
        JDDTraining(rgb, None, "RGGB", FinetuneConfig(crop_size=33))
    with pytest.raises(ValueError, match="RGB"):
        JDDTraining(ImageSet([_rand(1, 40, 40)], ["a"]), None, "RGGB", FinetuneConfig(crop_size=32))
    with pytest.raises(ValueError, match="pattern"):
        JDDTraining(rgb, None, "RGBG", FinetuneConfig(crop_size=32))
    m = JDDTraining(rgb, None, "BGGR", FinetuneConfig(crop_size=16, batch_size=2))
    model = build_jdd_model(ModelConfig(in_channels=4, out_channels=4, width=4, depth=1), "BGGR")
    loss, _ = m.loss(model, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_aligned_crops_share_position_and_transform():
    hr = ImageSet([_rand(1, 32, 40, seed=i) for i in range(3)], list("abc"))
    lr = ImageSet([F.avg_pool2d(im[None], 4)[0] for im in hr.images], list("abc"))  # commutes with flips
    x, y = _aligned_crops(lr, hr, 16, 4, 4, torch.Generator().manual_seed(1), augment=True)
    assert x.shape == (16, 1, 4, 4) and y.shape == (16, 1, 16, 16)
    torch.testing.assert_close(x, F.avg_pool2d(y, 4))


def test_noisy_lr_images_and_fixed_sr_training():
    clean = ImageSet([_rand(1, 51, 67), _rand(1, 48, 48, seed=1)], ["odd", "even"])
    with pytest.warns(CropWarning, match="odd"):
        lr, hr = noisy_lr_images(clean, 4, GaussianNoise(0.0), seed=0)
    assert [im.shape for im in lr.images] == [(1, 12, 16), (1, 12, 12)]
    torch.testing.assert_close(lr.images[1], bicubic_downscale(clean.images[1][None], 4)[0])
    cfg = FinetuneConfig(crop_size=32, batch_size=2, resample_noise=False)
    method = SRTraining(hr, GaussianNoise(0.1), 4, cfg, noisy=lr)
    model = SRNet(build_model(ModelConfig(width=4, depth=1)), 4)
    loss, _ = method.loss(model, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_noisy_mosaics_and_fixed_jdd_crops():
    rgb = ImageSet([_rand(3, 21, 30), _rand(3, 24, 24, seed=1)], ["odd", "even"])
    with pytest.warns(CropWarning, match="odd"):
        mos, clean = noisy_mosaics(rgb, "GRBG", GaussianNoise(0.0), seed=0)
    assert [m.shape for m in mos.images] == [(1, 20, 30), (1, 24, 24)]
    method = JDDTraining(clean, GaussianNoise(0.0), "GRBG", FinetuneConfig(crop_size=16, batch_size=6), noisy=mos)
    seen = {}

    def spy(x):
        seen["x"] = x
        return torch.zeros(x.shape[0], 3, *x.shape[-2:])

    class Spy(torch.nn.Module):
        def forward(self, x):
            return spy(x)

    method.loss(Spy(), torch.Generator().manual_seed(3))
    # the fixed crops start at even offsets and are not flipped: they are mosaics of *some* clean crop
    # with the right pattern, i.e. re-mosaicking the best-matching clean crop reproduces them
    x = seen["x"]
    for i in range(x.shape[0]):
        ok = False
        for im in clean.images:
            full = bayer_mosaic(im[None], "GRBG")[0, 0]
            for t in range(0, full.shape[0] - 15, 2):
                for l in range(0, full.shape[1] - 15, 2):
                    ok |= torch.equal(full[t:t + 16, l:l + 16], x[i, 0])
        assert ok


def test_packed_noisy_mosaics_are_rcl_pretraining_data():
    rgb = ImageSet([_rand(3, 40, 41, seed=i) for i in range(3)], ["a", "b", "c"])
    with pytest.warns(CropWarning, match="41×40"):
        packed = packed_noisy_mosaics(rgb, "RGGB", None, seed=0)
    assert len(packed) == 3 and all(p.shape == (4, 20, 20) for p in packed.images)
    with pytest.warns(CropWarning):
        again = packed_noisy_mosaics(rgb.subset([2, 0]), "RGGB", None, seed=0)
    assert torch.equal(again.images[0], packed.images[2])  # noise depends on seed and name, not order
    # RCL pre-training of a UNet(4, 4) on them, then every weight initialises the JDD body
    cfg = ModelConfig(in_channels=4, out_channels=4, width=4, depth=1)
    seed_everything(0)
    den = build_model(cfg)
    pcfg = PretrainConfig(steps=2, batch_images=2, crop_size=16)
    hist = train(den, RCLPretraining(packed, pcfg), 2, 1e-3, torch.Generator().manual_seed(0), progress=False)
    assert len(hist) == 2 and np.isfinite(hist[-1]["loss"])
    model, _, _ = finetune_jdd(rgb, None, "RGGB", FinetuneConfig(steps=1, batch_size=2, crop_size=16), cfg,
                               init=den, progress=False)
    assert isinstance(model, JDDNet)
    for k, v in den.state_dict().items():
        assert v.shape == model.body.state_dict()[k].shape


def test_finetune_init_options():
    clean = ImageSet([_rand(1, 32, 32, seed=i) for i in range(2)], ["a", "b"])
    cfg = FinetuneConfig(steps=1, batch_size=2, crop_size=16)
    body = ModelConfig(width=4, depth=1)
    den = build_model(body)
    m1, hist, names = finetune_sr(clean, GaussianNoise(0.05), 2, cfg, body, init=den, progress=False)
    assert isinstance(m1, SRNet) and len(hist) == 1 and names == ["a", "b"]
    m2, _, _ = finetune_sr(clean, GaussianNoise(0.05), 2, cfg, body, init=m1, progress=False)
    assert m2 is not m1
    with pytest.raises(TypeError, match="init"):
        finetune_sr(clean, None, 2, cfg, body, init=torch.nn.Linear(1, 1), progress=False)
    with pytest.raises(ValueError, match="channel"):
        finetune_sr(clean, None, 2, cfg, ModelConfig(in_channels=3, out_channels=3, width=4, depth=1),
                    progress=False)
    m3, _, _ = finetune_sr(clean, GaussianNoise(0.05), 2, cfg.model_copy(update={"resample_noise": False}), body,
                           progress=False)
    assert isinstance(m3, SRNet)


# ---------------------------------------------------------------- short fine-tunes vs classical references

def test_sr_x2_finetune_beats_bicubic_on_held_out_region():
    """Gray camera, σ = 15/255 on the LR image: train on the left half, test on the right half."""
    cam = _camera()
    train_set = ImageSet([cam[:, :, :256]], ["camera-left"])
    noise = GaussianNoise(15 / 255)
    lr_noisy, hr = sr_pair(cam[None, :, :, 256:], 2, noise, torch.Generator().manual_seed(123))
    cfg = FinetuneConfig(steps=150, batch_size=8, crop_size=48, lr=2e-3)
    model, hist, _ = finetune_sr(train_set, noise, 2, cfg, ModelConfig(width=12, depth=2), progress=False)
    out = predict(model, lr_noisy)
    assert out.shape == hr.shape
    ref = psnr_y(bicubic_upscale(lr_noisy, 2)[0], hr[0], border=2)
    got = psnr_y(out[0], hr[0], border=2)
    assert got > ref + 1.0, (got, ref)
    assert np.mean([h["loss"] for h in hist[-20:]]) < np.mean([h["loss"] for h in hist[:20]])


def test_jdd_finetune_beats_bilinear_on_held_out_region():
    """Astronaut, heteroscedastic Poisson-Gaussian noise on the RGGB mosaic: train on the top half,
    test on the bottom half; must beat bilinear demosaicking and its own start (Malvar)."""
    ast = _astronaut()
    train_set = ImageSet([ast[:, :256]], ["astronaut-top"])
    noise = PoissonGaussianNoise(a_min=1e-3, a_max=3e-3, b_min=5 / 255, b_max=10 / 255)
    noisy, clean = jdd_pair(ast[None, :, 256:], "RGGB", noise, torch.Generator().manual_seed(7))
    cfg = FinetuneConfig(steps=400, batch_size=8, crop_size=32, lr=2e-3)
    model, _, _ = finetune_jdd(train_set, noise, "RGGB", cfg,
                               ModelConfig(in_channels=4, out_channels=4, width=12, depth=2), progress=False)
    out = predict(model, noisy)[0]
    bilinear = psnr(demosaic_classical(noisy[0], "RGGB", "bilinear"), clean[0])
    malvar = psnr(demosaic_classical(noisy[0], "RGGB", "malvar"), clean[0])
    got = psnr(out, clean[0])
    assert got > bilinear + 1.0, (got, bilinear)
    assert got > malvar + 0.3, (got, malvar)
