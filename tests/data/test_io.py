"""Image I/O: round trips per format and bit depth, alpha handling, errors, atomic writes."""

import gc
import os
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rcl.data.io import (ImageReadError, atomic_write_bytes, image_paths, list_images, quantize, read_image,
                         write_image)

H, W = 31, 45  # odd sizes on purpose


def _rand8(c, seed=0, h=H, w=W):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, h, w), generator=g).float() / 255


def _rand16(c, seed=0, h=H, w=W):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 65536, (c, h, w), generator=g).float() / 65535


def _smooth(c, h=H, w=W):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = [(0.2 + 0.6 * (yy * (k + 1) / c + xx * (c - k) / c) / 2) for k in range(c)]
    return torch.stack(chans)


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or ".part" in p.name]


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_8bit_exact(tmp_path, suffix, channels):
    img = _rand8(channels, seed=channels)
    path = write_image(tmp_path / f"img{suffix}", img)
    out, info = read_image(path)
    assert out.dtype == torch.float32
    assert out.shape == (channels, H, W)
    assert info.bit_depth == 8 and info.channels == channels and info.path == path
    # exact integer values
    assert torch.equal(torch.round(out * 255), torch.round(img * 255))
    assert _no_temp_files(tmp_path) == []


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_16bit_exact(tmp_path, suffix, channels):
    img = _rand16(channels, seed=10 + channels)
    path = write_image(tmp_path / f"img16{suffix}", img, bit_depth=16)
    out, info = read_image(path)
    assert out.shape == (channels, H, W)
    assert info.bit_depth == 16 and info.channels == channels
    expected = np.round(img.double().numpy() * 65535).astype(np.int64)
    got = np.round(out.double().numpy() * 65535).astype(np.int64)
    np.testing.assert_array_equal(got, expected)
    # values above 255 prove that 16 bits survived (not truncated to 8)
    assert got.max() > 255 and (got % 257 != 0).any()


def _decode_png_by_hand(path):
    """Minimal independent PNG decoder (non-interlaced, 8/16-bit gray or RGB): chunks, zlib, row filters."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert interlace == 0 and ctype in (0, 2)
    planes = 1 if ctype == 0 else 3
    bpp = planes * depth // 8
    stride = w * bpp
    raw = zlib.decompress(idat)
    prev = bytearray(stride)
    rows = []
    for r in range(h):
        ftype, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p_ = a + b - c
                pa, pb, pc = abs(p_ - a), abs(p_ - b), abs(p_ - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    dtype = ">u2" if depth == 16 else "u1"
    return np.frombuffer(b"".join(rows), dtype=dtype).reshape(h, w, planes), depth


@pytest.mark.parametrize("channels", [1, 3])
def test_png16_matches_hand_decoder(tmp_path, channels):
    """A 16-bit PNG written by rcl holds the expected uint16 values (checked by an independent decoder)."""
    img = _rand16(channels, seed=3)
    path = write_image(tmp_path / "x.png", img, bit_depth=16)
    arr, depth = _decode_png_by_hand(path)
    assert depth == 16 and arr.shape == (H, W, channels)
    np.testing.assert_array_equal(arr.astype(np.uint16), quantize(img, 16))


def test_png8_matches_hand_decoder(tmp_path):
    img = _rand8(3, seed=4)
    arr, depth = _decode_png_by_hand(write_image(tmp_path / "x.png", img))
    assert depth == 8
    np.testing.assert_array_equal(arr, quantize(img, 8))


def test_reads_16bit_png_written_by_pillow(tmp_path):
    arr = np.random.default_rng(0).integers(0, 65536, (H, W), dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out, info = read_image(tmp_path / "g16.png")
    assert info.bit_depth == 16 and info.channels == 1
    np.testing.assert_array_equal(np.round(out[0].double().numpy() * 65535).astype(np.uint16), arr)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_approx(tmp_path, suffix, channels):
    img = _smooth(channels)
    path = write_image(tmp_path / f"img{suffix}", img)
    out, info = read_image(path)
    assert out.shape == (channels, H, W) and info.bit_depth == 8 and info.channels == channels
    assert (out - img).abs().mean() < 2 / 255
    assert (out - img).abs().max() < 12 / 255


def test_webp_rgb_round_trip_lossless(tmp_path):
    img = _rand8(3, seed=5)
    out, info = read_image(write_image(tmp_path / "x.webp", img))
    assert info.channels == 3 and info.bit_depth == 8
    assert torch.equal(torch.round(out * 255), torch.round(img * 255))


def test_webp_gray_reads_back_as_three_equal_channels(tmp_path):
    """WebP has no grayscale mode: a gray image comes back as RGB with three identical channels."""
    img = _rand8(1, seed=6)
    out, info = read_image(write_image(tmp_path / "g.webp", img))
    assert out.shape[1:] == (H, W)
    assert info.channels == out.shape[0]
    for c in range(out.shape[0]):
        assert torch.equal(torch.round(out[c] * 255), torch.round(img[0] * 255))


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".webp"])
def test_16bit_request_for_8bit_format_warns(tmp_path, suffix):
    with pytest.warns(UserWarning, match="8 bits"):
        path = write_image(tmp_path / f"x{suffix}", _smooth(3), bit_depth=16)
    assert read_image(path)[1].bit_depth == 8


def test_rgba_drops_alpha_with_warning(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "rgba.png")
    with pytest.warns(UserWarning, match="alpha"):
        out, info = read_image(tmp_path / "rgba.png")
    assert out.shape == (3, H, W) and info.channels == 3
    np.testing.assert_array_equal(np.round(out.permute(1, 2, 0).numpy() * 255).astype(np.uint8), arr[:, :, :3])


def test_gray_alpha_drops_alpha_with_warning(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (H, W, 2), dtype=np.uint8)
    Image.fromarray(arr, "LA").save(tmp_path / "la.png")
    with pytest.warns(UserWarning, match="alpha"):
        out, info = read_image(tmp_path / "la.png")
    assert out.shape == (1, H, W) and info.channels == 1
    np.testing.assert_array_equal(np.round(out[0].numpy() * 255).astype(np.uint8), arr[:, :, 0])


def test_palette_png_becomes_rgb(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    pal = Image.fromarray(arr).convert("P")
    pal.save(tmp_path / "p.png")
    out, info = read_image(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    assert info.channels == 3
    np.testing.assert_array_equal(np.round(out.permute(1, 2, 0).numpy() * 255).astype(np.uint8), expected)


def test_float_tiff_in_range_and_out_of_range(tmp_path):
    import tifffile

    arr = np.random.default_rng(4).random((H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    out, info = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[0].numpy(), arr)
    assert info.bit_depth == 32 and info.is_float and info.channels == 1  # float, not "16-bit"
    tifffile.imwrite(tmp_path / "bad.tif", arr * 3)
    with pytest.raises(ImageReadError, match="bad.tif"):
        read_image(tmp_path / "bad.tif")


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_low_bit_depth_png_scaled_to_unit_range(tmp_path, bits):
    import png

    top = 2 ** bits - 1
    arr = np.array([[0, top], [top // 2, 0]], dtype=np.uint8)
    png.from_array(arr, f"L;{bits}").save(str(tmp_path / "low.png"))
    out, info = read_image(tmp_path / "low.png")
    assert info.bit_depth == 8 and info.channels == 1
    np.testing.assert_allclose(out[0].numpy(), arr / top, atol=1e-6)


def test_corrupt_file_raises_naming_file(tmp_path):
    p = tmp_path / "corrupt_image.png"
    p.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ImageReadError, match="corrupt_image.png"):
        read_image(p)
    j = tmp_path / "empty.jpg"
    j.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg"):
        read_image(j)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_image_read_error_is_value_error():
    assert issubclass(ImageReadError, ValueError)


def test_png_read_closes_file(tmp_path):
    path = write_image(tmp_path / "x.png", _rand8(1))
    write_image(tmp_path / "y.png", _rand16(3), bit_depth=16)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        read_image(path)
        read_image(tmp_path / "y.png")
        gc.collect()
    leaks = [str(w.message) for w in rec if issubclass(w.category, ResourceWarning)]
    assert leaks == []


# ---------------------------------------------------------------- writing


def test_write_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "x.gif", _rand8(1))
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", torch.zeros(2, 4, 4))
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", torch.zeros(4, 4))
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "x.png", _rand8(1), bit_depth=12)
    assert list(tmp_path.iterdir()) == []


def test_write_clamps_and_rounds(tmp_path):
    img = torch.tensor([[[-0.5, 0.0, 0.5, 1.0, 1.7]]])
    out, _ = read_image(write_image(tmp_path / "c.png", img))
    assert (out * 255).round().tolist() == [[[0, 0, 128, 255, 255]]]


def test_write_is_atomic_and_overwrites(tmp_path):
    target = tmp_path / "sub" / "out.png"
    write_image(target, _rand8(3, seed=1))
    write_image(target, _rand8(3, seed=2))
    out, _ = read_image(target)
    assert torch.equal(torch.round(out * 255), torch.round(_rand8(3, seed=2) * 255))
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]


def test_atomic_write_failure_leaves_nothing(tmp_path):
    target = tmp_path / "f.png"

    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_bytes(target, boom)
    assert list(tmp_path.iterdir()) == []
    # an existing file is kept intact when a later write fails
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        atomic_write_bytes(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_atomic_write_writes_beside_target(tmp_path):
    seen = []

    def fn(tmp):
        seen.append(tmp)
        tmp.write_bytes(b"data")

    atomic_write_bytes(tmp_path / "a.bin", fn)
    assert seen[0].parent == tmp_path and seen[0].name.endswith(".part.bin")
    assert (tmp_path / "a.bin").read_bytes() == b"data" and not seen[0].exists()


def test_written_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_image(tmp_path / "perm.png", _rand8(1))
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777) == 0o644


# ---------------------------------------------------------------- listing


def test_list_images_sorted_filtered(tmp_path):
    for name in ["b.png", "a.JPG", "c.tif", "notes.txt", ".hidden.png", ".x.png.part.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    with pytest.warns(UserWarning, match="dir.png: an image name but not a readable regular file"):
        assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.tif"]


def test_list_images_warns_once_about_image_names_that_are_not_files(tmp_path):
    import os

    write_image(tmp_path / "a.png", torch.rand(1, 8, 8))
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "l2.png", tmp_path / "l1.png")
    os.symlink(tmp_path / "l1.png", tmp_path / "l2.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "notes.txt").write_text("not an image name: no warning")
    with pytest.warns(UserWarning, match=r"dangling\.png and 3 more: an image name but not a readable regular"):
        assert [p.name for p in list_images(tmp_path)] == ["a.png"]


def test_list_images_errors(tmp_path):
    with pytest.raises(ValueError, match="no image"):
        list_images(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError):
        list_images(tmp_path)
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "readme.txt")


def test_image_paths(tmp_path):
    f = write_image(tmp_path / "one.png", _rand8(1))
    assert image_paths(f) == [f]
    assert image_paths(tmp_path) == [f]
    with pytest.raises(FileNotFoundError):
        image_paths(tmp_path / "none.png")


def test_quantize():
    img = torch.tensor([[[0.0, 0.5 / 255, 1.5 / 255, 1.0]]])
    q8 = quantize(img, 8)
    assert q8.dtype == np.uint8 and q8.shape == (1, 4, 1)
    assert q8[0, :, 0].tolist() == [0, 0, 2, 255]  # round half to even on the .5 cases
    q16 = quantize(torch.full((3, 2, 2), 1.0), 16)
    assert q16.dtype == np.uint16 and q16.shape == (2, 2, 3) and (q16 == 65535).all()
    with pytest.raises(ValueError):
        quantize(torch.zeros(4, 4))


# ---------------------------------------------------------------- TIFF colour spaces

def test_tiff_min_is_white_is_inverted(tmp_path):
    import tifffile

    g = np.random.default_rng(0).integers(0, 256, (10, 12), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "mw.tif", g, photometric="miniswhite")
    img, _ = read_image(tmp_path / "mw.tif")
    assert img.shape == (1, 10, 12)
    assert np.array_equal(np.rint(img[0].numpy() * 255).astype(np.uint8), 255 - g)  # 0 is white in the file


def test_tiff_palette_is_looked_up(tmp_path):
    """A palette TIFF's indices go through its colour map (TIFF's 16-bit entries of an 8-bit
    palette come back as 8-bit values); a grey palette gives one channel."""
    import tifffile

    idx = np.random.default_rng(1).integers(0, 4, (10, 12), dtype=np.uint8)
    colours = np.array([[0, 255, 0, 10], [0, 0, 255, 10], [0, 0, 0, 10]])  # black, red, green, dark grey
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :4] = colours * 257
    tifffile.imwrite(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    img, info = read_image(tmp_path / "pal.tif")
    assert img.shape == (3, 10, 12) and info.bit_depth == 8
    expect = colours[:, idx] / 255.0  # (3, H, W)
    assert np.allclose(img.numpy(), expect, atol=1e-6)
    grey = np.zeros((3, 256), np.uint16)
    grey[:, :4] = np.array([0, 60, 120, 255]) * 257
    tifffile.imwrite(tmp_path / "grey.tif", idx, photometric="palette", colormap=grey)
    img, _ = read_image(tmp_path / "grey.tif")
    assert img.shape == (1, 10, 12)
    assert np.allclose(img[0].numpy(), np.array([0, 60, 120, 255])[idx] / 255.0, atol=1e-6)


def test_tiff_palette_written_by_pillow_stays_8bit(tmp_path):
    """Pillow stores an 8-bit palette as v × 256 in TIFF's 16-bit colour map: read back as 8-bit."""
    g = np.random.default_rng(5).integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(g, "L").convert("P").save(tmp_path / "p.tif")
    img, info = read_image(tmp_path / "p.tif")
    assert info.bit_depth == 8 and img.shape == (1, 10, 12)
    assert np.array_equal(np.rint(img[0].numpy() * 255).astype(np.uint8), g)


@pytest.mark.parametrize("photometric, samples, name", [("separated", 4, "SEPARATED (CMYK)"), ("ycbcr", 3, "YCBCR")])
def test_tiff_other_colour_spaces_refused(tmp_path, photometric, samples, name):
    """CMYK and uncompressed YCbCr TIFFs were read as RGB (K taken for alpha, Y/Cb/Cr as R/G/B)."""
    import tifffile

    arr = np.random.default_rng(2).integers(0, 256, (10, 12, samples), dtype=np.uint8)
    kw = {"subsampling": (1, 1)} if photometric == "ycbcr" else {}
    tifffile.imwrite(tmp_path / "x.tif", arr, photometric=photometric, **kw)
    with pytest.raises(ImageReadError, match=rf"x\.tif: TIFF colour space {re.escape(name)} is not supported"):
        read_image(tmp_path / "x.tif")
