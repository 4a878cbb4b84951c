"""Label maps for pix2pixHD: one-hot, boundaries, label sets, and the label datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from pix2pix.data.label_dataset import LabelDataset, check_label_ids, pair_key, scan_label_ids
from pix2pix.data.label_sets import (
    LabelSet,
    colorize,
    generate_palette,
    get_label_set,
    nearest_palette_ids,
)
from pix2pix.data.labels import boundary_map, cityscapes_instance_class, label_condition_map, map_label_ids, one_hot
from pix2pix.errors import ConfigError, DataError

CITYSCAPES = SHARED_DATA / "cityscapes_samples"
PATTERN_COLORS = np.array(generate_palette(32), dtype=np.uint8)


# ----------------------------------------------------------------------------- labels.py


def test_one_hot_values_and_shapes():
    label = torch.tensor([[[0, 1, 2], [2, 1, 0]]])  # [B, H, W]
    oh = one_hot(label, 4)
    assert oh.shape == (1, 4, 2, 3) and oh.dtype == torch.float32
    assert torch.equal(oh.sum(1), torch.ones(1, 2, 3))
    assert torch.equal(oh.argmax(1), label)
    assert torch.all(oh[:, 3] == 0)
    assert torch.equal(one_hot(label.unsqueeze(1), 4), oh)  # [B, 1, H, W] gives the same
    assert one_hot(label, 4, dtype=torch.float16).dtype == torch.float16


def test_one_hot_out_of_range_names_file_and_ids():
    label = torch.zeros(2, 1, 3, 3, dtype=torch.long)
    label[1, 0, 1, 1] = 7
    label[1, 0, 0, 0] = 40
    with pytest.raises(DataError) as err:
        one_hot(label, 5, source=["data/good.png", "data/bad_frame.png"])
    msg = str(err.value)
    assert "bad_frame.png" in msg and "good.png" not in msg
    assert "7" in msg and "40" in msg and "label_nc" in msg and "41" in msg and "ignore_index" in msg
    with pytest.raises(DataError, match="one.png: label ids -1"):
        one_hot(torch.full((1, 1, 2, 2), -1), 5, source="one.png")


def test_one_hot_ignore_index():
    label = torch.tensor([[[[0, 7], [-1, 2]]]])
    oh = one_hot(label, 5, ignore_index=4)
    assert oh.argmax(1).tolist() == [[[0, 4], [4, 2]]]
    with pytest.raises(ConfigError, match="ignore_index 5"):
        one_hot(label, 5, ignore_index=5)
    with pytest.raises(DataError, match="ids -1, 7"):  # -1 (the config default) means no ignore class
        one_hot(label, 5, ignore_index=-1)


def _bmap(a) -> list[list[int]]:
    return boundary_map(torch.tensor(a)[None, None]).to(torch.int64)[0, 0].tolist()


def test_boundary_map_hand_made_cases():
    # Two instances side by side: both columns at the boundary are marked, the border is not.
    assert _bmap([[1, 1, 2, 2]] * 4) == [[0, 1, 1, 0]] * 4
    # One pixel in the middle of a 5x5: it and its four neighbours, not the diagonals.
    a = np.zeros((5, 5), dtype=np.int64)
    a[2, 2] = 5
    assert _bmap(a) == [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    # Two touching cars (same class 26, different instances): the instance map separates them.
    cars = [[26001, 26001, 26002, 26002]] * 2 + [[7, 7, 7, 7]] * 2
    assert _bmap(cars) == [[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]
    # One instance everywhere: nothing, even at the image borders.
    assert _bmap(np.full((4, 4), 3)) == [[0] * 4] * 4
    # Batched [B, H, W] input works and keeps items apart.
    out = boundary_map(torch.stack([torch.zeros(3, 3), torch.eye(3)]))
    assert out.shape == (2, 1, 3, 3) and out[0].sum() == 0 and out[1].sum() == 7


def test_cityscapes_instance_class_and_condition_map():
    ids = torch.tensor([26001, 26002, 24000, 7, 0, 33999])
    assert cityscapes_instance_class(ids).tolist() == [26, 26, 24, 7, 0, 33]
    assert cityscapes_instance_class(np.array([27003, 11])).tolist() == [27, 11]
    assert cityscapes_instance_class(26010) == 26 and cityscapes_instance_class(999) == 999
    cond = label_condition_map(3, 4, 5)
    assert cond.shape == (1, 4, 5) and cond.dtype == torch.long and torch.all(cond == 3)
    assert one_hot(cond[None], 5)[0, 3].sum() == 20


# ----------------------------------------------------------------------------- label_sets.py


def test_label_set_presets():
    cs = get_label_set("cityscapes")
    assert cs.label_nc == 35 and len(cs.class_names) == 35 and len(cs.palette) == 35
    assert cs.class_names[26] == "car" and cs.palette[26] == (0, 0, 142)
    assert cs.class_names[7] == "road" and cs.palette[7] == (128, 64, 128)
    assert cs.class_names[34] == "license plate" and cs.ignore_id == 0
    assert cs.instance_classes == (24, 25, 26, 27, 28, 29, 30, 31, 32, 33)
    ade = get_label_set("ADE20K")
    assert ade.label_nc == 151 and ade.class_names[0] == "other" and ade.class_names[1] == "wall"
    assert ade.class_names[150] == "flag" and ade.palette[1] == (120, 120, 120)
    coco = get_label_set("coco-stuff")
    assert coco.label_nc == 183 and coco.class_names[0] == "unlabeled" and coco.class_names[1] == "person"
    assert coco.class_names[92] == "banner" and coco.class_names[182] == "wood"
    assert len(set(coco.palette)) == 183 and coco.class_id("sky-other") == 157
    syn = get_label_set("synthetic")
    assert syn.label_nc == 10 and syn.class_names[7] == "car" and syn.instance_classes == (7, 8, 9)
    with pytest.raises(ConfigError, match="Did you mean 'cityscapes'"):
        get_label_set("citiscapes")
    with pytest.raises(ConfigError, match="Did you mean 'road'"):
        cs.class_id("raod")


def test_colorize_and_nearest_palette_ids():
    cs = get_label_set("cityscapes")
    ids = np.array([[7, 8], [26, 23]])
    rgb = colorize(ids, cs)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3) and tuple(rgb[1, 0]) == (0, 0, 142)
    assert colorize(torch.from_numpy(ids)[None, None], cs).shape == (1, 2, 2, 3)
    with pytest.raises(DataError, match="35"):
        colorize(np.array([[35]]), cs)
    # JPEG-like noise: every pixel still maps to its class (the lowest id where colours repeat).
    noisy = rgb.astype(int) + np.array([[[5, -4, 3], [-6, 2, 0]], [[3, 3, -3], [0, -5, 6]]])
    assert nearest_palette_ids(np.clip(noisy, 0, 255).astype(np.uint8), cs).tolist() == [[7, 8], [26, 23]]
    assert nearest_palette_ids(Image.fromarray(rgb), [[0, 0, 0], [128, 64, 128]]).tolist() == [[1, 1], [0, 1]]
    t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(nearest_palette_ids(t, cs), torch.tensor([[7, 8], [26, 23]]))


def test_label_set_from_classes_json(tmp_path: Path):
    path = tmp_path / "classes.json"
    path.write_text('{"label_nc": 4, "classes": [{"id": 0, "name": "void", "color": [0, 0, 0]},'
                    ' {"id": 2, "name": "tree", "color": [0, 200, 0], "instance": true}]}')
    ls = LabelSet.from_classes_json(path)
    assert ls.label_nc == 4 and ls.class_names == ("void", "class_1", "tree", "class_3")
    assert ls.palette[2] == (0, 200, 0) and ls.instance_classes == (2,) and ls.ignore_id == 0
    assert get_label_set(str(path)) == ls
    assert LabelSet.from_dict(ls.to_classes_json(), name=ls.name) == ls
    with pytest.raises(DataError, match="does not exist"):
        LabelSet.from_classes_json(tmp_path / "nope.json")


# ----------------------------------------------------------------------------- datasets


def _pattern(h: int, w: int, shift: int = 0) -> np.ndarray:
    """4x4 blocks numbered 0..29 (a different pattern for each `shift`)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy // 4) * 7 + (xx // 4) * 3 + shift) % 30


def _write_sample(root: Path, phase: str, name: str, *, size=(40, 24), shift=0, inst=True, img=True,
                  names: tuple[str, str, str] | None = None) -> None:
    """label = pattern ids, instance = 26000 + 7 * pattern (16-bit), image = a colour per pattern id."""
    w, h = size
    p = _pattern(h, w, shift)
    label_name, inst_name, img_name = names or (f"{name}.png",) * 3
    (root / f"{phase}_label").mkdir(parents=True, exist_ok=True)
    Image.fromarray(p.astype(np.uint8)).save(root / f"{phase}_label" / label_name)
    if inst:
        (root / f"{phase}_inst").mkdir(parents=True, exist_ok=True)
        Image.fromarray((26000 + 7 * p).astype(np.uint16)).save(root / f"{phase}_inst" / inst_name)
    if img:
        (root / f"{phase}_img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(PATTERN_COLORS[p]).save(root / f"{phase}_img" / img_name)


def _image_ids(image: torch.Tensor) -> torch.Tensor:
    return nearest_palette_ids(image, PATTERN_COLORS)


def test_pix2pixhd_layout_pairs_by_stem(tmp_path: Path):
    for i, name in enumerate(["b", "a", "c"]):
        _write_sample(tmp_path, "train", name, shift=i)
    ds = LabelDataset(tmp_path, "train", label_nc=30, preprocess="none", train=False)
    assert [Path(it.label).name for it in ds.items] == ["a.png", "b.png", "c.png"]
    assert ds.has_images and ds.layout == "pix2pixhd"
    for k in range(3):
        item = ds[k]
        assert set(item) == {"label", "instance", "image", "path"}
        assert item["label"].shape == (1, 24, 40) and item["label"].dtype == torch.long
        assert item["instance"].dtype == torch.long and item["image"].shape == (3, 24, 40)
        # Each label met its own instance map and image, not a neighbour's.
        assert torch.equal((item["instance"] - 26000) // 7, item["label"])
        assert torch.equal(_image_ids(item["image"]), item["label"][0])
    (tmp_path / "train_img" / "b.png").unlink()
    (tmp_path / "train_inst" / "d.png").write_bytes((tmp_path / "train_inst" / "a.png").read_bytes())
    with pytest.raises(DataError) as err:
        LabelDataset(tmp_path, "train", label_nc=30)
    msg = str(err.value)
    assert "b.png has no partner in" in msg and "train_img" in msg
    assert "d.png has no partner in" in msg and "train_label" in msg


def test_cityscapes_names_matched_by_prefix(tmp_path: Path):
    frames = ["aachen_000000_000019", "aachen_000001_000019"]
    for i, f in enumerate(frames):
        _write_sample(tmp_path, "train", f, shift=5 * i,
                      names=(f"{f}_gtFine_labelIds.png", f"{f}_gtFine_instanceIds.png", f"{f}_leftImg8bit.png"))
    # A colour file copied along with the ids is not mistaken for a label map.
    Image.new("RGB", (40, 24)).save(tmp_path / "train_label" / f"{frames[0]}_gtFine_color.png")
    assert pair_key(f"x/{frames[0]}_gtFine_labelIds.png") == frames[0] == pair_key(f"{frames[0]}_leftImg8bit.jpg")
    ds = LabelDataset(tmp_path, "train", label_nc=30, preprocess="none", train=False)
    assert [it.key for it in ds.items] == frames
    for k in range(2):
        item = ds[k]
        assert item["path"].endswith("_gtFine_labelIds.png")
        assert torch.equal((item["instance"] - 26000) // 7, item["label"])
        assert torch.equal(_image_ids(item["image"]), item["label"][0])

    # Cityscapes as downloaded: gtFine/{phase}/{city}/ and leftImg8bit/{phase}/{city}/.
    root = tmp_path / "cityscapes"
    (root / "gtFine" / "val" / "lindau").mkdir(parents=True)
    (root / "leftImg8bit" / "val" / "lindau").mkdir(parents=True)
    f = "lindau_000000_000019"
    p = _pattern(24, 40)
    Image.fromarray(p.astype(np.uint8)).save(root / "gtFine" / "val" / "lindau" / f"{f}_gtFine_labelIds.png")
    Image.fromarray((26000 + 7 * p).astype(np.uint16)).save(
        root / "gtFine" / "val" / "lindau" / f"{f}_gtFine_instanceIds.png")
    Image.fromarray(PATTERN_COLORS[p]).save(root / "gtFine" / "val" / "lindau" / f"{f}_gtFine_color.png")
    Image.fromarray(PATTERN_COLORS[p]).save(root / "leftImg8bit" / "val" / "lindau" / f"{f}_leftImg8bit.png")
    native = LabelDataset(root, "val", label_nc=30, preprocess="none", train=False)
    assert native.layout == "cityscapes" and len(native) == 1
    assert torch.equal((native[0]["instance"] - 26000) // 7, native[0]["label"])


def test_same_params_for_label_instance_image(tmp_path: Path):
    _write_sample(tmp_path, "train", "x", size=(48, 40))
    ds = LabelDataset(tmp_path, "train", label_nc=30, preprocess="crop", crop_size=20, flip=True)
    flips = set()
    for seed in range(12):
        item = ds[(0, seed)]
        assert item["label"].shape == (1, 20, 20)
        assert torch.equal((item["instance"] - 26000) // 7, item["label"])
        assert torch.equal(_image_ids(item["image"]), item["label"][0])
        full = _pattern(40, 48)
        lab = item["label"][0].numpy()
        flips.add(not any(np.array_equal(lab, full[y:y + 20, x:x + 20]) for y in range(21) for x in range(29)))
        assert torch.equal(ds[(0, seed)]["label"], item["label"])  # the seed makes it reproducible
    assert flips == {True, False}  # both flipped and unflipped crops were drawn


def test_16bit_instance_ids_survive_resize_crop_flip(tmp_path: Path):
    w, h = 64, 32
    inst = np.full((h, w), 7, dtype=np.uint16)
    inst[4:20, 4:30], inst[4:20, 30:60], inst[20:30, 10:50] = 26001, 26002, 33000
    label = np.where(inst >= 1000, inst // 1000, inst).astype(np.uint8)
    for kind, arr in (("label", label), ("inst", inst)):
        (tmp_path / f"train_{kind}").mkdir()
        Image.fromarray(arr).save(tmp_path / f"train_{kind}" / "f.png")
    assert Image.open(tmp_path / "train_inst" / "f.png").mode.startswith("I;16")
    ds = LabelDataset(tmp_path, "train", label_nc=35, preprocess="scale_width_and_crop", load_size=48,
                      crop_size=20, flip=True)
    assert not ds.has_images
    seen: set[int] = set()
    for seed in range(6):
        item = ds[(0, seed)]
        assert "image" not in item and item["instance"].shape == (1, 20, 20)
        ids = set(torch.unique(item["instance"]).tolist())
        assert ids <= {7, 26001, 26002, 33000}
        seen |= ids
        assert set(torch.unique(item["label"]).tolist()) <= {7, 26, 33}
        assert torch.equal(cityscapes_instance_class(item["instance"]), item["label"])
    assert {26001, 26002} <= seen


def test_label_nc_zero_means_rgb_input(tmp_path: Path):
    (tmp_path / "train_label").mkdir()
    (tmp_path / "train_img").mkdir()
    p = _pattern(24, 40)
    Image.fromarray(PATTERN_COLORS[p]).save(tmp_path / "train_label" / "s.png")
    Image.fromarray(PATTERN_COLORS[(p + 1) % 30]).save(tmp_path / "train_img" / "s.png")
    ds = LabelDataset(tmp_path, "train", label_nc=0, use_instance=False, preprocess="none", train=False)
    item = ds[0]
    assert item["label"].dtype == torch.float32 and item["label"].shape == (3, 24, 40)
    assert item["label"].min() >= -1 and item["label"].max() <= 1 and "instance" not in item
    assert torch.equal(_image_ids(item["label"]), torch.from_numpy(p))
    # An RGB file where ids are expected is a clear error; a palette maps it to ids instead.
    with pytest.raises(DataError, match="label_nc 0"):
        LabelDataset(tmp_path, "train", label_nc=30, use_instance=False, preprocess="none")[0]
    ds = LabelDataset(tmp_path, "train", label_nc=30, use_instance=False, preprocess="none", train=False,
                      palette=PATTERN_COLORS)
    assert torch.equal(ds[0]["label"][0], torch.from_numpy(p))


def test_missing_instance_folder_and_test_split_without_images(tmp_path: Path):
    _write_sample(tmp_path, "train", "a", inst=False)
    with pytest.raises(DataError, match="use_instance false"):
        LabelDataset(tmp_path, "train", label_nc=30)
    assert "instance" not in LabelDataset(tmp_path, "train", label_nc=30, use_instance=False)[0]
    _write_sample(tmp_path, "test", "t", img=False)
    test = LabelDataset(tmp_path, "test", label_nc=30, train=False, preprocess="none")
    item = test[0]
    assert not test.has_images and "image" not in item and set(item) == {"label", "instance", "path"}
    with pytest.raises(DataError, match="no images"):
        LabelDataset(tmp_path, "test", label_nc=30, require_images=True)


def test_scan_and_check_label_ids(tmp_path: Path):
    _write_sample(tmp_path, "train", "a")
    ds = LabelDataset(tmp_path, "train", label_nc=30)
    assert scan_label_ids(ds) == set(range(30))
    small = LabelDataset(tmp_path, "train", label_nc=20)
    with pytest.raises(DataError, match=r"a\.png: ids \[20, 21"):
        check_label_ids(small)
    assert check_label_ids(LabelDataset(tmp_path, "train", label_nc=20, ignore_index=0)) == set(range(30))
    with pytest.raises(DataError, match="ignore_index option"):
        check_label_ids(LabelDataset(tmp_path, "train", label_nc=20, ignore_index=-1))


def test_class_label_mode(tmp_path: Path):
    for cls, color in (("dog", (200, 30, 30)), ("cat", (30, 200, 30)), ("bird", (30, 30, 200))):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (20, 16), color).save(tmp_path / "train" / cls / f"{k}.png")
    ds = LabelDataset(tmp_path, "train", label_nc=None, class_from_folder=True, preprocess="crop", crop_size=12)
    assert ds.classes == ["bird", "cat", "dog"] and ds.label_nc == 3 and len(ds) == 6
    item = ds[4]  # dog
    assert set(item) == {"label", "image", "path", "class_index"} and item["class_index"] == 2
    assert item["label"].shape == (1, 12, 12) and torch.all(item["label"] == 2)
    assert item["image"].shape == (3, 12, 12) and item["image"][0].mean() > 0.5
    assert one_hot(item["label"][None], ds.label_nc)[0, 2].all()
    with pytest.raises(DataError, match="3 class folders"):
        LabelDataset(tmp_path, "train", label_nc=2, class_from_folder=True)


def test_synthetic_world_dataset(tmp_path: Path):
    from pix2pix.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, num=3, size=64)
    label_set = LabelSet.from_classes_json(tmp_path / "classes.json")
    assert label_set.label_nc == 10 and label_set.class_names == get_label_set("synthetic").class_names
    ds = LabelDataset(tmp_path, "train", label_nc=label_set.label_nc, preprocess="none", train=False)
    assert len(ds) == 2 and ds.has_images
    for k in range(len(ds)):
        item = ds[k]
        label, inst = item["label"], item["instance"]
        assert int(label.max()) < label_set.label_nc
        assert torch.equal(cityscapes_instance_class(inst), label)
        assert set(torch.unique(label[inst >= 1000]).tolist()) <= set(label_set.instance_classes)
        # The colour-coded A side of the AB layout is `colorize` of the label map.
        ab = np.asarray(Image.open(tmp_path / "AB" / "train" / Path(item["path"]).name))
        assert np.array_equal(colorize(label, label_set), ab[:, :64])
        oh = one_hot(label[None], label_set.label_nc, source=item["path"])
        assert oh.shape == (1, 10, 64, 64)
        assert boundary_map(inst[None]).sum() > 0
    test = LabelDataset(tmp_path, "test", label_nc=10, preprocess="none", train=False)
    assert len(test) == 1 and "image" in test[0]


@pytest.mark.skipif(not (CITYSCAPES / "train_label").is_dir(),
                    reason=f"{CITYSCAPES} is absent (set PIX2PIX_SHARED_DATA to the shared data folder)")
def test_real_cityscapes_samples():
    cs = get_label_set("cityscapes")
    ds = LabelDataset(CITYSCAPES, "train", label_nc=cs.label_nc, preprocess="scale_width_and_crop",
                      load_size=256, crop_size=128, flip=True)
    assert len(ds) == 8 and ds.has_images and ds.items[0].key == "aachen_000000_000019"
    item = ds[(0, 1)]
    label, inst, image = item["label"], item["instance"], item["image"]
    assert label.shape == inst.shape == (1, 128, 128) and image.shape == (3, 128, 128)
    assert int(label.max()) < 35 and int(label.min()) >= 0
    things = inst >= 1000
    assert torch.equal(inst[things] // 1000, label[things])
    assert torch.equal(cityscapes_instance_class(inst), label)
    assert set(torch.unique(label[things]).tolist()) <= set(cs.instance_classes)
    assert one_hot(label[None], cs.label_nc, source=item["path"]).shape == (1, 35, 128, 128)

    test = LabelDataset(CITYSCAPES, "test", label_nc=35, preprocess="scale_width_and_crop", load_size=256,
                        crop_size=128, train=False)
    assert len(test) == 15 and not test.has_images
    t = test[0]
    assert "image" not in t and t["label"].shape == (1, 128, 128) and int(t["label"].max()) < 35


# ----------------------------------------------------------------------------- the label ids every path reads


def test_map_label_ids_unlabeled_values_then_ignore_index():
    coco = get_label_set("coco_stuff")
    ids = np.array([[0, 5, 182], [183, 255, 300]])
    np.testing.assert_array_equal(map_label_ids(ids, 183), ids)  # nothing to map: left for one_hot to report
    np.testing.assert_array_equal(map_label_ids(ids, 183, label_set=coco), [[0, 5, 182], [183, 0, 300]])
    np.testing.assert_array_equal(map_label_ids(ids, 183, ignore_index=7, label_set=coco), [[0, 5, 182], [7, 0, 7]])
    np.testing.assert_array_equal(map_label_ids(ids, 183, ignore_index=-1), ids)  # the config's "none"
    t = torch.from_numpy(ids)[None, None]
    mapped = map_label_ids(t, 183, ignore_index=7, label_set=coco)
    assert isinstance(mapped, torch.Tensor) and mapped.shape == t.shape and mapped[0, 0, 1, 1] == 0
    assert t[0, 0, 1, 1] == 255  # a new object: the input is left alone


def test_coco_stuff_declares_255_unlabeled_and_keeps_it_through_classes_json(tmp_path):
    coco = get_label_set("coco_stuff")
    assert coco.unlabeled_ids == (255,) and coco.ignore_id == 0 and coco.class_names[0] == "unlabeled"
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(coco.to_classes_json()))
    again = LabelSet.from_classes_json(path)
    assert again.unlabeled_ids == (255,) and again == LabelSet.from_dict(coco.to_classes_json(), name="coco_stuff")
    rgb = colorize(np.array([[255, 1]]), coco)  # shown in 'unlabeled's colour
    assert rgb[0, 0].tolist() == list(coco.palette[0]) and rgb[0, 1].tolist() == list(coco.palette[1])
    with pytest.raises(DataError, match="outside the palette"):
        colorize(np.array([[255]]), coco.palette_array)  # a bare palette knows no such convention


@pytest.mark.parametrize(("table", "message"), [
    ({"label_nc": 3, "ignore_id": 0, "unlabeled_ids": [2]}, "is one of the classes"),
    ({"label_nc": 3, "classes": [{"id": 0, "name": "a"}], "unlabeled_ids": [255]}, "need an ignore_id"),
    ({"label_nc": 3, "unlabeled_ids": ["x"]}, "malformed class table"),
    ({"label_nc": 3, "classes": [{"id": 0, "color": "red"}]}, "colours are"),
    (["not", "a", "table"], "is a JSON object"),
])
def test_malformed_class_tables_are_data_errors(tmp_path, table, message):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(table))
    with pytest.raises(DataError, match=message) as info:
        LabelSet.from_classes_json(path)
    assert str(path) in str(info.value)


def test_label_dataset_reads_ids_as_training_does(tmp_path: Path):
    """255 becomes the label set's void id; other ids outside the range become ignore_index when one is set."""
    for kind in ("label", "img"):
        (tmp_path / f"train_{kind}").mkdir()
    ids = np.array([[1, 255], [200, 182]], dtype=np.uint8)
    Image.fromarray(ids).save(tmp_path / "train_label" / "a.png")
    Image.new("RGB", (2, 2)).save(tmp_path / "train_img" / "a.png")
    coco = get_label_set("coco_stuff")
    common = dict(label_nc=183, use_instance=False, preprocess="none", train=False)
    assert LabelDataset(tmp_path, **common)[0]["label"][0].tolist() == ids.tolist()
    assert LabelDataset(tmp_path, label_set=coco, **common)[0]["label"][0].tolist() == [[1, 0], [200, 182]]
    mapped = LabelDataset(tmp_path, label_set=coco, ignore_index=5, **common)[0]["label"][0]
    assert mapped.tolist() == [[1, 0], [5, 182]]
    with pytest.raises(DataError, match=r"ids \[200\]"):  # 255 is the label set's: only 200 is reported
        check_label_ids(LabelDataset(tmp_path, label_set=coco, **common))
