"""Checkpoints: safetensors + metadata round trip and every failure mode."""

import json

import pytest
import torch
from safetensors.torch import save_file

from rcl import __version__
from rcl.checkpoint import (FORMAT, FORMAT_VERSION, CheckpointError, load_checkpoint, load_weights, read_metadata,
                            save_checkpoint)
from rcl.models import DnCNN, ModelConfig, UNet, build_model

CFG = ModelConfig(arch="unet", in_channels=1, out_channels=1, width=4, depth=2)


def _model(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def _x(c=1):
    return torch.rand(2, c, 13, 17, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cfg", [CFG, ModelConfig(arch="dncnn", in_channels=3, out_channels=3, width=4, depth=3),
                                 ModelConfig(in_channels=4, out_channels=3, width=4, depth=1)],
                         ids=["unet", "dncnn", "unet-4to3"])
def test_round_trip_identical_outputs(tmp_path, cfg):
    m = _model(cfg, seed=1)
    if isinstance(m, DnCNN):  # non-trivial BatchNorm running statistics
        m.train()
        with torch.no_grad():
            m(_x(cfg.in_channels) * 3 + 1)
    m.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", m, cfg)
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(m) and not loaded.training
    for (k1, v1), (k2, v2) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    with torch.no_grad():
        assert torch.equal(m(_x(cfg.in_channels)), loaded(_x(cfg.in_channels)))
    assert ModelConfig(**meta["model"]) == cfg


def test_metadata_stored(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), CFG, stage="pretrain",
                           noise={"spec": "gaussian:5-50"}, training={"steps": 3, "lr": 1e-3}, task="denoise")
    meta = read_metadata(path)
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION
    assert meta["rcl_version"] == __version__
    assert meta["model"] == CFG.model_dump()
    assert meta["stage"] == "pretrain" and meta["training"] == {"steps": 3, "lr": 1e-3}
    assert meta["noise"] == {"spec": "gaussian:5-50"} and meta["task"] == "denoise" and meta["scale"] == 1
    _, meta2 = load_checkpoint(path, expect=CFG)
    assert meta2 == meta


def test_save_is_atomic(tmp_path):
    save_checkpoint(tmp_path / "dir" / "m.safetensors", _model(), CFG)
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["m.safetensors"]


def test_save_failure_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "m.safetensors", _model(), CFG, bad=object())
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated_file(tmp_path, keep):
    data = save_checkpoint(tmp_path / "m.safetensors", _model(), CFG).read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:max(1, int(len(data) * keep))])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError):
        load_weights(_model(), bad)


def test_not_a_safetensors_file(tmp_path):
    for name, data in [("text.safetensors", b"hello, I am not a checkpoint\n" * 10),
                       ("zeros.safetensors", bytes(64)), ("empty.safetensors", b"")]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(p)
    torch.save(_model().state_dict(), tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="pickle.pt"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_safetensors_without_rcl_metadata(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in _model().state_dict().items()}, str(p))
    with pytest.raises(CheckpointError, match="without rcl metadata"):
        load_checkpoint(p)
    save_file({"w": torch.zeros(2)}, str(p), metadata={"other": "x"})
    with pytest.raises(CheckpointError, match="without rcl metadata"):
        read_metadata(p)


@pytest.mark.parametrize("meta,match", [("{not json", "JSON"),
                                        (json.dumps({"format": "other"}), "not an rcl checkpoint"),
                                        (json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION + 1,
                                                     "model": CFG.model_dump()}), "newer"),
                                        (json.dumps({"format": FORMAT, "format_version": 1}), "architecture"),
                                        (json.dumps({"format": FORMAT, "format_version": 1,
                                                     "model": {"arch": "vit"}}), "architecture")])
def test_bad_metadata(tmp_path, meta, match):
    p = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"rcl": meta})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(p)


def test_expect_other_config(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), CFG)
    other = ModelConfig(arch="unet", in_channels=1, out_channels=1, width=8, depth=2)
    with pytest.raises(CheckpointError, match="width=8") as exc:
        load_checkpoint(path, expect=other)
    assert "width=4" in str(exc.value) and "m.safetensors" in str(exc.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, expect=ModelConfig(arch="dncnn", width=4, depth=2))
    load_checkpoint(path, expect=ModelConfig(**CFG.model_dump()))


def test_weights_do_not_fit_recorded_architecture(tmp_path):
    wrong = ModelConfig(arch="unet", width=8, depth=2)
    path = save_checkpoint(tmp_path / "lie.safetensors", _model(CFG), wrong)  # metadata says width 8
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_load_weights_strict(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(seed=1), CFG, stage="pretrain")
    target = _model(seed=2)
    info = load_weights(target, path)
    assert info["loaded_keys"] == len(target.state_dict()) and info["skipped_keys"] == 0
    assert info["stage"] == "pretrain"
    with torch.no_grad():
        assert torch.equal(target.eval()(_x()), _model(seed=1).eval()(_x()))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(UNet(1, 1, width=8, depth=2), path)


def test_load_weights_non_strict_copies_matching_only(tmp_path):
    src = _model(seed=1)
    path = save_checkpoint(tmp_path / "m.safetensors", src, CFG)
    torch.manual_seed(5)
    target = UNet(1, 2, width=4, depth=2, residual=False)  # same body, different head
    before = {k: v.clone() for k, v in target.state_dict().items()}
    info = load_weights(target, path, strict=False)
    src_state = src.state_dict()
    after = target.state_dict()
    copied = [k for k in after if k in src_state and src_state[k].shape == after[k].shape]
    assert "head.weight" not in copied and "head.bias" not in copied
    assert info["loaded_keys"] == len(copied) and info["skipped_keys"] == len(src_state) - len(copied) == 2
    for k in after:
        if k in copied:
            assert torch.equal(after[k], src_state[k])
        else:
            assert torch.equal(after[k], before[k])


def test_load_weights_non_strict_nothing_fits(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), CFG)
    with pytest.raises(CheckpointError, match="no weight"):
        load_weights(torch.nn.Linear(3, 3), path, strict=False)


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    """A network with NaN/inf weights restores every image to NaN (written as a black 8-bit image):
    load_checkpoint and load_weights refuse it, naming the weight."""
    cfg = ModelConfig(width=8, depth=1)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.weight[0, 0, 0, 0] = bad
    path = tmp_path / "bad.safetensors"
    save_checkpoint(path, model, cfg)
    with pytest.raises(CheckpointError, match="head.weight holds NaN or infinite"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="head.weight holds NaN or infinite"):
        load_weights(build_model(cfg), path)
