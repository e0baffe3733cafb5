"""benchmarks/consistency_study.py: its split, its benchmark config and its aggregation (no training;
the script's smoke mode trains, see its docstring)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rcl.data.io import write_image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "consistency_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("consistency_study", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _images(folder: Path, n: int) -> Path:
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        write_image(folder / f"img{i:03d}.png", torch.rand(1, 70, 70, generator=g))
    return folder


def test_split_is_every_tenth_and_disjoint(study, tmp_path):
    data = _images(tmp_path / "data", 25)
    train, val, names = study.make_split(data, tmp_path / "out", None)
    v = sorted(p.name for p in val.iterdir())
    t = sorted(p.name for p in train.iterdir())
    assert v == names == ["img009.png", "img019.png"]
    assert not set(v) & set(t) and len(t) == 23
    assert all((train / n).resolve() == (data / n).resolve() for n in t)
    # a rerun with fewer images drops the links that no longer belong
    train, val, names = study.make_split(data, tmp_path / "out", 20)
    assert sorted(p.name for p in train.iterdir()) == [f"img{i:03d}.png" for i in range(20) if i % 10 != 9]


@pytest.mark.parametrize("budget", ["FULL", "SMOKE"])
def test_config_is_a_valid_benchmark_config_with_every_variant(study, tmp_path, budget):
    """Every variant's fields are fields of RCL's config (the benchmark validates them), and the
    budgets are those the docstring states."""
    from rcl.benchmark import load_config

    data = _images(tmp_path / "data", 20)
    train, val, _ = study.make_split(data, tmp_path / "out", None)
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(study.config(3, train, val, getattr(study, budget))))
    cfg = load_config(str(path))
    assert [a.name for a in cfg.ablations] == list(study.VARIANTS)
    assert cfg.pretrain.seed == 3 and cfg.seeds == [3] and cfg.label_fractions == [0.01]
    for a in cfg.ablations:
        rc = cfg.pretrain.rcl_config(a.rcl)
        assert all(getattr(rc, k) == v for k, v in a.rcl.items())
    if budget == "FULL":
        assert cfg.pretrain.steps == 2000 and cfg.finetune.steps == 2000 and cfg.finetune.crop_size == 64


def test_aggregate_and_render(study, tmp_path):
    rows = {0: [], 1: []}
    for seed, off in ((0, 0.0), (1, 1.0)):
        rows[seed] += [{"kind": "noisy", "test": "val40", "noise": "gaussian:25", "psnr": 20.0},
                       {"kind": "finetuned", "method": "none", "fraction": 0.01, "noise": "gaussian:25",
                        "psnr_mean": 26.0 + off},
                       {"kind": "finetuned", "method": "rcl", "fraction": 0.01, "noise": "gaussian:25",
                        "psnr_mean": 99.0},
                       {"kind": "ablation", "variant": "rcl (base config)", "noise": "gaussian:25",
                        "direct_psnr": 24.0 + off, "finetuned_psnr": 27.0 + off},
                       {"kind": "ablation", "variant": "center", "noise": "gaussian:25",
                        "direct_psnr": 25.0 + off, "finetuned_psnr": None}]
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"rows": rows[seed]}))
    agg = study.aggregate({0: tmp_path / "seed0", 1: tmp_path / "seed1"})
    assert agg["scratch"]["gaussian:25"]["finetuned"] == {0: 26.0, 1: 27.0}
    assert agg["base"]["gaussian:25"]["direct"] == {0: 24.0, 1: 25.0}
    md = study.render(agg, [0, 1], "cmd", ["a.png"], "cpu")
    line = next(ln for ln in md.splitlines() if ln.startswith("| base "))
    assert "**24.50** (24.00, 25.00)" in line and "**27.50** (27.00, 28.00)" in line
    center = next(ln for ln in md.splitlines() if ln.startswith("| center "))
    assert "**25.50**" in center and center.rstrip().endswith("— | — |")


@pytest.mark.parametrize("args, culprit", [
    (["--seeds", "0", "0"], "--seeds"), (["--threads", "0"], "--threads"), (["--threads", "5000"], "--threads"),
    (["--seeds", "99999999999999999999"], "--seeds"), (["--seeds", "1.5"], "--seeds"), (["--threads", "x"], "--threads"),
    (["--out", "{data}/inside"], "inside the training folder"), (["--out", ""], "--out"),
    (["--out", "{tmp}"], "inside --out"), (["--report-dir", "{tmp}/out/split/val"], "--report-dir"),
    (["--report-dir", "{tmp}/out"], "--report-dir"), (["--out", "{data}/img000.png/sub"], "--out")])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, culprit):
    data = _images(tmp_path / "data", 3)
    out = tmp_path / "out"
    args = [a.replace("{data}", str(data)).replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(out)]
    proc = subprocess.run([sys.executable, str(SCRIPT), "--train", str(data), *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and culprit in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists() and not (data / "inside").exists()


def test_too_few_images_is_refused(tmp_path):
    data = _images(tmp_path / "data", 5)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--train", str(data), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "5 image(s)" in proc.stderr and not (tmp_path / "o").exists()


def test_collect_aggregates_only_seeds_made_the_same_way(study, tmp_path, capsys):
    key = study.study_key(study.FULL, ["a.png"])
    for seed, k in ((0, key), (1, key), (2, study.study_key(study.SMOKE, ["a.png"]))):
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        (d / "study.json").write_text(json.dumps({"seed": seed, "key": k, "cpu": "x"}))
    (tmp_path / "seed9").mkdir()  # no study.json: not a seed folder
    assert list(study.collect(tmp_path, key)) == [0, 1]
    assert "seed2 was made with other variants" in capsys.readouterr().out


def test_never_removes_a_file_it_did_not_make(study, tmp_path):
    """A training folder that is the work folder's split folder: refused; a plain file in a split
    folder: refused, and left where it was."""
    data = _images(tmp_path / "out" / "split" / "val", 25)
    before = sorted(p.name for p in data.iterdir())
    proc = subprocess.run([sys.executable, str(SCRIPT), "--train", str(data), "--out", str(tmp_path / "out"),
                           "--smoke"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "inside --out" in proc.stderr
    assert sorted(p.name for p in data.iterdir()) == before
    other = _images(tmp_path / "data", 25)
    with pytest.raises(SystemExit):
        study.make_split(other, tmp_path / "out", None)
    assert sorted(p.name for p in data.iterdir()) == before
