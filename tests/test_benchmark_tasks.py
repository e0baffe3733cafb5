"""`rcl benchmark` downstream tasks (super-resolution and joint demosaicking + denoising): config
validation, the task presets, the smoke-tasks preset end to end, resumability by config hash.

Uses ../shared/data when present (with an even tinier override of the smoke-tasks preset),
otherwise a data root of scikit-image photo crops written as PNGs, so these tests never skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from rcl.benchmark import BenchmarkConfig, Plan, load_config, run_benchmark

from .test_benchmark import SHARED, _synthetic_root

# the smoke-tasks preset made smaller still: a few steps of a 4-wide U-Net on 16² crops, test crops of 48²
TINY_TASKS = {
    "data": {"max_train_images": 4},
    "model": {"width": 4, "depth": 2},
    "pretrain": {"steps": 3, "rcl": {"batch_images": 3, "crop_size": 16},
                 "baselines": {"batch_size": 4, "crop_size": 16, "batch_images": 3}},
    "finetune": {"steps": 3, "batch_size": 4, "crop_size": 16},
    "label_fractions": [0.25, 1.0],
    "tasks": {
        "sr": {"test": [{"name": "Set12", "path": "test/Set12", "noises": ["gaussian:15"], "max_images": 2,
                         "crop": 48}]},
        "jdd": {"max_train_images": 3, "label_fractions": [0.34, 1.0],
                "test": [{"name": "Kodak24", "path": "test/Kodak24", "noises": ["poisson-gaussian"], "max_images": 1,
                          "crop": 48}]},
    },
}
METHODS = ("rcl", "n2v", "none")  # of the smoke-tasks preset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    if SHARED.is_dir():
        return SHARED
    return _synthetic_root(tmp_path_factory.mktemp("bench_tasks_data"))


def _sr_only(root: Path, **sr) -> dict:
    test = [{"name": "Set12", "path": "test/Set12", "noises": ["gaussian:15"]}]
    return {"data_root": str(root), "data": {"train": "train/Train400"},
            "tasks": {"denoise": False, "sr": {"test": test, **sr}}}


def _cells(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["cells"]


# ---------------------------------------------------------------------------------------------
# validation and presets
# ---------------------------------------------------------------------------------------------

def test_task_config_errors_name_the_field(data_root):
    kodak = [{"name": "Kodak24", "path": "test/Kodak24", "noises": ["poisson-gaussian"]}]
    cases = [
        (_sr_only(data_root, scales=[3, 5]), "SR scale 5 is not supported"),
        (_sr_only(data_root, scales=[2, 4], finetune={"crop_size": 42}), "multiple of every scale"),
        (_sr_only(data_root, finetune={"seed": 3}), "seeds"),
        (_sr_only(data_root, methods=["rcl", "noise2magic"]), "noise2magic"),
        (_sr_only(data_root, label_fractions=[0, 1]), "label fraction 0 is not in (0, 1]"),
        (_sr_only(data_root, train_noise="real"), "train_noise"),
        ({**_sr_only(data_root), "bm3d": {"enabled": True}}, "tasks.jdd.bm3d"),
        ({"data_root": str(data_root), "data": {"train": "train/Train400"}}, "data.test"),
        ({"data_root": str(data_root), "data": {"train": "train/Train400"}, "tasks": {"denoise": False}},
         "nothing to run"),
        ({"data_root": str(data_root), "data": {"train": "train/Train400"},
          "tasks": {"denoise": False, "jdd": {"test": kodak}}}, "tasks.jdd.train"),
        ({"data_root": str(data_root), "data": {"train": "train/LIVE1", "channels": 3},
          "tasks": {"denoise": False, "jdd": {"test": kodak, "finetune": {"crop_size": 33}}}}, "must be even"),
        ({"data_root": str(data_root), "data": {"train": "train/LIVE1", "channels": 3},
          "tasks": {"denoise": False, "jdd": {"test": kodak, "pattern": "RGBG"}}}, "unknown Bayer pattern"),
        ({"data_root": str(data_root), "data": {"train": "train/LIVE1", "channels": 3},
          "tasks": {"denoise": False, "jdd": {"test": kodak, "model": {"in_channels": 3}}}}, "4 channels"),
        ({"data_root": str(data_root), "data": {"train": "train/LIVE1", "channels": 3},
          "tasks": {"denoise": False, "jdd": {"test": kodak, "train": "train/NoSuchSet"}}}, "NoSuchSet"),
    ]
    for raw, needle in cases:
        with pytest.raises(ValidationError) as exc:
            BenchmarkConfig(**raw)
        assert needle in str(exc.value), (needle, str(exc.value))
    # a grayscale SR config cannot test on a colour test set
    raw = _sr_only(data_root)
    raw["tasks"]["sr"]["test"][0]["channels"] = 3
    with pytest.raises(ValidationError, match="differ from data.channels"):
        BenchmarkConfig(**raw)


def test_task_presets(data_root):
    g = load_config("sr-gray", data_root)
    assert not g.tasks.denoise and g.tasks.jdd is None and g.tasks.sr.scales == [2, 4]
    assert {t.name for t in g.tasks.sr.test} == {"Set12", "BSD68"} and g.data.channels == 1
    assert all(t.noises == ["gaussian:15"] for t in g.tasks.sr.test) and g.sr_noise == "gaussian:15"
    assert g.task_methods(g.tasks.sr) == ["rcl", "simclr", "n2v", "none"]
    assert g.task_fractions(g.tasks.sr) == [0.01, 0.1, 1.0] and str(g.data.train).endswith("Train400")
    c = load_config("sr-colour", data_root)
    assert c.data.channels == 3 and [t.name for t in c.tasks.sr.test] == ["Kodak24"]
    assert str(c.data.train).endswith("LIVE1") and c.tasks.sr.test[0].channels == 3
    j = load_config("jdd", data_root)
    assert j.tasks.jdd.pattern == "RGGB" and j.tasks.jdd.noise == "poisson-gaussian" and j.tasks.sr is None
    assert str(j.jdd_train[0]).endswith("LIVE1") and [t.name for t in j.tasks.jdd.test] == ["Kodak24"]
    assert j.task_methods(j.tasks.jdd) == ["rcl", "simclr", "n2v", "none"] and j.jdd_model().in_channels == 4
    assert j.tasks.jdd.bm3d.enabled and j.tasks.jdd.bm3d.max_images == 4


def test_sr_shares_the_denoising_pretraining(data_root, tmp_path):
    """Adding tasks.sr to a denoising config keeps every denoising cell (and its hash) and adds no
    second pre-training of a method both use."""
    base = load_config("smoke", data_root)
    sr = {"scales": [2], "methods": ["rcl", "simclr", "none"], "finetune": {"crop_size": 32},
          "test": [{"name": "Set12", "path": "test/Set12", "noises": ["gaussian:15"]}]}
    both = load_config("smoke", data_root, overrides={"tasks": {"sr": sr}})
    r0, r1 = Plan(base, tmp_path), Plan(both, tmp_path)
    h0, h1 = {c.key: c.hash for c in r0.all_cells}, {c.key: c.hash for c in r1.all_cells}
    assert all(h1.get(k) == v for k, v in h0.items())
    pre = [c.key for c in r1.model_cells if c.kind == "pretrain" and "ablation" not in c.key]
    assert pre == ["pretrain rcl", "pretrain n2v", "pretrain simclr"]  # simclr only for SR
    ft = {c.key: c for c in r1.model_cells if c.key.startswith("sr x2 finetune")}
    assert len(ft) == 3 * 2 * 2  # methods × fractions × seeds (the top-level ones)
    assert not any("x2 finetune n2v" in k for k in ft)
    # the SR fine-tuning of rcl hangs on RCL's pre-training; that of none (scratch) does not
    changed = load_config("smoke", data_root, overrides={"tasks": {"sr": sr}, "pretrain": {"rcl": {"temperature": 0.2}}})
    h2 = {c.key: c.hash for c in Plan(changed, tmp_path).all_cells}
    assert h2["pretrain rcl"] != h1["pretrain rcl"] and h2["pretrain n2v"] == h1["pretrain n2v"]
    for k in ft:
        assert (h2[k] != h1[k]) == (" rcl " in k), k


# ---------------------------------------------------------------------------------------------
# end to end and resumability
# ---------------------------------------------------------------------------------------------

def test_tasks_end_to_end_and_resume(data_root, tmp_path):
    cfg = load_config("smoke-tasks", data_root, overrides=TINY_TASKS)
    out = tmp_path / "bench"
    n_cells = len(Plan(cfg, tmp_path / "plan" / "cache").all_cells)
    assert run_benchmark(cfg, out, progress=False, command="rcl benchmark smoke-tasks") == out
    first = _cells(out)
    assert first["total"] == n_cells and len(first["computed"]) == n_cells and not first["cached"]
    for f in ("report.md", "results.json", "config.yaml", "sr_psnr_vs_fraction.png", "sr_samples_x2.png",
              "sr_samples_x4.png", "jdd_psnr_vs_fraction.png", "jdd_samples.png"):
        assert (out / f).is_file(), f
    assert not (out / "psnr_vs_fraction.png").exists()  # tasks.denoise: false
    md = (out / "report.md").read_text()
    for needle in ("## Super-resolution", "### Set12, ×2, σ=15", "### Set12, ×4, σ=15", "bicubic (noisy LR)",
                   "PSNR (dB, Y)", "SSIM (Y)", "25 % (1 img)", "100 % (4 img)", " ± ", "Δ rcl − none",
                   "## Joint demosaicking + denoising", "### Kodak24, `poisson-gaussian`", "bilinear demosaic (noisy)",
                   "Malvar demosaic (noisy)", "Malvar + BM3D (σ known)", "34 % (1 img)", "100 % (3 img)",
                   "rcl benchmark smoke-tasks", "```yaml"):
        assert needle in md, needle
    assert "## Results" not in md and "## Claims" not in md  # the denoising sections are off
    res = json.loads((out / "results.json").read_text())
    sr_ft = [r for r in res["sr"] if r["kind"] == "finetuned"]
    assert len(sr_ft) == 3 * 2 * 2 and all(r["n_seeds"] == 2 for r in sr_ft)  # methods × fractions × scales
    assert {r["scale"] for r in sr_ft} == {2, 4} and {r["method"] for r in sr_ft} == set(METHODS)
    assert [r["method"] for r in res["sr"] if r["kind"] == "reference"] == ["bicubic (noisy LR)"] * 2
    jdd = {r["method"]: r for r in res["jdd"] if r["kind"] != "finetuned"}
    assert set(jdd) == {"bilinear demosaic (noisy)", "Malvar demosaic (noisy)", "Malvar + BM3D (σ known)"}
    assert jdd["Malvar + BM3D (σ known)"]["psnr"] > jdd["bilinear demosaic (noisy)"]["psnr"]
    assert len([r for r in res["jdd"] if r["kind"] == "finetuned"]) == 3 * 2

    # the checkpoints are ordinary task checkpoints (SR: SRNet ×scale; JDD: JDDNet)
    from rcl.checkpoint import load_checkpoint
    from rcl.models import JDDNet, SRNet

    sr_model, meta = load_checkpoint(out / "cache" / "sr" / "x4" / "finetune" / "rcl" / "f0.25_s0.safetensors")
    assert isinstance(sr_model, SRNet) and meta["task"] == "sr" and meta["scale"] == 4
    jdd_model, meta = load_checkpoint(out / "cache" / "jdd" / "finetune" / "rcl" / "f1_s1.safetensors")
    assert isinstance(jdd_model, JDDNet) and meta["pattern"] == "RGGB"
    _, meta = load_checkpoint(out / "cache" / "jdd" / "pretrain" / "rcl.safetensors")
    assert meta["data"] == "packed-bayer" and meta["model"]["in_channels"] == 4

    # a rerun from the saved config.yaml recomputes nothing
    run_benchmark(load_config(str(out / "config.yaml")), out, progress=False)
    second = _cells(out)
    assert not second["computed"] and len(second["cached"]) == n_cells

    # a lost classical cell is recomputed alone
    lost = out / "cache" / "jdd" / "eval" / "malvar+bm3d" / "Kodak24" / "poisson-gaussian.json"
    lost_key = json.loads(lost.read_text())["key"]
    lost.unlink()
    run_benchmark(cfg, out, progress=False)
    assert _cells(out)["computed"] == [lost_key]

    # a changed SR fine-tuning config recomputes the SR fine-tuning cells and their evaluations only
    over = json.loads(json.dumps(TINY_TASKS))
    over["tasks"]["sr"]["finetune"] = {"steps": 4}
    run_benchmark(load_config("smoke-tasks", data_root, overrides=over), out, progress=False)
    third = _cells(out)
    n_sr_ft = 2 * len(METHODS) * 2 * 2  # scales × methods × fractions × seeds
    assert len(third["computed"]) == 2 * n_sr_ft  # each with its one evaluation
    assert all(k.startswith(("sr x", "eval sr x")) and "bicubic" not in k for k in third["computed"])


# ---------------------------------------------------------------------------------------------
# test and training images checked against the task before any cell runs
# ---------------------------------------------------------------------------------------------

def _bad_image_root(root: Path) -> Path:
    import torch

    from rcl.data.io import write_image

    g = torch.Generator().manual_seed(0)
    for i in range(3):
        write_image(root / "rgb" / f"r{i}.png", torch.rand(3, 40, 40, generator=g))
        write_image(root / "gray" / f"g{i}.png", torch.rand(1, 40, 40, generator=g))
    write_image(root / "tiny" / "t.png", torch.rand(1, 20, 20, generator=g))
    write_image(root / "thin" / "t.png", torch.rand(3, 11, 40, generator=g))
    write_image(root / "graytest" / "t.png", torch.rand(1, 40, 40, generator=g))
    return root


@pytest.mark.parametrize("tasks, data, culprit, why", [
    ({"sr": {"scales": [8], "test": [{"name": "T", "path": "tiny", "noises": ["gaussian:15"]}],
             "finetune": {"crop_size": 16}}}, "gray", "t.png", "34 px"),
    ({"jdd": {"train": "rgb", "test": [{"name": "T", "path": "thin", "noises": ["poisson-gaussian"]}]}},
     "rgb", "t.png", "12 px"),
    ({"jdd": {"train": "gray", "test": [{"name": "T", "path": "rgb", "noises": ["poisson-gaussian"]}]}},
     "rgb", "g0.png", "needs clean RGB images, got 1 channel(s)"),
    ({"jdd": {"train": "rgb", "test": [{"name": "T", "path": "graytest", "noises": ["poisson-gaussian"]}]}},
     "rgb", "t.png", "needs clean RGB images, got 1 channel(s)"),
])
def test_bad_task_images_are_refused_before_any_cell(tmp_path, tasks, data, culprit, why):
    from rcl.benchmark.inputs import check_inputs

    root = _bad_image_root(tmp_path / "data")
    raw = {"data_root": str(root), "data": {"train": data, "channels": 3 if data == "rgb" else 1},
           "model": {"width": 4, "depth": 1}, "pretrain": {"steps": 1}, "finetune": {"steps": 1, "crop_size": 16},
           "tasks": {"denoise": False, **tasks}}
    cfg = BenchmarkConfig(**raw)
    with pytest.raises(ValueError) as exc:
        check_inputs(cfg)
    msg = str(exc.value)
    assert culprit in msg and why in msg and "\n" not in msg, msg
    out = tmp_path / "bench"
    with pytest.raises(ValueError, match=culprit):
        run_benchmark(cfg, out, progress=False, command="test")
    assert not out.exists() and not (tmp_path / ".bench.partial").exists()
