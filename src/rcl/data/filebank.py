"""Image collections larger than memory: decoded from their files when a batch needs them.

An in-memory :class:`rcl.data.datasets.ImageSet` holds every image decoded as float32 (and
pre-training holds it about three times over: the images read, their fixed noisy copy and the
flat :class:`~rcl.data.datasets.ImageBank` buffer). A :class:`FileImageSet` holds only the file
paths and the sizes read from the file *headers* (no pixel is decoded to open it); its source, a
:class:`FileBank`, decodes the few images a batch crops from, and nothing else, in the training
engine's DataLoader workers (:class:`rcl.training.Engine` ``workers``). Memory then depends on the
batch, not on the collection.

Same batches, same weights: a file-backed collection gives exactly the crops of the in-memory one
(the same draws, the same decoded pixels, the same per-image synthetic noise, see
:meth:`FileImageSet.with_noise`), so on the CPU a training on it ends with bit-identical weights.

A file that cannot be decoded during training (corrupt, truncated, deleted) does not stop it: one
warning names it (once per run) and the next decodable image (index + 1, modulo N) is used instead,
the same in every process.

:func:`open_collection` chooses between the two (``--dataset auto|memory|files`` of ``rcl pretrain``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .datasets import ImageSet, check_one_channel_count, gather_crops, image_seed, load_image_set, match_channels
from .io import (TIFF_SUFFIXES, ImageReadError, _check_declared, _pillow_limit_lifted, _quiet_tifffile,
                 image_paths, read_image)
from .noise import NoiseModel

DATASET_MODES = ("auto", "memory", "files")
"""The modes of :func:`open_collection` (``rcl pretrain --dataset``)."""
DEFAULT_DATASET_BYTES = 1 << 30
"""``auto`` decodes a collection into memory up to this decoded float32 size (1 GiB)."""
DATASET_MEMORY_ENV = "RCL_DATASET_MEMORY"
"""Environment variable overriding :data:`DEFAULT_DATASET_BYTES` (bytes, or e.g. ``512M``, ``4G``)."""

Transform = Callable[[torch.Tensor, str], torch.Tensor]
"""``f(image (C, H, W), name) -> image``: applied to every image once it is decoded."""

# Pillow modes whose channel count (after rcl's reader: alpha dropped, other colour spaces to RGB) is
# known from the header; a palette ("P", "PA": grey or colour depends on the pixels) or an unusual
# mode is decoded once when the collection is opened.
_PIL_CHANNELS = {"1": 1, "L": 1, "LA": 1, "La": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "I;16N": 1,
                 "RGB": 3, "RGBA": 3, "RGBX": 3, "RGBa": 3, "CMYK": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}
# PNG colour type (IHDR byte 25) → channels read: grey, RGB, grey + alpha, RGB + alpha (palette
# images, type 3, depend on their colours and are decoded).
_PNG_CHANNELS = {0: 1, 2: 3, 4: 1, 6: 3}


# ---------------------------------------------------------------- headers

def read_header(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """``(H, W, C)`` of an image file from its header, without decoding pixels: C is the channel
    count :func:`rcl.data.io.read_image` gives (1 or 3). Pillow's lazy ``Image.open`` for PNG, JPEG,
    BMP, WebP; tifffile's page tags for TIFF.

    Returns:
        None when the header does not tell (a palette image, an unreadable or unusual header):
        the caller decodes the file instead (which names the file if it is not an image).

    Raises:
        ImageReadError: the declared size is over rcl's pixel limit (:func:`rcl.data.io.max_pixels`),
            as :func:`~rcl.data.io.read_image` would refuse it.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _tiff_header(path)
        return _pillow_header(path)
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001 - any header problem: decode the file (its error names it)
        return None


def _pillow_header(path: Path) -> tuple[int, int, int] | None:
    from PIL import Image

    with _pillow_limit_lifted(), open(path, "rb") as fh:
        head = fh.read(26)  # a PNG's signature and IHDR chunk; then Pillow reads from the start
        fh.seek(0)
        with Image.open(fh) as im:
            w, h = im.size
            mode, fmt = im.mode, im.format
    if path.suffix.lower() == ".png" and fmt != "PNG":
        return None  # rcl reads .png files as PNG: let the reader say what is wrong
    _check_declared(path, w, h)
    if fmt == "PNG":  # the colour type of IHDR, not Pillow's mode (a 16-bit grey + alpha PNG opens as RGBA)
        c = _PNG_CHANNELS.get(head[25]) if len(head) == 26 and head[12:16] == b"IHDR" else None
    else:
        c = _PIL_CHANNELS.get(mode)
    return (h, w, c) if c is not None else None


def _tiff_header(path: Path) -> tuple[int, int, int] | None:
    import numpy as np
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        extra = [a for a, n in zip(axes, shape) if a not in "YXS" and n > 1]
        if len(tif.series) > 1 or len(tif.pages) > 1 or extra:
            return None  # the reader refuses it, naming the file
        page = tif.pages[0]
        _check_declared(path, page.imagewidth, page.imagelength, page.samplesperpixel)
        dims = dict(zip(axes, shape))
        if "Y" not in dims or "X" not in dims:
            return None
        _check_declared(path, dims["X"], dims["Y"], dims.get("S", page.samplesperpixel))
        dtype = np.dtype(series.dtype)
        if int(page.photometric) not in (0, 1, 2):  # min-is-white, min-is-black, RGB; a palette's
            return None  # channels depend on its colours, and the reader refuses other colour spaces
    if not (dtype in (np.uint8, np.uint16, np.bool_) or np.issubdtype(dtype, np.floating)):
        return None
    c = {1: 1, 2: 1, 3: 3, 4: 3}.get(int(dims.get("S", 1)))
    return (int(dims["Y"]), int(dims["X"]), c) if c is not None else None


# ---------------------------------------------------------------- the collection

@dataclass(frozen=True)
class FixedNoise:
    """The transform of :meth:`FileImageSet.with_noise`: ``noise`` applied once to an image with a
    generator seeded by ``image_seed(seed, name)``, exactly as
    :func:`rcl.data.datasets.add_noise_per_image` does (picklable, for DataLoader workers)."""

    noise: NoiseModel
    seed: int

    def __call__(self, img: torch.Tensor, name: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(image_seed(self.seed, name))
        y, _ = self.noise(img.unsqueeze(0), g)
        return y[0]


class FileImageSet:
    """A collection of image files decoded only when used (see the module docstring).

    Build one with :meth:`open` (or :func:`open_collection`). It answers what training asks of an
    :class:`~rcl.data.datasets.ImageSet` before any batch (``len``, ``names``, ``channels``,
    :meth:`min_side`, :meth:`sizes`); :func:`rcl.data.datasets.as_source` turns it into a
    :class:`FileBank`.

    Args:
        paths: the image files.
        names: their names (file names: what seeds the per-image noise).
        sizes: their (H, W), from the headers.
        channels: the channel count of every decoded image.
        convert: convert every decoded image to ``channels`` (a ``--channels`` request); False:
            a decoded image must already have ``channels``.
        transforms: applied in order to every decoded (and converted) image, ``f(img, name)``.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], names: Sequence[str], sizes: Sequence[tuple[int, int]],
                 channels: int, convert: bool = False, transforms: Sequence[Transform] = ()):
        if not paths:
            raise ValueError("an image set needs at least one image")
        if not (len(paths) == len(names) == len(sizes)):
            raise ValueError(f"{len(paths)} paths, {len(names)} names and {len(sizes)} sizes")
        self.paths = [Path(p) for p in paths]
        self.names = list(names)
        self._sizes = [(int(h), int(w)) for h, w in sizes]
        self.channels = int(channels)
        self.convert = convert
        self.transforms = tuple(transforms)

    @classmethod
    def open(cls, path: str | os.PathLike, channels: int | None = None, min_size: int = 1,
             min_size_reason: str | None = None) -> "FileImageSet":
        """One image file or every image of a folder, from the headers (no pixel decoded, except
        for the rare file whose header does not give its size and channels, e.g. a palette PNG).

        Args and raises: as :func:`rcl.data.datasets.load_image_set` (same checks, same messages,
        file by file in the same order), except that a file whose pixels are corrupt behind a
        valid header is found only when training decodes it (it is then skipped, with a warning).
        """
        paths = image_paths(path)
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
        sizes, counts = [], []
        for p in paths:
            head = read_header(p)
            if head is None:  # decode it once, for its size and channels only: its warnings (an alpha
                with warnings.catch_warnings():  # channel dropped) come when its pixels are decoded for use
                    warnings.simplefilter("ignore")
                    img, _ = read_image(p)
                head = (img.shape[1], img.shape[2], img.shape[0])
                del img
            h, w, c = head
            if min(h, w) < min_size:
                reason = min_size_reason or f"the crop size {min_size}; use a smaller --crop-size or drop the file"
                raise ImageReadError(f"{p}: image is {w}×{h}, smaller than {reason}")
            counts.append(c)
            sizes.append((h, w))
        if channels is None:
            check_one_channel_count(paths, counts)
        common = counts[0]
        return cls(paths, [p.name for p in paths], sizes, channels or common, convert=channels is not None)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"FileImageSet({len(self)} images, {self.channels} channel(s), "
                f"{self.decoded_bytes() / 2**30:.2f} GiB decoded, {len(self.transforms)} transform(s))")

    def min_side(self) -> int:
        return min(min(s) for s in self._sizes)

    def sizes(self) -> list[tuple[int, int]]:
        """(H, W) of every image (from the headers)."""
        return list(self._sizes)

    def decoded_bytes(self) -> int:
        """Σ C·H·W·4: the size of the collection decoded as float32."""
        return sum(self.channels * h * w * 4 for h, w in self._sizes)

    def with_transform(self, transform: Transform) -> "FileImageSet":
        """A new set whose decoded images also go through ``transform(img, name)`` (after the
        present transforms). ``transform`` must be picklable for DataLoader workers started by
        *spawn* (macOS, Windows): a module-level function or class instance, not a lambda."""
        return FileImageSet(self.paths, self.names, self._sizes, self.channels, self.convert,
                            (*self.transforms, transform))

    def with_noise(self, noise: NoiseModel, seed: int) -> "FileImageSet":
        """The fixed noisy collection: every image noised once as
        :func:`rcl.data.datasets.add_noise_per_image` does (generator seeded by
        ``image_seed(seed, name)``), so image i equals the in-memory path's, bit for bit."""
        return self.with_transform(FixedNoise(noise, seed))

    def load(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded, converted and transformed: (C, H, W) float32.

        Raises:
            ImageReadError: the file cannot be decoded, or it decodes to another size or channel
                count than its header said (names the file).
        """
        p = self.paths[i]
        img, _ = read_image(p)
        if self.convert:
            img = match_channels(img, self.channels, str(p))
        h, w = self._sizes[i]
        if tuple(img.shape) != (self.channels, h, w):
            raise ImageReadError(f"{p}: decodes to {img.shape[0]} channel(s) of {img.shape[2]}×{img.shape[1]} px, "
                                 f"its header says {self.channels} of {w}×{h}")
        for t in self.transforms:
            img = t(img, self.names[i])
        return img

    def to_image_set(self) -> ImageSet:
        """Every image decoded (the in-memory equivalent; small collections and tests)."""
        return ImageSet([self.load(i) for i in range(len(self))], list(self.names))


# ---------------------------------------------------------------- the source a method crops from

class FileBank:
    """The crop source of a :class:`FileImageSet` (what :func:`rcl.data.datasets.as_source` gives
    for one): the :class:`~rcl.data.datasets.ImageBank` interface, with each batch's images decoded
    from their files. ``decodes_files`` tells the trainer to draw batches in DataLoader workers.

    Attributes:
        heights, widths: (N,) int64 on the CPU (from the headers); ``sizes_hw`` the same as a list
            of (H, W).
        names, channels, device (always the CPU: batches are moved to the training device by the
        trainer).
    """

    decodes_files = True

    def __init__(self, images: FileImageSet):
        self.images = images
        self.names = list(images.names)
        self.channels = images.channels
        self.device = torch.device("cpu")
        sizes = images.sizes()
        self.sizes_hw = sizes  # host copy, as ImageBank's
        self.heights = torch.tensor([h for h, _ in sizes], dtype=torch.long)
        self.widths = torch.tensor([w for _, w in sizes], dtype=torch.long)
        self._bad: set[int] = set()  # files this process found undecodable
        self._shared = _shared_flags(len(sizes))  # ... and those any worker reported (one warning per run)
        self.min_decodable = 1  # a method that needs more distinct images (RCL, SimCLR: 2) raises it

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self):
        state = dict(self.__dict__)
        from multiprocessing.context import get_spawning_popen

        if get_spawning_popen() is None:  # pickled other than to start a worker: shared flags cannot go
            state["_shared"] = None
        return state

    def min_side(self) -> int:
        return min(min(hw) for hw in self.sizes_hw)

    def crops(self, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int,
              code: torch.Tensor | None = None) -> torch.Tensor:
        """Exactly :meth:`rcl.data.datasets.ImageBank.crops` (same values, same memory layout),
        decoding each distinct image of ``idx`` once, one at a time (memory: one decoded image and
        the crops). An undecodable image is replaced by the next decodable one (crop positions
        clamped to it), after one warning.

        Raises:
            ImageReadError: no image of the collection can be decoded.
        """
        idx, top, left = idx.cpu(), top.cpu(), left.cpu()
        code = code.cpu() if code is not None else None
        b, c = idx.shape[0], self.channels
        out = torch.empty(b, size, size, c, dtype=torch.float32)
        for i in torch.unique(idx).tolist():
            rows = (idx == i).nonzero().squeeze(1)
            j, img = self._decodable(i, size)
            t, l = top[rows], left[rows]
            h, w = img.shape[1], img.shape[2]
            if j != i:  # the substitute may be smaller
                t, l = t.clamp(max=h - size), l.clamp(max=w - size)
            buf = img.to(torch.float32).permute(1, 2, 0).reshape(-1, c)
            part = gather_crops(buf, torch.zeros(len(rows), dtype=torch.long), torch.full((len(rows),), w), t, l,
                                size, code[rows] if code is not None else None)
            out[rows] = part.permute(0, 2, 3, 1)
            del img, buf
        return out.permute(0, 3, 1, 2)

    def _decodable(self, i: int, size: int) -> tuple[int, torch.Tensor]:
        """``(j, image j)``: image i, or the next one (index + 1, modulo N) that decodes and holds a
        crop of side ``size``."""
        n = len(self)
        for k in range(n):
            j = (i + k) % n
            if j in self._bad or (self._shared is not None and self._shared[j]):
                continue
            if k and min(self.sizes_hw[j]) < size:
                continue
            try:
                return j, self.images.load(j)
            except (ImageReadError, OSError, ValueError) as exc:
                self._skip(j, exc)
        raise ImageReadError(f"none of the {n} images of the collection can be decoded "
                             f"(first: {self.images.paths[0]})")

    def _skip(self, j: int, exc: Exception) -> None:
        self._bad.add(j)
        first = True
        if self._shared is not None:
            with self._shared.get_lock():
                first = not self._shared[j]
                self._shared[j] = 1
        path = self.images.paths[j]
        what = f"{path}: cannot be decoded ({str(exc).removeprefix(f'{path}: ')})"
        shared = {k for k in range(len(self)) if self._shared[k]} if self._shared is not None else set()
        left = len(self) - len(self._bad | shared)
        if 0 < left < self.min_decodable:  # none left: _decodable says so
            raise ImageReadError(f"{what}; at most {left} of the {len(self)} images can be, fewer than the "
                                 f"{self.min_decodable} this training needs")
        if first:
            warnings.warn(f"{what}; it is skipped", stacklevel=4)


def _shared_flags(n: int):
    """One byte per image in memory shared with the DataLoader workers (None if unavailable)."""
    try:
        import multiprocessing

        return multiprocessing.Array("b", n, lock=True)
    except (OSError, ImportError):  # no shared memory or semaphores here: one warning per process
        return None


# ---------------------------------------------------------------- choosing

def dataset_budget(budget: int | str | None = None) -> int:
    """The decoded size up to which ``auto`` keeps a collection in memory: ``budget`` (bytes or
    e.g. ``"512M"``), else ``RCL_DATASET_MEMORY``, else :data:`DEFAULT_DATASET_BYTES` (1 GiB).

    Raises:
        ValueError: not a positive size (names the variable when it comes from the environment).
    """
    from ..evaluation.inference import parse_bytes

    if budget is not None:
        return parse_bytes(budget)
    env = os.environ.get(DATASET_MEMORY_ENV, "").strip()
    if not env:
        return DEFAULT_DATASET_BYTES
    try:
        return parse_bytes(env)
    except ValueError as exc:
        raise ValueError(f"{DATASET_MEMORY_ENV}={env!r}: {exc}") from None


def open_collection(path: str | os.PathLike, channels: int | None = None, min_size: int = 1, mode: str = "auto",
                    budget: int | str | None = None, min_size_reason: str | None = None) -> "ImageSet | FileImageSet":
    """The training images of ``path`` (a file or a folder), in memory or file-backed.

    Modes:

    * ``"memory"``: :func:`rcl.data.datasets.load_image_set`: every image decoded now (fastest
      steps; pre-training then holds about three times the decoded size: the images, their noisy
      copy and the flat crop buffer).
    * ``"files"``: a :class:`FileImageSet`: only the headers are read now; each step decodes the
      images it crops from (in the training engine's DataLoader workers). Memory no longer grows
      with the collection; each step costs the decoding of its images.
    * ``"auto"`` (default): the headers are read, then ``"files"`` if the collection decoded as
      float32 (Σ C·H·W·4 bytes, C after ``channels``) is larger than the budget, else ``"memory"``.
      The budget is ``budget`` (bytes, or e.g. ``"512M"``, ``"4G"``), else the environment variable
      ``RCL_DATASET_MEMORY`` (same forms), else 1 GiB.

    Either way training gives the same batches and, on the CPU, the same weights.

    Args:
        channels, min_size, min_size_reason: as :func:`~rcl.data.datasets.load_image_set` (every
            image's size is checked against ``min_size`` with its message, from the header in the
            ``files`` mode).

    Raises:
        ValueError: an unknown mode or budget; and the errors of
            :func:`~rcl.data.datasets.load_image_set` (missing path, no images, a file unreadable,
            too small or of another channel count; :class:`~rcl.data.io.ImageReadError` names it).
    """
    if mode not in DATASET_MODES:
        raise ValueError(f"dataset mode must be one of {', '.join(DATASET_MODES)}, got {mode!r}")
    if mode == "memory":
        return load_image_set(path, channels=channels, min_size=min_size, min_size_reason=min_size_reason)
    limit = dataset_budget(budget) if mode == "auto" else None
    files = FileImageSet.open(path, channels=channels, min_size=min_size, min_size_reason=min_size_reason)
    if mode == "files" or files.decoded_bytes() > limit:
        return files
    return load_image_set(path, channels=channels, min_size=min_size, min_size_reason=min_size_reason)
