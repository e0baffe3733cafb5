"""Image size limit (declared size checked before decoding) and output formats (float TIFF, check_output_format)."""

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from rcl.data import io as rio
from rcl.data.io import (DEFAULT_MAX_PIXELS, ImageInfo, ImageReadError, check_output_format, max_pixels, read_image,
                         write_image)

BIG = 20000  # every bomb declares BIG × BIG px = 400 MP, four times the default limit
LIMIT_PHRASE = "over rcl's limit of"


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv("RCL_MAX_PIXELS", raising=False)


# ---------------------------------------------------------------- crafting files that declare a huge size


def _patch_png_ihdr(path, width, height):
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))  # CRC over chunk type + 13-byte body
    path.write_bytes(bytes(data))


def _png16(path, width=BIG, height=BIG):
    import png

    png.from_array(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000, "L;16").save(str(path))
    _patch_png_ihdr(path, width, height)


def _png8(path, width=BIG, height=BIG):
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(path)
    _patch_png_ihdr(path, width, height)


def _jpeg(path, width=BIG, height=BIG):
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline SOF0: marker, length(2), precision(1), height(2), width(2)
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))


def _bmp(path, width=BIG, height=BIG):
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<ii", data, 18, width, height)  # BITMAPINFOHEADER width, height
    path.write_bytes(bytes(data))


def _tiff(path, width=BIG, height=BIG):
    import tifffile

    tifffile.imwrite(path, np.zeros((2, 2), np.uint16), metadata=None)
    data = bytearray(path.read_bytes())
    bo = {b"II": "<", b"MM": ">"}[bytes(data[:2])]
    (ifd,) = struct.unpack_from(bo + "I", data, 4)
    (n,) = struct.unpack_from(bo + "H", data, ifd)
    for k in range(n):
        entry = ifd + 2 + 12 * k
        tag, typ = struct.unpack_from(bo + "HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into(bo + ("H" if typ == 3 else "I"), data, entry + 8, width if tag == 256 else height)
    path.write_bytes(bytes(data))


def _webp(path, width=BIG, height=BIG):
    """An animated WebP whose VP8X canvas declares the size (its two tiny frames fit inside it)."""
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    data = bytearray(path.read_bytes())
    vp8x = data.index(b"VP8X")
    data[vp8x + 12:vp8x + 15] = (width - 1).to_bytes(3, "little")
    data[vp8x + 15:vp8x + 18] = (height - 1).to_bytes(3, "little")
    path.write_bytes(bytes(data))


BOMBS = {"16-bit PNG": (_png16, ".png"), "8-bit PNG": (_png8, ".png"), "JPEG": (_jpeg, ".jpg"),
         "BMP": (_bmp, ".bmp"), "TIFF": (_tiff, ".tif"), "WebP": (_webp, ".webp")}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_declared_size_bomb_refused_before_decoding(tmp_path, kind):
    make, suffix = BOMBS[kind]
    path = tmp_path / f"bomb_{kind.replace(' ', '_')}{suffix}"
    make(path)
    assert path.stat().st_size < 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning or other noise either
        with pytest.raises(ImageReadError) as exc:
            read_image(path)
    msg = str(exc.value)
    assert path.name in msg
    assert f"declares {BIG}×{BIG} px (400.0 MP), {LIMIT_PHRASE} 100 MP" in msg
    assert "RCL_MAX_PIXELS" in msg


@pytest.mark.parametrize("kind", list(BOMBS))
def test_crafted_header_is_what_the_decoder_sees(tmp_path, kind):
    """The patched files are valid headers: at a small declared size they pass the check (and fail later)."""
    make, suffix = BOMBS[kind]
    path = tmp_path / f"small{suffix}"
    make(path, width=30, height=20)
    try:
        read_image(path)
    except ImageReadError as exc:  # truncated pixel data is fine; the size limit must not be the reason
        assert LIMIT_PHRASE not in str(exc)


@pytest.mark.parametrize("kind", ["16-bit PNG", "TIFF", "BMP"])
def test_declared_zero_size_refused(tmp_path, kind):
    make, suffix = BOMBS[kind]
    path = tmp_path / f"zero{suffix}"
    make(path, width=0, height=7)
    with pytest.raises(ImageReadError, match=path.name):
        read_image(path)


def test_tiff_with_absurd_sample_count_refused_before_decoding(tmp_path):
    import tifffile

    path = tmp_path / "samples.tif"
    tifffile.imwrite(path, np.zeros((2, 2, 7), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(ImageReadError, match=r"samples\.tif: 7 channels"):
        read_image(path)


# ---------------------------------------------------------------- RCL_MAX_PIXELS


def test_max_pixels_default_and_env(monkeypatch):
    assert max_pixels() == DEFAULT_MAX_PIXELS == 100_000_000
    monkeypatch.setenv("RCL_MAX_PIXELS", "400")
    assert max_pixels() == 400
    monkeypatch.setenv("RCL_MAX_PIXELS", " 250000000 ")
    assert max_pixels() == 250_000_000


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_env_limit_applies_to_every_reader(tmp_path, monkeypatch, suffix):
    path = write_image(tmp_path / f"img20{suffix}", torch.rand(1, 20, 20), bit_depth=16 if suffix != ".jpg" else 8)
    monkeypatch.setenv("RCL_MAX_PIXELS", "100")
    with pytest.raises(ImageReadError, match=rf"img20\{suffix}: declares 20×20 px \(0\.0 MP\), over rcl's limit of 0\.0001 MP"):
        read_image(path)
    monkeypatch.setenv("RCL_MAX_PIXELS", "400")  # exactly 20 × 20: allowed
    img, _ = read_image(path)
    assert img.shape == (1, 20, 20)


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "1e9x", "1e9", "12.5"])
def test_bad_env_value_refused_naming_variable(tmp_path, monkeypatch, bad):
    path = write_image(tmp_path / "x.png", torch.rand(1, 4, 4))
    monkeypatch.setenv("RCL_MAX_PIXELS", bad)
    with pytest.raises(ValueError, match="RCL_MAX_PIXELS") as exc:
        max_pixels()
    assert repr(bad) in str(exc.value)
    with pytest.raises(ValueError, match="RCL_MAX_PIXELS"):
        read_image(path)


def test_our_limit_overrides_pillows(tmp_path, monkeypatch):
    """Raising RCL_MAX_PIXELS above Pillow's MAX_IMAGE_PIXELS lets rcl read what Pillow alone refuses."""
    import PIL.Image

    path = write_image(tmp_path / "p.jpg", torch.rand(3, 30, 40))  # 1200 px
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(PIL.Image.DecompressionBombError):  # Pillow alone: over 2 × 100 px
        PIL.Image.open(path).close()
    monkeypatch.setenv("RCL_MAX_PIXELS", "5000")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img, info = read_image(path)
    assert img.shape == (3, 30, 40) and info.bit_depth == 8
    assert PIL.Image.MAX_IMAGE_PIXELS == 100  # Pillow's setting is back as it was
    # Over our limit (and under Pillow's error threshold, over its warning one): our message, no Pillow warning
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setenv("RCL_MAX_PIXELS", "1000")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match=r"p\.jpg: declares 40×30 px .*over rcl's limit of 0\.001 MP"):
            read_image(path)
    assert PIL.Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own setting is back


def test_pillow_setting_restored_after_failed_read(tmp_path):
    import PIL.Image

    before = PIL.Image.MAX_IMAGE_PIXELS
    bad = tmp_path / "bad.webp"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WEBPjunkjunk")
    with pytest.raises(ImageReadError, match="bad.webp"):
        read_image(bad)
    assert PIL.Image.MAX_IMAGE_PIXELS == before


# ---------------------------------------------------------------- float TIFF and output formats


@pytest.mark.parametrize("channels", [1, 3])
def test_float_tiff_round_trip_stays_float(tmp_path, channels):
    import tifffile

    arr = np.random.default_rng(channels).random((17, 23, channels) if channels == 3 else (17, 23)).astype(np.float32)
    arr.flat[:3] = [0.0, 1.0, 1e-8]  # values that a 16-bit quantisation would not keep
    tifffile.imwrite(tmp_path / "in.tif", arr, photometric="rgb" if channels == 3 else "minisblack")
    img, info = read_image(tmp_path / "in.tif")
    assert info.bit_depth == 32 and info.is_float and info.channels == channels
    out = write_image(tmp_path / "out.tif", img, info.bit_depth)
    back = tifffile.imread(out)
    assert back.dtype == np.float32 and back.shape == arr.shape
    np.testing.assert_allclose(back, arr, rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_tiffs_read_as_float32(tmp_path, dtype):
    import tifffile

    arr = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4).astype(dtype)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    img, info = read_image(tmp_path / "f.tif")
    assert img.dtype == torch.float32 and info.bit_depth == 32
    np.testing.assert_allclose(img[0].numpy(), arr.astype(np.float32))


def test_float_write_clamps_without_quantising(tmp_path):
    import tifffile

    img = torch.tensor([[[-0.5, 0.0, 0.123456789, 1.0, 1.7, float("nan")]]])
    back = tifffile.imread(write_image(tmp_path / "c.tiff", img, bit_depth=32))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back[0], np.array([0, 0, 0.123456789, 1, 1, 0], np.float32))


def test_float_output_to_non_tiff_refused(tmp_path):
    with pytest.raises(ValueError, match=r"out\.png.*TIFF"):
        write_image(tmp_path / "out.png", torch.rand(1, 4, 4), bit_depth=32)
    assert list(tmp_path.iterdir()) == []


def test_check_output_format():
    for name in ["a.png", "a.PNG", "a.tif", "a.tiff", "a.jpg", "a.jpeg", "a.bmp", "a.webp"]:
        check_output_format(name, 8)
        check_output_format(name, 16)  # 8-bit-only formats: written as 8-bit with a warning
    check_output_format("a.tif", 32)
    check_output_format("a.TIFF", 32)
    for name in ["x.gif", "x.jp2", "noext"]:
        with pytest.raises(ValueError, match=rf"{name}: .*writable suffixes: \.png, .*\.webp"):
            check_output_format(name, 8)
    for name in ["f.png", "f.jpg", "f.webp"]:
        with pytest.raises(ValueError, match=rf"{name}: .*writable suffixes for it: \.tif, \.tiff"):
            check_output_format(name, 32)
    with pytest.raises(ValueError, match=r"y\.png: bit_depth must be 8, 16 or 32"):
        check_output_format("y.png", 12)


def test_write_image_uses_check_output_format(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rio, "check_output_format", lambda p, d: calls.append((p, d)))
    write_image(tmp_path / "a.png", torch.rand(1, 2, 2))
    assert calls == [(tmp_path / "a.png", 8)]


def test_image_info_backwards_compatible(tmp_path):
    info = ImageInfo(tmp_path / "a.png", 16, 3)
    assert (info.bit_depth, info.channels, info.is_float) == (16, 3, False)
    assert ImageInfo(path=tmp_path, bit_depth=32, channels=1).is_float
