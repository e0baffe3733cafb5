"""`rcl finetune --labels N`: a number of labelled images, chosen by the same seeded selection as
the equivalent `--label-fraction` (rcl.training.labelled_subset), recorded in the checkpoint."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from rcl.checkpoint import read_metadata
from rcl.cli import app
from rcl.data.io import write_image
from rcl.methods.supervised import fraction_for_label_count
from rcl.training import labelled_subset

runner = CliRunner()
TINY = ["--steps", "1", "--crop-size", "16", "--batch-size", "2", "--width", "4", "--depth", "2", "--no-progress"]


def _folder(folder, n=5, size=20, seed=0, noisy=False):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        img = torch.rand(1, size, size, generator=g)
        write_image(folder / f"img{i}.png", (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1)
                    if noisy else img)
    return folder


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("labels") / "clean")


def _finetune(data, out, *extra):
    return runner.invoke(app, ["finetune", str(data), "-o", str(out), *TINY, *extra])


def _one_error_line(res, *words):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_labels_1_trains_on_one_image_as_the_equivalent_fraction(five, tmp_path):
    by_count, by_frac = tmp_path / "count.safetensors", tmp_path / "frac.safetensors"
    res = _finetune(five, by_count, "--labels", "1", "--seed", "3")
    assert res.exit_code == 0, res.output
    assert "1 labelled image(s)" in res.output
    res = _finetune(five, by_frac, "--label-fraction", "0.2", "--seed", "3")
    assert res.exit_code == 0, res.output
    mc, mf = read_metadata(by_count), read_metadata(by_frac)
    assert mc["label_count"] == 1 and len(mc["labelled_images"]) == 1
    names = sorted(p.name for p in five.iterdir())
    expected = [names[i] for i in labelled_subset(5, 0.2, 3)]
    assert mc["labelled_images"] == mf["labelled_images"] == expected
    assert mf["label_count"] == 1
    assert mc["training"]["label_fraction"] == pytest.approx(0.2)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 29, 400])
def test_every_count_selects_exactly_that_many_and_nests(n):
    """The fraction of a count gives the count back through the one selection, for every count,
    and the subsets of one seed are nested (a count's subset contains every smaller one)."""
    prev: set[int] = set()
    for k in range(1, n + 1):
        idx = labelled_subset(n, fraction_for_label_count(k, n), seed=1)
        assert len(idx) == k and prev <= set(idx)
        prev = set(idx)


@pytest.mark.parametrize("bad", [0, -1, 6, True, 2.0])
def test_fraction_for_label_count_refuses_out_of_range(bad):
    with pytest.raises(ValueError, match="1 to 5"):
        fraction_for_label_count(bad, 5)


@pytest.mark.parametrize("n", ["0", "6", "-2"])
def test_bad_counts_exit_2_naming_the_folder_and_the_count(five, tmp_path, n):
    out = tmp_path / "ft.safetensors"
    res = _finetune(five, out, "--labels", n)
    _one_error_line(res, f"--labels {n}", str(five), "5 image(s)", "1 to 5")
    assert not out.exists()


def test_labels_and_label_fraction_are_refused_together(five, tmp_path):
    out = tmp_path / "ft.safetensors"
    res = _finetune(five, out, "--labels", "2", "--label-fraction", "0.5")
    _one_error_line(res, "--labels 2", "--label-fraction 0.5", "exclude each other")
    assert not out.exists()


def test_labels_with_real_pairs_count_the_pairs(tmp_path):
    clean = _folder(tmp_path / "clean", n=4)
    noisy = _folder(tmp_path / "noisy", n=4, noisy=True)
    out = tmp_path / "ft.safetensors"
    res = _finetune(clean, out, "--noisy", str(noisy), "--labels", "2")
    assert res.exit_code == 0, res.output
    meta = read_metadata(out)
    names = sorted(p.name for p in clean.iterdir())
    assert meta["label_count"] == 2 and meta["labelled_images"] == [names[i] for i in labelled_subset(4, 0.5, 0)]
    bad = tmp_path / "bad.safetensors"
    res = _finetune(clean, bad, "--noisy", str(noisy), "--labels", "5")
    _one_error_line(res, "--labels 5", str(noisy), "4 noisy/clean pair(s)", "1 to 4")
    assert not bad.exists()


def test_val_every_holds_out_labels_and_records_the_best_step(tmp_path):
    data = _folder(tmp_path / "twelve", n=12)
    out = tmp_path / "val.safetensors"
    res = runner.invoke(app, ["finetune", str(data), "-o", str(out), "--steps", "6", "--crop-size", "16",
                              "--batch-size", "2", "--width", "4", "--depth", "2", "--no-progress",
                              "--labels", "10", "--val-every", "3", "--seed", "2"])
    assert res.exit_code == 0, res.output
    meta = read_metadata(out)
    assert meta["label_count"] == 10 and len(meta["labelled_images"]) == 9
    assert len(meta["validation_images"]) == 1 and meta["validation_images"][0] not in meta["labelled_images"]
    assert meta["best_step"] in (3, 6) and meta["training"]["val_every"] == 3
    assert "1 held out for validation" in res.output


def test_val_every_below_the_minimum_labels_trains_on_every_label(five, tmp_path):
    out = tmp_path / "few.safetensors"
    res = _finetune(five, out, "--labels", "5", "--val-every", "1")
    assert res.exit_code == 0, res.output
    meta = read_metadata(out)
    assert meta["label_count"] == 5 and meta["validation_images"] == [] and meta["best_step"] is None


def test_negative_val_every_is_one_error_line(five, tmp_path):
    res = _finetune(five, tmp_path / "x.safetensors", "--val-every", "-2")
    assert res.exit_code == 2 and "--val-every" in res.output and not (tmp_path / "x.safetensors").exists()
