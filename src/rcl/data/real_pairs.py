"""Real (noisy, clean) pairs: matching two folders by file name, and splits that keep scenes apart.

Crops of one photograph share content and noise realisation statistics, so a split that puts crops
of one scene in both the training and the test part measures memorisation. :func:`scene_split`
splits by scene, with the scene parsed from PolyU-style file names (:func:`parse_name`).

**PolyU names.** The PolyU real-world noisy image dataset (Xu, Li, Liang, Zhang, Zhang,
"Real-world noisy image denoising: a new benchmark", arXiv 1804.02603; non-commercial research use
only) names its 512×512 crops ``CAMERA_APERTURE_SHUTTER_ISO_SCENE_CROP``, e.g.
``Canon5D2_5_160_3200_chair_11`` (aperture 5, shutter 1/160 s, ISO 3200, scene "chair", crop 11).
The rule used here, from the 69 crops we hold:

* the name (suffix removed) is split at ``_`` and **empty fields are dropped**: one file is called
  ``NikonD800_6-3_125_5000_plant__4`` (double underscore), whose scene is "plant";
* the first four fields are camera, aperture, shutter and ISO, the last is the crop index (an
  integer), and the fields between them, joined with ``_``, are the scene word;
* a **capture** is camera + settings + scene word (one burst of shots of one scene: PolyU's own
  unit; 23 in our 69 crops — 24 if the double underscore of ``plant__4`` were
  read as an empty scene field).

**Which crops count as one scene** (``by`` in :func:`scene_key` and :func:`scene_split`):

* ``by="scene"`` (the default): the scene word alone, case-folded, across cameras and settings.
  The same word does not always mean the same place, but it sometimes does, and the name cannot
  tell which: in our crops the three "classroom" captures (two NikonD800 settings, one Sony) show
  three different rooms, and the Canon5D2 and Sony "toy" captures different objects, but the
  Canon600D and Sony "waterhouse" captures show what looks like the same light-wood cabinets with
  the same handles. Merging by word can only make the split coarser, never leak a place into two
  parts, so it is the default (19 scenes in our 69 crops).
* ``by="capture"``: camera, settings and scene word (PolyU's captures, 23 in our crops): finer, but two captures
  of one place by two cameras may then land in different parts.

Keying by camera + scene word (without the settings) is not offered: it keeps the two
"waterhouse" cameras apart (the possible leak) while merging the two different NikonD800
classrooms, so it is neither safe nor precise.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from .io import IMAGE_SUFFIXES, list_images

__all__ = ["Pair", "PolyUName", "SceneSplit", "image_size", "matched_pairs", "parse_name", "scene_key",
           "scene_split"]

SCENE_KEYS = ("scene", "capture")


@dataclass(frozen=True)
class PolyUName:
    """The fields of a PolyU-style file name (see the module docstring)."""

    camera: str
    aperture: str
    shutter: str
    iso: str
    scene: str
    crop: int

    @property
    def capture(self) -> str:
        """Camera, settings and scene word: one burst of one scene (PolyU's unit)."""
        return "_".join((self.camera, self.aperture, self.shutter, self.iso, self.scene))


def _stem(name: str | os.PathLike) -> str:
    name = Path(name).name
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name


def parse_name(name: str | os.PathLike) -> PolyUName:
    """Parse ``CAMERA_APERTURE_SHUTTER_ISO_SCENE_CROP`` (an image suffix and folders are ignored).

    Raises:
        ValueError: fewer than six non-empty fields, or a crop index that is not an integer;
            the message names the file.
    """
    stem = _stem(name)
    fields = [f for f in stem.split("_") if f]
    if len(fields) < 6:
        raise ValueError(f"{name}: not a PolyU-style name CAMERA_APERTURE_SHUTTER_ISO_SCENE_CROP "
                         f"(e.g. Canon5D2_5_160_3200_chair_11.jpg): {len(fields)} field(s)")
    if not fields[-1].isdigit():
        raise ValueError(f"{name}: the last field {fields[-1]!r} is not a crop index (an integer)")
    return PolyUName(*fields[:4], scene="_".join(fields[4:-1]), crop=int(fields[-1]))


def scene_key(name: str | os.PathLike, by: str = "scene") -> str:
    """The scene a crop belongs to: its scene word (``by="scene"``, case-folded) or its capture
    (``by="capture"``); see the module docstring for why the word alone is the default.

    Raises:
        ValueError: an unknown ``by``; a name :func:`parse_name` refuses.
    """
    if by not in SCENE_KEYS:
        raise ValueError(f"by must be one of {', '.join(SCENE_KEYS)}, got {by!r}")
    p = parse_name(name)
    return p.scene.casefold() if by == "scene" else p.capture


class Pair(NamedTuple):
    """A noisy image and its clean reference, matched by file name."""

    name: str
    noisy: Path
    clean: Path


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header (no pixel decoded where the format allows).

    Raises:
        ImageReadError: the file cannot be read as an image (it is then decoded fully to say why).
    """
    from PIL import Image

    from .io import _pillow_limit_lifted, read_image

    path = Path(path)
    try:
        with _pillow_limit_lifted(), Image.open(path) as im:
            return tuple(im.size)
    except Exception:
        img, _ = read_image(path)  # raises the reader's one-line error naming the file
        return img.shape[-1], img.shape[-2]


def _preview(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def matched_pairs(noisy_dir: str | os.PathLike, clean_dir: str | os.PathLike) -> list[Pair]:
    """Pair every image of ``noisy_dir`` with the image of the same file name in ``clean_dir``.

    Returns:
        The pairs, sorted by name. Sizes are compared from the file headers.

    Raises:
        FileNotFoundError / NotADirectoryError / ValueError: a folder is missing or holds no image.
        ValueError: a file without a partner of the same name in the other folder, or a pair whose
            sizes differ; the message names the file(s).
        ImageReadError: a file that is not a readable image.
    """
    noisy = {p.name: p for p in list_images(noisy_dir)}
    clean = {p.name: p for p in list_images(clean_dir)}
    only_noisy = sorted(set(noisy) - set(clean))
    only_clean = sorted(set(clean) - set(noisy))
    if only_noisy:
        raise ValueError(f"{noisy[only_noisy[0]]}: no clean image of the same name in {clean_dir} "
                         f"({len(only_noisy)} unmatched noisy file(s): {_preview(only_noisy)})")
    if only_clean:
        raise ValueError(f"{clean[only_clean[0]]}: no noisy image of the same name in {noisy_dir} "
                         f"({len(only_clean)} unmatched clean file(s): {_preview(only_clean)})")
    pairs = []
    for name in sorted(noisy):
        a, b = image_size(noisy[name]), image_size(clean[name])
        if a != b:
            raise ValueError(f"{noisy[name]}: {a[0]}×{a[1]} px, but its clean image {clean[name]} is {b[0]}×{b[1]} px")
        pairs.append(Pair(name, noisy[name], clean[name]))
    return pairs


def check_pair_files(pairs: Sequence[Pair]) -> None:
    """Refuse a pair whose noisy and clean paths are one file (a symbolic link, say).

    Raises:
        ValueError: names the noisy file and its clean partner.
    """
    for pair in pairs:
        if Path(pair.noisy).resolve() == Path(pair.clean).resolve():
            raise ValueError(f"{pair.noisy}: is the same file as its clean image {pair.clean}")


def check_pair_images(noisy_path, clean_path, noisy, clean, scored: bool = False) -> None:
    """Refuse a decoded (noisy, clean) pair that cannot be trained on or scored.

    Args:
        noisy_path, clean_path: the files, for the message.
        noisy, clean: (C, H, W) tensors of the pair as read, in [0, 1].
        scored: the pair is to be scored (``rcl evaluate``): then a pair identical once quantised
            to 8 bits, the precision of the protocol's PSNR, is refused too (its PSNR is infinite).

    Raises:
        ValueError: the channel counts differ (with the ``--channels`` hint), the sizes differ, or
            the two images are the same: equal within 1e-6 (float rounding, e.g. of a grey image
            stored as RGB and read with ``--channels 1``; a 16-bit step is 1.5e-5), or, with
            ``scored``, equal at 8 bits. There is then no noise in the pair.
    """
    import torch

    if noisy.shape[0] != clean.shape[0]:
        raise ValueError(f"{noisy_path}: {noisy.shape[0]} channel(s), but its clean image {clean_path} has "
                         f"{clean.shape[0]}; use --channels 1 or 3")
    if noisy.shape != clean.shape:
        raise ValueError(f"{noisy_path}: {noisy.shape[-1]}×{noisy.shape[-2]} px, but its clean image {clean_path} "
                         f"is {clean.shape[-1]}×{clean.shape[-2]} px")
    if torch.allclose(noisy, clean, rtol=0, atol=1e-6):
        raise ValueError(f"{noisy_path}: identical to its clean image {clean_path}; a pair must hold a noisy "
                         f"image")
    from .io import quantize

    if scored and (quantize(noisy) == quantize(clean)).all():
        raise ValueError(f"{noisy_path}: identical to its clean image {clean_path} at 8-bit precision, the "
                         f"precision of the protocol's PSNR; a pair must hold a noisy image")


class SceneSplit(NamedTuple):
    """File names per part (sorted); no scene has crops in two parts."""

    train: list[str]
    val: list[str]
    test: list[str]


def _check_fractions(fractions) -> tuple[float, float, float]:
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if len(fr) != 3 or not all(math.isfinite(f) and f >= 0 for f in fr):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions!r}")
    if abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fr):g})")
    return fr


def scene_split(names: Iterable[str | os.PathLike], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                by: str = "scene") -> SceneSplit:
    """Split crops into train / val / test so that no scene has crops in two parts.

    The scenes (:func:`scene_key` with ``by``) are shuffled by ``seed`` and handed out one by one,
    each to the part furthest below its target (fraction × number of crops). A part with a positive
    fraction that ends empty then takes the smallest scene of the part holding the most scenes.
    Parts match their fractions in crops as closely as whole scenes allow.

    Args:
        names: file names (or paths); each must parse (:func:`parse_name`) and appear once.
        fractions: (train, val, test), non-negative, summing to 1; a zero gives an empty part.
        seed: an integer ≥ 0; the same names, fractions and seed give the same split.
        by: "scene" (default) or "capture".

    Returns:
        :class:`SceneSplit` of the names as given, each part sorted.

    Raises:
        ValueError: bad fractions, seed or ``by``; a duplicate or unparsable name; fewer scenes than
            parts with a positive fraction.
    """
    fr = _check_fractions(fractions)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    names = [os.fspath(n) for n in names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate names: {_preview(dup)}")
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(scene_key(n, by), []).append(n)
    parts = [i for i in range(3) if fr[i] > 0]
    if len(groups) < len(parts):
        raise ValueError(f"{len(groups)} scene(s) cannot fill {len(parts)} parts with a positive fraction "
                         f"{tuple(fractions)}; give a zero fraction to a part, or more scenes")
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target = [f * len(names) for f in fr]
    count = [0, 0, 0]
    keys: list[list[str]] = [[], [], []]
    for key in order:
        p = max(parts, key=lambda i: (target[i] - count[i], -i))
        keys[p].append(key)
        count[p] += len(groups[key])
    for p in parts:
        if not keys[p]:
            q = max(parts, key=lambda i: (len(keys[i]), -i))
            move = min(keys[q], key=lambda k: (len(groups[k]), k))
            keys[q].remove(move)
            keys[p].append(move)
    return SceneSplit(*(sorted(n for k in keys[i] for n in groups[k]) for i in range(3)))
