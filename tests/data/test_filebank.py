"""File-backed collections (rcl.data.filebank): headers, crops, identical training, corrupt files,
the choice of mode."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rcl.cli.common import load_training_images
from rcl.data.datasets import ImageBank, ImageSet, add_noise_per_image, as_source, load_image_set
from rcl.data.filebank import FileBank, FileImageSet, dataset_budget, open_collection, read_header
from rcl.data.io import ImageReadError, read_image, write_image
from rcl.data.noise import GaussianNoise, PoissonGaussianNoise
from rcl.models import ModelConfig
from rcl.tasks import DenoiseTask, JDDTask
from rcl.training import Engine, fit

TINY = ModelConfig(width=4, depth=1)


def _img(c, h, w, seed):
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed))


def _folder(path, n=4, c=1, seed=0, sizes=None):
    """n PNGs of distinct sizes (8- and 16-bit alternately)."""
    path.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        h, w = sizes[k] if sizes else (30 + 3 * k, 41 - 2 * k)
        write_image(path / f"im{k}.png", _img(c, h, w, seed + k), 8 if k % 2 == 0 else 16)
    return path


# ---------------------------------------------------------------- headers

@pytest.mark.parametrize("suffix,depth", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".tif", 32),
                                          (".jpg", 8), (".bmp", 8), (".webp", 8)])
@pytest.mark.parametrize("channels", [1, 3])
def test_header_sizes_equal_decoded(tmp_path, suffix, depth, channels):
    p = write_image(tmp_path / f"x{suffix}", _img(channels, 29, 37, channels), depth)
    img, _ = read_image(p)
    assert read_header(p) == (29, 37, img.shape[0])
    assert img.shape[0] == (3 if suffix == ".webp" else channels)  # WebP has no grey: read back as RGB


def test_header_of_alpha_and_palette_images(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (21, 26, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., :2].copy(), "LA").save(tmp_path / "b.png")
    grey = Image.fromarray(rgba[..., 0].copy(), "L").convert("P")  # a palette of greys: read as 1 channel
    grey.save(tmp_path / "c.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alpha dropped
        assert read_header(tmp_path / "a.png") == (21, 26, 3)
        assert read_header(tmp_path / "b.png") == (21, 26, 1)
        assert read_header(tmp_path / "c.png") is None  # palette: decoded once at open
        files = FileImageSet.open(tmp_path, channels=3)
        assert files.sizes() == load_image_set(tmp_path, channels=3).sizes()
    assert FileImageSet.open(tmp_path / "c.png").channels == 1


def test_header_of_16bit_grey_alpha_png_and_palette_tiff(tmp_path):
    """Pillow opens a 16-bit grey + alpha PNG in mode RGBA: the header's channel count comes from
    the PNG's own colour type (1 channel read), not from Pillow's mode. A palette TIFF is decoded."""
    import png
    import tifffile

    rng = np.random.default_rng(3)
    la = rng.integers(0, 65536, (21, 26, 2), dtype=np.uint16)
    with open(tmp_path / "la16.png", "wb") as fh:
        png.Writer(26, 21, greyscale=True, alpha=True, bitdepth=16).write(fh, la.reshape(21, -1))
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        img, _ = read_image(tmp_path / "la16.png")
    assert read_header(tmp_path / "la16.png") == (21, 26, img.shape[0]) == (21, 26, 1)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0, 1] = 65535
    tifffile.imwrite(tmp_path / "pal.tif", rng.integers(0, 2, (21, 26), dtype=np.uint8), photometric="palette",
                     colormap=cmap)
    assert read_header(tmp_path / "pal.tif") is None  # its channels depend on its colours
    # a folder of 16-bit grey + alpha PNGs and an 8-bit grey PNG is one channel throughout
    write_image(tmp_path / "z.png", _img(1, 21, 26, 0))
    (tmp_path / "pal.tif").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert FileImageSet.open(tmp_path).channels == 1 == load_image_set(tmp_path).channels


def test_open_decoding_a_header_less_file_does_not_warn(tmp_path):
    """A palette PNG with transparency is decoded once at open for its size and channels; its
    'alpha channel dropped' warning waits until its pixels are decoded for use (no warning before
    an error about another file, none twice)."""
    rgb = np.random.default_rng(4).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "a.png", transparency=0)
    write_image(tmp_path / "b.png", _img(1, 30, 10, 1))  # too small for the crop
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ImageReadError, match=r"b\.png: image is 10×30, smaller than"):
            FileImageSet.open(tmp_path, channels=3, min_size=16)
        FileImageSet.open(tmp_path, channels=3, min_size=8)
    assert not seen


def test_channel_mismatch_names_every_odd_file(tmp_path):
    """A 2–2 tie takes the first file's count as the folder's, and the message lists every file of
    the other count (fixing only the first would give a second error)."""
    for name, c in (("a.png", 1), ("b.png", 3), ("c.png", 1), ("d.png", 3)):
        write_image(tmp_path / name, _img(c, 20, 20, 0))
    for fn in (load_image_set, FileImageSet.open):
        with pytest.raises(ImageReadError, match=r"b\.png: has 3 channel\(s\) but 2 other image\(s\) of the folder, "
                                                 r"e\.g\. a\.png, have 1 \(2 file\(s\) differ from them: b\.png, d\.png\)"):
            fn(tmp_path)


def test_open_reads_no_pixels_and_matches_the_memory_set(tmp_path, monkeypatch):
    d = _folder(tmp_path / "d", n=3, c=3)
    import rcl.data.filebank as fb

    monkeypatch.setattr(fb, "read_image", lambda p: pytest.fail(f"decoded {p}"))
    files = FileImageSet.open(d, channels=1)
    monkeypatch.undo()
    mem = load_image_set(d, channels=1)
    assert (files.names, files.sizes(), files.channels, len(files), files.min_side()) == \
        (mem.names, mem.sizes(), mem.channels, len(mem), mem.min_side())
    assert files.decoded_bytes() == sum(im.numel() * 4 for im in mem.images)
    noisy = DenoiseTask().pretraining_data(files, GaussianNoise(25 / 255), 7)
    assert isinstance(noisy, FileImageSet) and files.transforms == ()
    ref = add_noise_per_image(mem, GaussianNoise(25 / 255), 7)[0]
    assert all(torch.equal(a, b) for a, b in zip(noisy.to_image_set().images, ref.images))


def test_open_refuses_like_load_image_set(tmp_path):
    d = _folder(tmp_path / "d", n=2)
    write_image(d / "z_rgb.png", _img(3, 40, 40, 5))
    for fn in (load_image_set, FileImageSet.open):
        with pytest.raises(ImageReadError, match=r"z_rgb\.png: has 3 channel\(s\) but 2 other image\(s\) of the folder, e\.g\. im0\.png, have 1"):
            fn(d)
    with pytest.raises(ImageReadError) as mem:
        load_image_set(d, channels=1, min_size=36)
    with pytest.raises(ImageReadError) as files:
        open_collection(d, channels=1, min_size=36, mode="files")
    assert str(files.value) == str(mem.value) and "im0.png: image is 41×30, smaller than the crop size 36" in str(mem.value)


# ---------------------------------------------------------------- crops

@pytest.mark.parametrize("c", [1, 3])
def test_filebank_crops_equal_imagebank_crops(tmp_path, c):
    d = _folder(tmp_path, n=5, c=c, seed=c)
    files = FileImageSet.open(d).with_noise(GaussianNoise(0.1), 3)
    bank, fbank = ImageBank(files.to_image_set()), as_source(files, "cpu")
    assert isinstance(fbank, FileBank) and fbank.decodes_files and not bank.decodes_files
    assert torch.equal(bank.heights, fbank.heights) and torch.equal(bank.widths, fbank.widths)
    assert fbank.sizes_hw == bank.sizes_hw and fbank.min_side() == bank.min_side()
    g = torch.Generator().manual_seed(c)
    for size in (1, 7, 26):
        idx = torch.randint(0, 5, (40,), generator=g)
        top = (torch.rand(40, generator=g) * (bank.heights[idx] - size + 1)).long()
        left = (torch.rand(40, generator=g) * (bank.widths[idx] - size + 1)).long()
        for code in (torch.randint(0, 8, (40,), generator=g), None):
            a, b = bank.crops(idx, top, left, size, code), fbank.crops(idx, top, left, size, code)
            assert torch.equal(a, b) and a.stride() == b.stride()


# ---------------------------------------------------------------- training: same weights

def _weights_equal(m1, m2):
    return all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


_MEMORY_FITS: dict = {}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("collection"), n=4, seed=11)


@pytest.mark.parametrize("method,cfg", [("rcl", {"steps": 3, "batch_images": 3, "crop_size": 16}),
                                        ("n2v", {"steps": 3, "batch_size": 5, "crop_size": 16})])
@pytest.mark.parametrize("workers", [0, 2])
def test_file_backed_fit_gives_the_same_weights(collection, method, cfg, workers):
    task, noise = DenoiseTask(), GaussianNoise(25 / 255)
    if method not in _MEMORY_FITS:
        mem = task.pretraining_data(load_image_set(collection), noise, 4)
        _MEMORY_FITS[method] = fit(task, method, mem, cfg, TINY, engine=Engine(device="cpu", progress=False))
    ref = _MEMORY_FITS[method]
    files = task.pretraining_data(FileImageSet.open(collection), noise, 4)
    res = fit(task, method, files, cfg, TINY, engine=Engine(device="cpu", workers=workers, progress=False))
    assert _weights_equal(res.model, ref.model)
    assert res.history == ref.history


# ---------------------------------------------------------------- corrupt files

def _truncate(path, keep=120):
    path.write_bytes(path.read_bytes()[:keep])  # the header survives, the pixels do not


@pytest.mark.parametrize("method", ["rcl", "simclr"])
@pytest.mark.parametrize("workers", [0, 1])
def test_contrastive_training_stops_when_fewer_than_two_images_decode(tmp_path, method, workers):
    """RCL and SimCLR need two distinct images (negatives come from other images): when skipping
    corrupt files found during training leaves one, training stops with an error naming the file
    (it trained on a single image, substituted for the other, with exit 0)."""
    d = _folder(tmp_path / "d", n=2)
    _truncate(d / "im1.png")
    files = FileImageSet.open(d)  # the headers are fine
    with pytest.raises(ImageReadError, match=r"im1\.png: cannot be decoded .*at most 1 of the 2 images can be, fewer "
                                             r"than the 2 this training needs"):
        fit(DenoiseTask(), method, files, {"steps": 3, "batch_images": 2, "crop_size": 16}, TINY,
            engine=Engine(device="cpu", progress=False, workers=workers))
    # a method content with one image goes on with the other
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(DenoiseTask(), "n2v", files, {"steps": 2, "batch_size": 2, "crop_size": 16}, TINY,
                  engine=Engine(device="cpu", progress=False))
    assert len(res.history) == 2


def test_corrupt_file_is_reported_once_and_skipped(tmp_path):
    d = _folder(tmp_path / "d", n=3)
    _truncate(d / "im1.png")
    files = FileImageSet.open(d)  # the header is fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(DenoiseTask(), "rcl", files, {"steps": 3, "batch_images": 3, "crop_size": 16}, TINY,
                  engine=Engine(device="cpu", progress=False))
    msgs = [str(w.message) for w in caught if "cannot be decoded" in str(w.message)]
    assert len(res.history) == 3
    assert len(msgs) == 1 and msgs[0].startswith(f"{d / 'im1.png'}: cannot be decoded (") \
        and msgs[0].endswith("; it is skipped")
    # the substitute is the next image, crops clamped to it
    bank = FileBank(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = bank.crops(torch.tensor([1]), torch.tensor([17]), torch.tensor([0]), 16)
    assert torch.equal(x, ImageBank(load_image_set(d / "im2.png")).crops(
        torch.tensor([0]), torch.tensor([min(17, 36 - 16)]), torch.tensor([0]), 16))


def test_every_file_corrupt_raises(tmp_path):
    d = _folder(tmp_path, n=2)
    files = FileImageSet.open(d)
    for p in files.paths:
        _truncate(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageReadError, match="none of the 2 images"):
            FileBank(files).crops(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), 8)


def test_corrupt_file_with_workers_is_reported_once_per_run(tmp_path):
    d = _folder(tmp_path / "d", n=3)
    _truncate(d / "im2.png")
    code = textwrap.dedent(f"""
        import torch
        from rcl.data.filebank import FileImageSet
        from rcl.models import ModelConfig
        from rcl.tasks import DenoiseTask
        from rcl.training import Engine, fit
        torch.set_num_threads(1)
        files = FileImageSet.open({str(d)!r})
        res = fit(DenoiseTask(), "n2v", files, {{"steps": 6, "batch_size": 4, "crop_size": 16}},
                  ModelConfig(width=4, depth=1), engine=Engine(device="cpu", workers=2, progress=False))
        print("steps", len(res.history))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["steps", "6"]
    assert proc.stderr.count("cannot be decoded") == 1 and "im2.png" in proc.stderr


# ---------------------------------------------------------------- choosing the mode

def test_auto_mode_follows_the_budget(tmp_path, monkeypatch):
    d = _folder(tmp_path, n=2)
    size = FileImageSet.open(d).decoded_bytes()
    monkeypatch.delenv("RCL_DATASET_MEMORY", raising=False)
    assert isinstance(open_collection(d), ImageSet)  # default: 1 GiB
    assert isinstance(open_collection(d, budget=size - 1), FileImageSet)
    assert isinstance(open_collection(d, budget=size), ImageSet)
    assert isinstance(open_collection(d, mode="files"), FileImageSet)
    assert isinstance(open_collection(d, mode="memory", budget=1), ImageSet)
    monkeypatch.setenv("RCL_DATASET_MEMORY", "1K")
    assert dataset_budget() == 1024 and isinstance(open_collection(d), FileImageSet)
    monkeypatch.setenv("RCL_DATASET_MEMORY", "lots")
    with pytest.raises(ValueError, match="RCL_DATASET_MEMORY='lots'"):
        open_collection(d)
    with pytest.raises(ValueError, match="dataset mode"):
        open_collection(d, mode="disk")


def test_cli_collection_and_jdd_refusal(tmp_path):
    d = _folder(tmp_path, n=2, c=3)
    images, noise = load_training_images(d, "gaussian:25", None, 16, "files")
    assert isinstance(images, FileImageSet) and noise.describe() == "gaussian σ=25/255"
    assert isinstance(load_training_images(d, "gaussian:25", None, 16)[0], ImageSet)  # memory by default
    with pytest.raises(ValueError, match="dataset mode"):
        load_training_images(d, "gaussian:25", None, 16, "disk")
    for call in (lambda: JDDTask().pretraining_data(images, PoissonGaussianNoise(), 0),
                 lambda: JDDTask().check_pretraining(images, PoissonGaussianNoise(), 8, str(d))):
        with pytest.raises(ValueError, match="file-backed collections are not supported for JDD pre-training; "
                                             "use --dataset memory"):
            call()


def test_pretrain_cli_files_equals_memory(tmp_path):
    """`rcl pretrain --dataset files --workers 1` ends with the weights of `--dataset memory`; bad
    --workers / --dataset values are refused with exit 2."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from rcl.cli import app

    d = _folder(tmp_path / "imgs", n=3, sizes=[(40, 37), (33, 45), (36, 36)])
    common = ["pretrain", str(d), "--noise", "gaussian:25", "--steps", "3", "--batch-images", "2",
              "--crop-size", "16", "--width", "4", "--depth", "1", "--no-progress", "--device", "cpu"]
    out = {}
    for mode, extra in (("memory", []), ("files", ["--workers", "1"])):
        res = CliRunner().invoke(app, common + ["--dataset", mode, "-o", str(tmp_path / f"{mode}.safetensors")] + extra)
        assert res.exit_code == 0, res.output
        out[mode] = load_file(tmp_path / f"{mode}.safetensors")
    assert out["memory"].keys() == out["files"].keys()
    for k in out["memory"]:
        assert torch.equal(out["memory"][k], out["files"][k]), k
    for bad in (["--workers", "-1"], ["--dataset", "disk"]):
        res = CliRunner().invoke(app, common + bad + ["-o", str(tmp_path / "bad.safetensors")])
        assert res.exit_code == 2 and not (tmp_path / "bad.safetensors").exists(), res.output
