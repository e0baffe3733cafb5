"""Whole-image and tiled inference."""

import pytest
import torch
from torch import nn

from rcl.evaluation.inference import tile_starts, predict
from rcl.models import DnCNN, UNet


def _x(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _pixelwise(c=3):
    torch.manual_seed(0)
    return nn.Conv2d(c, c, 1)


def _local(radius, c=1):
    """A plain conv net (no BN, zero padding) whose receptive field has the given radius."""
    torch.manual_seed(1)
    layers = []
    for i in range(radius):
        layers += [nn.Conv2d(c if i == 0 else 4, 4 if i < radius - 1 else c, 3, padding=1)]
        if i < radius - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


@pytest.mark.parametrize("hw", [(31, 45), (64, 64), (50, 17), (17, 50), (100, 33)])
@pytest.mark.parametrize("tile,overlap", [(16, 4), (20, 8), (24, 5), (32, 0)])
def test_tiled_equals_whole_for_pixelwise_model(hw, tile, overlap):
    model = _pixelwise()
    x = _x(2, 3, *hw)
    whole = predict(model, x)
    tiled = predict(model, x, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-6)


@pytest.mark.parametrize("hw", [(31, 45), (57, 40)])
@pytest.mark.parametrize("radius", [1, 3])
def test_tiled_equals_whole_when_overlap_covers_receptive_field(hw, radius):
    model = _local(radius)
    x = _x(1, 1, *hw, seed=2)
    whole = predict(model, x)
    tiled = predict(model, x, tile=16, overlap=2 * radius)
    assert torch.allclose(tiled, whole, atol=1e-5)
    if radius == 3:  # a too small overlap leaves seams
        assert not torch.allclose(predict(model, x, tile=16, overlap=2), whole, atol=1e-5)


def test_tiled_dncnn_exact_with_enough_overlap():
    torch.manual_seed(2)
    model = DnCNN(1, width=4, depth=3)
    x = _x(1, 1, 37, 29, seed=3)
    whole = predict(model, x)
    assert torch.allclose(predict(model, x, tile=20, overlap=6), whole, atol=1e-5)


def test_tiled_unet_shape_and_close():
    torch.manual_seed(3)
    model = UNet(1, 1, width=4, depth=2)
    x = _x(1, 1, 45, 31, seed=4)
    whole = predict(model, x)
    tiled = predict(model, x, tile=32, overlap=12)
    assert tiled.shape == whole.shape == x.shape
    assert torch.isfinite(tiled).all()
    # an overlap below the receptive field (tile_overlap: 52 px here) is not exact, but close;
    # tests/evaluation/test_tiling.py checks that the automatic overlap is exact
    assert (tiled - whole).abs().max() < 0.05


def test_single_image_and_modes():
    model = _pixelwise(1)
    model.train()
    x = _x(1, 13, 17)
    out = predict(model, x)
    assert out.shape == x.shape
    assert model.training  # mode restored
    model.eval()
    predict(model, x)
    assert not model.training
    with torch.no_grad():
        assert torch.allclose(out, model(x.unsqueeze(0))[0])
    assert not out.requires_grad


def test_eval_mode_used_during_prediction():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    m = Probe().train()
    predict(m, _x(1, 1, 8, 8))
    assert seen == [False] and m.training


def test_small_image_skips_tiling_and_bad_tile():
    model = _pixelwise(1)
    x = _x(1, 1, 10, 10)
    # image fits in a tile: no tiling, so a tile/overlap combination that would be invalid is not checked
    assert torch.allclose(predict(model, x, tile=10, overlap=16), predict(model, x))
    with pytest.raises(ValueError, match="overlap"):
        predict(model, _x(1, 1, 40, 40), tile=16, overlap=8)


def test_mode_restored_after_error():
    model = _pixelwise(1).train()
    with pytest.raises(ValueError):
        predict(model, _x(1, 1, 40, 40), tile=8, overlap=8)
    assert model.training


def test_scaled_model_output_size():
    class Up(nn.Module):
        scale = 2

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * 3

    x = _x(1, 1, 21, 30)
    whole = predict(Up(), x)
    tiled = predict(Up(), x, tile=12, overlap=4)
    assert tiled.shape == (1, 1, 42, 60)
    assert torch.allclose(tiled, whole)


def test_starts_cover_image():
    assert tile_starts(10, 16, 12) == [0]
    assert tile_starts(16, 16, 12) == [0]
    s = tile_starts(45, 16, 12)
    assert s[0] == 0 and s[-1] == 45 - 16 and s == sorted(set(s))
    assert all(b - a <= 12 for a, b in zip(s, s[1:]))


# ---------------------------------------------------------------- protocol (uses predict)


def test_evaluate_identity_and_model_denoiser():
    from rcl.data.datasets import ImageSet
    from rcl.data.noise import GaussianNoise, RealNoise
    from rcl.evaluation.metrics import psnr
    from rcl.evaluation.protocol import evaluate, make_noisy_test_set, model_denoiser

    clean = ImageSet([_x(1, 16, 20, seed=k) * 0.8 + 0.1 for k in range(3)], ["a.png", "b.png", "c.png"])
    noise = GaussianNoise(20 / 255)
    noisy, sigmas = make_noisy_test_set(clean, noise, seed=1)
    ident = nn.Identity()
    results, outputs = evaluate({"id": model_denoiser(ident), "clean": lambda y, s: clean.images[
        [torch.equal(y, n) for n in noisy.images].index(True)]}, clean, noise, seed=1, keep_outputs=True)
    r = results["id"]
    assert [s.name for s in r.scores] == clean.names
    for s, x, y in zip(r.scores, clean.images, noisy.images):
        assert s.psnr == pytest.approx(s.psnr_noisy) and s.ssim == pytest.approx(s.ssim_noisy)
        assert s.psnr == pytest.approx(psnr(y, x))
        assert s.sigma == pytest.approx(20.0)
    assert results["clean"].mean("psnr") == float("inf")
    assert len(outputs["id"]) == 3 and torch.equal(outputs["id"][0], noisy.images[0])
    assert r.summary()["n_images"] == 3 and "images" in r.to_dict()
    with pytest.raises(ValueError, match="real"):
        evaluate({"id": model_denoiser(ident)}, clean, RealNoise())


@pytest.mark.parametrize("c", [1, 3])
def test_predict_channels_last_matches_plain_forward_and_restores_model(c):
    """predict runs the net in channels-last layout (faster oneDNN convolutions): same values as a
    plain contiguous forward pass, contiguous output, and the model's layout and mode restored."""
    torch.manual_seed(0)
    model = UNet(c, c, width=8, depth=2).train()
    params = list(model.parameters())
    x = _x(c, 37, 45)
    with torch.no_grad():
        ref = model.eval()(x[None])[0]
    model.train()
    out = predict(model, x)
    assert out.is_contiguous() and out.shape == x.shape
    assert torch.allclose(out, ref, atol=1e-5)
    assert model.training
    assert all(p.is_contiguous() for p in model.parameters())
    assert all(a is b for a, b in zip(params, model.parameters()))  # optimizer references stay valid
