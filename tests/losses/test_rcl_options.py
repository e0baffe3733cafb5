"""RCL's consistency and contrastive options studied for the converged defaults (issue: make the
residual contrastive term earn its place): the Neighbor2Neighbor-style consistency term, EMD on
mean-removed residual crops, and a warm-up of the contrastive weight."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rcl.data.draws import as_draws
from rcl.data.datasets import ImageSet
from rcl.losses import RCLLoss
from rcl.losses.consistency import consistency_forward
from rcl.losses.neighbor2neighbor import ne2ne_loss, neighbor_subsample
from rcl.losses.ntxent import ResidualNTXent
from rcl.methods import RCLConfig
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training import fit


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def test_neighbor_term_is_the_ne2ne_loss_and_its_residual_is_g1_minus_f_g1():
    model, crops = _model(), torch.rand(4, 1, 12, 10, generator=_gen(1))
    loss, residual = consistency_forward("neighbor", model, crops, as_draws(_gen(7)), gamma=0.7)
    ref, _ = ne2ne_loss(model, crops, 0.7, as_draws(_gen(7)))
    g1, _, _, _ = neighbor_subsample(crops, as_draws(_gen(7)))
    assert torch.allclose(loss, ref)
    assert torch.allclose(residual, g1 - model(g1))


def test_centred_emd_ignores_a_constant_offset_per_crop():
    res = torch.randn(8, 1, 6, 6, generator=_gen(2))
    offsets = torch.randn(8, 1, 1, 1, generator=_gen(3))
    centred = ResidualNTXent(0.2, center=True, normalize=False)
    assert torch.allclose(centred(res), centred(res + offsets), atol=1e-6)
    plain = ResidualNTXent(0.2, normalize=False)
    assert not torch.allclose(plain(res), plain(res + offsets), atol=1e-3)
    # centring = the plain loss on residuals whose per-crop means were removed by hand
    by_hand = res - res.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(centred(res), plain(by_hand), atol=1e-6)


def test_contrastive_warmup_ramps_the_weight_and_gamma_ramps_with_the_run():
    crit = RCLLoss(contrastive_weight=0.4, contrastive_warmup=0.5, neighbor_gamma=2.0)
    assert crit.weights(0.25) == pytest.approx((0.2, 0.5))
    assert crit.weights(0.5) == pytest.approx((0.4, 1.0))
    assert crit.weights(1.0) == pytest.approx((0.4, 2.0))
    assert crit.weights(None) == pytest.approx((0.4, 2.0))
    assert RCLLoss(contrastive_weight=0.4).weights(0.1)[0] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        RCLLoss(contrastive_warmup=1.5)


def test_warmup_changes_the_loss_as_the_weights_say():
    model, crops = _model(), torch.rand(4, 1, 10, 10, generator=_gen(4))
    crit = RCLLoss(temperature=0.2, contrastive_weight=0.3, contrastive_warmup=0.5, mask_ratio=0.1)
    loss, logs = crit(model, crops, _gen(5), progress=0.1)
    assert float(loss.detach()) == pytest.approx(0.3 * 0.2 * float(logs["contrastive"]) + float(logs["consistency"]), rel=1e-5)


def test_new_fields_leave_the_default_config_dump_unchanged():
    """Cell hashes and checkpoint metadata of configs that do not use the options stay as before."""
    assert set(RCLConfig().model_dump()) == {"steps", "batch_images", "crop_size", "lr", "temperature",
                                             "contrastive_weight", "consistency", "consistency_weight",
                                             "similarity", "normalize", "mask_ratio", "seed"}
    d = RCLConfig(consistency="neighbor", contrastive_warmup=0.2, center_residuals=True, neighbor_gamma=1.0).model_dump()
    assert (d["contrastive_warmup"], d["center_residuals"], d["neighbor_gamma"]) == (0.2, True, 1.0)


def test_neighbor_needs_even_crops_and_no_pd():
    with pytest.raises(ValueError, match="even"):
        RCLConfig(consistency="neighbor", crop_size=47)
    with pytest.raises(ValueError, match="blindspot"):
        RCLConfig(consistency="neighbor", pd_stride=2)


@pytest.mark.parametrize("options", [{"consistency": "neighbor"}, {"center_residuals": True},
                                     {"contrastive_warmup": 0.5}])
def test_rcl_pretraining_runs_with_each_option(options):
    g = _gen(6)
    noisy = ImageSet([torch.rand(1, 40, 44, generator=g) for _ in range(4)], [f"i{k}.png" for k in range(4)])
    cfg = RCLConfig(steps=4, batch_images=4, crop_size=16, **options)
    res = fit(DenoiseTask(), "rcl", noisy, cfg, ModelConfig(width=4, depth=2), progress=False)
    assert len(res.history) == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in res.history)
