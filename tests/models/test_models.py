"""U-Net, DnCNN, padding helper and the model factory."""

import pydantic
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rcl.models import DnCNN, ModelConfig, UNet, build_model
from rcl.models.padding import pad_to_multiple

SIZES = [(31, 45), (5, 7), (1, 1), (1, 9), (2, 3), (16, 16)]


def _x(b, c, h, w, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_unet_output_shape_any_size(hw, channels, depth):
    torch.manual_seed(0)
    m = UNet(channels, channels, width=4, depth=depth).eval()
    x = _x(2, channels, *hw)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_dncnn_output_shape_any_size(hw, channels):
    torch.manual_seed(0)
    m = DnCNN(channels, width=4, depth=4).eval()
    x = _x(1, channels, *hw)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_dncnn_trains_on_odd_sizes():
    m = DnCNN(1, width=4, depth=3).train()
    x = _x(2, 1, 31, 45)
    m(x).pow(2).mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_unet_non_residual_channel_change():
    m = UNet(4, 3, width=4, depth=2, residual=False).eval()
    with torch.no_grad():
        assert m(_x(1, 4, 13, 11)).shape == (1, 3, 13, 11)
    with pytest.raises(ValueError, match="residual"):
        UNet(1, 3, residual=True)


@pytest.mark.parametrize("model", [UNet(1, 1, width=4, depth=2), DnCNN(1, width=4, depth=3)],
                         ids=["unet", "dncnn"])
def test_residual_learning_zero_head_is_identity(model):
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    x = _x(1, 1, 9, 14)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), x)


def test_unet_non_residual_output_is_head():
    m = UNet(1, 1, width=4, depth=1, residual=False).eval()
    nn.init.zeros_(m.head.weight)
    nn.init.constant_(m.head.bias, 0.25)
    with torch.no_grad():
        assert torch.allclose(m(_x(1, 1, 7, 5)), torch.full((1, 1, 7, 5), 0.25))


def test_unet_batch_independence():
    torch.manual_seed(1)
    m = UNet(1, 1, width=4, depth=2).eval()
    x = _x(3, 1, 12, 10)
    with torch.no_grad():
        full = m(x)
        single = torch.cat([m(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(full, single, atol=1e-6)


def test_unet_features_shapes():
    m = UNet(1, 1, width=4, depth=2)
    z, skips = m.features(_x(1, 1, 16, 20))
    assert z.shape == (1, 16, 4, 5) and [s.shape[1] for s in skips] == [4, 8]
    assert m.feature_channels == 16
    assert m.forward_body(_x(1, 1, 16, 20)).shape == (1, 4, 16, 20)
    d = DnCNN(1, width=6, depth=3)
    f, s = d.features(_x(1, 1, 5, 5))
    assert f.shape == (1, 6, 5, 5) and s == [] and d.feature_channels == 6


def test_dncnn_invalid():
    with pytest.raises(ValueError):
        DnCNN(1, out_channels=3)
    with pytest.raises(ValueError):
        DnCNN(1, residual=False)
    with pytest.raises(ValueError, match="depth"):
        DnCNN(1, depth=1)
    assert len([m for m in DnCNN(1, width=4, depth=5).modules() if isinstance(m, nn.Conv2d)]) == 5


# ---------------------------------------------------------------- padding


def test_pad_to_multiple_reflect_and_crop_back():
    x = _x(1, 2, 13, 10)
    p = pad_to_multiple(x, 8)
    assert p.shape == (1, 2, 16, 16)
    assert torch.equal(p[..., :13, :10], x)
    assert torch.equal(p, F.pad(x, (0, 6, 0, 3), mode="reflect"))
    assert pad_to_multiple(x[..., :8, :8], 8) is not None and torch.equal(pad_to_multiple(x[..., :8, :8], 8),
                                                                           x[..., :8, :8])


def test_pad_to_multiple_replicate_for_tiny():
    x = _x(1, 1, 3, 2)
    p = pad_to_multiple(x, 8)
    assert p.shape == (1, 1, 8, 8)
    assert torch.equal(p[..., :3, :2], x)
    assert torch.equal(p, F.pad(x, (0, 6, 0, 5), mode="replicate"))


# ---------------------------------------------------------------- factory


def test_build_model_from_config():
    m = build_model(ModelConfig())
    assert isinstance(m, UNet) and m.depth == 3 and m.residual
    m = build_model(ModelConfig(arch="unet", in_channels=3, out_channels=3, width=8, depth=2))
    assert isinstance(m, UNet) and m.enc[0][0].out_channels == 8 and m.in_channels == 3
    m = build_model(ModelConfig(in_channels=4, out_channels=3, width=4, depth=1))
    assert isinstance(m, UNet) and not m.residual
    d = build_model(ModelConfig(arch="dncnn", in_channels=3, out_channels=3, width=8, depth=5))
    assert isinstance(d, DnCNN)
    assert len([c for c in d.modules() if isinstance(c, nn.Conv2d)]) == 5
    d2 = build_model(ModelConfig(arch="dncnn", depth=2, width=4))
    assert len([c for c in d2.modules() if isinstance(c, nn.Conv2d)]) == 2
    for depth in (0, 1):  # refused, not silently built with 2 layers while the config says fewer
        with pytest.raises(ValueError, match="at least 2 conv layers"):
            ModelConfig(arch="dncnn", depth=depth, width=4)
    with pytest.raises(ValueError):
        build_model(ModelConfig(arch="dncnn", in_channels=1, out_channels=3))


def test_build_model_deterministic_init():
    cfg = ModelConfig(width=4, depth=1)
    torch.manual_seed(3)
    a = build_model(cfg)
    torch.manual_seed(3)
    b = build_model(cfg)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("kwargs", [{"arch": "resnet"}, {"in_channels": 0}, {"out_channels": 17},
                                    {"width": 0}, {"width": 1024}, {"depth": -1}, {"depth": 9},
                                    {"unknown": 1}, {"width": "wide"}])
def test_model_config_rejects_invalid(kwargs):
    with pytest.raises(pydantic.ValidationError):
        ModelConfig(**kwargs)


def test_model_config_round_trip():
    cfg = ModelConfig(arch="dncnn", in_channels=3, out_channels=3, width=12, depth=6)
    assert ModelConfig(**cfg.model_dump()) == cfg
    assert ModelConfig.model_validate_json(cfg.model_dump_json()) == cfg
