"""benchmarks/real_polyu.py (the ``real-polyu`` experiment on real camera noise): its smoke mode on a
tiny fake PolyU folder writes the report, the JSON and the figure with every row; the splits are
scene-disjoint; a rerun computes nothing; bad input exits with status 2 and one ``error:`` line,
before anything is written."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "real_polyu.py"
CONFIG = REPO / "benchmarks" / "real-polyu.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SCENES = ("chair", "desk", "fruit", "plug")


def _module():
    if "real_polyu" in sys.modules:
        return sys.modules["real_polyu"]
    spec = importlib.util.spec_from_file_location("real_polyu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["real_polyu"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _smooth(rng, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = []
    for _ in range(3):
        a, b, c = rng.uniform(1, 4, 3)
        chans.append(0.5 + 0.3 * np.sin(a * 6.28 * xx + b) * np.cos(c * 6.28 * yy))
    return np.stack(chans, -1)


def _save(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path, quality=95)


def _fake_data(root: Path) -> tuple[Path, Path]:
    """8 PolyU-style 64×64 RGB JPEG pairs from 4 scenes (clean: smooth; noisy: clean plus Gaussian
    noise blurred by a 3×3 box, spatially correlated like real sRGB noise) and a 3-image LIVE1."""
    rng = np.random.default_rng(0)
    polyu, live1 = root / "PolyU", root / "LIVE1"
    for sub in ("noisy", "clean", ""):
        (polyu / sub).mkdir(parents=True, exist_ok=True)
    live1.mkdir(parents=True)
    for scene in SCENES:
        for crop in (1, 2):
            name = f"Canon5D2_5_160_3200_{scene}_{crop}.jpg"
            clean = _smooth(rng, 64, 64)
            white = rng.normal(0, 15 / 255, (66, 66, 3))
            noise = sum(white[i:i + 64, j:j + 64] for i in range(3) for j in range(3)) / 3
            _save(clean, polyu / "clean" / name)
            _save(clean + noise, polyu / "noisy" / name)
    for k in range(3):
        _save(_smooth(rng, 72, 80), live1 / f"photo{k}.png")
    return polyu, live1


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, env=ENV,
                          timeout=300)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke run, then the same command again."""
    root = tmp_path_factory.mktemp("real_polyu")
    polyu, live1 = _fake_data(root)
    out, report = root / "run", root / "docs" / "polyu.md"
    report.parent.mkdir()
    args = ("--polyu", str(polyu), "--live1", str(live1), "--config", str(CONFIG), "--out", str(out), "--smoke",
            "--threads", "1", "--report", str(report))
    first = _run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    res1 = json.loads(report.with_suffix(".json").read_text())
    cells_before = _mtimes(out / "cells")
    second = _run(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"root": root, "polyu": polyu, "out": out, "report": report, "res1": res1,
            "res2": json.loads(report.with_suffix(".json").read_text()), "cells_before": cells_before,
            "second": second}


def test_report_and_json_hold_every_row(smoke):
    mod = _module()
    text = smoke["report"].read_text()
    res = smoke["res2"]
    assert "non-commercial research use only" in text and "arXiv 1804.02603" in text
    assert "python benchmarks/real_polyu.py --polyu" in text and "--smoke" in text
    assert "torch threads: 1" in text and "## Targets" in text and "## Splits" in text
    assert set(res["tables"]) == {"0", "1", "2"}
    expected = {"0": mod.ZERO_LABEL_ROWS, "1": mod.k_rows(1), "2": mod.k_rows(2)}
    for table, rows in expected.items():
        assert [r["row"] for r in res["tables"][table]] == list(rows)
        for row in rows:
            assert f"| {row} |" in text, row
    for table in res["tables"].values():
        for r in table:
            assert np.isfinite(r["psnr_mean"]) and 0 < r["ssim_mean"] <= 1, r
    # the targets are computed, booleans, and stated in the report
    assert isinstance(res["targets"]["a"]["holds"], bool) and isinstance(res["targets"]["b"]["holds"], bool)
    assert "(a) RCL (PD) + 2 beats scratch + 2" in text and "(b) RCL with PD beats RCL without PD" in text
    assert (smoke["report"].parent / "polyu_crops.png").stat().st_size > 1000
    # every cell carries its wall time
    assert res["cells"] and all(c["wall_s"] >= 0 for c in res["cells"])


def test_splits_are_scene_disjoint(smoke):
    from rcl.data.real_pairs import scene_key

    (split,) = smoke["res1"]["splits"].values()
    parts = {p: {scene_key(n) for n in split[p]} for p in ("train", "val", "test")}
    assert parts["train"].isdisjoint(parts["val"]) and parts["train"].isdisjoint(parts["test"])
    assert parts["val"].isdisjoint(parts["test"])
    assert {p: sorted(v) for p, v in parts.items()} == split["scenes"]
    names = sorted(n for p in ("train", "val", "test") for n in split[p])
    assert names == sorted(p.name for p in (smoke["polyu"] / "noisy").iterdir())
    assert len(split["train"]) >= 2 and split["test"]


def test_rerun_computes_nothing(smoke):
    assert smoke["res1"]["cells_computed"] == smoke["res1"]["cells_total"] > 0
    assert smoke["res2"]["cells_computed"] == 0
    assert smoke["res2"]["cells_total"] == smoke["res1"]["cells_total"]
    assert _mtimes(smoke["out"] / "cells") == smoke["cells_before"]
    assert "0 cell(s) computed" in smoke["second"].stderr


def test_missing_clean_folder_exits_2(tmp_path, smoke):
    bad = tmp_path / "PolyU"
    (bad / "noisy").mkdir(parents=True)
    out = tmp_path / "run"
    proc = _run("--polyu", str(bad), "--live1", str(smoke["root"] / "LIVE1"), "--out", str(out), "--smoke")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0] and "clean/" in lines[0]
    assert not out.exists()


def test_unknown_config_key_exits_2(tmp_path, smoke):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(CONFIG.read_text().replace("rcl: {batch_images: 16", "rcl: {batch_imgs: 16"))
    out = tmp_path / "run"
    proc = _run("--polyu", str(smoke["polyu"]), "--live1", str(smoke["root"] / "LIVE1"), "--config", str(cfg),
                "--out", str(out), "--smoke")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "batch_imgs" in lines[0] and str(cfg) in lines[0]
    assert not out.exists()


def test_runner_owned_fields_are_refused(tmp_path):
    mod = _module()
    cfg = tmp_path / "owned.yaml"
    cfg.write_text("pretrain:\n  rcl: {steps: 5}\n")
    with pytest.raises(mod.InputError, match=r"pretrain\.rcl\.steps is set by the runner"):
        mod.load_config(cfg)
    cfg.write_text("label_counts: [1, 5]\nfigure: {label_count: 10}\n")
    with pytest.raises(mod.InputError, match="figure.label_count 10 is not one of label_counts"):
        mod.load_config(cfg)
    assert mod.load_config(CONFIG).label_counts == [1, 5, 10]  # the shipped config validates


def test_report_never_replaces_an_input_or_writes_into_data(tmp_path, smoke):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text())
    before = cfg.read_bytes()
    clean = sorted((smoke["polyu"] / "clean").iterdir())[0]
    for report in (cfg, clean, smoke["polyu"] / "clean" / "report.md"):
        proc = _run("--polyu", str(smoke["polyu"]), "--live1", str(smoke["root"] / "LIVE1"), "--config", str(cfg),
                    "--out", str(tmp_path / "run"), "--smoke", "--report", str(report))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --report"), proc.stderr
    assert cfg.read_bytes() == before and not (smoke["polyu"] / "clean" / "report.md").exists()
