"""SRNet / JDDNet: output sizes, untrained = classical baseline, weight transfer from a denoiser."""

import pytest
import torch

from rcl.data.degradations import PATTERNS, bayer_mosaic, bicubic_upscale, bilinear_demosaic, malvar_demosaic
from rcl.evaluation import predict
from rcl.models import JDDNet, ModelConfig, SRNet, UNet, build_jdd_model, build_model, build_sr_model, transfer_weights


def _x(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale, lr_hw", [(4, (13, 17)), (2, (13, 17)), (3, (5, 7)), (4, (1, 1)), (2, (16, 16))])
def test_srnet_output_size_any_lr_size(channels, scale, lr_hw):
    torch.manual_seed(0)
    m = build_sr_model(ModelConfig(in_channels=channels, out_channels=channels, width=4, depth=2), scale).eval()
    assert m.scale == scale and isinstance(m.scale, int)
    with torch.no_grad():
        y = m(_x(2, channels, *lr_hw))
    assert y.shape == (2, channels, lr_hw[0] * scale, lr_hw[1] * scale) and torch.isfinite(y).all()


def test_srnet_x4_13x17_gives_52x68():
    m = build_sr_model(ModelConfig(width=8, depth=3), 4).eval()
    with torch.no_grad():
        assert m(_x(1, 1, 13, 17)).shape == (1, 1, 52, 68)
    assert predict(m, _x(1, 13, 17)).shape == (1, 52, 68)


def test_untrained_srnet_is_bicubic_and_trains_the_body():
    m = build_sr_model(ModelConfig(in_channels=3, out_channels=3, width=4, depth=2), 2)
    x = _x(2, 3, 11, 9)
    torch.testing.assert_close(m(x), bicubic_upscale(x, 2))
    with torch.no_grad():
        m.tail.weight.normal_(0, 0.1)
    m(x).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters()
               if not n.startswith("body.head"))


def test_srnet_without_skip_or_channel_change():
    m = SRNet(UNet(1, 1, width=4, depth=1), 2, out_channels=3)
    assert not m.skip and m.tail.weight.abs().sum() > 0
    assert m(_x(1, 1, 6, 7)).shape == (1, 3, 12, 14)


def test_srnet_tiled_prediction_keeps_scale():
    m = build_sr_model(ModelConfig(width=4, depth=2), 2).eval()
    y = predict(m, _x(1, 40, 44), tile=24, overlap=8)
    assert y.shape == (1, 80, 88)


def test_transfer_weights_from_a_denoiser():
    torch.manual_seed(1)
    den = build_model(ModelConfig(width=4, depth=2))
    sr = build_sr_model(ModelConfig(width=4, depth=2), 2)
    loaded, skipped = transfer_weights(sr.body, den)
    assert skipped == [] and set(loaded) == set(den.state_dict())
    for k, v in den.state_dict().items():
        assert torch.equal(sr.body.state_dict()[k], v)
    sr.body.load_state_dict(den.state_dict(), strict=True)  # same shapes: strict loading works too
    # a 3-channel denoiser into a 1-channel body: everything but the first conv and the head
    den3 = build_model(ModelConfig(in_channels=3, out_channels=3, width=4, depth=2))
    loaded, skipped = transfer_weights(sr.body, den3)
    assert set(skipped) == {"enc.0.0.weight", "head.weight", "head.bias"}
    with pytest.raises(ValueError, match="no tensor"):
        transfer_weights(sr, den)  # names carry the "body." prefix: pass the body


@pytest.mark.parametrize("hw", [(10, 14), (11, 15), (2, 2), (3, 5), (16, 16)])
def test_jddnet_output_size(hw):
    torch.manual_seed(0)
    m = build_jdd_model(ModelConfig(in_channels=4, out_channels=4, width=4, depth=2), "GRBG").eval()
    assert m.scale == 1
    with torch.no_grad():
        y = m(_x(2, 1, *hw))
    assert y.shape == (2, 3, *hw) and torch.isfinite(y).all()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_untrained_jddnet_is_the_classical_demosaic(pattern):
    cfg = ModelConfig(in_channels=4, out_channels=4, width=4, depth=2)
    mos = _x(2, 1, 12, 10)
    torch.testing.assert_close(build_jdd_model(cfg, pattern)(mos), malvar_demosaic(mos, pattern))
    torch.testing.assert_close(build_jdd_model(cfg, pattern, skip="bilinear")(mos), bilinear_demosaic(mos, pattern))
    # odd sizes: the 1-px reflection keeps the CFA phase, so a constant colour stays exact
    rgb = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 7, 9)
    out = build_jdd_model(cfg, pattern)(bayer_mosaic(rgb, pattern))
    torch.testing.assert_close(out, rgb.expand_as(out), atol=1e-6, rtol=0)


def test_jddnet_packed_layout_reaches_the_right_pixels():
    """A tail that copies packed channel k to every colour of sub-pixel k must return the mosaic."""
    m = JDDNet(UNet(4, 4, width=4, depth=1), skip=None)
    m.body.forward_body = lambda x: torch.cat([x, torch.zeros_like(x)], dim=1)  # features = the packed input
    m.tail = torch.nn.Conv2d(8, 12, 1)
    with torch.no_grad():
        m.tail.weight.zero_()
        m.tail.bias.zero_()
        for c in range(3):
            for k in range(4):
                m.tail.weight[c * 4 + k, k] = 1.0
    mos = _x(1, 1, 8, 10)
    out = m(mos)
    for c in range(3):
        torch.testing.assert_close(out[:, c:c + 1], mos)


def test_jdd_body_from_packed_mosaic_denoiser():
    cfg = ModelConfig(in_channels=4, out_channels=4, width=4, depth=2)
    den = build_model(cfg)
    jdd = build_jdd_model(cfg)
    loaded, skipped = transfer_weights(jdd.body, den)
    assert skipped == [] and len(loaded) == len(den.state_dict())


def test_build_errors():
    with pytest.raises(ValueError, match="in_channels must be 4"):
        build_jdd_model(ModelConfig(in_channels=3, out_channels=3))
    with pytest.raises(ValueError, match="U-Net"):
        build_sr_model(ModelConfig(arch="dncnn"), 2)
    with pytest.raises(ValueError, match="skip"):
        JDDNet(UNet(4, 4, width=4, depth=1), skip="menon")
    with pytest.raises(ValueError, match="mosaic"):
        build_jdd_model(ModelConfig(in_channels=4, out_channels=4, width=4, depth=1))(_x(1, 3, 8, 8))
    with pytest.raises(ValueError, match="scale"):
        SRNet(UNet(1, 1, width=4, depth=1), 0)
