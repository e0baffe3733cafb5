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

from .io import ImageReadError, image_paths, read_image
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
    images, names = [], []
    for p in paths:
        img, _ = read_image(p)
        if min(img.shape[1:]) < min_size:
            reason = min_size_reason or f"the crop size {min_size}; use a smaller --crop-size or drop the file"
            raise ImageReadError(f"{p}: image is {img.shape[2]}×{img.shape[1]}, smaller than {reason}")
        if channels is None and images and img.shape[0] != images[0].shape[0]:
            raise ImageReadError(f"{p}: has {img.shape[0]} channel(s) but {paths[0].name} has "
                                 f"{images[0].shape[0]}; pass --channels 1 or --channels 3 to convert")
        images.append(match_channels(img, channels, str(p)))
        names.append(Path(p).name)
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


def contrastive_batch(images: ImageSet, batch_images: int, crop: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random crops (with dihedral augmentation) of each of ``batch_images`` images.

    Returns:
        ``(crops, image_index)``: crops (2B, C, crop, crop) ordered [view 1 of images 0..B-1,
        view 2 of images 0..B-1], so crop i and crop i + B are a positive pair; image_index (B,).
    """
    n = len(images)
    b = min(batch_images, n)
    idx = torch.randperm(n, generator=generator)[:b]
    v1, v2 = [], []
    for i in idx.tolist():
        img = images.images[i]
        v1.append(random_dihedral(random_crop(img, crop, generator), generator))
        v2.append(random_dihedral(random_crop(img, crop, generator), generator))
    return torch.stack(v1 + v2), idx


def crop_batch(images: ImageSet, batch: int, crop: int, generator: torch.Generator,
               targets: ImageSet | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``batch`` random crops (images drawn with replacement), dihedral-augmented.

    If ``targets`` is given (same sizes as ``images``), the same crop/transform is taken from it.
    Returns (B, C, crop, crop) inputs and targets (or None).
    """
    xs, ys = [], []
    for _ in range(batch):
        i = int(torch.randint(0, len(images), (1,), generator=generator))
        img = images.images[i]
        if targets is not None:
            img = torch.cat([img, targets.images[i]], dim=0)
        c = random_dihedral(random_crop(img, crop, generator), generator)
        k = images.images[i].shape[0]
        xs.append(c[:k])
        if targets is not None:
            ys.append(c[k:])
    return torch.stack(xs), (torch.stack(ys) if targets is not None else None)


def image_seed(seed: int, name: str) -> int:
    """A per-image seed that depends on the run seed and the file name only (not on the order)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


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
