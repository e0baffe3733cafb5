"""Downstream fine-tuning through fit (SR, JDD): the tasks' batches, fixed-realisation crops, mosaic
pre-training data, and short fine-tunes that must beat the classical reference on held-out image
regions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rcl.data import GaussianNoise, ImageSet, PoissonGaussianNoise, RealNoise
from rcl.data.degradations import (CropWarning, bayer_mosaic, bicubic_downscale, bicubic_upscale,
                                   demosaic_classical, jdd_pair, sr_pair)
from rcl.evaluation import predict, psnr
from rcl.evaluation.sr_metrics import psnr_y
from rcl.methods import Supervised
from rcl.models import JDDNet, ModelConfig, SRNet, build_jdd_model, build_model
from rcl.tasks import JDDTask, SRTask
from rcl.training import FinetuneConfig, PretrainConfig, fit, seed_everything


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _camera() -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(skimage.data.camera().astype(np.float32) / 255)[None]


def _astronaut() -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(skimage.data.astronaut().astype(np.float32) / 255).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- batches and data helpers

BODY = ModelConfig(width=4, depth=1)
JBODY = ModelConfig(in_channels=4, out_channels=4, width=4, depth=1)


def _sr(clean, cfg, scale, noise=None, **kw):
    return fit(SRTask(scale), "supervised", clean, cfg, BODY, noise=noise, progress=False, **kw)


def test_sr_training_checks():
    clean = ImageSet([_rand(1, 40, 40)], ["a"])
    with pytest.raises(ValueError, match="multiple of the scale"):
        _sr(clean, FinetuneConfig(crop_size=32), 3)
    with pytest.raises(ValueError, match="smaller"):
        _sr(clean, FinetuneConfig(crop_size=48), 2)
    with pytest.raises(ValueError, match="synthetic"):
        _sr(clean, FinetuneConfig(crop_size=32), 2, noise=RealNoise())
    with pytest.raises(ValueError, match="scale must be >= 2"):
        SRTask(1)
    seed_everything(0)
    model = SRNet(build_model(BODY), 4)
    m = Supervised(clean, FinetuneConfig(crop_size=32, batch_size=3), task=SRTask(4), model=model,
                   noise=GaussianNoise(0.05))
    loss, logs = m.loss(model, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and logs["loss"] > 0


def test_jdd_training_checks():
    rgb = ImageSet([_rand(3, 40, 40)], ["a"])
    jdd = lambda data, cfg, body=JBODY: fit(JDDTask(), "supervised", data, cfg, body, progress=False)  # noqa: E731
    with pytest.raises(ValueError, match="even"):
        jdd(rgb, FinetuneConfig(crop_size=33))
    with pytest.raises(ValueError, match="RGB"):
        jdd(ImageSet([_rand(1, 40, 40)], ["a"]), FinetuneConfig(crop_size=32))
    with pytest.raises(ValueError, match="in_channels must be 4"):
        jdd(rgb, FinetuneConfig(crop_size=32), BODY)
    with pytest.raises(ValueError, match="pattern"):
        JDDTask("RGBG")
    model = build_jdd_model(JBODY, "BGGR")
    m = Supervised(rgb, FinetuneConfig(crop_size=16, batch_size=2), task=JDDTask("BGGR"), model=model)
    loss, _ = m.loss(model, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_sr_fixed_inputs_give_aligned_crops_with_one_transform():
    hr = ImageSet([_rand(1, 32, 40, seed=i) for i in range(3)], list("abc"))
    lr = ImageSet([F.avg_pool2d(im[None], 4)[0] for im in hr.images], list("abc"))  # commutes with flips
    x, y = SRTask(4).training_batch(hr, lr, None, 16, 16, torch.Generator().manual_seed(1))
    assert x.shape == (16, 1, 4, 4) and y.shape == (16, 1, 16, 16)
    torch.testing.assert_close(x, F.avg_pool2d(y, 4))
    with pytest.raises(ValueError, match="is not 4× the input"):
        SRTask(4).training_batch(hr, hr, None, 2, 16, torch.Generator())


def test_sr_degrade_and_fixed_sr_training():
    clean = ImageSet([_rand(1, 51, 67), _rand(1, 48, 48, seed=1)], ["odd", "even"])
    with pytest.warns(CropWarning, match="odd"):
        lr, hr, sigmas = SRTask(4).degrade(clean, GaussianNoise(0.0), seed=0)
    assert [im.shape for im in lr.images] == [(1, 12, 16), (1, 12, 12)]
    assert [im.shape for im in hr.images] == [(1, 48, 64), (1, 48, 48)] and sigmas.shape == (2,)
    torch.testing.assert_close(lr.images[1], bicubic_downscale(clean.images[1][None], 4)[0])
    free, _, zero = SRTask(4).degrade(clean.subset([1]), None, seed=0)  # noise-free SR
    assert torch.equal(free.images[0], lr.images[1]) and zero.tolist() == [0.0]
    model = SRNet(build_model(BODY), 4)
    method = Supervised(hr, FinetuneConfig(crop_size=32, batch_size=2), task=SRTask(4), model=model,
                        noise=GaussianNoise(0.1), inputs=lr)
    loss, _ = method.loss(model, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_jdd_degrade_and_fixed_jdd_crops():
    rgb = ImageSet([_rand(3, 21, 30), _rand(3, 24, 24, seed=1)], ["odd", "even"])
    with pytest.warns(CropWarning, match="odd"):
        mos, clean, _ = JDDTask("GRBG").degrade(rgb, GaussianNoise(0.0), seed=0)
    assert [m.shape for m in mos.images] == [(1, 20, 30), (1, 24, 24)]
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return torch.zeros(x.shape[0], 3, *x.shape[-2:])

    method = Supervised(clean, FinetuneConfig(crop_size=16, batch_size=6), task=JDDTask("GRBG"), model=Spy(),
                        inputs=mos)
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
    task = JDDTask("RGGB")
    with pytest.warns(CropWarning, match="41×40"):
        packed = task.pretraining_data(rgb, None, seed=0)
    assert len(packed) == 3 and all(p.shape == (4, 20, 20) for p in packed.images)
    with pytest.warns(CropWarning):
        again = task.pretraining_data(rgb.subset([2, 0]), None, seed=0)
    assert torch.equal(again.images[0], packed.images[2])  # noise depends on seed and name, not order
    with pytest.raises(ValueError, match="synthetic"):
        task.pretraining_data(rgb, RealNoise(), seed=0)
    # RCL pre-training of a UNet(4, 4) on them (the task's pre-training network, even from a
    # 1-channel body config), then every weight initialises the JDD body
    assert task.pretrain_model_config(BODY) == JBODY
    pre = fit(task, "rcl", packed, PretrainConfig(steps=2, batch_images=2, crop_size=16), JBODY, progress=False)
    den = pre.model
    assert len(pre.history) == 2 and np.isfinite(pre.history[-1]["loss"])
    res = fit(task, "supervised", rgb, FinetuneConfig(steps=1, batch_size=2, crop_size=16), JBODY, init=den,
              progress=False)
    assert isinstance(res.model, JDDNet)
    for k, v in den.state_dict().items():
        assert v.shape == res.model.body.state_dict()[k].shape
    with pytest.raises(ValueError, match="pattern"):  # a JDDNet of another pattern
        fit(JDDTask("BGGR"), "supervised", rgb, FinetuneConfig(steps=1, batch_size=2, crop_size=16), JBODY,
            init=res.model, progress=False)


def test_finetune_init_options():
    clean = ImageSet([_rand(1, 32, 32, seed=i) for i in range(2)], ["a", "b"])
    cfg = FinetuneConfig(steps=1, batch_size=2, crop_size=16)
    den = build_model(BODY)
    r1 = _sr(clean, cfg, 2, GaussianNoise(0.05), init=den)
    assert isinstance(r1.model, SRNet) and len(r1.history) == 1 and r1.labelled == ["a", "b"]
    r2 = _sr(clean, cfg, 2, GaussianNoise(0.05), init=r1.model)
    assert r2.model is not r1.model
    with pytest.raises(TypeError, match="init"):
        _sr(clean, cfg, 2, init=torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="channel"):
        fit(SRTask(2), "supervised", clean, cfg, ModelConfig(in_channels=3, out_channels=3, width=4, depth=1),
            progress=False)
    r3 = _sr(clean, cfg.model_copy(update={"resample_noise": False}), 2, GaussianNoise(0.05))
    assert isinstance(r3.model, SRNet)


# ---------------------------------------------------------------- short fine-tunes vs classical references

def test_sr_x2_finetune_beats_bicubic_on_held_out_region():
    """Gray camera, σ = 15/255 on the LR image: train on the left half, test on the right half."""
    cam = _camera()
    train_set = ImageSet([cam[:, :, :256]], ["camera-left"])
    noise = GaussianNoise(15 / 255)
    lr_noisy, hr = sr_pair(cam[None, :, :, 256:], 2, noise, torch.Generator().manual_seed(123))
    cfg = FinetuneConfig(steps=150, batch_size=8, crop_size=48, lr=2e-3)
    res = fit(SRTask(2), "supervised", train_set, cfg, ModelConfig(width=12, depth=2), noise=noise, progress=False)
    model, hist = res.model, res.history
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
    model = fit(JDDTask("RGGB"), "supervised", train_set, cfg,
                ModelConfig(in_channels=4, out_channels=4, width=12, depth=2), noise=noise, progress=False).model
    out = predict(model, noisy)[0]
    bilinear = psnr(demosaic_classical(noisy[0], "RGGB", "bilinear"), clean[0])
    malvar = psnr(demosaic_classical(noisy[0], "RGGB", "malvar"), clean[0])
    got = psnr(out, clean[0])
    assert got > bilinear + 1.0, (got, bilinear)
    assert got > malvar + 0.3, (got, malvar)
