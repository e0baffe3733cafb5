"""The CLI over a generated corpus of hostile inputs: every case ends with exit status 2 and one
line ``error: …`` (no traceback, no usage box), writes nothing, and changes no input.

The corpus covers the families of the hardening audit: declared-size bombs in each image format,
corrupt files, crafted checkpoint metadata, YAML duplicate and type tricks, out-of-range seeds and
bad option values.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rcl.checkpoint import save_checkpoint
from rcl.cli import app
from rcl.data.io import write_image
from rcl.models import ModelConfig, build_model

runner = CliRunner()
BIG = 20000  # declared side of the size bombs: 400 MP, over the default pixel limit


# ---------------------------------------------------------------------------------------------
# crafted files
# ---------------------------------------------------------------------------------------------

def _png_with_size(path: Path, w: int, h: int, bit_depth: int) -> Path:
    """A real small PNG whose IHDR is patched to declare w×h (CRC recomputed)."""
    write_image(path, torch.rand(1, 8, 8), bit_depth=bit_depth)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", w, h)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def _jpeg_with_size(path: Path, w: int, h: int) -> Path:
    write_image(path, torch.rand(3, 16, 16))
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    path.write_bytes(bytes(data))
    return path


def _bmp_with_size(path: Path, w: int, h: int) -> Path:
    write_image(path, torch.rand(3, 4, 4))
    data = bytearray(path.read_bytes())
    data[18:26] = struct.pack("<ii", w, h)
    path.write_bytes(bytes(data))
    return path


def _tiff_with_size(path: Path, w: int, h: int) -> Path:
    import tifffile

    tifffile.imwrite(str(path), shape=(h, w), dtype="uint16")  # declares the size, writes no pixels
    return path


def _tiff_with_patched_tags(path: Path, w: int, h: int) -> Path:
    """A compressed TIFF whose size tags are overwritten: strip counts no longer match."""
    import tifffile

    tifffile.imwrite(str(path), np.zeros((40, 40), np.uint8), compression="zlib")
    with tifffile.TiffFile(str(path), mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(w)
        tif.pages[0].tags["ImageLength"].overwrite(h)
    return path


def _checkpoint_with_meta(path: Path, edit) -> Path:
    """A valid small checkpoint whose JSON metadata is replaced by ``edit(meta) -> str``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    cfg = ModelConfig(width=4, depth=1)
    save_checkpoint(path, build_model(cfg), cfg, stage="finetune")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["rcl"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(path), metadata={"rcl": edit(meta)})
    return path


def _set(key, value):
    def edit(meta):
        meta[key] = value
        return json.dumps(meta)
    return edit


def _set_model(**kw):
    def edit(meta):
        meta["model"].update(kw)
        return json.dumps(meta)
    return edit


def _raw(text_fn):
    return lambda meta: text_fn(json.dumps(meta))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Good data beside which each bad file is placed, and a valid checkpoint."""
    root = tmp_path_factory.mktemp("corpus")
    good = root / "good"
    good.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(good / f"g{i}.png", torch.from_numpy(rng.random((1, 40, 44), dtype=np.float32)))
    rgb = root / "rgb"
    rgb.mkdir()
    for i in range(3):
        write_image(rgb / f"c{i}.png", torch.from_numpy(rng.random((3, 40, 44), dtype=np.float32)))
    cfg = ModelConfig(width=4, depth=1)
    ckpt = save_checkpoint(root / "model.safetensors", build_model(cfg), cfg, stage="finetune")
    return {"root": root, "good": good, "ckpt": ckpt, "rgb": rgb}


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_one_line_error(res, *names):
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output and "╭" not in res.output
    for name in names:
        assert name in lines[0], (name, lines[0])


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------

IMAGE_CASES = {
    "bomb16.png": lambda p: _png_with_size(p, BIG, BIG, 16),
    "bomb8.png": lambda p: _png_with_size(p, BIG, BIG, 8),
    "bomb.jpg": lambda p: _jpeg_with_size(p, BIG, BIG),
    "bomb.bmp": lambda p: _bmp_with_size(p, BIG, BIG),
    "bomb.tif": lambda p: _tiff_with_size(p, BIG, BIG),
    "empty.png": lambda p: p.write_bytes(b""),
    "garbage.jpg": lambda p: p.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all" * 3),
    "truncated.png": lambda p: (write_image(p, torch.rand(1, 40, 40)), p.write_bytes(p.read_bytes()[:60])),
    "nan.tif": lambda p: __import__("tifffile").imwrite(str(p), np.full((40, 40), np.nan, np.float32)),
    "range.tif": lambda p: __import__("tifffile").imwrite(str(p), np.full((40, 40), 3.0, np.float32)),
    "pages.tif": lambda p: __import__("tifffile").imwrite(str(p), np.zeros((3, 40, 40), np.uint8),
                                                          photometric="minisblack"),
    "five.tif": lambda p: __import__("tifffile").imwrite(str(p), np.zeros((40, 40, 5), np.uint8),
                                                         photometric="minisblack", planarconfig="contig"),
    "badtags.tif": lambda p: _tiff_with_patched_tags(p, BIG, BIG),  # tifffile logs; still one line
}


@pytest.mark.parametrize("name", sorted(IMAGE_CASES))
@pytest.mark.parametrize("command", ["pretrain", "restore", "evaluate"])
def test_bad_image_in_every_command(corpus, tmp_path, name, command):
    data = tmp_path / "data"
    data.mkdir()
    for p in corpus["good"].iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    IMAGE_CASES[name](data / name)
    before = _digest(data)
    out = tmp_path / "out"
    if command == "pretrain":
        args = ["pretrain", str(data), "-o", str(out / "m.safetensors"), "--steps", "1", "--crop-size", "16",
                "--no-progress"]
    elif command == "restore":
        args = ["restore", str(corpus["ckpt"]), str(data), "-o", str(out)]
    else:
        args = ["evaluate", str(corpus["ckpt"]), "--data", str(data), "--json", str(out / "s.json")]
    res = runner.invoke(app, args)
    _assert_one_line_error(res, name)
    assert not out.exists() or not any(out.iterdir())
    assert _digest(data) == before


def test_size_bomb_message_is_the_same_for_every_format(tmp_path):
    """One pixel limit, one message, whatever the decoder."""
    from rcl.data.io import ImageReadError, read_image

    msgs = set()
    for name in ("bomb16.png", "bomb8.png", "bomb.jpg", "bomb.bmp", "bomb.tif"):
        IMAGE_CASES[name](tmp_path / name)
        with pytest.raises(ImageReadError) as exc:
            read_image(tmp_path / name)
        msgs.add(str(exc.value).replace(str(tmp_path / name), "FILE"))
    assert len(msgs) == 1, msgs
    assert "RCL_MAX_PIXELS" in msgs.pop()


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------

CHECKPOINT_CASES = {
    "garbage": lambda p: p.write_bytes(b"garbage" * 10),
    "empty": lambda p: p.write_bytes(b""),
    "pickle": lambda p: torch.save({"weight": torch.zeros(2)}, p),
    "truncated": lambda p: (_checkpoint_with_meta(p, json.dumps), p.write_bytes(p.read_bytes()[:-200])),
    "no-rcl-meta": lambda p: __import__("safetensors.torch").torch.save_file({"a": torch.zeros(2)}, str(p)),
    "huge-arch": lambda p: _checkpoint_with_meta(p, _set_model(width=512, depth=8, in_channels=16,
                                                               out_channels=16)),
    "deep-arch": lambda p: _checkpoint_with_meta(p, _set_model(depth=8)),
    "sr-scale-1e6": lambda p: _checkpoint_with_meta(p, lambda m: json.dumps({**m, "task": "sr", "scale": 1000000})),
    "sr-scale-inf": lambda p: _checkpoint_with_meta(p, _raw(lambda t: t[:-1] + ', "task": "sr", "scale": Infinity}')),
    "sr-scale-str": lambda p: _checkpoint_with_meta(p, lambda m: json.dumps({**m, "task": "sr", "scale": "2"})),
    "sr-scale-float": lambda p: _checkpoint_with_meta(p, lambda m: json.dumps({**m, "task": "sr", "scale": 2.5})),
    "nested": lambda p: _checkpoint_with_meta(p, _raw(lambda t: t[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}")),
    "huge-meta": lambda p: _checkpoint_with_meta(p, _set("note", "x" * 5_000_000)),
    "task-unknown": lambda p: _checkpoint_with_meta(p, _set("task", "segment")),
    "task-int": lambda p: _checkpoint_with_meta(p, _set("task", 5)),
    "model-list": lambda p: _checkpoint_with_meta(p, _set("model", [1, 2])),
    "model-missing": lambda p: _checkpoint_with_meta(p, lambda m: json.dumps({k: v for k, v in m.items()
                                                                              if k != "model"})),
    "jdd-pattern": lambda p: _checkpoint_with_meta(p, lambda m: json.dumps({**m, "task": "jdd", "pattern": "XXXX"})),
    "format-future": lambda p: _checkpoint_with_meta(p, _set("format_version", 99)),
    "not-object": lambda p: _checkpoint_with_meta(p, lambda m: "[1, 2, 3]"),
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CASES))
@pytest.mark.parametrize("command", ["restore", "evaluate", "finetune"])
def test_bad_checkpoint_in_every_command(corpus, tmp_path, name, command):
    ckpt = tmp_path / f"{name}.safetensors"
    CHECKPOINT_CASES[name](ckpt)
    before = _digest(tmp_path)
    out = tmp_path / "out"
    if command == "restore":
        args = ["restore", str(ckpt), str(corpus["good"]), "-o", str(out)]
    elif command == "evaluate":
        args = ["evaluate", str(ckpt), "--data", str(corpus["good"])]
    else:
        args = ["finetune", str(corpus["good"]), "--init", str(ckpt), "-o", str(out / "f.safetensors"),
                "--steps", "1", "--crop-size", "16", "--no-progress"]
    res = runner.invoke(app, args)
    _assert_one_line_error(res, ckpt.name)
    assert not out.exists()
    assert _digest(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# options, noise specs, seeds
# ---------------------------------------------------------------------------------------------

OPTION_CASES = {
    "evaluate-seed-float": (["evaluate", "{ckpt}", "--data", "{good}", "--seed", "1e23"], "--seed"),
    "evaluate-seed-big": (["evaluate", "{ckpt}", "--data", "{good}", "--seed", str(2**63)], "--seed"),
    "evaluate-seed-negative": (["evaluate", "{ckpt}", "--data", "{good}", "--seed", "-1"], "--seed"),
    "pretrain-seed-big": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--seed", str(2**64)], "--seed"),
    "finetune-seed-text": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--seed", "one"], "--seed"),
    "steps-text": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--steps", "abc"], "--steps"),
    "steps-zero": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--steps", "0"], "--steps"),
    "lr-nan": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--lr", "nan"], "--lr"),
    "fraction-big": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--label-fraction", "2"],
                     "--label-fraction"),
    "unknown-option": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--stepz", "3"], "--stepz"),
    "missing-argument": (["pretrain"], "data"),
    "unknown-command": (["denoize"], "denoize"),
    "noise-spec": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--noise", "gaussian:abc"], "gaussian:abc"),
    "noise-inf": (["evaluate", "{ckpt}", "--data", "{good}", "--noise", "poisson:inf"], "poisson:inf"),
    "noise-huge": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--noise", "gaussian:1e308"],
                   "gaussian:1e308"),
    "noise-huge-range": (["evaluate", "{ckpt}", "--data", "{good}", "--noise", "gaussian:5-1e300"],
                         "gaussian:5-1e300"),
    "tile-small": (["restore", "{ckpt}", "{good}", "-o", "{out}", "--tile", "5"], "--tile"),
    "threads-zero": (["benchmark", "smoke", "-o", "{out}", "--threads", "0"], "--threads"),
    "channels": (["evaluate", "{ckpt}", "--data", "{good}", "--channels", "2"], "--channels"),
    "suffix": (["restore", "{ckpt}", "{good}", "-o", "{out}", "--suffix", "../x"], "--suffix"),
    "gif-input": (["restore", "{ckpt}", "{gif}", "-o", "{out}"], "x.gif"),
    "out-suffix": (["pretrain", "{good}", "-o", "{out}/m.pt"], "m.pt"),
    "overwrite-and-skip": (["restore", "{ckpt}", "{good}", "-o", "{out}", "--overwrite", "--skip-existing"],
                           "--skip-existing"),
    # empty paths are refused, not read as "." (the empty --suffix means no suffix and stays allowed)
    "empty-restore-checkpoint": (["restore", "", "{good}", "-o", "{out}"], "checkpoint"),
    "empty-restore-input": (["restore", "{ckpt}", "", "-o", "{out}"], "inputs"),
    "empty-restore-output": (["restore", "{ckpt}", "{good}", "-o", ""], "--output"),
    "empty-denoise-output": (["denoise", "{ckpt}", "{good}", "--output="], "--output"),
    "empty-pretrain-data": (["pretrain", "", "-o", "{out}/m.safetensors"], "data"),
    "empty-pretrain-out": (["pretrain", "{good}", "--out", ""], "--out"),
    "empty-pretrain-log": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--log", ""], "--log"),
    "empty-finetune-init": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--init", ""], "--init"),
    # an output under /proc passes os.access for root: refused before any work, not after it
    "evaluate-json-proc": (["evaluate", "{ckpt}", "--data", "{good}", "--json", "/proc/rcl-none/x.json"], "--json"),
    # the architecture options apply from scratch; with --init they were silently ignored
    "finetune-init-width": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--init", "{ckpt}", "--width", "8",
                             "--crop-size", "16"],
                            "--width 8"),
    "finetune-init-arch": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--init", "{ckpt}", "--arch",
                            "dncnn", "--crop-size", "16"], "--arch dncnn"),
    "empty-finetune-noisy": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--noisy", ""], "--noisy"),
    "empty-finetune-log": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--log="], "--log"),
    "empty-evaluate-checkpoint": (["evaluate", "{ckpt}", "", "--data", "{good}"], "checkpoints"),
    "empty-evaluate-data": (["evaluate", "{ckpt}", "--data", ""], "--data"),
    "empty-evaluate-json": (["evaluate", "{ckpt}", "--data", "{good}", "--json", ""], "--json"),
    "empty-demo-out": (["demo", "--quick", "-o", ""], "--out"),
    "empty-benchmark-out": (["benchmark", "smoke", "-o", ""], "--out"),
    "empty-benchmark-data-root": (["benchmark", "smoke", "-o", "{out}", "--data-root", ""], "--data-root"),
    "empty-benchmark-config": (["benchmark", "", "-o", "{out}"], "CONFIG"),
    # a task option given for a task that does not take it is refused, valid value or not
    "finetune-pattern-denoise": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--pattern", "xxxx"],
                                 "--pattern applies to --task jdd only"),
    "finetune-valid-pattern-denoise": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--pattern", "RGGB"],
                                       "--pattern applies to --task jdd only"),
    "finetune-scale-denoise": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--scale", "5"],
                               "--scale applies to --task sr only"),
    "finetune-jdd-scale": (["finetune", "{rgb}", "-o", "{out}/m.safetensors", "--task", "jdd", "--scale", "4"],
                           "--scale applies to --task sr only"),
    "finetune-sr-pattern": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--task", "sr", "--pattern", "bggr"],
                            "--pattern applies to --task jdd only"),
    "pretrain-pattern-denoise": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--pattern", "xxxx"],
                                 "--pattern applies to --task jdd only"),
    # a pre-training the task's fine-tuning could not use is refused before training
    "pretrain-jdd-dncnn": (["pretrain", "{rgb}", "-o", "{out}/m.safetensors", "--task", "jdd", "--arch", "dncnn",
                            "--steps", "2", "--width", "4", "--depth", "2", "--crop-size", "16"], "U-Net body"),
    "pretrain-sr-dncnn": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--task", "sr", "--arch", "dncnn",
                           "--steps", "2", "--width", "4", "--depth", "2", "--crop-size", "16"], "--arch dncnn"),
    "pretrain-dncnn-depth-1": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--arch", "dncnn", "--depth", "1",
                                "--crop-size", "16"],
                               "--depth: a DnCNN has at least 2 conv layers"),
    # a folder of noisy images that is the folder of clean ones
    "finetune-noisy-is-data": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--noisy", "{good}"],
                               "is DATA's own folder"),
    "evaluate-noisy-is-clean": (["evaluate", "{ckpt}", "--noisy", "{good}", "--clean", "{good}"],
                                "are the same folder"),
    "pretrain-warmup-nan": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--contrastive-warmup", "nan"],
                            "--contrastive-warmup: Input should be a finite number"),
    "pretrain-warmup-big": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--contrastive-warmup", "1.5"],
                            "--contrastive-warmup"),
    # an output named like an image inside an input folder would be read as an input later
    "evaluate-json-image-in-input": (["evaluate", "{ckpt}", "--data", "{good}", "--json", "{good}/x.png"],
                                     "would be read as an input image"),
    "finetune-log-image-in-input": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--log", "{good}/x.png"],
                                    "--log has an image suffix"),
    # a pre-training whose loss is identically 0, or whose logits overflow
    "pretrain-zero-loss": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--consistency", "none",
                            "--contrastive-weight", "0"], "the loss would be 0"),
    "pretrain-temperature-tiny": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--temperature", "1e-300"],
                                  "--temperature"),
    "pretrain-consistency-weight-huge": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--consistency-weight",
                                          "1e300"], "--consistency-weight: Input should be less than or equal to"),
    "pretrain-contrastive-weight-huge": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--contrastive-weight",
                                          "1e7"], "--contrastive-weight: Input should be less than or equal to"),
    "pretrain-weight-underflows": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--contrastive-weight", "0",
                                    "--consistency-weight", "1e-50"], "--consistency-weight: 1e-50 is 0 in float32"),
    "pretrain-temperature-huge": (["pretrain", "{good}", "-o", "{out}/m.safetensors", "--temperature", "1e30"],
                                  "--temperature: Input should be less than or equal to 1000"),
    # real pairs exclude a synthetic noise model
    "finetune-noisy-and-noise": (["finetune", "{good}", "-o", "{out}/m.safetensors", "--noisy", "{good}",
                                  "--noise", "gaussian:25"], "--noise gaussian:25 and --noisy exclude each other"),
}


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
def test_bad_options(corpus, tmp_path, name):
    from PIL import Image

    gif = tmp_path / "x.gif"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(gif)
    args, culprit = OPTION_CASES[name]
    out = tmp_path / "out"
    subs = {"{ckpt}": str(corpus["ckpt"]), "{good}": str(corpus["good"]), "{out}": str(out), "{gif}": str(gif),
            "{rgb}": str(corpus["rgb"])}
    args = [a if a not in subs else subs[a] for a in args]
    args = [a.replace("{out}", str(out)).replace("{good}", str(corpus["good"])) for a in args]
    before = _digest(corpus["root"])
    res = runner.invoke(app, args)
    _assert_one_line_error(res, culprit)
    assert not out.exists()
    assert _digest(corpus["root"]) == before


def test_save_every_state_path_that_is_a_folder_is_refused_before_training(corpus, tmp_path):
    """--save-every writes OUT's state beside it; a folder of that name failed only after training."""
    out = tmp_path / "m.safetensors"
    (tmp_path / "m.state.safetensors").mkdir()
    res = runner.invoke(app, ["finetune", str(corpus["good"]), "-o", str(out), "--save-every", "1", "--steps", "2",
                              "--crop-size", "16", "--width", "4", "--depth", "1", "--no-progress"])
    _assert_one_line_error(res, "m.state.safetensors", "folder")
    assert not out.exists() and "device" not in res.output  # refused before the run's announcement


def test_every_path_parameter_refuses_the_empty_string():
    """One definition (:func:`rcl.cli.common.nonempty_path`) serves every path argument and option."""
    import typing
    from pathlib import Path as P

    from rcl.cli import app
    from rcl.cli.common import checkpoint_path, nonempty_path

    checked = 0
    for info in app.registered_commands:
        hints = typing.get_type_hints(info.callback, include_extras=True)
        for name, hint in hints.items():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            base, *extras = typing.get_args(hint)
            if P in {base, *typing.get_args(base), *(a for b in typing.get_args(base) for a in typing.get_args(b))}:
                # checkpoint_path: nonempty_path, or a shipped network's name (pretrained:gray)
                assert any(getattr(e, "parser", None) in (nonempty_path, checkpoint_path) for e in extras), \
                    (info.name, name)
                checked += 1
    assert checked >= 18


def test_checkpoint_options_refuse_the_empty_string_too():
    import typer

    from rcl.cli.common import checkpoint_path

    with pytest.raises(typer.BadParameter, match="empty path"):
        checkpoint_path("")


def test_empty_suffix_still_means_no_suffix(corpus, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["restore", str(corpus["ckpt"]), str(corpus["good"]), "-o", str(out), "--suffix", ""])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in corpus["good"].iterdir())


# ---------------------------------------------------------------------------------------------
# benchmark configs
# ---------------------------------------------------------------------------------------------

YAML_CASES = {
    "duplicate-top": ("name: a\nname: b\n", "name"),
    "duplicate-nested": ("name: a\nfinetune: {steps: 3, steps: 4}\n", "steps"),
    "steps-bool": ("name: a\nfinetune: {steps: true}\n", "steps"),
    "steps-string": ("name: a\nfinetune: {steps: '800'}\n", "steps"),
    "steps-float": ("name: a\nfinetune: {steps: 1.5}\n", "steps"),
    "seed-1e23": ("name: a\nseeds: [1e23]\n", "seeds"),
    "seed-negative": ("name: a\nseeds: [-1]\n", "seeds"),
    "seed-2^64": ("name: a\nseeds: [18446744073709551616]\n", "seeds"),
    "noise-seed": ("name: a\nnoise_seed: 1e23\n", "noise_seed"),
    "lr-string": ("name: a\nfinetune: {lr: '1e-3'}\n", "lr"),
    "not-mapping": ("- 1\n- 2\n", "mapping"),
    "bad-yaml": ("name: [unclosed\n", "YAML"),
    "unknown-field": ("name: a\nstepz: 3\n", "stepz"),
    "control-char": ("name: a\x07b\n", "not valid YAML"),
    "nul-char": ("name: 'a\x00b'\n", "not valid YAML"),
}


@pytest.mark.parametrize("name", sorted(YAML_CASES))
def test_bad_benchmark_configs(tmp_path, name):
    text, culprit = YAML_CASES[name]
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "test").mkdir()
    base = "data: {train: train, test: [{name: T, path: test}]}\n"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text if name in ("not-mapping", "bad-yaml") else base + text)
    res = runner.invoke(app, ["benchmark", str(cfg), "--data-root", str(tmp_path / "data"),
                              "-o", str(tmp_path / "run"), "--no-progress"])
    _assert_one_line_error(res, culprit)
    assert not (tmp_path / "run").exists()


ENV_CASES = {
    "max-pixels-word": ("RCL_MAX_PIXELS", "lots"),
    "max-pixels-zero": ("RCL_MAX_PIXELS", "0"),
    "max-pixels-5000-digits": ("RCL_MAX_PIXELS", "9" * 5000),
    "memory-word": ("RCL_INFERENCE_MEMORY", "plenty"),
    "memory-negative": ("RCL_INFERENCE_MEMORY", "-1G"),
    "memory-400-digits": ("RCL_INFERENCE_MEMORY", "1" * 400),
}


@pytest.mark.parametrize("name", sorted(ENV_CASES))
def test_bad_environment_values(corpus, tmp_path, monkeypatch, name):
    var, value = ENV_CASES[name]
    monkeypatch.setenv(var, value)
    out = tmp_path / "out"
    res = runner.invoke(app, ["restore", str(corpus["ckpt"]), str(corpus["good"]), "-o", str(out)])
    _assert_one_line_error(res, var)
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------------------------------
# evaluate: the task's one minimum test-image size; a fine-tuned JDD init of another pattern
# ---------------------------------------------------------------------------------------------

def _task_checkpoint(path: Path, task, channels: int) -> Path:
    body = ModelConfig(width=4, depth=1, in_channels=channels, out_channels=channels)
    model = task.build_model(body)
    return save_checkpoint(path, model, body, stage="finetune", **task.checkpoint_metadata(model))


def test_evaluate_uses_the_task_min_test_size(tmp_path):
    from rcl.tasks import JDDTask, SRTask

    jdd = _task_checkpoint(tmp_path / "jdd.safetensors", JDDTask(), 4)
    thin = tmp_path / "thin"
    write_image(thin / "a.png", torch.rand(3, 11, 30))  # 30×11: passes 11 px, not JDD's 12
    res = runner.invoke(app, ["evaluate", str(jdd), "--data", str(thin)])
    _assert_one_line_error(res, "a.png", "12 px")
    sr8 = _task_checkpoint(tmp_path / "sr8.safetensors", SRTask(8), 1)
    ok = tmp_path / "ok"
    write_image(ok / "b.png", torch.rand(1, 48, 48))  # the task accepts 34 px and more
    res = runner.invoke(app, ["evaluate", str(sr8), "--data", str(ok)])
    assert res.exit_code == 0, res.output
    write_image(ok / "c.png", torch.rand(1, 30, 48))
    res = runner.invoke(app, ["evaluate", str(sr8), "--data", str(ok)])
    _assert_one_line_error(res, "c.png", "34 px")


def test_jdd_init_of_another_pattern_names_a_checkpoint_not_a_pretraining(corpus, tmp_path):
    from rcl.tasks import JDDTask

    ft = _task_checkpoint(tmp_path / "ft_jdd.safetensors", JDDTask("RGGB"), 4)
    res = runner.invoke(app, ["finetune", str(corpus["rgb"]), "-o", str(tmp_path / "o.safetensors"), "--task", "jdd",
                              "--pattern", "bggr", "--init", str(ft), "--steps", "2", "--crop-size", "16"])
    _assert_one_line_error(res, "a JDD RGGB checkpoint, not --pattern BGGR")
    assert not (tmp_path / "o.safetensors").exists()


def test_a_refused_restore_prints_only_its_error(corpus, tmp_path):
    """An RGBA input refused by a grayscale model: no 'alpha dropped' warning before the error."""
    from PIL import Image

    src = tmp_path / "rgba"
    src.mkdir()
    Image.fromarray(np.zeros((40, 40, 4), np.uint8)).save(src / "a.png")
    import subprocess
    import sys

    # a real process: pytest would capture the warning before it reached the output
    res = subprocess.run([sys.executable, "-m", "rcl", "restore", str(corpus["ckpt"]), str(src), "-o",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "a.png" in lines[0], res.stderr
    assert not (tmp_path / "o").exists()


def test_a_non_image_file_is_named_as_the_input(corpus, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    res = runner.invoke(app, ["restore", str(corpus["ckpt"]), str(notes), "-o", str(tmp_path / "o")])
    _assert_one_line_error(res, str(notes), "not an image file")
    assert not (tmp_path / "o").exists()


def test_network_with_overflowing_output_writes_nothing(tmp_path):
    """Finite weights so large that the output overflows to inf/NaN: restore writes no (black)
    image and evaluate prints no score of it; both name the checkpoint, exit 2."""
    cfg = ModelConfig(width=8, depth=1)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e38)
    ckpt = tmp_path / "huge.safetensors"
    save_checkpoint(ckpt, model, cfg)
    data = tmp_path / "g"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(data / f"{i}.png", torch.from_numpy(rng.random((1, 24, 24), dtype=np.float32)), 8)
    out = tmp_path / "out"
    res = runner.invoke(app, ["restore", str(ckpt), str(data / "0.png"), "-o", str(out), "--threads", "1"])
    assert res.exit_code == 2, res.output
    assert "NaN or infinite" in res.output and "huge.safetensors" in res.output
    assert not (out / "0.png").exists()
    res = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(data), "--noise", "gaussian:25", "--threads", "1"])
    assert res.exit_code == 2, res.output
    assert "NaN or infinite" in res.output
    # fine-tuning from it stops at step 1, before any update: the starting weights, not the learning rate
    res = runner.invoke(app, ["finetune", str(data), "--init", str(ckpt), "-o", str(tmp_path / "ft.safetensors"),
                              "--steps", "2", "--crop-size", "16", "--threads", "1", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "step 1, before any update" in res.output and "--init" in res.output, res.output
    assert not (tmp_path / "ft.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# output paths that are special files or links (adversarial pass)
# ---------------------------------------------------------------------------------------------

def _special_output(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """An output path of ``kind`` in tmp_path, and the text the refusal must contain."""
    import os

    if kind == "fifo":  # with --overwrite it was replaced by a regular file (as /dev/null would be)
        os.mkfifo(tmp_path / "fifo.json")
        return tmp_path / "fifo.json", "not a regular file"
    if kind == "loop":  # Path.resolve() raised RuntimeError: a traceback, exit 1
        os.symlink(tmp_path / "loop2", tmp_path / "loop1")
        os.symlink(tmp_path / "loop1", tmp_path / "loop2")
        return tmp_path / "loop1" / "x.json", "loop"
    if kind == "dangling-parent":  # passed the checks and failed with EEXIST after the work
        os.symlink(tmp_path / "nowhere" / "zz", tmp_path / "dl")
        return tmp_path / "dl" / "x.json", "broken symbolic link"
    if kind == "dangling-output":  # replaced without --overwrite (exists() follows the link)
        os.symlink(tmp_path / "nowhere" / "zz.json", tmp_path / "dang.json")
        return tmp_path / "dang.json", "broken symbolic link"
    if kind == "loop-output":  # was called "a broken symbolic link"
        os.symlink(tmp_path / "lo2.json", tmp_path / "lo1.json")
        os.symlink(tmp_path / "lo1.json", tmp_path / "lo2.json")
        return tmp_path / "lo1.json", "is a symbolic-link loop"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["fifo", "loop", "dangling-parent", "dangling-output", "loop-output"])
def test_special_output_paths_are_refused_before_any_work(corpus, tmp_path, kind):
    import os

    path, why = _special_output(kind, tmp_path)
    before = sorted((p.name, p.is_symlink()) for p in tmp_path.iterdir())
    res = runner.invoke(app, ["evaluate", str(corpus["ckpt"]), "--data", str(corpus["good"]), "--json", str(path),
                              "--overwrite"])
    _assert_one_line_error(res, path.name, why)
    assert "PSNR" not in res.output  # refused before the table
    assert sorted((p.name, p.is_symlink()) for p in tmp_path.iterdir()) == before  # nothing made or replaced
    if kind == "fifo":
        import stat

        assert stat.S_ISFIFO(os.lstat(path).st_mode)


def test_benchmark_output_that_is_a_broken_link_is_refused(tmp_path):
    import os

    os.symlink(tmp_path / "nowhere" / "q", tmp_path / "rdl")
    res = runner.invoke(app, ["benchmark", "smoke", "--data-root", str(tmp_path), "-o", str(tmp_path / "rdl")])
    _assert_one_line_error(res, "rdl", "broken symbolic link")
    assert not (tmp_path / "nowhere").exists()
    os.symlink(tmp_path / "rl2", tmp_path / "rl1")
    os.symlink(tmp_path / "rl1", tmp_path / "rl2")
    res = runner.invoke(app, ["benchmark", "smoke", "--data-root", str(tmp_path), "-o", str(tmp_path / "rl1")])
    _assert_one_line_error(res, "rl1", "symbolic-link loop")
    # under a broken link the run folder was created at the link's target and the benchmark ran
    res = runner.invoke(app, ["benchmark", "smoke", "--data-root", str(tmp_path), "-o", str(tmp_path / "rdl" / "x")])
    _assert_one_line_error(res, "rdl", "broken symbolic link")
    assert not (tmp_path / "nowhere").exists()
    # under a loop: the raw "Symlink loop from …" message became one naming the loop
    res = runner.invoke(app, ["benchmark", "smoke", "--data-root", str(tmp_path), "-o", str(tmp_path / "rl1" / "x")])
    _assert_one_line_error(res, "rl1", "symbolic-link loop")
    # demo -o: a broken link was accepted and the demo started training
    res = runner.invoke(app, ["demo", "--quick", "-o", str(tmp_path / "rdl")])
    _assert_one_line_error(res, "rdl", "broken symbolic link")
    assert not (tmp_path / "nowhere").exists()


def test_a_log_name_at_the_file_system_limit_trains(corpus, tmp_path):
    """The log is written as LOG.XXXXXXXX.part beside it; a log name near the limit used to fail
    with ENAMETOOLONG after the announcement: now its temporary file gets a short name."""
    from rcl.cli.common import name_max

    log = tmp_path / ("L" * (name_max(tmp_path) - 4) + ".csv")
    out = tmp_path / "m.safetensors"
    res = runner.invoke(app, ["finetune", str(corpus["good"]), "-o", str(out), "--log", str(log), "--steps", "2",
                              "--crop-size", "16", "--width", "4", "--depth", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert out.exists() and len(log.read_text().splitlines()) == 3 and not list(tmp_path.glob("*.part"))


def test_evaluate_takes_a_file_name_that_is_not_utf8(tmp_path):
    """The per-image noise seed hashed ``name.encode()``, which fails on a surrogate-escaped name."""
    import os

    data = tmp_path / "bytes"
    data.mkdir()
    rng = np.random.default_rng(0)
    write_image(data / "ok.png", torch.from_numpy(rng.random((1, 24, 24), dtype=np.float32)))
    odd = os.fsdecode(b"\xff\xfe.png")
    write_image(data / odd, torch.from_numpy(rng.random((1, 24, 24), dtype=np.float32)))
    cfg = ModelConfig(width=4, depth=1)
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, build_model(cfg), cfg)
    js = tmp_path / "s.json"
    res = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(data), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert len(json.loads(js.read_text())["results"]["m.safetensors"]["images"]) == 2


def test_a_file_name_with_a_line_break_keeps_the_error_on_one_line(tmp_path):
    data = tmp_path / "nl"
    data.mkdir()
    write_image(data / "ok.png", torch.rand(1, 40, 40))
    (data / "bad\nname.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    res = runner.invoke(app, ["pretrain", str(data), "-o", str(tmp_path / "m.safetensors"), "--steps", "1",
                              "--crop-size", "16", "--no-progress"])
    _assert_one_line_error(res, "bad\\nname.png")
