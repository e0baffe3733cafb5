"""`rcl benchmark`: config validation, the smoke preset end to end, resumability by config hash.

Uses ../shared/data when present (with an even tinier override of the smoke preset), otherwise a
data root of scikit-image photo crops written as PNGs, so these tests never skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from rcl.benchmark import (PRESETS, BenchmarkConfig, BenchmarkConfigError, Plan, Runner, Stat, file_ids, judge_claims,
                           load_config, log_history, preset_path, published_numbers, run_benchmark)
from rcl.data.io import write_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# the smoke preset made smaller still: a few steps of a 4-wide U-Net on 16² crops, 2 test crops of 48²
TINY = {
    "data": {"max_train_images": 4,
             "test": [{"name": "Set12", "path": "test/Set12", "noises": ["gaussian:25", "gaussian:5-50"],
                       "max_images": 2, "crop": 48}]},
    "model": {"width": 4, "depth": 2},
    "pretrain": {"steps": 3, "rcl": {"batch_images": 4, "crop_size": 16},
                 "baselines": {"batch_size": 4, "crop_size": 16}},
    "finetune": {"steps": 3, "batch_size": 4, "crop_size": 16, "val_every": 1},
    "label_fractions": [0.25, 1.0],
    "bm3d": {"max_images": 1},
}


def _gray(arr: np.ndarray) -> torch.Tensor:
    img = torch.from_numpy(arr.astype(np.float32) / 255)
    if img.ndim == 3:
        img = (img[..., :3] * torch.tensor([0.299, 0.587, 0.114])).sum(-1)
    return img[None]


def _rgb(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr[..., :3].astype(np.float32) / 255).permute(2, 0, 1).contiguous()


def _synthetic_root(root: Path) -> Path:
    """train/Train400, train/LIVE1, test/Set12, test/BSD68, test/Kodak24 from scikit-image photos."""
    import skimage.data as data

    gray = [data.camera(), data.coins(), data.moon(), data.page(), data.clock(), data.brick(), data.grass(),
            data.gravel()]
    for i, a in enumerate(gray):
        write_image(root / "train" / "Train400" / f"train_{i:03d}.png", _gray(a)[:, 20:84, 20:84])
    write_image(root / "test" / "Set12" / "01.png", _gray(data.camera())[:, 300:396, 200:296])
    write_image(root / "test" / "Set12" / "02.png", _gray(data.astronaut())[:, 100:196, 250:346])
    write_image(root / "test" / "BSD68" / "test001.png", _gray(data.coffee())[:, 100:196, 200:296])
    for i, a in enumerate([data.chelsea(), data.coffee(), data.rocket()]):
        write_image(root / "train" / "LIVE1" / f"live_{i}.png", _rgb(a)[:, :96, :96])
    write_image(root / "test" / "Kodak24" / "kodim01.png", _rgb(data.astronaut())[:, :96, :96])
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    if SHARED.is_dir():
        return SHARED
    return _synthetic_root(tmp_path_factory.mktemp("bench_data"))


def _minimal(root: Path, **over) -> dict:
    test = [{"name": "Set12", "path": "test/Set12", "noises": ["gaussian:25"]}]
    raw = {"data_root": str(root), "data": {"train": "train/Train400", "test": test}}
    raw.update(over)
    return raw


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------

def test_bad_method_name_is_named(data_root):
    with pytest.raises(ValidationError) as exc:
        BenchmarkConfig(**_minimal(data_root, methods=["rcl", "noise2magic"]))
    msg = str(exc.value)
    assert "methods" in msg and "noise2magic" in msg and "n2v" in msg  # names the culprit and the choices


def test_zero_label_fraction_is_rejected(data_root):
    with pytest.raises(ValidationError) as exc:
        BenchmarkConfig(**_minimal(data_root, label_fractions=[0, 0.5]))
    msg = str(exc.value)
    assert "label_fractions" in msg and "label fraction 0 is not in (0, 1]" in msg


def test_missing_path_is_named(data_root, tmp_path):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("data:\n  train: train/NoSuchSet\n"
                   "  test:\n    - {name: Set12, path: test/Set12, noises: [gaussian:25]}\n")
    with pytest.raises(BenchmarkConfigError) as exc:
        load_config(str(cfg), data_root)
    msg = str(exc.value)
    missing = data_root / "train" / "NoSuchSet"
    assert "data.train" in msg and str(cfg) in msg
    assert str(missing) in msg or str(missing.parent.resolve() / missing.name) in msg


def test_other_config_errors_name_the_field(data_root):
    cases = [
        (dict(train_noise="real"), "train_noise"),
        (dict(seeds=[]), "seeds"),
        (dict(finetune={"label_fraction": 0.5}), "label_fractions"),
        (dict(pretrain={"rcl": {"temperature": -1}}), "rcl.temperature"),
        (dict(ablations=[{"name": "bad", "rcl": {"similarity": "manhattan"}}]), "similarity"),
        (dict(bm3d={"enabled": True, "where": [{"test": "Kodak24"}]}), "unknown test set 'Kodak24'"),
        (dict(colour=True), "colour"),
    ]
    for over, needle in cases:
        with pytest.raises(ValidationError) as exc:
            BenchmarkConfig(**_minimal(data_root, **over))
        assert needle in str(exc.value), (over, str(exc.value))


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="presets: smoke, default, colour"):
        load_config("no-such-preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(BenchmarkConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_presets_are_packaged_and_valid(data_root):
    counts = {}
    for name in PRESETS:
        assert preset_path(name).is_file()
        cfg = load_config(name, data_root)
        assert cfg.name == name and cfg.data.train.is_absolute()
        counts[name] = cfg
    d = counts["default"]
    assert d.methods == ["rcl", "simclr", "n2v", "n2s", "ne2ne", "none"] and d.label_fractions == [0.01, 0.05, 0.1, 1.0]
    assert {t.name for t in d.data.test} == {"BSD68", "Set12"} and len(d.seeds) == 2
    assert counts["colour"].model.in_channels == 3 and counts["colour"].data.test[0].noises == ["gaussian:25"]


# ---------------------------------------------------------------------------------------------
# end to end and resumability
# ---------------------------------------------------------------------------------------------

def _cells(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["cells"]


def test_smoke_end_to_end_and_resume(data_root, tmp_path, monkeypatch):
    cfg = load_config("smoke", data_root, overrides=TINY)
    out = tmp_path / "bench"
    partial = tmp_path / ".bench.partial"
    n_cells = len(Plan(cfg, tmp_path / "plan" / "cache").all_cells)

    # an interrupted first run keeps its finished cells in the .partial folder and writes no report
    calls = {"n": 0}
    original = Runner.compute_eval

    def flaky(self, cell):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(self, cell)

    monkeypatch.setattr(Runner, "compute_eval", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, out, progress=False)
    monkeypatch.setattr(Runner, "compute_eval", original)
    assert not out.exists() and partial.is_dir() and not (partial / "report.md").exists()
    done_before = sum(1 for line in (partial / "benchmark.log").read_text().splitlines() if " computed " in line)
    assert done_before >= 5

    # the next run resumes: only the missing cells are computed, the report is complete
    assert run_benchmark(cfg, out, progress=False, command="rcl benchmark smoke") == out
    assert not partial.exists()
    first = _cells(out)
    assert first["total"] == n_cells
    assert len(first["cached"]) == done_before and len(first["computed"]) == n_cells - done_before
    for f in ("report.md", "results.json", "psnr_vs_fraction.png", "samples.png", "config.yaml"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    for needle in ("## Results", "noisy input", "BM3D (σ known", "0 labels", "25 % (1 img)", "100 % (4 img)",
                   " ± ", "## Ablations", "similarity-l2", "## Published numbers", "28.57", "32.43",
                   "Compute budget", "## BM3D protocol check", "## Claims", "rcl benchmark smoke", "```yaml"):
        assert needle in md, needle
    for i in (1, 2, 3, 4):
        assert f"**Claim {i}:" in md
    res = json.loads((out / "results.json").read_text())
    verdicts = [c["verdict"] for c in res["claims"]]
    assert all(v.split(" (")[0] in ("holds", "does not hold", "inconclusive") for v in verdicts), verdicts
    assert "not measured" in verdicts[3]  # smoke runs no simclr: claim 4 cannot be judged
    ft = [r for r in res["rows"] if r["kind"] == "finetuned"]
    assert len(ft) == (3 + 1) * 2 * 2 and all(r["n_seeds"] == 2 for r in ft)
    # the compute-matched scratch row: fresh weights, pre-training + fine-tuning steps, judged in claim 1 (c)
    assert {r["method"] for r in ft} == {"rcl", "n2v", "none", "scratch-matched"}
    assert "scratch, compute-matched (6 steps)" in md and "(c) beats compute-matched scratch" in md
    cells = [c for c in Plan(cfg, out / "cache").model_cells if c.evals and c.evals[0].row[1] == "scratch-matched"]
    assert len(cells) == 4 and all(c.init is None and c.training.steps == 6 for c in cells)
    assert "Wall time per training cell" in md and "pre-training rcl" in md
    # validation at 100 % (4 labels, val_min_labels 4 in the preset: 1 held out): the learning curve
    assert "Learning curve of full supervision (100 % labels)" in md and "none (scratch), seed 0" in md
    assert {r["method"] for r in res["rows"] if r["kind"] == "direct"} == {"rcl", "n2v"}

    # a rerun from the saved config.yaml recomputes nothing
    run_benchmark(load_config(str(out / "config.yaml")), out, progress=False)
    second = _cells(out)
    assert not second["computed"] and len(second["cached"]) == n_cells

    # a lost evaluation cell is recomputed alone
    lost = next(iter(sorted((out / "cache" / "eval" / "direct").rglob("*.json"))))
    lost_key = json.loads(lost.read_text())["key"]
    lost.unlink()
    run_benchmark(cfg, out, progress=False)
    assert _cells(out)["computed"] == [lost_key]

    # a changed fine-tuning config recomputes the fine-tuning cells and their evaluations only
    changed = load_config("smoke", data_root, overrides={**TINY, "finetune": {**TINY["finetune"], "steps": 4}})
    run_benchmark(changed, out, progress=False)
    fourth = _cells(out)
    n_ft = (3 + 1) * 2 * 2 + 1  # (methods + compute-matched scratch) × fractions × seeds, plus the ablation's
    n_ft_evals = (3 + 1) * 2 * 2 * 2 + 1  # … × 2 noises, plus the ablation's (1 test set/noise)
    assert len(fourth["computed"]) == n_ft + n_ft_evals
    assert all("finetune" in k or " f=" in k for k in fourth["computed"]), fourth["computed"]
    assert all(k.startswith(("pretrain", "ablation similarity-l2 pretrain")) or "0 labels" in k or "BM3D" in k
               for k in fourth["cached"]), fourth["cached"]


def _stat(psnr, std, n=2):
    return Stat(psnr, std, 0.8, 0.01, n, 10)


def test_claim_rules_follow_the_numbers(data_root):
    cfg = BenchmarkConfig(**_minimal(data_root, methods=["rcl", "simclr", "n2v", "none"],
                                     label_fractions=[0.1, 1.0], competitive_db=0.5))
    key = ("Set12", "gaussian:25")
    stats = {
        ("ft", "rcl", 0.1) + key: _stat(29.0, 0.05), ("ft", "none", 0.1) + key: _stat(27.0, 0.2),
        ("ft", "rcl", 1.0) + key: _stat(29.5, 0.1), ("ft", "none", 1.0) + key: _stat(29.4, 0.05),
        ("ft", "n2v", 0.1) + key: _stat(29.1, 0.3), ("ft", "n2v", 1.0) + key: _stat(29.5, 0.1),
        ("ft", "simclr", 0.1) + key: _stat(28.0, 0.1), ("ft", "simclr", 1.0) + key: _stat(29.5, 0.1),
    }
    c = {x["id"]: x for x in judge_claims(cfg, stats)}
    assert c[1]["verdict"] == "holds"  # +2 dB at 10 % ≫ 0.2 std, and +2 vs +0.1 at 100 %
    # gap −0.4 dB: above −0.5 dB by 0.1, more than the larger std 0.05
    assert c[2]["verdict"] == "holds" and abs(c[2]["comparisons"][0]["delta_db"] + 0.4) < 1e-9
    assert c[3]["verdict"].startswith("inconclusive (difference within seed std)")  # −0.1 dB within 0.3
    assert c[4]["verdict"] == "holds"
    stats[("ft", "simclr", 0.1) + key] = _stat(29.5, 0.1)  # simclr ahead by 0.5 > 0.1
    assert {x["id"]: x for x in judge_claims(cfg, stats)}[4]["verdict"] == "does not hold"
    one_seed = {k: _stat(v.psnr, float("nan"), n=1) for k, v in stats.items()}
    assert all(x["verdict"].startswith("inconclusive") for x in judge_claims(cfg, one_seed))


def test_published_numbers_are_packaged_data_with_sources():
    """The published reference numbers are data (rcl/benchmark/published.yaml), each with its source
    and the row of ours printed beside it."""
    pub = published_numbers()
    chk = pub.bm3d_check
    assert (chk.test, chk.noise, chk.psnr, chk.n_images) == ("BSD68", "gaussian:25", 28.57, 68) and "Dabov" in chk.source
    assert len(pub.rows) == 6 and all(r.source and r.psnr > 20 for r in pub.rows)
    assert {tuple(r.ours) for r in pub.rows} == {("bm3d",), ("ft", "none", 1.0), ("direct", "n2v"), ("direct", "ne2ne")}


def test_refuses_a_foreign_output_folder(data_root, tmp_path):
    cfg = load_config("smoke", data_root, overrides=TINY)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not an rcl benchmark folder"):
        run_benchmark(cfg, foreign, progress=False)
    assert (foreign / "holiday.jpg").read_bytes() == b"not ours"


def test_log_history_counts_runs_and_sums_computed_cells(tmp_path):
    """A resumed run's report states the total compute time of all runs, read from benchmark.log."""
    log = tmp_path / "benchmark.log"
    log.write_text("2026-01-01 10:00:00 start: 5 cells\n"
                   "2026-01-01 10:01:00 computed pretrain rcl (60.0 s)\n"
                   "2026-01-01 10:02:00 start: 5 cells\n"
                   "2026-01-01 10:02:00 cached   pretrain rcl\n"
                   "2026-01-01 10:02:30 computed eval rcl (0 labels) | Set12 gaussian:25 (30.5 s)\n")
    h = log_history(log)
    assert h == {"runs": 2, "first": "2026-01-01 10:00:00", "cell_seconds": 90.5}
    assert log_history(tmp_path / "missing.log") is None


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (the smoke preset's Train400 and Set12)")
def test_smoke_preset_as_shipped_via_cli(tmp_path):
    """Acceptance of the baselines issue: `rcl benchmark smoke` itself (not a shrunken override) runs
    in CI and writes its report with the claims and the BM3D check."""
    from typer.testing import CliRunner

    from rcl.cli import app

    out = tmp_path / "bench-smoke"
    res = CliRunner().invoke(app, ["benchmark", "smoke", "--data-root", str(SHARED), "-o", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    report = (out / "report.md").read_text()
    for section in ("## Results", "## BM3D protocol check", "## Published numbers", "## Claims", "**Claim 4"):
        assert section in report
    assert (out / "psnr_vs_fraction.png").stat().st_size > 0 and (out / "samples.png").stat().st_size > 0


def test_file_ids_change_with_content_of_same_size(tmp_path):
    """Cells are keyed by image content, so an image edited in place with the same byte size
    (uncompressed BMP/TIFF) invalidates the cached cells instead of reusing stale results."""
    f = tmp_path / "a.bmp"
    f.write_bytes(b"\x00" * 64)
    before = file_ids([f])
    f.write_bytes(b"\x01" * 64)
    after = file_ids([f])
    assert before[0][:2] == after[0][:2] and before != after


def test_plateau_gain_is_the_gain_over_the_last_quarter():
    from rcl.benchmark.report import plateau_gain

    curve = [[250, 27.0], [1250, 27.9], [1500, 28.0], [1750, 28.03], [2000, 28.04]]
    assert plateau_gain(curve, 2000) == pytest.approx(0.04)
    assert plateau_gain([[1000, 27.0], [2000, 28.0]], 2000) is None  # one point in the last quarter
    assert plateau_gain([[1600, 28.2], [2000, 28.1]], 2000) == pytest.approx(-0.1)


@pytest.mark.parametrize("name, n_finetune, matched_steps", [
    ("converged", 6 * 3 * 2 + 3 * 2, 4000), ("converged-colour", 6 * 3 * 2 + 3 * 2, 4000),
    ("paper", 6 * 4 * 2 + 4 * 2, 10000),
])
def test_converged_and_paper_plans(data_root, tmp_path, name, n_finetune, matched_steps):
    """The plan of the converged presets and of the GPU-sized `paper` preset (checked on CPU without
    training): every method pre-trained for the same steps, methods × fractions × seeds fine-tuned with
    validation, the compute-matched scratch row at pre-training + fine-tuning steps, BM3D rows."""
    cfg = load_config(name, data_root)
    plan = Plan(cfg, tmp_path / "cache")
    pre = [c for c in plan.model_cells if c.kind == "pretrain"]
    ft = [c for c in plan.model_cells if c.kind == "finetune"]
    assert {c.method for c in pre} == {"rcl", "simclr", "n2v", "n2s", "ne2ne"}
    assert len({c.training["steps"] for c in pre}) == 1
    assert len(ft) == n_finetune and all(c.training.val_every > 0 for c in ft)
    matched = [c for c in ft if c.evals[0].row[1] == "scratch-matched"]
    assert matched and all(c.init is None and c.training.steps == matched_steps for c in matched)
    assert plan.bm3d_cells


def test_compute_matched_scratch_needs_rcl(data_root):
    with pytest.raises(BenchmarkConfigError, match="compute_matched_scratch"):
        load_config("smoke", data_root, overrides={"methods": ["n2v", "none"]})
