"""In-memory image sets, crops, contrastive batches and per-image noise."""

import pytest
import torch

from rcl.data.datasets import (ImageSet, add_noise_per_image, contrastive_batch, crop_batch, image_seed,
                               load_image_set, match_channels, random_crop, random_dihedral, rgb_to_gray)
from rcl.data.io import ImageReadError, write_image
from rcl.data.noise import GaussianNoise, GaussianRangeNoise


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _constant_set(n, c=1, h=20, w=23):
    """Image k is constant with value k+1 (distinct per image)."""
    return ImageSet([torch.full((c, h, w), float(k + 1)) for k in range(n)], [f"im{k}.png" for k in range(n)])


def _unique_image(c=1, h=20, w=23, offset=0.0):
    return (torch.arange(c * h * w, dtype=torch.float32).view(c, h, w) + offset)


def test_rgb_to_gray_bt601():
    img = torch.zeros(3, 2, 2)
    img[0], img[1], img[2] = 1.0, 0.5, 0.25
    g = rgb_to_gray(img)
    assert g.shape == (1, 2, 2)
    assert torch.allclose(g, torch.full((1, 2, 2), 0.299 + 0.5 * 0.587 + 0.25 * 0.114))
    assert rgb_to_gray(torch.ones(4, 3, 5, 5)).shape == (4, 1, 5, 5)
    assert torch.allclose(rgb_to_gray(torch.ones(3, 4, 4)), torch.ones(1, 4, 4))


def test_match_channels():
    rgb = torch.rand(3, 4, 5, generator=_gen())
    gray = torch.rand(1, 4, 5, generator=_gen(1))
    assert match_channels(rgb, None) is rgb
    assert match_channels(rgb, 3) is rgb
    assert torch.allclose(match_channels(rgb, 1), rgb_to_gray(rgb))
    g3 = match_channels(gray, 3)
    assert g3.shape == (3, 4, 5) and all(torch.equal(g3[c], gray[0]) for c in range(3))
    with pytest.raises(ValueError):
        match_channels(torch.zeros(2, 4, 4), 3)


def test_image_set_validation_and_subset():
    with pytest.raises(ValueError):
        ImageSet([], [])
    with pytest.raises(ValueError, match="channel"):
        ImageSet([torch.zeros(1, 4, 4), torch.zeros(3, 4, 4)], ["a", "b"])
    s = ImageSet([torch.zeros(1, 4, 6), torch.zeros(1, 9, 5), torch.zeros(1, 7, 7)], ["a", "b", "c"])
    assert len(s) == 3 and s.channels == 1 and s.min_side() == 4
    sub = s.subset([2, 0])
    assert sub.names == ["c", "a"] and sub.images[0] is s.images[2]


def test_random_crop_size_and_content():
    img = _unique_image(2, 20, 23)
    g = _gen(3)
    for _ in range(20):
        c = random_crop(img, 7, g)
        assert c.shape == (2, 7, 7)
        # a contiguous window: value at (y, x) = base + y*W + x
        base = c[0, 0, 0].item()
        top, left = divmod(int(base), 23)
        assert torch.equal(c, img[:, top:top + 7, left:left + 7])
    with pytest.raises(ValueError, match="smaller"):
        random_crop(img, 21, g)


def test_random_crop_full_size_is_whole_image():
    img = _unique_image(1, 9, 9)
    assert torch.equal(random_crop(img, 9, _gen()), img)


def test_random_crop_covers_all_positions():
    img = _unique_image(1, 5, 6)
    g = _gen(0)
    seen = {int(random_crop(img, 3, g)[0, 0, 0]) for _ in range(400)}
    assert len(seen) == 3 * 4  # all (5-3+1)×(6-3+1) origins


def test_random_dihedral_is_one_of_eight():
    x = _unique_image(2, 5, 5)
    variants = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(-2, -1))
        variants += [r, torch.flip(r, dims=(-1,))]
    g = _gen(1)
    hits = set()
    for _ in range(200):
        y = random_dihedral(x, g)
        match = [i for i, v in enumerate(variants) if torch.equal(v, y)]
        assert match, "output is not a dihedral transform of the input"
        hits.add(match[0])
        # a pixel permutation: same multiset
        assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)
    assert len(hits) == 8


def test_contrastive_batch_pairs_come_from_same_image():
    images = _constant_set(6, c=1)
    g = _gen(5)
    crops, idx = contrastive_batch(images, 4, 8, g)
    assert crops.shape == (8, 1, 8, 8) and idx.shape == (4,)
    assert len(set(idx.tolist())) == 4  # distinct images
    for i in range(4):
        v1, v2 = crops[i], crops[i + 4]
        assert (v1 == v1.flatten()[0]).all() and (v2 == v2.flatten()[0]).all()
        assert v1[0, 0, 0].item() == v2[0, 0, 0].item() == idx[i].item() + 1
    # negatives: crops of different images have different values
    values = crops[:4, 0, 0, 0]
    assert len(set(values.tolist())) == 4


def test_contrastive_batch_views_differ_and_batch_capped():
    images = ImageSet([_unique_image(1, 30, 30, offset=1000 * k) for k in range(2)], ["a", "b"])
    crops, idx = contrastive_batch(images, 5, 10, _gen(0))
    assert crops.shape == (4, 1, 10, 10) and sorted(idx.tolist()) == [0, 1]
    for i in range(2):
        lo = 1000 * idx[i].item()
        assert ((crops[i] >= lo) & (crops[i] < lo + 900)).all()
        assert ((crops[i + 2] >= lo) & (crops[i + 2] < lo + 900)).all()
    assert not torch.equal(crops[0], crops[2]) or not torch.equal(crops[1], crops[3])


def test_contrastive_batch_seeded():
    images = _constant_set(5)
    a, ia = contrastive_batch(images, 3, 6, _gen(9))
    b, ib = contrastive_batch(images, 3, 6, _gen(9))
    assert torch.equal(a, b) and torch.equal(ia, ib)


def test_crop_batch_with_aligned_targets():
    n = 3
    inputs = ImageSet([_unique_image(3, 17, 19, offset=10000 * k) for k in range(n)], [str(k) for k in range(n)])
    targets = ImageSet([-im[:1] for im in inputs.images], inputs.names)  # 1 channel target, aligned
    x, y = crop_batch(inputs, 10, 6, _gen(2), targets=targets)
    assert x.shape == (10, 3, 6, 6) and y.shape == (10, 1, 6, 6)
    assert torch.equal(y, -x[:, :1])
    x2, y2 = crop_batch(inputs, 10, 6, _gen(2))
    assert y2 is None and x2.shape == (10, 3, 6, 6)


def test_crop_batch_seeded():
    inputs = ImageSet([_unique_image(1, 12, 12, offset=500 * k) for k in range(3)], ["a", "b", "c"])
    a, _ = crop_batch(inputs, 5, 4, _gen(1))
    b, _ = crop_batch(inputs, 5, 4, _gen(1))
    c, _ = crop_batch(inputs, 5, 4, _gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_image_seed_depends_on_name_and_seed():
    assert image_seed(0, "a.png") == image_seed(0, "a.png")
    assert image_seed(0, "a.png") != image_seed(0, "b.png")
    assert image_seed(0, "a.png") != image_seed(1, "a.png")
    assert 0 <= image_seed(-5, "x") < 2 ** 63


def test_add_noise_per_image_deterministic_and_order_independent():
    clean = ImageSet([torch.full((1, 16, 16), 0.1 * (k + 1)) for k in range(4)], ["d.png", "a.png", "c.png", "b.png"])
    noise = GaussianRangeNoise()
    noisy1, s1 = add_noise_per_image(clean, noise, seed=3)
    noisy2, s2 = add_noise_per_image(clean, noise, seed=3)
    assert s1.shape == (4,)
    for a, b in zip(noisy1.images, noisy2.images):
        assert torch.equal(a, b)
    assert torch.equal(s1, s2)
    assert noisy1.names == clean.names
    # reversed order: same noise per name
    rev = clean.subset([3, 2, 1, 0])
    noisy_r, s_r = add_noise_per_image(rev, noise, seed=3)
    for j, i in enumerate([3, 2, 1, 0]):
        assert torch.equal(noisy_r.images[j], noisy1.images[i])
        assert s_r[j] == s1[i]
    # a subset gets the same noise too
    noisy_sub, _ = add_noise_per_image(clean.subset([2]), noise, seed=3)
    assert torch.equal(noisy_sub.images[0], noisy1.images[2])
    # another seed changes the noise
    noisy3, _ = add_noise_per_image(clean, noise, seed=4)
    assert not torch.equal(noisy3.images[0], noisy1.images[0])


def test_add_noise_per_image_same_clean_different_names_differ():
    img = torch.full((1, 8, 8), 0.5)
    noisy, _ = add_noise_per_image(ImageSet([img, img], ["x.png", "y.png"]), GaussianNoise(0.1), seed=0)
    assert not torch.equal(noisy.images[0], noisy.images[1])
    assert torch.equal(img, torch.full((1, 8, 8), 0.5))  # input not modified


# ---------------------------------------------------------------- loading


def test_load_image_set_folder(tmp_path):
    g = _gen(0)
    write_image(tmp_path / "b.png", torch.rand(3, 12, 14, generator=g))
    write_image(tmp_path / "a.png", torch.rand(1, 10, 11, generator=g))
    write_image(tmp_path / "c.tif", torch.rand(1, 13, 12, generator=g), bit_depth=16)
    with pytest.raises(ValueError, match="channel"):
        load_image_set(tmp_path)
    s = load_image_set(tmp_path, channels=1)
    assert s.names == ["a.png", "b.png", "c.tif"] and s.channels == 1
    assert [tuple(im.shape) for im in s.images] == [(1, 10, 11), (1, 12, 14), (1, 13, 12)]
    s3 = load_image_set(tmp_path, channels=3, limit=2)
    assert s3.names == ["a.png", "b.png"] and s3.channels == 3
    single = load_image_set(tmp_path / "b.png")
    assert single.names == ["b.png"] and single.channels == 3


def _write_rgba(path, h=12, w=14, seed=0):
    import numpy as np
    from PIL import Image

    rgba = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(path)


def test_load_image_set_mixed_channels_names_the_odd_file_without_warnings(tmp_path):
    """An RGBA file among grayscale ones: the error names the RGBA file (the rarer channel count),
    not the next ordinary file, and the 'alpha channel dropped' warning is not printed before it."""
    import warnings

    g = _gen(0)
    _write_rgba(tmp_path / "a_rgba.png")
    for name in ("b.png", "c.png", "d.png"):
        write_image(tmp_path / name, torch.rand(1, 12, 14, generator=g))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ImageReadError, match=r"a_rgba\.png: has 3 channel\(s\) but 3 other image\(s\)") as exc:
            load_image_set(tmp_path)
    assert "b.png" in str(exc.value) and "--channels" in str(exc.value)
    assert not [w for w in seen if "alpha" in str(w.message)]
    # the odd file may come last, too
    (tmp_path / "a_rgba.png").unlink()
    _write_rgba(tmp_path / "z_rgba.png")
    with pytest.raises(ImageReadError, match=r"z_rgba\.png: has 3 channel\(s\)"):
        load_image_set(tmp_path)
    # converted, the folder loads, and the warning comes once, after the check
    with pytest.warns(UserWarning, match=r"z_rgba\.png: alpha channel dropped"):
        s = load_image_set(tmp_path, channels=1)
    assert s.channels == 1 and len(s) == 4


def test_load_image_set_too_small_names_file(tmp_path):
    write_image(tmp_path / "big.png", torch.rand(1, 40, 40, generator=_gen()))
    write_image(tmp_path / "tiny_one.png", torch.rand(1, 40, 12, generator=_gen()))
    with pytest.raises(ImageReadError, match="tiny_one.png") as exc:
        load_image_set(tmp_path, min_size=32)
    assert "32" in str(exc.value)
    assert len(load_image_set(tmp_path, min_size=12)) == 2


def test_load_image_set_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_set(tmp_path / "missing")
    with pytest.raises(ValueError):
        load_image_set(tmp_path)  # empty folder
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="broken.png"):
        load_image_set(tmp_path)
