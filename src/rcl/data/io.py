"""Image reading and writing.

Every image enters rcl as a float32 tensor in [0, 1] shaped (C, H, W), C = 1 (grayscale) or
C = 3 (RGB), together with an :class:`ImageInfo` that remembers its bit depth so that a restored
image can be written back with the same depth and channel count.

Readers: Pillow for PNG/JPEG/BMP/WebP, pypng for 16-bit PNG (Pillow silently truncates 16-bit
RGB PNGs to 8 bits), tifffile for TIFF. Writers mirror this. Writes are atomic: the data goes to
a temporary file in the destination folder which is then renamed over the target.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An image file could not be read or is unusable; the message names the file."""


@dataclass(frozen=True)
class ImageInfo:
    """What is needed to write a restored image back like its source.

    Attributes:
        path: the source file.
        bit_depth: 8 or 16 (bits per channel of the source).
        channels: 1 (grayscale) or 3 (RGB).
    """

    path: Path
    bit_depth: int
    channels: int


def _read_png16(path: Path) -> np.ndarray | None:
    """Return the array of a 16-bit PNG, or None if the PNG is not 16-bit."""
    import png  # pypng

    with open(path, "rb") as fh:
        reader = png.Reader(file=fh)
        reader.preamble()
        if reader.bitdepth != 16:
            return None
        fh.seek(0)
        width, height, rows, info = png.Reader(file=fh).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, info["planes"])
    return arr


def _read_tiff(path: Path) -> np.ndarray:
    """A single 2-D TIFF image as (H, W) or (H, W, S); planar RGB is moved to samples-last."""
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        extra = [a for a, n in zip(axes, shape) if a not in "YXS" and n > 1]
        if len(tif.series) > 1 or len(tif.pages) > 1 or extra:
            raise ImageReadError(f"{path}: multi-page or multi-image TIFF (axes {axes}, shape {shape}); "
                                 "rcl reads single 2-D images")
        arr = series.asarray()
    keep = [a for a in axes if a in "YXS"]
    arr = arr.reshape([n for a, n in zip(axes, shape) if a in "YXS"])
    if "S" in keep and keep.index("S") != len(keep) - 1:  # planar RGB: samples axis first
        arr = np.moveaxis(arr, keep.index("S"), -1)
    return np.asarray(arr)


def _read_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _read_tiff(path)
    if suffix == ".png":
        arr = _read_png16(path)
        if arr is not None:
            return arr
    from PIL import Image

    with Image.open(path) as im:
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
        elif im.mode in ("I", "F"):
            raise ImageReadError(f"{path}: 32-bit Pillow mode {im.mode!r} is not supported")
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
            channel is dropped with a warning).

    Returns:
        ``(image, info)``: ``image`` is float32 in [0, 1] of shape (C, H, W) with C in {1, 3};
        ``info`` holds the bit depth and channel count.

    Raises:
        ImageReadError: the file is missing, not an image, corrupt, or of an unsupported kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
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
        depth, scale = 16, 1.0
    else:
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: empty image")
    img = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32) / scale)).permute(2, 0, 1)
    return img.contiguous(), ImageInfo(path=path, bit_depth=depth, channels=arr.shape[2])


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
    arr = img.detach().to(torch.float32).clamp(0, 1).mul(peak).round().permute(1, 2, 0).cpu().numpy()
    return arr.astype(np.uint8 if bit_depth == 8 else np.uint16)


def atomic_write_bytes(path: Path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path``, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
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


def write_image(path: str | os.PathLike, img: torch.Tensor, bit_depth: int = 8) -> Path:
    """Write a (C, H, W) float image in [0, 1] atomically, as 8- or 16-bit.

    The format follows the suffix: PNG (8/16-bit), TIFF (8/16-bit), JPEG/BMP/WebP (8-bit only;
    a 16-bit request is written as 8-bit with a warning).

    Raises:
        ValueError: unknown suffix, bad bit depth, or a channel count other than 1 or 3.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unknown image suffix {suffix!r}; use one of {IMAGE_SUFFIXES}")
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"{path}: expected a (C, H, W) tensor with C in {{1, 3}}, got {tuple(img.shape)}")
    if suffix in (".jpg", ".jpeg", ".bmp", ".webp") and bit_depth == 16:
        warnings.warn(f"{path}: {suffix} holds 8 bits per channel; writing 8-bit", stacklevel=2)
        bit_depth = 8
    arr = quantize(img, bit_depth)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]

    def _write(tmp: Path) -> None:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(tmp), arr)
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
    """Sorted image files (by suffix) directly inside ``folder``.

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
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
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
