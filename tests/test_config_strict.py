"""Hostile config input: duplicate YAML keys, YAML type tricks, out-of-range seeds (rcl.configs).

Every config model is strict (no bool/str/float for an int, no bool/str for a float, no extra
fields, finite floats) and every seed lies in [0, MAX_SEED]; load_config's YAML loader refuses
repeated keys and reads 1e-3 as a float. Fast: the data root is a tree of empty folders (the
config only checks that paths exist).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from rcl.benchmark import (PRESETS, BenchmarkConfig, BenchmarkConfigError, config_dict, config_hash, config_yaml,
                           load_config, preset_path)
from rcl.configs import MAX_SEED, ConfigFileError, load_yaml
from rcl.models.factory import ModelConfig
from rcl.methods import N2SConfig, N2VConfig, Ne2NeConfig, SimCLRConfig
from rcl.training import FinetuneConfig, PretrainConfig

BASE = """\
name: strict
data:
  train: train/Train400
  channels: 1
  test:
    - {name: Set12, path: test/Set12, noises: ["gaussian:25"]}
"""

SR = """\
tasks:
  sr:
    scales: [2]
    test: [{name: Set12, path: test/Set12, noises: ["gaussian:15"]}]
"""

JDD = """\
tasks:
  jdd:
    train: train/LIVE1
    test: [{name: Kodak24, path: test/Kodak24, noises: [poisson-gaussian]}]
"""


def _paths(node, out: set) -> set:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("train", "path") and isinstance(v, str):
                out.add(v)
            _paths(v, out)
    elif isinstance(node, list):
        for v in node:
            _paths(v, out)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Empty folders for every data path of the presets and of the configs below."""
    r = tmp_path_factory.mktemp("strict_root")
    need = {"train/Train400", "train/LIVE1", "test/Set12", "test/Kodak24"}
    for name in PRESETS:
        _paths(yaml.safe_load(preset_path(name).read_text()), need)
    for p in need:
        (r / p).mkdir(parents=True, exist_ok=True)
    return r


def _load(root: Path, tmp_path: Path, text: str):
    f = tmp_path / "config.yaml"
    f.write_text(text)
    return load_config(str(f), root)


def _error(root: Path, tmp_path: Path, text: str) -> str:
    with pytest.raises(BenchmarkConfigError) as exc:
        _load(root, tmp_path, text)
    msg = str(exc.value)
    assert msg.startswith(str(tmp_path / "config.yaml") + ": "), msg  # names the file
    return msg


def test_base_configs_are_valid(root, tmp_path):
    assert _load(root, tmp_path, BASE).name == "strict"
    cfg = _load(root, tmp_path, BASE + SR.replace("tasks:\n", "tasks:\n  denoise: true\n")
                + JDD.replace("tasks:\n", ""))
    assert cfg.tasks.sr is not None and cfg.tasks.jdd is not None


# ---------------------------------------------------------------------------------------------
# duplicate keys
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, line, where", [
    (BASE + "seeds: [0]\nnoise_seed: 2\nseeds: [1]\n", "seeds", 9, None),  # top level
    (BASE + "pretrain:\n  steps: 10\n  seed: 0\n  steps: 20\n", "steps", 10, "pretrain"),  # nested mapping
    (BASE + "pretrain:\n  rcl: {lr: 0.001, lr: 0.01}\n", "lr", 8, "pretrain.rcl"),  # flow mapping, 2 levels
    ("name: strict\ndata:\n  train: train/Train400\n  test:\n"
     "    - name: Set12\n      path: test/Set12\n      noises: [gaussian:25]\n      path: test/Set12\n",
     "path", 8, "data.test.0"),  # inside a list item
    (BASE + "ablations:\n  - {name: a, rcl: {similarity: l2}, name: b}\n", "name", 8, "ablations.0"),
    (BASE + "data: {train: train/Train400}\n", "data", 7, None),  # a whole section twice
])
def test_duplicate_keys_are_refused(root, tmp_path, text, key, line, where):
    msg = _error(root, tmp_path, text)
    assert f"duplicate key {key!r} at line {line}" in msg, msg
    if where:
        assert f" in {where} " in msg, msg


def test_merge_keys_may_override():
    # YAML merge keys (<<) are the one sanctioned way to override a key
    assert load_yaml("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n") == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


def test_load_yaml_errors():
    with pytest.raises(ConfigFileError, match=r"^c\.yaml: duplicate key 'k' at line 2 \(first at line 1\)$"):
        load_yaml("k: 1\nk: 2\n", "c.yaml")
    with pytest.raises(ConfigFileError, match=r"^c\.yaml: not valid YAML: line 2, column 1: ") as exc:
        load_yaml("k: [1\n", "c.yaml")
    assert "\n" not in str(exc.value)  # one line
    with pytest.raises(ConfigFileError, match="nested too deeply"):
        load_yaml("k: " + "[" * 5000 + "]" * 5000, "c.yaml")
    assert load_yaml("", "c.yaml") is None


# ---------------------------------------------------------------------------------------------
# YAML 1.2 floats
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1e-3", 1e-3), ("1e23", 1e23), ("-2.5E+4", -2.5e4), ("1.5e3", 1500.0), ("+1E3", 1000.0), (".5e-1", 0.05),
    ("0.001", 0.001), ("1.0e-05", 1e-5), ("12", 12), ("0x1e", 30), ("'1e-3'", "1e-3"), ("1e", "1e"), ("e3", "e3"),
    (".inf", float("inf")),
])
def test_yaml_reads_exponent_floats(text, value):
    got = load_yaml(f"v: {text}\n")["v"]
    assert got == value and type(got) is type(value)


def test_lr_1e_minus_3_is_a_number(root, tmp_path):
    cfg = _load(root, tmp_path, BASE + "finetune: {lr: 1e-3}\npretrain: {rcl: {lr: 2e-3}, n2v: {lr: 5E-4}}\n")
    assert cfg.finetune.lr == 0.001
    assert cfg.pretrain.rcl_config().lr == 0.002 and cfg.pretrain.method_config("n2v").lr == 5e-4


def test_lax_but_harmless_inputs_are_accepted(root, tmp_path):
    cfg = _load(root, tmp_path, BASE + "label_fractions: [1]\nfinetune: {lr: 1}\ncompetitive_db: 0\n"
                f"seeds: [0, {MAX_SEED}]\nnoise_seed: {MAX_SEED}\n")
    assert cfg.label_fractions == [1.0] and type(cfg.label_fractions[0]) is float
    assert cfg.finetune.lr == 1.0 and type(cfg.finetune.lr) is float
    assert cfg.seeds == [0, MAX_SEED] and cfg.noise_seed == MAX_SEED
    assert isinstance(cfg.data.train, Path)  # paths still come as strings


# ---------------------------------------------------------------------------------------------
# type tricks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, needle", [
    ("pretrain: {steps: true}", "pretrain.steps: Input should be a valid integer"),
    ("pretrain: {steps: \"800\"}", "pretrain.steps: Input should be a valid integer (got '800')"),
    ("pretrain: {steps: 1.5}", "pretrain.steps: Input should be a valid integer"),
    ("pretrain: {steps: 1.0}", "pretrain.steps: Input should be a valid integer"),  # integral floats too
    ("pretrain: {steps: 1e3}", "pretrain.steps: Input should be a valid integer"),
    ("finetune: {steps: yes}", "finetune.steps: Input should be a valid integer"),
    ("finetune: {lr: \"1e-3\"}", "finetune.lr: Input should be a valid number"),
    ("finetune: {lr: true}", "finetune.lr: Input should be a valid number"),
    ("pretrain: {rcl: {lr: \"1e-3\"}}", "pretrain.rcl.lr: Input should be a valid number"),
    ("pretrain: {baselines: {batch_size: true}}", "batch_size: Input should be a valid integer"),
    ("label_fractions: [\"0.1\"]", "label_fractions.0: Input should be a valid number"),
    ("methods: rcl", "methods: Input should be a valid list"),
    ("model: {width: true}", "model.width: Input should be a valid integer"),
    ("model: {depth: 2.0}", "model.depth: Input should be a valid integer"),
    ("bm3d: {enabled: 1}", "bm3d.enabled: Input should be a valid boolean"),
    ("max_test_images: \"2\"", "max_test_images: Input should be a valid integer"),
    ("competitive_db: .nan", "competitive_db: Input should be a finite number"),
    ("note: 7", "note: Input should be a valid string"),
    ("ablations: [{name: a, rcl: {temperature: \"0.5\"}}]", "rcl.temperature: Input should be a valid number"),
    # every method's section is validated, also of a method that does not train (none: only seed)
    ("pretrain: {none: {bogus: 1}}", "pretrain.none.bogus: unknown field (not allowed here)"),
    ("pretrain: {none: {seed: \"1\"}}", "pretrain.none.seed: Input should be a valid integer"),
])
def test_type_tricks_are_refused(root, tmp_path, extra, needle):
    msg = _error(root, tmp_path, BASE + extra + "\n")
    assert needle in msg, msg


@pytest.mark.parametrize("channels", ["true", "3.0", "\"3\""])
def test_channels_take_only_the_integers(root, tmp_path, channels):
    msg = _error(root, tmp_path, BASE.replace("channels: 1", f"channels: {channels}"))
    assert "data.channels: Input should be a valid integer" in msg, msg


@pytest.mark.parametrize("section, extra, needle", [
    (SR.replace("scales: [2]", "scales: [2.0]"), "", "tasks.sr.scales.0: Input should be a valid integer"),
    (SR, "    finetune: {crop_size: \"96\"}\n", "tasks.sr.finetune.crop_size: Input should be a valid integer"),
    (JDD, "    model: {width: true}\n", "tasks.jdd.model.width: Input should be a valid integer"),
    (JDD, "    pretrain: {steps: 1.5}\n", "tasks.jdd.pretrain.steps: Input should be a valid integer"),
    (JDD, "    pretrain: {rcl: {lr: \"1e-3\"}}\n", "tasks.jdd.pretrain.rcl.lr: Input should be a valid number"),
    (JDD, "    malvar: \"yes\"\n", "tasks.jdd.malvar: Input should be a valid boolean"),
], ids=lambda x: x.split(":")[0] if isinstance(x, str) and x.startswith("tasks.") else "")
def test_type_tricks_in_task_sections(root, tmp_path, section, extra, needle):
    msg = _error(root, tmp_path, BASE + section + extra)
    assert needle in msg, msg


# ---------------------------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, field", [
    ("seeds: [1e23]", "seeds.0"),
    ("seeds: [0, -1]", "seeds.1"),
    ("seeds: [18446744073709551616]", "seeds.0"),
    (f"seeds: [{MAX_SEED + 1}]", "seeds.0"),
    ("seeds: [true]", "seeds.0"),
    ("noise_seed: 1e23", "noise_seed"),
    ("noise_seed: -1", "noise_seed"),
    ("pretrain: {seed: -3}", "pretrain.seed"),
    (f"pretrain: {{seed: {2**64}}}", "pretrain.seed"),
    ("pretrain: {rcl: {seed: -1}}", "pretrain.rcl.seed"),
    ("pretrain: {n2v: {seed: 1e23}}", "pretrain.n2v.seed"),
    ("pretrain: {baselines: {seed: 18446744073709551616}}", "seed"),
    ("ablations: [{name: a, rcl: {seed: -1}}]", "rcl.seed"),
])
def test_out_of_range_seeds_are_refused(root, tmp_path, extra, field):
    msg = _error(root, tmp_path, BASE + extra + "\n")
    assert f"{field}: Input should be" in msg, msg


@pytest.mark.parametrize("section, extra, field", [
    (SR, "    seeds: [1e23]\n", "tasks.sr.seeds.0"),
    (SR, f"    seeds: [{2**63}]\n", "tasks.sr.seeds.0"),
    (JDD, "    seeds: [-1]\n", "tasks.jdd.seeds.0"),
    (JDD, "    noise_seed: 1e23\n", "tasks.jdd.noise_seed"),
    (JDD, f"    noise_seed: {2**63}\n", "tasks.jdd.noise_seed"),
    (JDD, "    pretrain: {seed: -3}\n", "tasks.jdd.pretrain.seed"),
], ids=lambda x: x if isinstance(x, str) and x.startswith("tasks.") else "")
def test_out_of_range_seeds_in_task_sections(root, tmp_path, section, extra, field):
    msg = _error(root, tmp_path, BASE + section + extra)
    assert f"{field}: Input should be" in msg, msg


def test_the_largest_seed_runs_through_every_rng():
    from rcl.data.datasets import ImageSet, add_noise_per_image, image_seed
    from rcl.data.noise import parse_noise_spec
    from rcl.training import labelled_subset
    from rcl.training.trainer import seed_everything

    assert 0 <= image_seed(MAX_SEED, "x.png") <= MAX_SEED
    noisy, sig = add_noise_per_image(ImageSet([torch.zeros(1, 8, 8)], ["x.png"]), parse_noise_spec("gaussian:25"),
                                     MAX_SEED)
    assert noisy.images[0].shape == (1, 8, 8) and sig.shape == (1,)
    assert len(labelled_subset(4, 0.5, MAX_SEED)) == 2
    seed_everything(MAX_SEED)
    torch.manual_seed(0)


# ---------------------------------------------------------------------------------------------
# the Python configs directly
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, field", [
    (lambda: PretrainConfig(steps=True), "steps"),
    (lambda: PretrainConfig(steps=10.0), "steps"),
    (lambda: PretrainConfig(lr="1e-3"), "lr"),
    (lambda: PretrainConfig(normalize=1), "normalize"),
    (lambda: PretrainConfig(seed=-1), "seed"),
    (lambda: FinetuneConfig(seed=2**63), "seed"),
    (lambda: FinetuneConfig(label_fraction="0.5"), "label_fraction"),
    (lambda: FinetuneConfig(lr=float("nan")), "lr"),
    (lambda: N2VConfig(seed=2**63), "seed"),
    (lambda: SimCLRConfig(seed=-1), "seed"),
    (lambda: N2SConfig(grid=True), "grid"),
    (lambda: Ne2NeConfig(gamma=float("inf")), "gamma"),
    (lambda: N2VConfig(grid=4), "grid"),
    (lambda: ModelConfig(width="16"), "width"),
    (lambda: ModelConfig(depth=True), "depth"),
    (lambda: ModelConfig(colour=True), "colour"),
])
def test_python_configs_are_strict(make, field):
    with pytest.raises(ValidationError) as exc:
        make()
    assert exc.value.errors()[0]["loc"] == (field,)


def test_python_configs_accept_good_values():
    assert PretrainConfig(lr=1).lr == 1.0 and PretrainConfig(seed=MAX_SEED).seed == MAX_SEED
    assert FinetuneConfig(label_fraction=1, seed=MAX_SEED).label_fraction == 1.0
    assert N2VConfig(seed=MAX_SEED).seed == MAX_SEED
    assert ModelConfig(width=8, depth=2) == ModelConfig(**ModelConfig(width=8, depth=2).model_dump())


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_as_before(root, tmp_path, name):
    text = preset_path(name).read_text()
    assert load_yaml(text, name) == yaml.safe_load(text)  # the new loader reads the presets like PyYAML
    cfg = load_config(name, root)
    assert cfg.name == name
    d = config_dict(cfg)
    # what a run writes (config.yaml) reads back to the same config and hash under strict validation
    again = BenchmarkConfig.model_validate(d)
    assert config_dict(again) == d
    (tmp_path / "config.yaml").write_text(config_yaml(cfg))
    assert config_hash(config_dict(load_config(str(tmp_path / "config.yaml")))) == config_hash(d)


# ---------------------------------------------------------------------------------------------
# per-method pre-training configs (rcl.methods) and the file's encoding
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, needle", [
    ("pretrain: {baselines: {foo: 1}}", "pretrain.baselines.foo: unknown field"),  # declared by no method
    ("pretrain: {n2v: {grid: 3}}", "pretrain.n2v.grid: unknown field"),  # n2s's field, not n2v's
    ("pretrain: {rcl: {batch_size: 8}}", "pretrain.rcl.batch_size: unknown field"),
    ("pretrain: {noise2magic: {lr: 0.1}}", "pretrain.noise2magic: unknown field"),  # not a registered method
    ("pretrain: {baselines: {lr: \"1e-3\"}}", "pretrain.baselines.lr: Input should be a valid number"),
    ("pretrain: {baselines: {lr: 0.1}, n2s: {lr: 2}}", "pretrain.n2s.lr: Input should be less than or equal"),
    ("tasks: {deblur: {test: []}}", "tasks.deblur: unknown field"),  # not a registered task
])
def test_unknown_pretrain_fields_are_refused_by_name(root, tmp_path, extra, needle):
    msg = _error(root, tmp_path, BASE + extra + "\n")
    assert needle in msg, msg


def test_each_method_gets_the_shared_fields_it_declares(root, tmp_path):
    cfg = _load(root, tmp_path, BASE + "pretrain: {steps: 7, baselines: {batch_size: 4, grid: 3, batch_images: 5, "
                "gamma: 1.5}, ne2ne: {gamma: 3}}\n")
    p = cfg.pretrain
    assert p.method_config("n2v").model_dump() == {"steps": 7, "batch_size": 4, "crop_size": 48, "lr": 1e-3,
                                                   "seed": 0, "mask_ratio": 0.03}
    assert p.method_config("n2s").grid == 3 and p.method_config("simclr").batch_images == 5
    assert p.method_config("ne2ne").gamma == 3.0  # the method's own section wins
    assert p.rcl_config().batch_images == 16 and p.rcl_config().steps == 7  # rcl does not read `baselines`
    assert p.method_config("none").model_dump() == {"seed": 0}


@pytest.mark.parametrize("head", [b"\xff\xfe\x00", b"\xff\xfen\x00a\x00m\x00e\x00", b"name: caf\xe9\n"])
def test_a_config_that_is_not_utf8_is_one_line_naming_the_file(root, tmp_path, head):
    f = tmp_path / "config.yaml"
    f.write_bytes(head + BASE.encode())
    with pytest.raises(BenchmarkConfigError) as exc:
        load_config(str(f), root)
    msg = str(exc.value)
    assert msg.startswith(f"{f}: not UTF-8 text") and "\n" not in msg, msg


def _method_configs():
    from rcl.methods import get_method

    return {name: get_method(name).Config for name in ("rcl", "simclr", "n2v", "n2s", "ne2ne", "supervised")}


@pytest.mark.parametrize("name", ["rcl", "simclr", "n2v", "n2s", "ne2ne", "supervised"])
def test_batches_too_large_for_memory_are_refused(name):
    """crops × crop² above MAX_BATCH_PIXELS is refused by the config (a finetune batch of 100,000
    crops of 16² was killed by the kernel for lack of memory, without a message); the largest
    allowed batch is accepted."""
    from rcl.configs import MAX_BATCH_PIXELS

    cfg = _method_configs()[name]
    field, views = ("batch_images", 2) if "batch_images" in cfg.model_fields and name in ("rcl", "simclr") \
        else ("batch_size", 1)
    crop = 64
    largest = MAX_BATCH_PIXELS // (views * crop * crop)
    assert views * largest * crop * crop <= MAX_BATCH_PIXELS
    cfg(**{field: largest, "crop_size": crop})
    with pytest.raises(ValidationError, match="pixels per batch"):
        cfg(**{field: largest + 1, "crop_size": crop})
    with pytest.raises(ValidationError, match="pixels per batch"):
        cfg(**{field: 2, "crop_size": 2048 * 4})


@pytest.mark.parametrize("name", ["rcl", "simclr", "n2v", "n2s", "ne2ne", "supervised"])
def test_step_counts_are_bounded(name):
    from rcl.configs import MAX_STEPS

    cfg = _method_configs()[name]
    assert cfg(steps=MAX_STEPS).steps == MAX_STEPS
    with pytest.raises(ValidationError, match="less than or equal"):
        cfg(steps=MAX_STEPS + 1)
