"""In-memory image sets and seeded random crops.

The training sets of rcl are small (hundreds of images), so they are decoded once into a list
of (C, H, W) float32 tensors. Crops are drawn with an explicit ``torch.Generator``: the same
seed gives the same batches on CPU.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import ImageReadError, held_warnings, image_paths, read_image
from .noise import NoiseModel


def rgb_to_gray(img: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of a (3, H, W) or (B, 3, H, W) RGB image in [0, 1], keeping a channel axis."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(dim=-3, keepdim=True)


def match_channels(img: torch.Tensor, channels: int | None, name: str = "image") -> torch.Tensor:
    """Convert a (C, H, W) image to ``channels`` (1 or 3); None keeps it as it is."""
    if channels is None or img.shape[0] == channels:
        return img
    if channels == 1 and img.shape[0] == 3:
        return rgb_to_gray(img)
    if channels == 3 and img.shape[0] == 1:
        return img.expand(3, -1, -1).clone()
    raise ValueError(f"{name}: cannot convert {img.shape[0]} channels to {channels}")


@dataclass
class ImageSet:
    """A list of images (C, H, W) in [0, 1] with their names; all share one channel count."""

    images: list[torch.Tensor]
    names: list[str]

    def __post_init__(self):
        if not self.images:
            raise ValueError("an image set needs at least one image")
        chans = {im.shape[0] for im in self.images}
        if len(chans) != 1:
            raise ValueError(f"images mix channel counts {sorted(chans)}; pass channels=1 or 3 to convert")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images[0].shape[0]

    def subset(self, idx) -> "ImageSet":
        idx = list(idx)
        return ImageSet([self.images[i] for i in idx], [self.names[i] for i in idx])

    def min_side(self) -> int:
        return min(min(im.shape[1:]) for im in self.images)

    def sizes(self) -> list[tuple[int, int]]:
        """(H, W) of every image."""
        return [(im.shape[1], im.shape[2]) for im in self.images]


def check_one_channel_count(paths, counts) -> None:
    """Refuse a folder whose images mix channel counts, naming the first file of the rarer count
    (on a tie, the first file's count is taken as the folder's).

    Args:
        paths: the files, in listing order.
        counts: the channel count of each file (after any alpha channel is dropped).

    Raises:
        ImageReadError: the counts differ; the message names the odd file, an ordinary one, and the
            ``--channels`` option that converts.
    """
    tally: dict[int, int] = {}
    for c in counts:
        tally[c] = tally.get(c, 0) + 1
    if len(tally) < 2:
        return
    usual = max(tally, key=lambda c: (tally[c], c == counts[0]))
    odd = [i for i, c in enumerate(counts) if c != usual]
    first_usual = next(i for i, c in enumerate(counts) if c == usual)
    others = ""
    if len(odd) > 1:
        names = [Path(paths[i]).name for i in odd]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        others = f" ({len(odd)} file(s) differ from them: {shown})"
    raise ImageReadError(f"{paths[odd[0]]}: has {counts[odd[0]]} channel(s) but {tally[usual]} other image(s) of "
                         f"the folder, e.g. {Path(paths[first_usual]).name}, have {usual}{others}; pass --channels 1 "
                         f"or --channels 3 to convert")


def load_image_set(path: str | os.PathLike, channels: int | None = None, min_size: int = 1,
                   limit: int | None = None, min_size_reason: str | None = None) -> ImageSet:
    """Load one image file or every image of a folder.

    Args:
        path: file or folder.
        channels: convert every image to 1 (BT.601 luma) or 3 channels; None keeps them.
        min_size: every image must have H, W >= min_size (e.g. the crop size).
        limit: keep only the first ``limit`` files (sorted by name).
        min_size_reason: what ``min_size`` is, for the error message (default: the crop size).

    Raises:
        FileNotFoundError / NotADirectoryError / ValueError: the path is missing or has no images.
        ImageReadError: a file is corrupt, unreadable or smaller than ``min_size``; names the file.
    """
    paths = image_paths(path)
    if limit is not None:
        paths = paths[:limit]
    images, counts = [], []
    # Warnings (e.g. an alpha channel dropped) are shown only once every file has been read and
    # checked: a refused folder gives its one error, naming the odd file, and nothing else.
    with held_warnings():
        for p in paths:
            img, _ = read_image(p)
            if min(img.shape[1:]) < min_size:
                reason = min_size_reason or f"the crop size {min_size}; use a smaller --crop-size or drop the file"
                raise ImageReadError(f"{p}: image is {img.shape[2]}×{img.shape[1]}, smaller than {reason}")
            counts.append(img.shape[0])
            images.append(match_channels(img, channels, str(p)))  # converted at once: one image at a time in memory
        if channels is None:
            check_one_channel_count(paths, counts)
    names = [Path(p).name for p in paths]
    return ImageSet(images, names)


def random_dihedral(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One of the 8 flips/90° rotations of a (..., H, W) tensor, chosen at random.

    These transforms permute pixels and so keep a pixel-wise noise distribution unchanged
    (the only crop augmentations RCL may use).
    """
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def random_crop(img: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """A random size×size crop of a (C, H, W) image (requires H, W >= size)."""
    _, h, w = img.shape
    if h < size or w < size:
        raise ValueError(f"image {w}×{h} is smaller than the crop size {size}")
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return img[:, top:top + size, left:left + size]


class ImageBank:
    """An :class:`ImageSet` flattened into one (pixels, C) buffer on a device, so that a whole batch
    of crops (any image sizes, with a dihedral transform each) is one gather, without a Python loop
    per crop.

    Args:
        images: the images (C, H, W).
        device: where the buffer lives (the training device).

    Attributes:
        heights, widths: (N,) int64 on ``device``.
        decodes_files: False (the images are in memory; a
            :class:`rcl.data.filebank.FileBank` decodes its files for each batch).
    """

    decodes_files = False

    def __init__(self, images: ImageSet, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.names = list(images.names)
        self.channels = images.channels
        sizes = [(im.shape[1], im.shape[2]) for im in images.images]
        self.sizes_hw = sizes  # host copy: checks never read the device
        self.heights = torch.tensor([h for h, _ in sizes], dtype=torch.long, device=self.device)
        self.widths = torch.tensor([w for _, w in sizes], dtype=torch.long, device=self.device)
        counts = self.heights * self.widths
        self.offsets = torch.cumsum(counts, 0) - counts
        self.buffer = torch.cat([im.to(torch.float32).permute(1, 2, 0).reshape(-1, self.channels)
                                 for im in images.images]).to(self.device)

    def __len__(self) -> int:
        return len(self.names)

    def min_side(self) -> int:
        return min(min(hw) for hw in self.sizes_hw)

    def crops(self, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int,
              code: torch.Tensor | None = None) -> torch.Tensor:
        """Crops ``[top, top + size) × [left, left + size)`` of images ``idx`` (each (b,) int64),
        transformed by dihedral ``code`` (b,) in 0..7 (bit 0: transpose, bit 1: flip rows, bit 2:
        flip columns; None: no transform).

        Returns:
            (b, C, size, size) float32, in the channels-last memory layout.
        """
        return gather_crops(self.buffer, self.offsets[idx], self.widths[idx], top, left, size, code)


def gather_crops(buffer: torch.Tensor, offsets: torch.Tensor, widths: torch.Tensor, top: torch.Tensor,
                 left: torch.Tensor, size: int, code: torch.Tensor | None) -> torch.Tensor:
    """The gather of :meth:`ImageBank.crops` on a (pixels, C) ``buffer``; per-crop ``offsets`` (of
    the image's first pixel) and ``widths``."""
    dev = buffer.device
    r = torch.arange(size, device=dev)
    b = offsets.shape[0]
    i = r.view(1, size, 1).expand(b, size, size)
    j = r.view(1, 1, size).expand(b, size, size)
    if code is not None:
        code = code.to(dev).view(b, 1, 1)
        i = torch.where((code >> 1) & 1 == 1, size - 1 - i, i)
        j = torch.where((code >> 2) & 1 == 1, size - 1 - j, j)
        t = code & 1 == 1
        i, j = torch.where(t, j, i), torch.where(t, i, j)
    rows = top.to(dev).view(b, 1, 1) + i
    cols = left.to(dev).view(b, 1, 1) + j
    lin = offsets.to(dev).view(b, 1, 1) + rows * widths.to(dev).view(b, 1, 1) + cols
    return buffer[lin].permute(0, 3, 1, 2)  # (b, size, size, C) viewed as (b, C, size, size)


def as_bank(images, device: torch.device | str | None = None):
    """``images`` as a crop source: an :class:`ImageSet` as an :class:`ImageBank` (on ``device``,
    default CPU), a :class:`rcl.data.filebank.FileImageSet` as its
    :class:`~rcl.data.filebank.FileBank` (CPU), a bank as it is."""
    if isinstance(images, ImageSet):
        return ImageBank(images, device or "cpu")
    from .filebank import FileBank, FileImageSet

    if isinstance(images, FileImageSet):
        return FileBank(images)
    return images


def crop_geometry(bank: "ImageBank", idx: torch.Tensor, size: int, draws, n: int, multiple: int = 1,
                  dihedral: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Random crop positions of side ``size`` in images ``idx`` (this rank's samples of a global
    batch of ``n``): ``(top, left, code)``, offsets multiples of ``multiple`` (JDD: whole 2×2
    tiles), ``code`` a random dihedral transform (None when not ``dihedral``).

    Raises:
        ValueError: an image is smaller than the crop.
    """
    if bank.min_side() < size:  # a host-side check: no device sync per step
        raise ValueError(f"an image is smaller ({bank.min_side()} px) than the crop size {size}")
    h, w = bank.heights[idx.to(bank.device)], bank.widths[idx.to(bank.device)]
    top = draws.below((h - size) // multiple + 1, n) * multiple
    left = draws.below((w - size) // multiple + 1, n) * multiple
    code = draws.randint(8, n) if dihedral else None
    return top, left, code


def contrastive_batch(images: "ImageSet | ImageBank", batch_images: int, crop: int,
                      draws) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random crops (each with a random dihedral transform) of each of
    ``batch_images`` distinct images (all images if fewer).

    Args:
        images: the collection (an ImageSet is turned into a CPU :class:`ImageBank`).
        draws: a :class:`rcl.data.draws.Draws` (or a torch.Generator); the image choice is the same
            on every rank, each rank crops its own images.

    Returns:
        ``(crops, image_index)``: crops (2b, C, crop, crop) ordered [view 1 of this rank's b images,
        view 2 of them], so local crop i and i + b are a positive pair; image_index (b,) the
        images' indices (the whole global batch's order is :func:`rcl.distributed.split` of it).
    """
    from .draws import as_draws

    draws = as_draws(draws)
    bank = as_bank(images)
    n = len(bank)
    b = min(batch_images, n)
    idx = draws.shared_randperm(n)[:b].to(bank.device)[draws.local(b)]
    (t1, l1, c1), (t2, l2, c2) = (crop_geometry(bank, idx, crop, draws, b) for _ in range(2))
    # both views in one gather (a file-backed bank then decodes each image once per step); the
    # cat gives the memory layout of one gather per view
    x = bank.crops(torch.cat([idx, idx]), torch.cat([t1, t2]), torch.cat([l1, l2]), crop, torch.cat([c1, c2]))
    k = idx.shape[0]
    return torch.cat([x[:k], x[k:]]), idx


def crop_batch(images: "ImageSet | ImageBank", batch: int, crop: int, draws,
               targets: "ImageSet | ImageBank | None" = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``batch`` random crops (images drawn with replacement), each with a random dihedral transform;
    this rank's share of them.

    If ``targets`` is given (same sizes as ``images``), the same crop and transform is taken from it.
    Returns (b, C, crop, crop) inputs and targets (or None).
    """
    from .draws import as_draws

    draws = as_draws(draws)
    bank = as_bank(images)
    idx = draws.randint(len(bank), batch).to(bank.device)
    top, left, code = crop_geometry(bank, idx, crop, draws, batch)
    x = bank.crops(idx, top, left, crop, code)
    if targets is None:
        return x, None
    tb = as_bank(targets, bank.device)
    if list(tb.sizes_hw) != list(bank.sizes_hw):
        raise ValueError("targets and inputs differ in size")
    return x, tb.crops(idx, top, left, crop, code)


def image_seed(seed: int, name: str) -> int:
    """A per-image seed that depends on the run seed and the file name only (not on the order):
    the CRC-32 of the name's UTF-8 bytes (a name that is not UTF-8: its raw bytes, surrogate-escaped)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8", "surrogateescape"))) % (2**63 - 1)


def add_noise_per_image(images: ImageSet, noise: NoiseModel, seed: int) -> tuple[ImageSet, torch.Tensor]:
    """Apply ``noise`` once to each image with a generator seeded by ``seed`` and the image's name.

    Used to make a fixed noisy training set (what a user holds) and the fixed-seed noisy test
    images of the evaluation protocol. Returns the noisy set and the per-image σ (N,).
    """
    noisy, sigmas = [], []
    for i, img in enumerate(images.images):
        g = torch.Generator().manual_seed(image_seed(seed, images.names[i]))
        y, params = noise(img.unsqueeze(0), g)
        noisy.append(y[0])
        sigmas.append(params["sigma"][0])
    return ImageSet(noisy, list(images.names)), torch.stack(sigmas)


def as_source(images, device: torch.device | str = "cpu"):
    """What a method crops from: an :class:`ImageSet` as an :class:`ImageBank` on ``device``; a
    :class:`rcl.data.filebank.FileImageSet` as a :class:`rcl.data.filebank.FileBank` (on the CPU,
    decoded batch by batch, in DataLoader workers: the trainer moves the batches to ``device``); a
    bank as it is."""
    return as_bank(images, device)
