"""Real pairs: PolyU-style name parsing, matching by file name, scene-disjoint splits.

The last tests use the PolyU crops at ../shared/data/real/PolyU beside the checkout when present
(Xu et al., arXiv 1804.02603; non-commercial research use only) and skip otherwise.
"""

from pathlib import Path

import pytest
import torch

from rcl.data.io import write_image
from rcl.data.real_pairs import (Pair, PolyUName, check_pair_files, check_pair_images, image_size, matched_pairs,
                                 parse_name, scene_key, scene_split)

POLYU = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "PolyU"
needs_polyu = pytest.mark.skipif(not (POLYU / "noisy").is_dir() or not (POLYU / "clean").is_dir(),
                                 reason="needs ../shared/data/real/PolyU (noisy/ and clean/) beside the checkout")


# ------------------------------------------------------------------------------------ names

def test_parse_name():
    p = parse_name("Canon5D2_5_160_3200_chair_11.jpg")
    assert p == PolyUName("Canon5D2", "5", "160", "3200", "chair", 11)
    assert p.capture == "Canon5D2_5_160_3200_chair"
    assert parse_name("some/folder/Sony_4-5_125_1600_toy_10.PNG").scene == "toy"
    assert parse_name("Sony_4-5_125_1600_toy_10").crop == 10  # no suffix


def test_parse_name_empty_field_and_multiword_scene():
    assert parse_name("NikonD800_6-3_125_5000_plant__4.jpg") == PolyUName("NikonD800", "6-3", "125", "5000",
                                                                           "plant", 4)
    assert parse_name("Cam_4_125_800_living_room_3.png").scene == "living_room"


@pytest.mark.parametrize("bad", ["chair_11.jpg", "Canon_5_160_3200_chair.jpg", "Canon_5_160_3200_chair_x.jpg",
                                 "a_b_c_d__7.jpg"])
def test_parse_name_refusals_name_the_file(bad):
    with pytest.raises(ValueError, match=bad.split(".")[0]):
        parse_name(bad)


def test_scene_key():
    assert scene_key("Canon80D_8_8_800_GO_11.jpg") == "go"
    assert scene_key("Sony_3-5_200_1600_classroom_10.jpg") == scene_key("NikonD800_11_160_3200_classroom_4.jpg")
    assert scene_key("Sony_3-5_200_1600_classroom_10.jpg", by="capture") == "Sony_3-5_200_1600_classroom"
    assert (scene_key("NikonD800_11_160_3200_classroom_4.jpg", by="capture")
            != scene_key("NikonD800_4-5_160_1800_classroom_5.jpg", by="capture"))
    with pytest.raises(ValueError, match="by must be"):
        scene_key("Sony_3-5_200_1600_classroom_10.jpg", by="camera")


# ------------------------------------------------------------------------------------ pairs

def _write(path, h=8, w=10, c=3, seed=0, bit_depth=8):
    g = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, torch.rand(c, h, w, generator=g), bit_depth=bit_depth)


def test_matched_pairs(tmp_path):
    for i, name in enumerate(["b.png", "a.png", "c.tif"]):
        _write(tmp_path / "noisy" / name, seed=i, bit_depth=16 if name == "a.png" else 8)
        _write(tmp_path / "clean" / name, seed=10 + i)
    pairs = matched_pairs(tmp_path / "noisy", tmp_path / "clean")
    assert [p.name for p in pairs] == ["a.png", "b.png", "c.tif"]
    assert pairs[0] == Pair("a.png", tmp_path / "noisy" / "a.png", tmp_path / "clean" / "a.png")
    assert image_size(tmp_path / "noisy" / "a.png") == (10, 8)


def test_matched_pairs_refusals(tmp_path):
    _write(tmp_path / "noisy" / "a.png")
    _write(tmp_path / "clean" / "a.png")
    _write(tmp_path / "noisy" / "extra.png")
    with pytest.raises(ValueError, match=r"extra\.png: no clean image of the same name"):
        matched_pairs(tmp_path / "noisy", tmp_path / "clean")
    (tmp_path / "noisy" / "extra.png").unlink()
    _write(tmp_path / "clean" / "lonely.png")
    with pytest.raises(ValueError, match=r"lonely\.png: no noisy image of the same name"):
        matched_pairs(tmp_path / "noisy", tmp_path / "clean")
    (tmp_path / "clean" / "lonely.png").unlink()
    _write(tmp_path / "clean" / "a.png", h=9)
    with pytest.raises(ValueError, match=r"a\.png: 10×8 px, but its clean image .*a\.png is 10×9 px"):
        matched_pairs(tmp_path / "noisy", tmp_path / "clean")
    (tmp_path / "clean" / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"a\.png"):
        matched_pairs(tmp_path / "noisy", tmp_path / "clean")
    with pytest.raises(FileNotFoundError):
        matched_pairs(tmp_path / "nowhere", tmp_path / "clean")


# ------------------------------------------------------------------------------------ splits

def _names():
    """Synthetic crops: 12 scenes with 1–5 crops, 'hall' shot by two cameras."""
    out = []
    for i, scene in enumerate(["chair", "plug", "desk", "fruit", "toy", "book", "ball", "wall", "stair", "door",
                               "photo"]):
        out += [f"Cam{i % 3}_5_160_3200_{scene}_{k}.jpg" for k in range(1 + i % 5)]
    out += ["CamA_4_125_1600_hall_1.jpg", "CamA_4_125_1600_hall_2.jpg", "CamB_8_8_800_hall_1.jpg"]
    return out


def _check_disjoint(split, names, by="scene"):
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sorted(split.train + split.val + split.test) == sorted(names)  # every name once
    scenes = [{scene_key(n, by) for n in p} for p in parts]
    assert not (scenes[0] & scenes[1]) and not (scenes[0] & scenes[2]) and not (scenes[1] & scenes[2])
    return scenes



def test_check_pair_files_refuses_one_file(tmp_path):
    write_image(tmp_path / "clean.png", torch.rand(1, 8, 8))
    (tmp_path / "link.png").symlink_to(tmp_path / "clean.png")
    check_pair_files([Pair("a.png", tmp_path / "clean.png", tmp_path / "other.png")])
    with pytest.raises(ValueError, match=r"link\.png: is the same file as its clean image"):
        check_pair_files([Pair("a.png", tmp_path / "link.png", tmp_path / "clean.png")])


def test_check_pair_images():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 255, (1, 8, 8), generator=g) / 255.0  # 8-bit values
    noisy = (clean + 0.05 * torch.randn(1, 8, 8, generator=g)).clamp(0, 1)
    check_pair_images("n", "c", noisy, clean, scored=True)  # a real pair passes
    with pytest.raises(ValueError, match="n: 3 channel\\(s\\), but its clean image c has 1; use --channels"):
        check_pair_images("n", "c", noisy.expand(3, -1, -1), clean)
    with pytest.raises(ValueError, match="n: 7×8 px, but its clean image c is 8×8 px"):
        check_pair_images("n", "c", noisy[..., :7], clean)
    with pytest.raises(ValueError, match="n: identical to its clean image c; a pair must hold a noisy image"):
        check_pair_images("n", "c", clean.clone(), clean)
    # float rounding (BT.601 luma of a grey image stored as RGB differs by ~6e-8) is no noise
    rounded = clean + 6e-8
    assert not torch.equal(rounded, clean)
    with pytest.raises(ValueError, match="identical to its clean image c;"):
        check_pair_images("n", "c", rounded, clean)
    # a difference below half an 8-bit step: a training pair (16-bit data), but not a scoreable one
    sub8 = clean + 1.0 / 65535
    check_pair_images("n", "c", sub8, clean)
    with pytest.raises(ValueError, match="identical to its clean image c at 8-bit precision"):
        check_pair_images("n", "c", sub8, clean, scored=True)


@pytest.mark.parametrize("seed", range(20))
def test_scene_split_disjoint_and_covering(seed):
    names = _names()
    split = scene_split(names, (0.6, 0.2, 0.2), seed=seed)
    _check_disjoint(split, names)
    assert split.train and split.val and split.test
    assert all(p == sorted(p) for p in split)
    # the two cameras' "hall" crops stay together with by="scene"
    halls = [i for i, p in enumerate(split) if any("_hall_" in n for n in p)]
    assert len(halls) == 1
    assert scene_split(names, (0.6, 0.2, 0.2), seed=seed) == split  # deterministic


def test_scene_split_by_capture_may_separate_cameras():
    names = _names()
    seen = set()
    for seed in range(30):
        split = scene_split(names, (0.5, 0.25, 0.25), seed=seed, by="capture")
        _check_disjoint(split, names, by="capture")
        seen.add(len({i for i, p in enumerate(split) for n in p if "_hall_" in n}))
    assert 2 in seen


def test_scene_split_sizes_follow_fractions():
    # 40 scenes of 2 crops: whole scenes can hit 60/20/20 exactly
    names = [f"Cam_5_160_3200_s{i}_{k}.png" for i in range(40) for k in range(2)]
    for seed in range(5):
        split = scene_split(names, (0.6, 0.2, 0.2), seed=seed)
        assert [len(p) for p in split] == [48, 16, 16]
    assert scene_split(names, (0.6, 0.2, 0.2), seed=0) != scene_split(names, (0.6, 0.2, 0.2), seed=1)


def test_scene_split_zero_fraction_and_forced_nonempty():
    names = _names()
    split = scene_split(names, (0.8, 0.0, 0.2), seed=3)
    assert split.val == [] and split.train and split.test
    # one big scene and two small ones, 0.8/0.1/0.1: greedy alone would leave test empty
    names = [f"C_1_1_1_big_{k}.png" for k in range(30)] + [f"C_1_1_1_mid_{k}.png" for k in range(30)] + \
            [f"C_1_1_1_small_{k}.png" for k in range(9)]
    for seed in range(6):
        split = scene_split(names, (0.8, 0.1, 0.1), seed=seed)
        assert all(split), seed
        _check_disjoint(split, names)


def test_scene_split_refusals():
    names = _names()
    with pytest.raises(ValueError, match="sum to 1"):
        scene_split(names, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="non-negative"):
        scene_split(names, (1.2, -0.1, -0.1))
    with pytest.raises(ValueError, match="three"):
        scene_split(names, (0.5, 0.5))
    with pytest.raises(ValueError, match="seed"):
        scene_split(names, seed=-1)
    with pytest.raises(ValueError, match="duplicate"):
        scene_split(names + names[:1])
    with pytest.raises(ValueError, match="not a PolyU-style name"):
        scene_split(names + ["photo.png"])
    with pytest.raises(ValueError, match="2 scene"):
        scene_split(["C_1_1_1_a_1.png", "C_1_1_1_b_1.png"], (0.8, 0.1, 0.1))


# ------------------------------------------------------------------------------------ PolyU

@needs_polyu
def test_polyu_pairs_and_split_are_scene_disjoint():
    pairs = matched_pairs(POLYU / "noisy", POLYU / "clean")
    names = [p.name for p in pairs]
    assert len(names) == 69
    # 23 captures: the double underscore of NikonD800_6-3_125_5000_plant__4 is not a 24th one
    assert len({scene_key(n, "capture") for n in names}) == 23
    assert len({scene_key(n) for n in names}) == 19
    for by in ("scene", "capture"):
        for seed in range(10):
            split = scene_split(names, (0.7, 0.15, 0.15), seed=seed, by=by)
            scenes = _check_disjoint(split, names, by)
            assert all(split)
            if by == "capture":  # one scene word may then lie in two parts (see rcl.data.real_pairs)
                continue
            words = [{parse_name(n).scene.casefold() for n in p} for p in split]
            assert not (words[0] & words[1]) and not (words[0] & words[2]) and not (words[1] & words[2])
            assert scenes == words
