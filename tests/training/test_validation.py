"""Periodic validation with best-checkpoint selection during fine-tuning (rcl.training.validation)."""

from __future__ import annotations

import math

import pytest
import torch

from rcl.data.datasets import ImageSet
from rcl.data.noise import GaussianNoise
from rcl.evaluation.inference import inference_layout
from rcl.evaluation.protocol import evaluate, model_denoiser
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask
from rcl.training import Engine, fit, labelled_subset
from rcl.training.fit import validation_subset
from rcl.training.validation import Validation, validation_split

BODY = ModelConfig(arch="unet", width=8, depth=2)
NOISE = GaussianNoise(25 / 255)


def _images(n=12, size=32, seed=0) -> ImageSet:
    """Smooth random images (a denoiser can learn them in a few steps), odd widths."""
    g = torch.Generator().manual_seed(seed)
    ims = []
    for _ in range(n):
        low = torch.rand(1, 1, size // 4, (size + 5) // 4, generator=g)
        ims.append(torch.nn.functional.interpolate(low, size=(size, size + 5), mode="bilinear",
                                                   align_corners=False)[0])
    return ImageSet(ims, [f"im{k:02d}.png" for k in range(n)])


def _cfg(**kw) -> dict:
    return {"steps": 24, "batch_size": 4, "crop_size": 16, "lr": 3e-3, "seed": 3, "val_every": 6, **kw}


@pytest.mark.parametrize("n, fraction, min_labels, expected", [
    (9, 0.1, 10, 0), (10, 0.1, 10, 1), (14, 0.1, 10, 1), (15, 0.1, 10, 2), (400, 0.1, 10, 40),
    (2, 0.9, 2, 1), (40, 0.25, 10, 10),
])
def test_validation_split_sizes(n, fraction, min_labels, expected):
    assert validation_split(n, fraction, min_labels) == expected


@pytest.mark.parametrize("fraction, min_labels", [(0.0, 10), (1.0, 10), (0.1, 1)])
def test_validation_split_refuses_bad_settings(fraction, min_labels):
    with pytest.raises(ValueError):
        validation_split(20, fraction, min_labels)


def test_validation_comes_out_of_the_labels():
    from rcl.methods import Supervised

    cfg = Supervised.Config(**_cfg(label_fraction=1.0))
    labelled = labelled_subset(12, 1.0, 3)
    train_idx, val_idx = validation_subset(labelled, cfg, 3)
    assert len(val_idx) == 1 and not set(train_idx) & set(val_idx)
    assert sorted(train_idx + val_idx) == labelled
    off = Supervised.Config(**_cfg(val_every=0))
    assert validation_subset(labelled, off, 3) == (labelled, [])


def test_fit_keeps_the_best_validated_weights():
    data = _images()
    res = fit(DenoiseTask(), "supervised", data, _cfg(), BODY, noise=NOISE, progress=False)
    scored = {r["step"]: r["val_psnr"] for r in res.history if not math.isnan(r["val_psnr"])}
    assert sorted(scored) == [6, 12, 18, 24]
    assert all(math.isnan(r["val_psnr"]) for r in res.history if r["step"] not in scored)
    best = max(scored, key=scored.get)
    assert res.best_step == best and res.best_psnr == scored[best]
    assert len(res.validation) == 1 and res.validation[0] not in res.labelled
    assert len(res.labelled) == len(data) - 1
    # the returned network scores the recorded best on the validation image, by the protocol itself
    val = data.subset([data.names.index(res.validation[0])])
    again, _ = evaluate({"net": model_denoiser(res.model)}, val, NOISE, 3)
    assert again["net"].mean("psnr") == pytest.approx(res.best_psnr, abs=1e-6)


def test_the_kept_weights_are_those_of_the_best_scored_step(monkeypatch):
    """Scores that peak mid-run (from a stub): the network returned is the one that was scored best,
    not the last one."""
    scores = iter([20.0, 25.0, 24.0, 25.0, 21.0])  # a tie at step 12: the earliest (6) wins
    seen = []

    def fake(self, model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(Validation, "__call__", fake)
    data = _images()
    res = fit(DenoiseTask(), "supervised", data, _cfg(steps=15, val_every=3), BODY, noise=NOISE, progress=False)
    assert len(seen) == 5 and res.best_step == 6 and res.best_psnr == 25.0
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, seen[1][k]), k
    assert not all(torch.equal(v, seen[-1][k]) for k, v in res.model.state_dict().items())


def test_too_few_labels_means_no_validation():
    data = _images(n=6)
    res = fit(DenoiseTask(), "supervised", data, _cfg(), BODY, noise=NOISE, progress=False)
    assert res.best_step is None and res.validation == [] and len(res.labelled) == 6
    assert all("val_psnr" not in r for r in res.history)


def test_validation_does_not_change_training():
    """Validating reads the network only: the weights after each step are those of a run without it
    (here: the last step is the best, so both runs return the same weights)."""
    data = _images()
    cfg = _cfg(lr=1e-3, steps=12, val_every=4)
    a = fit(DenoiseTask(), "supervised", data, cfg, BODY, noise=NOISE, progress=False)
    # the same training images without validation: give exactly the labelled subset, no hold-out
    train_set = data.subset([data.names.index(n) for n in a.labelled])
    b = fit(DenoiseTask(), "supervised", train_set, {**cfg, "val_every": 0}, BODY, noise=NOISE, progress=False)
    assert a.labelled == b.labelled
    if a.best_step == 12:
        for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            assert torch.equal(va, vb), k


def test_validation_keeps_a_channels_last_network_channels_last():
    """The fused Adam kernel pairs parameters and moments as flat memory: inference during training
    must give the network back in its training layout."""
    model = torch.nn.Conv2d(2, 4, 3, padding=1).to(memory_format=torch.channels_last)
    with inference_layout(model):
        pass
    assert model.weight.is_contiguous(memory_format=torch.channels_last) and not model.weight.is_contiguous()
    plain = torch.nn.Conv2d(2, 4, 3, padding=1)
    with inference_layout(plain):
        pass
    assert plain.weight.is_contiguous()


def test_resume_keeps_the_best_weights(tmp_path):
    """A run resumed from a state saved mid-run ends with the uninterrupted run's weights, bit for
    bit, including the best-validation weights chosen before the state was saved."""
    data = _images()
    cfg = _cfg(lr=0.02, steps=30, val_every=3)
    state = tmp_path / "run.state"
    a = fit(DenoiseTask(), "supervised", data, cfg, BODY, noise=NOISE, progress=False,
            engine=Engine(device="cpu", progress=False, save_every=20, state_path=state))
    assert state.is_file()  # saved at step 20 (not after the last step)
    b = fit(DenoiseTask(), "supervised", data, cfg, BODY, noise=NOISE, progress=False,
            engine=Engine(device="cpu", progress=False, resume=state, state_path=tmp_path / "again.state"))
    assert (a.best_step, a.best_psnr) == (b.best_step, b.best_psnr)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_validation_refuses_empty_or_bad_interval():
    with pytest.raises(ValueError):
        Validation(DenoiseTask(), _images(n=1), NOISE, every=0)
    with pytest.raises(ValueError):
        Validation(DenoiseTask(), ImageSet([], []), NOISE, every=5)


def test_a_run_too_short_to_validate_twice_holds_nothing_out():
    data = _images()
    res = fit(DenoiseTask(), "supervised", data, _cfg(steps=10, val_every=6), BODY, noise=NOISE, progress=False)
    assert res.validation == [] and res.best_step is None and len(res.labelled) == len(data)


@pytest.mark.parametrize("best", [{"step": 3}, {"step": 3, "score": "high"}, {"step": 3, "score": None}, [1, 2],
                                  {"step": 999, "score": 1e9}, {"step": 6, "score": 1e9}])
def test_a_tampered_best_record_is_refused(tmp_path, best):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from rcl.training.state import StateError

    data, state = _images(), tmp_path / "run.state"
    cfg = _cfg(steps=30, val_every=3)
    fit(DenoiseTask(), "supervised", data, cfg, BODY, noise=NOISE, progress=False,
        engine=Engine(device="cpu", progress=False, save_every=20, state_path=state))
    tensors = load_file(str(state))
    with safe_open(str(state), "pt") as fh:
        meta = json.loads(fh.metadata()["rcl"])
    meta["best"] = best
    save_file(tensors, str(state), metadata={"rcl": json.dumps(meta)})
    with pytest.raises(StateError, match="best-validation record"):
        fit(DenoiseTask(), "supervised", data, cfg, BODY, noise=NOISE, progress=False,
            engine=Engine(device="cpu", progress=False, resume=state, state_path=tmp_path / "b.state"))
