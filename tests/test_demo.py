"""`rcl demo` at a tiny budget: its final table's rows, the BM3D (σ known) row among them, and the
run folder."""

from __future__ import annotations

import json

import pytest

import rcl.demo as demo
from rcl.data.noise import GaussianRangeNoise
from rcl.evaluation import BM3D_ROW, bm3d_reference, evaluate, make_noisy_test_set
from rcl.tasks import DenoiseTask

TINY = dict(pretrain_steps=2, finetune_steps=2, crop=16, ft_crop=16, batch_images=4, batch_size=4, lr=1e-3, test_size=40,
            n_train=3)


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(demo, "QUICK", TINY)
    try:
        out = tmp_path_factory.mktemp("demo") / "run"
        return out, demo.run_demo(out=out, quick=True, seed=0, progress=False)
    finally:
        mp.undo()


def test_table_rows_end_with_bm3d(summary):
    _, s = summary
    assert [r["method"] for r in s["table"]] == ["noisy input", "RCL only (0 labels)", "scratch + 1 label",
                                                 "RCL + 1 label", "shipped RCL (pretrained:gray) + 1 label", BM3D_ROW]
    rows = {r["method"]: r["psnr"] for r in s["table"]}
    assert s["rcl_plus_1_label_minus_bm3d_db"] == pytest.approx(rows["RCL + 1 label"] - rows[BM3D_ROW])
    assert rows[BM3D_ROW] > rows["noisy input"] + 3
    assert s["finetune"]["label_fraction"] == pytest.approx(1 / 3)


def test_bm3d_row_is_the_shared_reference_on_the_protocol_inputs(summary):
    """The demo's BM3D row is :func:`rcl.evaluation.bm3d_reference` on the protocol's noisy test photos."""
    _, s = summary
    test = demo.load_photos(demo.TEST_PHOTOS[:2], TINY["test_size"])
    noise = GaussianRangeNoise(5 / 255, 50 / 255)
    noisy, sigmas = make_noisy_test_set(test, noise, seed=0)
    task = DenoiseTask()
    res, _ = evaluate({"b": bm3d_reference(task, noise)}, test, noise, noisy=noisy, sigmas=sigmas, task=task)
    assert s["table"][-1]["psnr"] == pytest.approx(res["b"].mean("psnr"), abs=1e-9)
    assert [im["psnr"] for im in s["results"][BM3D_ROW]["images"]] == \
        pytest.approx([sc.psnr for sc in res["b"].scores], abs=1e-9)


def test_run_folder_shows_the_bm3d_row(summary):
    out, _ = summary
    md = (out / "results.md").read_text()
    assert f"| {BM3D_ROW} |" in md and f"RCL + 1 label − {BM3D_ROW}" in md
    assert json.loads((out / "results.json").read_text())["table"][-1]["method"] == BM3D_ROW
    assert (out / "restorations.png").is_file()


def test_run_folder_keeps_every_fine_tuned_network(summary):
    """The checkpoints of the three fine-tunings (RCL, scratch, shipped RCL) are in the run folder."""
    from rcl.checkpoint import read_metadata

    out, _ = summary
    for name in ("rcl_pretrained", "rcl_1label", "scratch_1label", "shipped_1label"):
        assert (out / f"{name}.safetensors").is_file(), name
    assert read_metadata(out / "shipped_1label.safetensors")["init"] == "pretrained:gray"
