"""Every registered method: a short fit() runs with finite losses, its config is strict, and its
traits are consistent with what fit() does."""

import math

import pytest
import torch
from pydantic import ValidationError

from rcl.configs import StrictConfig
from rcl.data.datasets import ImageSet
from rcl.data.noise import GaussianNoise
from rcl.methods import METHODS, PRETRAINING_METHODS, Method, get_method, register_method
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training import fit

TINY = ModelConfig(width=4, depth=1)
SMALL = dict(steps=2, batch_size=2, batch_images=2, crop_size=16, seed=3)
NAMES = list(METHODS)


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet([torch.rand(1, 24, 26, generator=g) for _ in range(n)], [f"i{k}.png" for k in range(n)])


def _small_config(cls):
    return cls.Config(**{k: v for k, v in SMALL.items() if k in cls.Config.model_fields})


def _fit(name, **kw):
    cls = get_method(name)
    data = _images()
    if cls.supervised:
        return fit(DenoiseTask(), name, data, _small_config(cls), TINY, noise=GaussianNoise(0.1), progress=False,
                   **kw)
    return fit(DenoiseTask(), name, data, _small_config(cls), TINY, progress=False, **kw)


def test_builtin_methods_are_registered():
    assert NAMES[:7] == ["rcl", "simclr", "n2v", "n2s", "ne2ne", "none", "supervised"]
    assert PRETRAINING_METHODS == ("rcl", "simclr", "n2v", "n2s", "ne2ne", "none")
    with pytest.raises(ValueError, match="unknown method 'n2x'.*rcl, simclr"):
        get_method("n2x")


@pytest.mark.parametrize("name", NAMES)
def test_short_fit_runs_with_finite_losses(name):
    cls = get_method(name)
    res = _fit(name)
    assert not res.model.training
    if not cls.trains:
        assert res.history == []
    else:
        assert len(res.history) == SMALL["steps"]
        assert [h["step"] for h in res.history] == [1, 2]
        assert all(math.isfinite(h["loss"]) for h in res.history)
    assert (res.labelled is not None) == cls.supervised
    # same seed, same weights
    again = _fit(name)
    for (k, a), b in zip(res.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", NAMES)
def test_config_is_strict(name):
    cfg_cls = get_method(name).Config
    assert issubclass(cfg_cls, StrictConfig)
    assert "seed" in cfg_cls.model_fields
    cfg_cls()  # every field has a default
    with pytest.raises(ValidationError, match="unknown_field"):
        cfg_cls(unknown_field=1)
    with pytest.raises(ValidationError):
        cfg_cls(seed=-1)
    with pytest.raises(ValidationError):
        cfg_cls(seed=True)
    if "steps" in cfg_cls.model_fields:
        with pytest.raises(ValidationError):
            cfg_cls(steps=2.0)
    with pytest.raises(ValidationError):  # fit validates a dict config the same way
        fit(DenoiseTask(), name, _images(), {"unknown_field": 1}, TINY, noise=GaussianNoise(0.1))


@pytest.mark.parametrize("name", NAMES)
def test_traits_are_consistent(name):
    cls = get_method(name)
    assert issubclass(cls, Method) and cls.name == name
    if cls.zero_label:
        assert cls.trains and not cls.supervised
    if cls.supervised:
        assert cls.trains and name not in PRETRAINING_METHODS
    elif name in NAMES[:7]:
        assert name in PRETRAINING_METHODS
    if cls.trains:
        assert {"steps", "lr"} <= set(cls.Config.model_fields)
    # a trained network restores through the method's predictor: same shape as the input
    res = _fit(name)
    x = _images(1, seed=9).images[0]
    out = cls.predictor(res.model, _small_config(cls))(x, float("nan"))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_traits_of_the_builtin_methods():
    assert {n for n in NAMES[:7] if METHODS[n].zero_label} == {"rcl", "n2v", "n2s", "ne2ne"}
    assert {n for n in NAMES[:7] if not METHODS[n].trains} == {"none"}
    assert {n for n in NAMES[:7] if METHODS[n].supervised} == {"supervised"}


def test_register_method_refuses_bad_or_duplicate_classes():
    with pytest.raises(TypeError):
        register_method(int)

    class NoConfig(Method):
        name = "no-config"

    with pytest.raises(TypeError, match="Config"):
        register_method(NoConfig)

    class Clash(Method):
        name = "rcl"
        Config = StrictConfig

    with pytest.raises(ValueError, match="already registered"):
        register_method(Clash)
    assert register_method(METHODS["rcl"]) is METHODS["rcl"]  # re-registering the same class is a no-op
