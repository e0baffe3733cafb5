"""Checkpoints as hostile input: bounded metadata, full validation and a shape pre-check on the
meta device before any network is allocated."""

import json
import resource
import tracemalloc

import pytest
import torch
from safetensors.torch import load_file, save_file

import rcl.checkpoint as ck
from rcl.checkpoint import (MAX_METADATA_BYTES, MAX_METADATA_DEPTH, CheckpointError, load_checkpoint, load_weights,
                            read_metadata, save_checkpoint)
from rcl.models import ModelConfig, build_jdd_model, build_model, build_sr_model
from rcl.tasks import DenoiseTask

CFG = ModelConfig(arch="unet", in_channels=1, out_channels=1, width=4, depth=2)
JCFG = ModelConfig(arch="unet", in_channels=4, out_channels=4, width=4, depth=1)
NAME = "crafted.safetensors"


def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _valid(tmp_path, task="denoise"):
    """A small valid checkpoint of ``task``: (path, its metadata dict, its tensors)."""
    torch.manual_seed(0)
    if task == "sr":
        model, cfg, extra = build_sr_model(CFG, 2), CFG, {"task": "sr", "scale": 2, "skip": True}
    elif task == "jdd":
        model, cfg, extra = build_jdd_model(JCFG, "RGGB"), JCFG, {"task": "jdd", "pattern": "RGGB", "skip": "malvar"}
    else:
        model, cfg, extra = build_model(CFG), CFG, {}
    path = save_checkpoint(tmp_path / f"valid-{task}.safetensors", _randomise(model), cfg,
                           training={"steps": 3, "lr": 1e-3}, **extra)
    return path, read_metadata(path), load_file(str(path))


def _craft(tmp_path, raw: str, state) -> str:
    p = tmp_path / NAME
    save_file(state, str(p), metadata={"rcl": raw})
    return p


def _with(meta, **changes):
    out = json.loads(json.dumps(meta))
    for k, v in changes.items():
        if v is _DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return json.dumps(out)


_DROP = object()
DEEP = "[" * 200_000 + "]" * 200_000

# (id, task of the base checkpoint, raw metadata builder, expected words)
CASES = [
    ("width512-depth8-in16", "denoise",
     lambda m: _with(m, model={**m["model"], "width": 512, "depth": 8, "in_channels": 16, "out_channels": 16}),
     "do not fit"),
    ("depth8", "denoise", lambda m: _with(m, model={**m["model"], "depth": 8}), "do not fit"),
    ("sr-width512-depth8", "sr", lambda m: _with(m, model={**m["model"], "width": 512, "depth": 8}), "do not fit"),
    ("scale-1e6", "sr", lambda m: _with(m, scale=1_000_000), "scale: must be one of 2, 3, 4, 8 (got 1000000)"),
    ("scale-1e6-float", "sr", lambda m: _with(m, scale=1e6), "scale"),
    ("scale-Infinity", "sr", lambda m: _with(m, scale=0).replace('"scale": 0', '"scale": Infinity'), "non-finite"),
    ("scale-minus-Infinity", "sr", lambda m: _with(m, scale=0).replace('"scale": 0', '"scale": -Infinity'),
     "non-finite"),
    ("scale-NaN", "sr", lambda m: _with(m, scale=0).replace('"scale": 0', '"scale": NaN'), "non-finite"),
    ("scale-1e999", "sr", lambda m: _with(m, scale=0).replace('"scale": 0', '"scale": 1e999'), "non-finite"),
    ("nan-in-training", "denoise", lambda m: _with(m, training=0).replace('"training": 0', '"training": [NaN]'),
     "non-finite"),
    ("scale-string", "sr", lambda m: _with(m, scale="2"), "scale"),
    ("scale-true", "sr", lambda m: _with(m, scale=True), "scale"),
    ("scale-2.5", "sr", lambda m: _with(m, scale=2.5), "scale"),
    ("scale-2.0", "sr", lambda m: _with(m, scale=2.0), "scale"),
    ("scale-minus-2", "sr", lambda m: _with(m, scale=-2), "scale"),
    ("scale-huge-int", "sr", lambda m: _with(m, scale=10 ** 100), "scale"),
    ("scale-5000-digits", "sr", lambda m: _with(m, scale=0).replace('"scale": 0', '"scale": ' + "9" * 5000), "JSON"),
    ("denoise-scale-4", "denoise", lambda m: _with(m, scale=4), "scale"),
    ("denoise-scale-true", "denoise", lambda m: _with(m, scale=True), "scale"),
    ("jdd-scale-2", "jdd", lambda m: _with(m, scale=2), "scale"),
    ("pattern-XXXX", "jdd", lambda m: _with(m, pattern="XXXX"), "pattern"),
    ("pattern-int", "jdd", lambda m: _with(m, pattern=7), "pattern"),
    ("task-segment", "denoise", lambda m: _with(m, task="segment"), "task: must be one of denoise, sr, jdd"),
    ("task-5", "denoise", lambda m: _with(m, task=5), "task"),
    ("model-missing", "denoise", lambda m: _with(m, model=_DROP), "model"),
    ("model-list", "denoise", lambda m: _with(m, model=[1, 2]), "model"),
    ("model-width-string", "denoise", lambda m: _with(m, model={**m["model"], "width": "4"}), "model.width"),
    ("model-width-too-big", "denoise", lambda m: _with(m, model={**m["model"], "width": 513}), "model.width"),
    ("model-extra-key", "denoise", lambda m: _with(m, model={**m["model"], "heads": 8}), "model.heads"),
    ("nested-200000", "denoise", lambda m: _with(m, training=0).replace('"training": 0', '"training": ' + DEEP),
     "nested deeper than"),
    ("nested-33", "denoise",
     lambda m: _with(m, training=0).replace('"training": 0', '"training": ' + "{\"a\": " * 32 + "1" + "}" * 32),
     "nested deeper than"),
    ("metadata-5MB", "denoise", lambda m: _with(m, notes="x" * (5 << 20)), "MAX_METADATA_BYTES"),
    ("jdd-skip-foo", "jdd", lambda m: _with(m, skip="foo"), "skip: must be one of malvar, bilinear or null"),
    ("sr-skip-string", "sr", lambda m: _with(m, skip="yes"), "skip"),
    ("sr-on-dncnn", "sr", lambda m: _with(m, model={**m["model"], "arch": "dncnn"}), "model.arch"),
    ("jdd-in-channels-1", "jdd", lambda m: _with(m, model={**m["model"], "in_channels": 1}), "model.in_channels"),
    ("format-version-bool", "denoise", lambda m: _with(m, format_version=True), "format_version"),
    ("top-level-list", "denoise", lambda m: "[1, 2]", "not a JSON object"),
]


def _assert_one_line(exc, *words):
    msg = str(exc)
    assert NAME in msg, msg
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg and "Traceback" not in msg and 'File "' not in msg, msg


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_crafted_metadata_is_refused_cheaply(tmp_path, case):
    _, task, craft, words = case
    _, meta, state = _valid(tmp_path, task)
    path = _craft(tmp_path, craft(meta), state)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _assert_one_line(exc.value, words)
    assert exc.value.__cause__ is None or isinstance(exc.value.__cause__, CheckpointError)
    assert peak < 50e6 + 3 * len(craft(meta))  # the metadata string itself may be 5 MB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 500_000  # no GB allocation
    # load_weights reads the same metadata first
    target = build_jdd_model(JCFG) if task == "jdd" else (build_sr_model(CFG, 2) if task == "sr" else build_model(CFG))
    if "do not fit" not in words:
        with pytest.raises(CheckpointError) as exc2:
            load_weights(target, path)
        _assert_one_line(exc2.value)


def test_big_architecture_message_names_both_sizes(tmp_path):
    _, meta, state = _valid(tmp_path)
    path = _craft(tmp_path, _with(meta, model={**meta["model"], "width": 512, "depth": 8}), state)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    _assert_one_line(exc.value, "unet(width=512, depth=8", " G parameters", "the file holds")
    assert "k" in msg.split("the file holds")[1]


def test_architecture_is_built_on_meta_device_only_before_the_check(tmp_path, monkeypatch):
    _, meta, state = _valid(tmp_path)
    path = _craft(tmp_path, _with(meta, model={**meta["model"], "width": 64}), state)
    devices = []
    real = DenoiseTask.build_model

    def spy(self, body, meta=None):
        net = real(self, body, meta)
        devices.append(next(net.parameters()).device.type)
        return net

    monkeypatch.setattr(DenoiseTask, "build_model", spy)  # checkpoints build through the task registry
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)
    assert devices == ["meta"]


def test_depth_limit_boundary_and_brackets_in_strings(tmp_path):
    _, meta, state = _valid(tmp_path)
    nested = "[" * (MAX_METADATA_DEPTH - 1) + "]" * (MAX_METADATA_DEPTH - 1)  # top-level object + 31 = 32
    raw = _with(meta, training=0).replace('"training": 0', '"training": ' + nested)
    raw = raw[:-1] + ', "note": "' + "[{" * 1000 + '\\" ]]"}'  # brackets and an escaped quote in a string
    path = _craft(tmp_path, raw, state)
    assert read_metadata(path)["note"] == "[{" * 1000 + '" ]]'
    load_checkpoint(path)


def test_metadata_size_limit_boundary(tmp_path):
    _, meta, state = _valid(tmp_path)
    base = _with(meta, notes="")
    room = MAX_METADATA_BYTES - len(base.encode())
    path = _craft(tmp_path, _with(meta, notes="x" * room), state)
    assert len(read_metadata(path)["notes"]) == room
    path = _craft(tmp_path, _with(meta, notes="é" * (room // 2 + 1)), state)  # 2 bytes per character
    with pytest.raises(CheckpointError, match="MAX_METADATA_BYTES"):
        read_metadata(path)


@pytest.mark.parametrize("change", ["superset", "subset", "misshapen", "renamed"])
@pytest.mark.parametrize("task", ["denoise", "sr", "jdd"])
def test_tensors_must_be_exactly_the_implied_ones(tmp_path, task, change):
    _, meta, state = _valid(tmp_path, task)
    state = dict(state)
    first = next(iter(state))
    if change == "superset":
        state["extra.weight"] = torch.zeros(3)
        word = "1 unexpected tensor(s), first 'extra.weight'"
    elif change == "subset":
        del state[first]
        word = f"1 missing tensor(s), first {first!r}"
    elif change == "misshapen":
        state[first] = torch.zeros(*state[first].shape, 2)
        word = f"first {first!r}"
    else:
        state["renamed"] = state.pop(first)
        word = "missing"
    path = _craft(tmp_path, json.dumps(meta), state)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc.value, "do not fit", word)
    target = build_jdd_model(JCFG) if task == "jdd" else (build_sr_model(CFG, 2) if task == "sr" else build_model(CFG))
    with pytest.raises(CheckpointError) as exc:
        load_weights(target, path)
    _assert_one_line(exc.value, "do not fit", word)


def test_sr_metadata_for_a_denoiser_file_is_refused(tmp_path):
    _, meta, state = _valid(tmp_path, "denoise")
    path = _craft(tmp_path, _with(meta, task="sr", scale=2, skip=True), state)  # no tail tensors
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc.value, "SR ×2 on unet(width=4", "missing tensor(s), first 'body.enc.0.0.weight'",
                      "unexpected tensor(s)")


def _x(c, seed=0):
    return torch.rand(2, c, 12, 14, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("task", ["denoise", "sr", "jdd"])
def test_valid_checkpoints_load_with_identical_outputs(tmp_path, task):
    torch.manual_seed(0)
    if task == "sr":
        orig, cfg, extra, c = build_sr_model(CFG, 2), CFG, {"task": "sr", "scale": 2, "skip": True}, 1
    elif task == "jdd":
        orig, cfg, extra, c = build_jdd_model(JCFG, "GRBG", "bilinear"), JCFG, \
            {"task": "jdd", "pattern": "GRBG", "skip": "bilinear"}, 1
    else:
        orig, cfg, extra, c = build_model(CFG), CFG, {}, 1
    _randomise(orig, seed=3)
    path = save_checkpoint(tmp_path / "m.safetensors", orig, cfg, **extra)
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(orig) and not loaded.training
    if task == "jdd":
        assert loaded.pattern == "GRBG" and loaded.skip == "bilinear"
    if task == "sr":
        assert loaded.scale == 2 and loaded.skip
    with torch.no_grad():
        assert torch.equal(orig(_x(c)), loaded(_x(c)))
    torch.manual_seed(9)
    target = build_sr_model(CFG, 2) if task == "sr" else (build_jdd_model(JCFG, "GRBG", "bilinear")
                                                          if task == "jdd" else build_model(CFG))
    info = load_weights(target, path)
    assert info["loaded_keys"] == len(target.state_dict())
    with torch.no_grad():
        assert torch.equal(orig(_x(c)), target.eval()(_x(c)))


@pytest.mark.parametrize("meta_extra", [{"task": "jdd", "pattern": "bggr", "skip": None},
                                        {"task": "jdd", "pattern": "RGGB"}])  # skip absent: malvar
def test_jdd_variants_accepted(tmp_path, meta_extra):
    skip = meta_extra.get("skip", "malvar")
    orig = _randomise(build_jdd_model(JCFG, meta_extra["pattern"], skip))
    path = save_checkpoint(tmp_path / "j.safetensors", orig, JCFG, **meta_extra)
    loaded, _ = load_checkpoint(path)
    assert loaded.skip == skip and loaded.pattern == meta_extra["pattern"].upper()


def test_unknown_informational_keys_are_kept(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(CFG), CFG,
                           training={"a": [1, {"b": None}], "lr": 1e-3}, data="packed-bayer", whatever=[1.5, "x"])
    meta = read_metadata(path)
    assert meta["whatever"] == [1.5, "x"] and meta["training"]["a"] == [1, {"b": None}]


def test_build_task_model_validates_its_meta():
    with pytest.raises(CheckpointError, match="x.safetensors: bad metadata: scale"):
        ck.build_task_model(CFG, {"task": "sr", "scale": 1e6}, "x.safetensors")
    assert ck.build_task_model(CFG, {"task": "sr", "scale": 3}).scale == 3
