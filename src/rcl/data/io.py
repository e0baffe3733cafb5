"""Image reading and writing.

Every image enters rcl as a float32 tensor in [0, 1] shaped (C, H, W), C = 1 (grayscale) or
C = 3 (RGB), together with an :class:`ImageInfo` that remembers its bit depth so that a restored
image can be written back with the same depth and channel count.

Readers: Pillow for PNG/JPEG/BMP/WebP, pypng for 16-bit PNG (Pillow silently truncates 16-bit
RGB PNGs to 8 bits), tifffile for TIFF. Writers mirror this. Writes are atomic: the data goes to
a temporary file in the destination folder which is then renamed over the target.

Floating-point TIFFs (float16/32/64, values in [0, 1]) are read as float32 and reported with
``ImageInfo.bit_depth == 32``; writing with ``bit_depth=32`` gives a float32 TIFF again (clamped
to [0, 1], not quantised), so a float input is not silently turned into integers.

Size limit: every reader checks the size an image file *declares* in its header (width × height)
before decoding any pixel data, and refuses files over :func:`max_pixels` pixels —
``DEFAULT_MAX_PIXELS`` (100 megapixels) unless the environment variable ``RCL_MAX_PIXELS`` gives
another positive pixel count — with one :class:`ImageReadError` message whatever the format. A
tiny file that declares a huge size (a "decompression bomb") is thus refused at once instead of
exhausting memory. Pillow's own decompression-bomb check (``PIL.Image.MAX_IMAGE_PIXELS``) is
lifted while rcl reads with Pillow, so that this limit is the only one that applies.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Suffixes rcl lists as images, and the suffixes it can write (see :func:`check_output_format`)."""
TIFF_SUFFIXES = (".tif", ".tiff")
FLOAT_BIT_DEPTH = 32
"""``ImageInfo.bit_depth`` / ``write_image`` bit depth meaning float32 samples (TIFF only)."""
DEFAULT_MAX_PIXELS = 100_000_000
"""Default limit on the declared width × height of an image read (100 megapixels)."""
MAX_PIXELS_ENV = "RCL_MAX_PIXELS"
_MAX_CHANNELS = 4  # gray, gray+alpha, RGB, RGBA: more samples per pixel are refused before decoding


class ImageReadError(ValueError):
    """An image file could not be read or is unusable; the message names the file."""


@dataclass(frozen=True)
class ImageInfo:
    """What is needed to write a restored image back like its source.

    Attributes:
        path: the source file.
        bit_depth: bits per channel of the source: 8 or 16 (integer samples), or 32 meaning
            floating-point samples (a float16/32/64 TIFF, read as float32; written back as a
            float32 TIFF, see :func:`write_image`).
        channels: 1 (grayscale) or 3 (RGB).
    """

    path: Path
    bit_depth: int
    channels: int

    @property
    def is_float(self) -> bool:
        """True when the source held floating-point samples (``bit_depth == 32``)."""
        return self.bit_depth == FLOAT_BIT_DEPTH


def max_pixels() -> int:
    """The largest declared width × height (in pixels) that :func:`read_image` accepts.

    ``DEFAULT_MAX_PIXELS`` (100 000 000) unless the environment variable ``RCL_MAX_PIXELS`` is set
    (and not empty); it is read on each call.

    Raises:
        ValueError: ``RCL_MAX_PIXELS`` is not a positive integer (e.g. ``abc``, ``0``, ``-5``, ``1e9``).
    """
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_PIXELS
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,18}", text) or int(text) <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r}: must be a positive whole number of pixels "
                         f"(width × height), e.g. {MAX_PIXELS_ENV}={4 * DEFAULT_MAX_PIXELS}")
    return int(text)


def _check_declared(path: Path, width: int, height: int, channels: int | None = None) -> None:
    """Refuse a declared image size before any pixel is decoded (see the module docstring)."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: declares an empty image ({width}×{height} px)")
    limit = max_pixels()
    if width * height > limit:
        raise ImageReadError(f"{path}: declares {width}×{height} px ({width * height / 1e6:.1f} MP), over rcl's "
                             f"limit of {limit / 1e6:g} MP; set {MAX_PIXELS_ENV} to a larger pixel count to read it")
    if channels is not None and not 1 <= int(channels) <= _MAX_CHANNELS:
        raise ImageReadError(f"{path}: {channels} channels; rcl reads grayscale or RGB only")


_pillow_lock = threading.Lock()
_pillow_depth = 0
_pillow_saved: int | None = None


@contextmanager
def held_warnings():
    """Hold the warnings of a block (e.g. "alpha channel dropped") and show them only if the block
    ends without an error: a refused input gives its one ``error:`` line and nothing before it.
    Blocks may nest (an inner block releases into the outer one)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    for w in seen:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@contextmanager
def _pillow_limit_lifted():
    """Lift Pillow's decompression-bomb check (rcl's own limit applies instead), restoring it after.

    ``PIL.Image.MAX_IMAGE_PIXELS`` is process-wide: nested or concurrent rcl reads share one
    override, counted under a lock, and the last one out puts the previous value back.
    """
    global _pillow_depth, _pillow_saved
    from PIL import Image

    with _pillow_lock:
        if _pillow_depth == 0:
            _pillow_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _pillow_depth += 1
    try:
        yield
    finally:
        with _pillow_lock:
            _pillow_depth -= 1
            if _pillow_depth == 0:
                Image.MAX_IMAGE_PIXELS = _pillow_saved
                _pillow_saved = None


def _read_png16(path: Path) -> np.ndarray | None:
    """Return the array of a 16-bit PNG, or None if the PNG is not 16-bit."""
    import png  # pypng

    with open(path, "rb") as fh:
        reader = png.Reader(file=fh)
        reader.preamble()  # the chunks before the image data: IHDR gives the declared size
        _check_declared(path, reader.width, reader.height, reader.planes)
        if reader.bitdepth != 16:
            return None
        fh.seek(0)
        width, height, rows, info = png.Reader(file=fh).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, info["planes"])
    return arr


@contextmanager
def _quiet_tifffile():
    """Silence tifffile's logger (it logs malformed tags on stderr) while rcl reads a TIFF: a
    file rcl cannot read ends in one ImageReadError, not in extra log lines."""
    import logging

    log = logging.getLogger("tifffile")
    level, log.level = log.level, logging.CRITICAL + 1
    try:
        yield
    finally:
        log.setLevel(level)


def _read_tiff(path: Path) -> np.ndarray:
    """A single 2-D TIFF image as (H, W) or (H, W, S); planar RGB is moved to samples-last."""
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        extra = [a for a, n in zip(axes, shape) if a not in "YXS" and n > 1]
        if len(tif.series) > 1 or len(tif.pages) > 1 or extra:
            raise ImageReadError(f"{path}: multi-page or multi-image TIFF (axes {axes}, shape {shape}); "
                                 "rcl reads single 2-D images")
        # The page's tags are what is decoded; the series shape (which metadata may reshape) is
        # what is allocated: check both before reading any pixel data.
        page = tif.pages[0]
        _check_declared(path, page.imagewidth, page.imagelength, page.samplesperpixel)
        dims = dict(zip(axes, shape))
        _check_declared(path, dims.get("X", page.imagewidth), dims.get("Y", page.imagelength),
                        dims.get("S", page.samplesperpixel))
        photometric, compression = int(page.photometric), int(page.compression)
        colormap = page.colormap if photometric == _PALETTE else None
        if photometric not in (_MINISWHITE, _MINISBLACK, _RGB, _PALETTE) and not (
                photometric == _YCBCR and compression == _JPEG):  # JPEG-in-TIFF YCbCr is decoded to RGB
            raise ImageReadError(f"{path}: TIFF colour space {_photometric_name(photometric)} is not supported; "
                                 "rcl reads grayscale, palette and RGB TIFFs (convert it to RGB)")
        arr = series.asarray()
    keep = [a for a in axes if a in "YXS"]
    arr = arr.reshape([n for a, n in zip(axes, shape) if a in "YXS"])
    if "S" in keep and keep.index("S") != len(keep) - 1:  # planar RGB: samples axis first
        arr = np.moveaxis(arr, keep.index("S"), -1)
    if photometric == _MINISWHITE:  # 0 is white: invert to rcl's 0 = black
        if arr.dtype == np.bool_:
            arr = ~arr
        elif np.issubdtype(arr.dtype, np.unsignedinteger):
            arr = np.iinfo(arr.dtype).max - arr
        else:
            raise ImageReadError(f"{path}: min-is-white TIFF of {arr.dtype} samples is not supported")
    if colormap is not None:
        arr = _apply_tiff_palette(path, np.asarray(arr), np.asarray(colormap))
    return np.asarray(arr)


# TIFF PhotometricInterpretation and Compression codes (TIFF 6.0, section 8; tifffile.PHOTOMETRIC).
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _YCBCR = 0, 1, 2, 3, 6
_JPEG = 7


def _photometric_name(code: int) -> str:
    import tifffile

    try:
        name = tifffile.PHOTOMETRIC(code).name
    except ValueError:
        return str(code)
    return {"SEPARATED": "SEPARATED (CMYK)"}.get(name, name)


def _apply_tiff_palette(path: Path, index: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """Look up a palette TIFF's indices (H, W) in its colour map (3, 2**bits) of 16-bit values:
    (H, W) if every entry used is grey, else (H, W, 3); 8-bit when every value used is a multiple
    of 257 or of 256 (an 8-bit palette stored in TIFF's 16-bit colour map)."""
    if index.ndim != 2 or colormap.ndim != 2 or colormap.shape[0] != 3:
        raise ImageReadError(f"{path}: palette TIFF with indices {index.shape} and colour map {colormap.shape} is "
                             "not supported")
    if index.size and int(index.max()) >= colormap.shape[1]:
        raise ImageReadError(f"{path}: palette index {int(index.max())} beyond the colour map's "
                             f"{colormap.shape[1]} entries")
    rgb = np.moveaxis(colormap[:, index.astype(np.intp)], 0, -1).astype(np.uint16)
    for step in (257, 256):  # an 8-bit palette in TIFF's 16-bit map: v × 257 (tifffile) or v × 256 (Pillow)
        if (rgb % step == 0).all():
            rgb = (rgb // step).astype(np.uint8)
            break
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]
    return rgb


def _read_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _read_tiff(path)
    if suffix == ".png":
        arr = _read_png16(path)
        if arr is not None:
            return arr
    with _pillow_limit_lifted():
        return _read_pillow(path)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with open(path, "rb") as fh, Image.open(fh) as im:  # open() reads the header only
        _check_declared(path, *im.size)
        if im.mode in ("I", "F"):
            raise ImageReadError(f"{path}: 32-bit Pillow mode {im.mode!r} is not supported")
        im.load()
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            rgb = np.asarray(im)
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                return rgb[..., [0, 3]] if rgb.shape[-1] == 4 else rgb[..., 0]  # grey palette
        elif im.mode == "1":
            im = im.convert("L")
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif im.mode.startswith("I;16"):
            return np.asarray(im, dtype=np.uint16)
        return np.asarray(im)


def to_hwc(arr: np.ndarray, path: Path) -> np.ndarray:
    """Bring an array to (H, W, C) with C in {1, 3}, dropping alpha with a warning."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageReadError(f"{path}: expected a 2-D image, got an array of shape {arr.shape}")
    c = arr.shape[2]
    if c in (2, 4):
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=3)
        arr = arr[:, :, : c - 1]
    if arr.shape[2] not in (1, 3):
        raise ImageReadError(f"{path}: {arr.shape[2]} channels; rcl reads grayscale or RGB only")
    return arr


def read_image(path: str | os.PathLike) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file as a float32 tensor.

    Args:
        path: a PNG, JPEG, BMP, TIFF or WebP file, 8- or 16-bit, grayscale or RGB (an alpha
            channel is dropped with a warning); or a floating-point TIFF (float16/32/64) with
            values in [0, 1], which comes back as float32 with ``info.bit_depth == 32``.

    Returns:
        ``(image, info)``: ``image`` is float32 in [0, 1] of shape (C, H, W) with C in {1, 3};
        ``info`` holds the bit depth (8, 16, or 32 for floating point) and channel count.

    Raises:
        ImageReadError: the file is missing, not an image, corrupt, or of an unsupported kind;
            or its header declares an empty image, more than 4 channels, or more than
            :func:`max_pixels` pixels (width × height; 100 megapixels unless the environment
            variable ``RCL_MAX_PIXELS`` says otherwise). The size is checked before any pixel
            data is decoded, whatever the format.
        ValueError: ``RCL_MAX_PIXELS`` is set but is not a positive integer.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    max_pixels()  # an invalid RCL_MAX_PIXELS is a ValueError of its own, not a "cannot read image"
    try:
        arr = _read_array(path)
    except ImageReadError:
        raise
    except Exception as exc:  # any decoder failure becomes one clear error naming the file
        detail = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
        raise ImageReadError(f"{path}: cannot read image ({detail})") from exc
    arr = to_hwc(arr, path)
    if arr.dtype == np.uint8:
        depth, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        depth, scale = 16, 65535.0
    elif arr.dtype == np.bool_:
        depth, scale = 8, 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageReadError(f"{path}: floating-point image with NaN or infinite pixels")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ImageReadError(f"{path}: floating-point image outside [0, 1]")
        depth, scale = FLOAT_BIT_DEPTH, 1.0
    else:
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: empty image")
    # one float32 (C, H, W) buffer, filled in one pass (no float64 or (H, W, C) temporaries)
    img = torch.empty(arr.shape[2], arr.shape[0], arr.shape[1], dtype=torch.float32)
    np.divide(arr.transpose(2, 0, 1), np.float32(scale), out=img.numpy(), dtype=np.float32)
    return img, ImageInfo(path=path, bit_depth=depth, channels=arr.shape[2])


def quantize(img: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """Clamp a (C, H, W) float image in [0, 1] and quantise it to an (H, W, C) integer array.

    Args:
        img: tensor of shape (C, H, W), nominally in [0, 1]; values outside are clamped.
        bit_depth: 8 (uint8, 0–255) or 16 (uint16, 0–65535).

    Raises:
        ValueError: bit_depth is not 8 or 16, or img is not 3-D.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if img.ndim != 3:
        raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(img.shape)}")
    peak = 255.0 if bit_depth == 8 else 65535.0
    t = img.detach().to(device="cpu", dtype=torch.float32).clamp(0, 1)  # a copy; then in place (one temporary)
    arr = t.mul_(peak).round_().permute(1, 2, 0).numpy()
    return arr.astype(np.uint8 if bit_depth == 8 else np.uint16)


def atomic_write_bytes(path: Path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path``, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short temporary name: the target's own name may be up to the file system's limit
    fd, tmp = tempfile.mkstemp(prefix=".rcl-", suffix=".part" + path.suffix[:16], dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write_fn(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(exc.errno, f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_output_format(path: str | os.PathLike, bit_depth: int) -> None:
    """Refuse, before any work, an output file that :func:`write_image` cannot write.

    Writable: PNG (8/16-bit), TIFF (8/16-bit, or 32 = float32), JPEG/BMP/WebP (8-bit; a 16-bit
    request is accepted and written as 8-bit with a warning by :func:`write_image`). The suffix
    is compared case-insensitively.

    Raises:
        ValueError (naming the file): the suffix is not one of ``IMAGE_SUFFIXES`` (e.g. ``.gif``,
            ``.jp2``), ``bit_depth`` is not 8, 16 or 32, or floating-point output (32) is asked
            for a suffix other than ``.tif``/``.tiff``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        what = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise ValueError(f"{path}: rcl cannot write images with {what}; writable suffixes: "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    if bit_depth not in (8, 16, FLOAT_BIT_DEPTH):
        raise ValueError(f"{path}: bit_depth must be 8, 16 or {FLOAT_BIT_DEPTH} (float32, TIFF only), "
                         f"got {bit_depth!r}")
    if bit_depth == FLOAT_BIT_DEPTH and suffix not in TIFF_SUFFIXES:
        raise ValueError(f"{path}: floating-point output (bit_depth={FLOAT_BIT_DEPTH}, e.g. from a float TIFF input) "
                         f"can only be written as TIFF; writable suffixes for it: {', '.join(TIFF_SUFFIXES)}")


def write_image(path: str | os.PathLike, img: torch.Tensor, bit_depth: int = 8) -> Path:
    """Write a (C, H, W) float image in [0, 1] atomically, as 8-, 16-bit or float32.

    The format follows the suffix: PNG (8/16-bit), TIFF (8/16-bit, or ``bit_depth=32``: float32
    samples clamped to [0, 1], not quantised), JPEG/BMP/WebP (8-bit only; a 16-bit request is
    written as 8-bit with a warning). What can be written is decided by
    :func:`check_output_format`.

    Raises:
        ValueError: unknown suffix, bad bit depth, float output to a non-TIFF file (see
            :func:`check_output_format`), or a channel count other than 1 or 3.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_output_format(path, bit_depth)
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"{path}: expected a (C, H, W) tensor with C in {{1, 3}}, got {tuple(img.shape)}")
    if suffix in (".jpg", ".jpeg", ".bmp", ".webp") and bit_depth == 16:
        warnings.warn(f"{path}: {suffix} holds 8 bits per channel; writing 8-bit", stacklevel=2)
        bit_depth = 8
    if bit_depth == FLOAT_BIT_DEPTH:
        # NaN -> 0 and ±inf -> 1/0 as the integer path does, so that rcl can read the file back
        flt = torch.nan_to_num(img.detach().to(torch.float32), nan=0.0, posinf=1.0, neginf=0.0)
        arr = flt.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    else:
        arr = quantize(img, bit_depth)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]

    def _write(tmp: Path) -> None:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(str(tmp), np.ascontiguousarray(arr),
                             photometric="rgb" if arr.ndim == 3 else "minisblack")
        elif suffix == ".png" and bit_depth == 16:
            import png

            h, w = arr.shape[:2]
            mode = "L;16" if arr.ndim == 2 else "RGB;16"
            png.from_array(arr.reshape(h, -1), mode).save(str(tmp))
        else:
            from PIL import Image

            fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}[suffix]
            kwargs = {"quality": 95} if fmt == "JPEG" else ({"lossless": True} if fmt == "WEBP" else {})
            Image.fromarray(arr).save(tmp, format=fmt, **kwargs)

    atomic_write_bytes(path, _write)
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files (by suffix) directly inside ``folder``; entries with an image suffix that
    are not regular files (broken symbolic links, FIFOs, folders) are skipped with one warning.

    Raises:
        FileNotFoundError: the folder does not exist.
        NotADirectoryError: it is a file.
        ValueError: it holds no image file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    named = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    files = sorted(p for p in named if p.is_file())
    others = sorted(p for p in named if not p.is_file())  # broken links, link loops, FIFOs, folders
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        warnings.warn(f"{others[0]}{more}: an image name but not a readable regular file (a broken symbolic link, "
                      f"a FIFO or a folder?); skipped", stacklevel=2)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def image_paths(path: str | os.PathLike) -> list[Path]:
    """One file, or the images of a folder, as a list of paths (see :func:`list_images`)."""
    path = Path(path)
    if path.is_dir():
        return list_images(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return [path]
