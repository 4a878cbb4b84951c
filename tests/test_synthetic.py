"""The synthetic street world: determinism, map consistency, ground truth and the files on disk."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from pix2pix.data.synthetic import (
    BUILDING,
    CAR,
    CLASS_NAMES,
    INSTANCE_CLASSES,
    INSTANCE_ID_MULTIPLIER,
    LABEL_NC,
    PALETTE,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    STYLES,
    colorize_label,
    parse_size,
    render_scene,
    scene_rng,
    split_counts,
    write_synthetic_dataset,
)
from pix2pix.errors import ConfigError


@pytest.fixture(scope="module")
def scenes():
    """A small batch of 64x64 scenes shared by the map checks."""
    return [render_scene(scene_rng(0, i), 64, 64) for i in range(6)]


def _adjacent_same_class_pairs(instance: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different instance ids of the same class that are 4-neighbours somewhere."""
    pairs = set()
    for a, b in ((instance[:, 1:], instance[:, :-1]), (instance[1:, :], instance[:-1, :])):
        hit = (a != b) & (a >= INSTANCE_ID_MULTIPLIER) & (b >= INSTANCE_ID_MULTIPLIER)
        hit &= a // INSTANCE_ID_MULTIPLIER == b // INSTANCE_ID_MULTIPLIER
        pairs |= {tuple(sorted(p)) for p in zip(a[hit].tolist(), b[hit].tolist(), strict=True)}
    return pairs


# ----------------------------------------------------------------------------- constants


def test_class_table_is_consistent():
    assert LABEL_NC == len(CLASS_NAMES) == len(PALETTE) == 10
    assert CLASS_NAMES[0] == "void"
    assert len(set(PALETTE)) == LABEL_NC  # every class has its own colour
    assert {CAR, PERSON} <= set(INSTANCE_CLASSES)
    assert set(STYLES) == set(INSTANCE_CLASSES)
    assert len(STYLES[CAR]) == 5 and len(STYLES[PERSON]) == 4


def test_styles_of_a_class_are_far_apart_in_colour():
    for class_id, styles in STYLES.items():
        colors = np.array([s.color for s in styles], float)
        for a, b in combinations(range(len(styles)), 2):
            assert np.linalg.norm(colors[a] - colors[b]) > 100, (CLASS_NAMES[class_id], a, b)


# ----------------------------------------------------------------------------- render_scene


def test_render_scene_is_deterministic():
    a = render_scene(scene_rng(3, 7), 64, 64)
    b = render_scene(scene_rng(3, 7), 64, 64)
    for field in ("label", "instance", "photo"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.styles == b.styles
    c = render_scene(scene_rng(4, 7), 64, 64)
    assert not np.array_equal(a.photo, c.photo)
    assert not np.array_equal(a.label, c.label)


@pytest.mark.parametrize("size", [(64, 64), (96, 48), (1024, 512)])
def test_render_scene_shapes_and_dtypes(size):
    w, h = size
    s = render_scene(scene_rng(0, 1), w, h)
    assert s.label.shape == (h, w) and s.label.dtype == np.uint8
    assert s.instance.shape == (h, w) and s.instance.dtype == np.int32
    assert s.photo.shape == (h, w, 3) and s.photo.dtype == np.uint8
    assert s.label.max() < LABEL_NC
    assert s.photo.std() > 20  # a real picture, not a flat fill


def test_label_and_instance_maps_agree(scenes):
    for s in scenes:
        inst, label = s.instance, s.label
        is_thing = inst >= INSTANCE_ID_MULTIPLIER
        # Instance pixels carry their class in the id; stuff pixels carry the class id itself.
        np.testing.assert_array_equal(label[is_thing], inst[is_thing] // INSTANCE_ID_MULTIPLIER)
        np.testing.assert_array_equal(inst[~is_thing], label[~is_thing])
        assert np.isin(label, INSTANCE_CLASSES).sum() == is_thing.sum()
        # styles lists exactly the visible instances, with the class encoded in the id.
        assert set(s.styles) == set(np.unique(inst[is_thing]).tolist())
        for inst_id, st in s.styles.items():
            assert st.class_id == inst_id // INSTANCE_ID_MULTIPLIER
            assert inst_id % INSTANCE_ID_MULTIPLIER >= 0
            assert 0 <= st.style < len(STYLES[st.class_id])


def test_scenes_contain_the_street_classes(scenes):
    seen = set()
    for s in scenes:
        present = set(np.unique(s.label).tolist())
        assert {SKY, BUILDING, ROAD, SIDEWALK, CAR} <= present
        assert len(present) >= 6
        seen |= present
    assert {PERSON} <= seen
    assert len(seen) >= 8


def test_touching_instances_of_the_same_class_exist(scenes):
    pairs = set()
    for s in scenes:
        pairs |= _adjacent_same_class_pairs(s.instance)
    assert pairs, "no two same-class instances touch: the instance map would be redundant"
    assert any(a // INSTANCE_ID_MULTIPLIER == CAR for a, _ in pairs)  # parked bumper to bumper
    # Every image has a row of parked cars, so most images have touching cars.
    with_cars = sum(any(a // INSTANCE_ID_MULTIPLIER == CAR for a, _ in _adjacent_same_class_pairs(s.instance))
                    for s in scenes)
    assert with_cars >= len(scenes) // 2


def test_style_ground_truth_matches_the_photo():
    hits = total = 0
    for i in range(8):
        s = render_scene(scene_rng(1, i), 96, 96)
        for inst_id, st in s.styles.items():
            mask = s.instance == inst_id
            if mask.sum() < 12:  # slivers left by occlusion say little about appearance
                continue
            mean = s.photo[mask].mean(axis=0)
            colors = np.array([x.color for x in STYLES[st.class_id]], float)
            nearest = int(np.argmin(((colors - mean) ** 2).sum(axis=1)))
            hits += nearest == st.style
            total += 1
    assert total >= 40
    assert hits / total >= 0.9, f"{hits}/{total} instances look like their style"


def test_render_scene_rejects_tiny_or_non_integer_sizes():
    with pytest.raises(ConfigError, match="at least 32"):
        render_scene(scene_rng(0, 0), 16, 64)
    with pytest.raises(ConfigError, match="width"):
        render_scene(scene_rng(0, 0), 64.0, 64)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- sizes and splits


def test_parse_size():
    assert parse_size("256") == (256, 256)
    assert parse_size("512x256") == (512, 256)
    assert parse_size(" 64X32 ") == (64, 32)


@pytest.mark.parametrize("text", ["abc", "256x", "x256", "-64", "64x64x3", "64.5", ""])
def test_parse_size_rejects_malformed_text(text):
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_size(text)


@pytest.mark.parametrize("text", ["16", "64x8", "0"])
def test_parse_size_rejects_too_small(text):
    with pytest.raises(ConfigError, match="at least 32"):
        parse_size(text)


@pytest.mark.parametrize("num,fraction,expected", [
    (1, 0.2, (1, 0)), (2, 0.2, (1, 1)), (5, 0.2, (4, 1)), (10, 0.2, (8, 2)),
    (5, 0.0, (4, 1)), (3, 0.9, (1, 2)), (100, 0.25, (75, 25)),
])
def test_split_counts(num, fraction, expected):
    assert split_counts(num, fraction) == expected


# ----------------------------------------------------------------------------- write_synthetic_dataset


def test_dataset_layout_modes_and_contents(tmp_path):
    summary = write_synthetic_dataset(tmp_path, num=5, size=64, seed=2)
    assert (summary["num"], summary["train"], summary["test"]) == (5, 4, 1)
    assert summary["size"] == [64, 64]

    names = {"train": [f"world_{i:05d}" for i in range(4)], "test": ["world_00004"]}
    styles_json = json.loads((tmp_path / "styles.json").read_text())
    index = 0
    for phase in ("train", "test"):
        assert sorted(p.stem for p in (tmp_path / f"{phase}_img").iterdir()) == names[phase]
        for name in names[phase]:
            scene = render_scene(scene_rng(2, index), 64, 64)
            index += 1
            label = Image.open(tmp_path / f"{phase}_label" / f"{name}.png")
            inst = Image.open(tmp_path / f"{phase}_inst" / f"{name}.png")
            photo = Image.open(tmp_path / f"{phase}_img" / f"{name}.png")
            ab = Image.open(tmp_path / "AB" / phase / f"{name}.png")
            assert (label.mode, inst.mode, photo.mode, ab.mode) == ("L", "I;16", "RGB", "RGB")
            assert label.size == inst.size == photo.size == (64, 64)
            assert ab.size == (128, 64)
            np.testing.assert_array_equal(np.asarray(label), scene.label)
            np.testing.assert_array_equal(np.asarray(inst).astype(np.int32), scene.instance)
            np.testing.assert_array_equal(np.asarray(photo), scene.photo)
            ab_arr = np.asarray(ab)
            np.testing.assert_array_equal(ab_arr[:, :64], colorize_label(scene.label))  # A: label colours
            np.testing.assert_array_equal(ab_arr[:, 64:], scene.photo)                   # B: photo
            truth = styles_json[phase][name]
            assert {int(k): (v["class_id"], v["style"]) for k, v in truth.items()} == {
                k: (v.class_id, v.style) for k, v in scene.styles.items()
            }
            assert int(np.asarray(inst).max()) >= CAR * INSTANCE_ID_MULTIPLIER  # 16 bits kept ids > 255

    classes = json.loads((tmp_path / "classes.json").read_text())
    assert classes["label_nc"] == LABEL_NC
    assert [c["name"] for c in classes["classes"]] == list(CLASS_NAMES)
    assert [tuple(c["color"]) for c in classes["classes"]] == list(PALETTE)
    assert classes["instance_classes"] == list(INSTANCE_CLASSES)
    assert [s["name"] for s in classes["styles"]["car"]] == [s.name for s in STYLES[CAR]]


def test_dataset_is_byte_identical_and_independent_of_num(tmp_path):
    write_synthetic_dataset(tmp_path / "a", num=3, size=(64, 48), seed=5)
    write_synthetic_dataset(tmp_path / "b", num=5, size="64x48", seed=5)
    write_synthetic_dataset(tmp_path / "c", num=3, size=(64, 48), seed=6)
    for sub in ("train_img", "train_label", "train_inst"):
        for name in ("world_00000.png", "world_00001.png"):
            a = (tmp_path / "a" / sub / name).read_bytes()
            assert a == (tmp_path / "b" / sub / name).read_bytes()  # image i ignores num
            assert a != (tmp_path / "c" / sub / name).read_bytes() or sub != "train_img"
    assert Image.open(tmp_path / "a" / "AB" / "train" / "world_00000.png").size == (128, 48)
    # Rewriting the same dataset gives the same bytes.
    before = (tmp_path / "a" / "AB" / "test" / "world_00002.png").read_bytes()
    write_synthetic_dataset(tmp_path / "a", num=3, size=(64, 48), seed=5)
    assert (tmp_path / "a" / "AB" / "test" / "world_00002.png").read_bytes() == before


def test_rewriting_a_smaller_dataset_removes_stale_images(tmp_path):
    write_synthetic_dataset(tmp_path, num=6, size=32, seed=0)
    (tmp_path / "test_img" / "notes.png").write_bytes(b"not ours")
    summary = write_synthetic_dataset(tmp_path, num=3, size=32, seed=0)
    assert (summary["train"], summary["test"]) == (2, 1)
    assert sorted(p.name for p in (tmp_path / "test_img").iterdir()) == ["notes.png", "world_00002.png"]
    ab_train = sorted(p.name for p in (tmp_path / "AB" / "train").iterdir())
    assert ab_train == ["world_00000.png", "world_00001.png"]
    styles = json.loads((tmp_path / "styles.json").read_text())
    assert sorted(styles["train"]) == ["world_00000", "world_00001"]


@pytest.mark.parametrize("kwargs,match", [
    ({"num": 0}, "num 0"),
    ({"num": -3}, "num -3"),
    ({"num": 2.5}, "num 2.5"),
    ({"num": 2, "size": 16}, "at least 32"),
    ({"num": 2, "size": (64, 20)}, "at least 32"),
    ({"num": 2, "size": (64,)}, "not a size"),
    ({"num": 2, "size": "big"}, "WIDTHxHEIGHT"),
    ({"num": 2, "seed": -1}, "seed -1"),
    ({"num": 2, "test_fraction": 1.0}, "test_fraction"),
    ({"num": 2, "test_fraction": -0.1}, "test_fraction"),
])
def test_bad_arguments_raise_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        write_synthetic_dataset(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()  # validation happens before anything is written
