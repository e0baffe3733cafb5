"""The training loop, methods, entry points and label subsets."""

import csv
import math

import pydantic
import pytest
import torch
from torch import nn

from rcl.data.datasets import ImageSet
from rcl.data.noise import GaussianNoise, GaussianRangeNoise, RealNoise
from rcl.methods import Supervised
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training import (FinetuneConfig, PretrainConfig, finetune, fit, labelled_subset, pretrain, seed_everything,
                          train)


class Regress:
    """Fit f(x) ≈ 2x + 0.5 on random inputs drawn from the generator."""

    name = "regress"

    def loss(self, model, generator):
        x = torch.rand(8, 1, 4, 4, generator=generator.generator())
        loss = ((model(x) - (2 * x + 0.5)) ** 2).mean()
        return loss, {"loss": float(loss.detach())}


class NaNAt:
    name = "nan"

    def __init__(self, step, value=float("nan")):
        self.step, self.calls, self.value = step, 0, value

    def loss(self, model, generator):
        self.calls += 1
        out = model(torch.ones(1, 1, 2, 2)).mean()
        if self.calls >= self.step:
            out = out * self.value
        return out, {"loss": float(out.detach())}


def _conv():
    torch.manual_seed(0)
    return nn.Conv2d(1, 1, 1)


def _images(n=4, c=1, size=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet([torch.rand(c, size, size + 3, generator=g) for _ in range(n)], [f"i{k}.png" for k in range(n)])


def test_train_lowers_loss_and_writes_csv(tmp_path):
    model = _conv()
    log = tmp_path / "logs" / "train.csv"
    steps = 60
    hist = train(model, Regress(), steps, 0.05, 0, log_path=log, progress=False)
    assert len(hist) == steps
    first = sum(h["loss"] for h in hist[:5]) / 5
    last = sum(h["loss"] for h in hist[-5:]) / 5
    assert last < 0.2 * first
    assert not model.training
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == steps
    assert list(rows[0]) == ["step", "lr", "loss"]
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    assert float(rows[3]["loss"]) == pytest.approx(hist[3]["loss"])
    assert sorted(p.name for p in log.parent.iterdir()) == ["train.csv"]


def test_cosine_lr_schedule():
    hist = train(_conv(), Regress(), 10, 0.1, 0, progress=False)
    lrs = [h["lr"] for h in hist]
    expected = [0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * s / 10))) for s in range(10)]
    assert lrs == pytest.approx(expected)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_train_without_log_and_extra_params():
    model = _conv()
    bias = nn.Parameter(torch.zeros(()))

    class WithExtra(Regress):
        def loss(self, model, generator):
            x = torch.rand(8, 1, 4, 4, generator=generator.generator())
            loss = ((model(x) + bias - (2 * x + 0.5)) ** 2).mean()
            return loss, {"loss": float(loss.detach())}

    train(model, WithExtra(), 5, 0.05, 0, progress=False, extra_params=[bias])
    assert bias.item() != 0


@pytest.mark.parametrize("bad_step", [1, 4])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_raises_and_leaves_no_log(tmp_path, bad_step, value):
    log = tmp_path / "new" / "sub" / "run.csv"  # folders made for the log are removed again
    with pytest.raises(FloatingPointError, match=f"step {bad_step}") as exc:
        train(_conv(), NaNAt(bad_step, value), 10, 0.01, 0, log_path=log,
              progress=False)
    # at step 1 no update has happened yet: the message does not blame the learning rate
    assert ("learning rate" in str(exc.value)) == (bad_step != 1), str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_no_part_file(tmp_path):
    class Interrupt(Regress):
        calls = 0

        def loss(self, model, generator):
            Interrupt.calls += 1
            if Interrupt.calls == 3:
                raise KeyboardInterrupt
            return super().loss(model, generator)

    with pytest.raises(KeyboardInterrupt):
        train(_conv(), Interrupt(), 10, 0.01, 0, log_path=tmp_path / "l.csv",
              progress=False)
    assert list(tmp_path.iterdir()) == []


def test_seed_everything():
    g1 = seed_everything(3)
    a = torch.rand(3)
    b = torch.rand(3, generator=g1)
    g2 = seed_everything(3)
    assert torch.equal(torch.rand(3), a) and torch.equal(torch.rand(3, generator=g2), b)


# ---------------------------------------------------------------- methods and entry points

TINY = ModelConfig(width=4, depth=1)


def _tiny_pretrain(**kw):
    return PretrainConfig(steps=3, batch_images=2, crop_size=8, **kw)


def test_pretrain_deterministic(tmp_path):
    noisy = _images(3, seed=1)
    m1, h1 = pretrain(noisy, TINY, _tiny_pretrain(seed=4), log_path=tmp_path / "a.csv", progress=False)
    m2, h2 = pretrain(noisy, TINY, _tiny_pretrain(seed=4), progress=False)
    for (k, v1), (_, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(v1, v2), k
    assert h1 == h2 and len(h1) == 3
    assert {"loss", "contrastive", "consistency", "residual_std", "lr", "step"} <= set(h1[0])
    m3, _ = pretrain(noisy, TINY, _tiny_pretrain(seed=5), progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


@pytest.mark.parametrize("consistency", ["fidelity", "recorruption", "none"])
def test_pretrain_variants_run(consistency):
    _, hist = pretrain(_images(2), TINY, _tiny_pretrain(consistency=consistency, similarity="l2"), progress=False)
    assert all(math.isfinite(h["loss"]) for h in hist)


def test_pretrain_errors():
    with pytest.raises(ValueError, match="channel"):
        pretrain(_images(3, c=3), TINY, _tiny_pretrain(), progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        pretrain(_images(1), TINY, _tiny_pretrain(), progress=False)
    with pytest.raises(ValueError, match="crop size"):
        pretrain(_images(3, size=6), TINY, _tiny_pretrain(), progress=False)


def test_pretrain_from_a_model_trains_a_copy():
    noisy = _images(3)
    init, _ = pretrain(noisy, TINY, _tiny_pretrain(seed=1), progress=False)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    model, hist = pretrain(noisy, TINY, _tiny_pretrain(seed=2), progress=False, model=init)
    assert model is not init and len(hist) == 3
    assert all(torch.equal(v, before[k]) for k, v in init.state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_finetune_deterministic_and_subset():
    clean = _images(6, seed=2)
    cfg = FinetuneConfig(steps=3, batch_size=2, crop_size=8, label_fraction=0.5, seed=1)
    m1, h1, names1 = finetune(clean, GaussianNoise(0.1), cfg, TINY, progress=False)
    m2, h2, names2 = finetune(clean, GaussianNoise(0.1), cfg, TINY, progress=False)
    assert names1 == names2 and len(names1) == 3
    assert names1 == [clean.names[i] for i in labelled_subset(6, 0.5, 1)]
    for v1, v2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(v1, v2)
    assert h1 == h2


def test_finetune_from_init_copies_and_fixed_noise():
    clean = _images(3)
    init, _ = pretrain(clean, TINY, _tiny_pretrain(), progress=False)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    cfg = FinetuneConfig(steps=2, batch_size=2, crop_size=8, resample_noise=False)
    model, hist, names = finetune(clean, GaussianRangeNoise(), cfg, TINY, init=init, progress=False)
    assert model is not init
    for k, v in init.state_dict().items():
        assert torch.equal(v, before[k])  # the init model is left untouched
    assert len(hist) == 2 and len(names) == 3


def test_finetune_with_noisy_pairs():
    clean = _images(3)
    noisy = ImageSet([im + 0.1 for im in clean.images], clean.names)
    cfg = FinetuneConfig(steps=2, batch_size=2, crop_size=8)
    _, hist, _ = finetune(clean, None, cfg, TINY, noisy=noisy, progress=False)
    assert len(hist) == 2


def test_supervised_errors():
    cfg = FinetuneConfig(steps=1, batch_size=1, crop_size=8)
    with pytest.raises(ValueError, match="synthetic"):
        finetune(_images(2), RealNoise(), cfg, TINY, progress=False)
    with pytest.raises(ValueError, match="synthetic"):
        finetune(_images(2), None, cfg, TINY, progress=False)
    with pytest.raises(ValueError, match="synthetic"):
        finetune(_images(2), None, cfg.model_copy(update={"resample_noise": False}), TINY, progress=False)
    with pytest.raises(ValueError, match="crop size"):
        finetune(_images(2, size=5), GaussianNoise(0.1), cfg, TINY, progress=False)
    with pytest.raises(ValueError, match="channel"):
        finetune(_images(2, c=3), GaussianNoise(0.1), cfg, TINY, progress=False)
    with pytest.raises(ValueError, match="2 noisy images for 3 clean"):
        finetune(_images(3), None, cfg, TINY, noisy=_images(2), progress=False)
    with pytest.raises(TypeError, match="FinetuneConfig"):
        fit(DenoiseTask(), "supervised", _images(2), _tiny_pretrain(), TINY, noise=GaussianNoise(0.1))


def test_supervised_method_loss_matches_noise():
    clean = _images(2)
    cfg = FinetuneConfig(steps=1, batch_size=4, crop_size=8)
    method = Supervised(clean, cfg, task=DenoiseTask(), model=nn.Identity(), noise=GaussianNoise(0.2))
    loss, logs = method.loss(nn.Identity(), torch.Generator().manual_seed(0))
    # identity model: the loss is the noise power σ²
    assert loss.item() == pytest.approx(0.04, rel=0.2) and float(logs["loss"]) == pytest.approx(loss.item())


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"batch_images": 1}, {"crop_size": 4}, {"lr": 0},
                                    {"temperature": 0}, {"consistency": "n2n"}, {"similarity": "l1"},
                                    {"mask_ratio": 1.0}, {"extra": 1}])
def test_pretrain_config_validation(kwargs):
    with pytest.raises(pydantic.ValidationError):
        PretrainConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"label_fraction": 0}, {"label_fraction": 1.5}, {"loss": "huber"},
                                    {"batch_size": 0}, {"lr": 2}])
def test_finetune_config_validation(kwargs):
    with pytest.raises(pydantic.ValidationError):
        FinetuneConfig(**kwargs)


# ---------------------------------------------------------------- labelled_subset


@pytest.mark.parametrize("n", [1, 5, 10, 37, 400])
@pytest.mark.parametrize("f", [0.001, 0.1, 0.25, 0.5, 0.75, 1.0])
def test_labelled_subset_size(n, f):
    idx = labelled_subset(n, f, seed=0)
    assert len(idx) == max(1, round(f * n))
    assert idx == sorted(set(idx)) and all(0 <= i < n for i in idx)


def test_labelled_subset_nested_and_seeded():
    fracs = [0.01, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0]
    for seed in range(3):
        prev = set()
        for f in fracs:
            cur = set(labelled_subset(200, f, seed))
            assert prev <= cur
            prev = cur
        assert prev == set(range(200))
    assert labelled_subset(50, 0.2, 1) == labelled_subset(50, 0.2, 1)
    assert labelled_subset(50, 0.2, 1) != labelled_subset(50, 0.2, 2)


@pytest.mark.parametrize("f", [0.0, -0.1, 1.0001, 2.0, float("nan")])
def test_labelled_subset_errors(f):
    with pytest.raises(ValueError, match="label fraction"):
        labelled_subset(10, f, 0)
