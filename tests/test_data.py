import random

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, make_pair_images, write_aligned
from PIL import Image

from pix2pix.config import DataConfig, ModelConfig
from pix2pix.data.images import convert_channels, image_to_tensor, load_image, tensor_to_image
from pix2pix.data.layout import pair_by_stem
from pix2pix.data.paired import PairedDataset
from pix2pix.data.transforms import apply_params, sample_params
from pix2pix.errors import DataError


def _dataset(root, phase="train", train=False, **data):
    return PairedDataset.from_config(DataConfig(**data), ModelConfig(), phase, train=train, root=root)


def test_aligned_pairs_split_halves_and_direction(aligned_dataset):
    pairs = make_pair_images(6, seed=0)
    ab = _dataset(aligned_dataset, preprocess="none")
    ba = _dataset(aligned_dataset, preprocess="none", direction="BtoA")
    assert len(ab) == 6
    a0, b0 = pairs[0]
    assert torch.equal(ab[0]["A"], image_to_tensor(a0)) and torch.equal(ab[0]["B"], image_to_tensor(b0))
    assert torch.equal(ba[0]["A"], image_to_tensor(b0)) and torch.equal(ba[0]["B"], image_to_tensor(a0))


def test_folders_pair_by_stem_not_order(tmp_path):
    a_dir, b_dir = tmp_path / "d" / "train" / "A", tmp_path / "d" / "train" / "B"
    a_dir.mkdir(parents=True)
    b_dir.mkdir(parents=True)
    # sorted order differs between the folders: 'x10' < 'x9' in A, but B has different extensions
    for value, stem in ((10, "x10"), (90, "x9"), (50, "y")):
        Image.new("L", (8, 8), value).save(a_dir / f"{stem}.png")
        Image.new("L", (8, 8), value + 1).save(b_dir / f"{stem}.{'bmp' if stem == 'x10' else 'png'}")
    ds = PairedDataset(tmp_path / "d", "train", data=DataConfig(preprocess="none"), in_channels=1, out_channels=1,
                       train=False)
    assert ds.layout == "folders"
    for i in range(3):
        a, b = ds[i]["A"], ds[i]["B"]
        assert torch.allclose(b - a, torch.full_like(a, 2 / 255))  # partner is always value + 1


def test_pair_by_stem_is_order_independent(tmp_path):
    from pathlib import Path

    a = [Path(f"A/{s}.png") for s in ("c", "a", "b")]
    b = [Path(f"B/{s}.jpg") for s in ("b", "c", "z")]
    pairs, only_a, only_b = pair_by_stem(a, b)
    assert {(p.stem, q.stem) for p, q in pairs} == {("b", "b"), ("c", "c")}
    assert [p.stem for p in only_a] == ["a"] and [p.stem for p in only_b] == ["z"]


def test_missing_partner_names_the_file(tmp_path):
    for sub in ("A", "B"):
        (tmp_path / sub).mkdir()
    for stem in ("1", "2", "3"):
        Image.new("RGB", (8, 8)).save(tmp_path / "A" / f"{stem}.png")
    for stem in ("1", "3"):
        Image.new("RGB", (8, 8)).save(tmp_path / "B" / f"{stem}.png")
    with pytest.raises(DataError, match=r"A/2\.png has no partner"):
        PairedDataset(tmp_path, "train")


@pytest.mark.parametrize("mode, expected", [
    ("resize_and_crop", (32, 32)), ("crop", (32, 32)), ("scale_width", (36, 54)),
    ("scale_width_and_crop", (32, 32)), ("none", (40, 60)),
])
def test_preprocess_output_sizes(tmp_path, mode, expected):
    write_aligned(tmp_path, "train", make_pair_images(1, size=(40, 60)))
    ds = _dataset(tmp_path, train=True, preprocess=mode, load_size=36, crop_size=32)
    w, h = expected
    assert ds[(0, 5)]["A"].shape == (3, h, w) and ds[(0, 5)]["B"].shape == (3, h, w)


def test_same_random_parameters_for_both_images(tmp_path):
    # A and B identical -> any crop/flip applied identically keeps them identical
    img = make_pair_images(1, size=(48, 48))[0][0]
    write_aligned(tmp_path, "train", [(img, img)])
    ds = _dataset(tmp_path, train=True, preprocess="resize_and_crop", load_size=48, crop_size=24)
    outs = [ds[(0, seed)] for seed in range(20)]
    assert all(torch.equal(o["A"], o["B"]) for o in outs)
    assert len({o["A"].sum().item() for o in outs}) > 3  # the crops really vary with the seed


def test_item_seed_makes_augmentation_reproducible(aligned_dataset):
    ds = _dataset(aligned_dataset, train=True, load_size=40, crop_size=24)
    assert torch.equal(ds[(2, 123)]["A"], ds[(2, 123)]["A"])


def test_flip_and_centre_crop_params():
    p = sample_params((100, 50), "crop", 0, 20, flip=True, rng=None)
    assert p.crop == (40, 15, 20, 20) and not p.flip and p.resize is None
    flips = {sample_params((30, 30), "crop", 0, 20, flip=True, rng=random.Random(s)).flip for s in range(30)}
    assert flips == {True, False}
    img = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    flipped = apply_params(img, sample_params((4, 3), "none", 0, 0, flip=True, rng=random.Random(1)))
    p1 = sample_params((4, 3), "none", 0, 0, flip=True, rng=random.Random(1))
    assert np.array_equal(np.asarray(flipped), np.asarray(img)[:, ::-1] if p1.flip else np.asarray(img))


def test_crop_larger_than_image_is_a_clear_error(tmp_path):
    write_aligned(tmp_path, "train", make_pair_images(1, size=(16, 16)))
    with pytest.raises(DataError, match="smaller than crop_size=32"):
        _dataset(tmp_path, train=True, preprocess="crop", crop_size=32)[0]


def test_channel_modes_are_explicit():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    rgb = np.asarray(convert_channels(rgba, 3))
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [10, 20, 30]  # transparent -> white
    gray = Image.new("L", (2, 2), 77)
    assert np.asarray(convert_channels(gray, 3)).tolist() == [[[77] * 3] * 2] * 2
    assert convert_channels(Image.new("RGB", (2, 2), (255, 0, 0)), 1).getpixel((0, 0)) == 76  # ITU-R 601 luma
    sixteen = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert np.asarray(convert_channels(sixteen, 1)).max() == 255
    with pytest.raises(DataError, match="use 1"):
        convert_channels(gray, 2)


def test_tensor_round_trip():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    t = image_to_tensor(img)
    assert t.shape == (3, 5, 7) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_image(t)), np.asarray(img))


def test_bad_files_give_clear_errors(tmp_path):
    (tmp_path / "train").mkdir()
    bad = tmp_path / "train" / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(DataError, match=r"notes\.png is not an image"):
        load_image(bad)
    good = tmp_path / "good.png"
    make_pair_images(1, size=(64, 64))[0][0].save(good)
    truncated = tmp_path / "train" / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.png is truncated or corrupt"):
        load_image(truncated)
    odd = tmp_path / "odd"
    (odd / "train").mkdir(parents=True)
    Image.new("RGB", (9, 4)).save(odd / "train" / "o.png")
    with pytest.raises(DataError, match="width 9 is odd"):
        _dataset(odd)[0]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no images found"):
        _dataset(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        _dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="pass --data"):
        PairedDataset.from_config(DataConfig(), ModelConfig())


@pytest.mark.skipif(not (SHARED_DATA / "facades" / "train").is_dir(), reason="../shared/data/facades is absent")
def test_real_facades_load_as_labels_to_photo():
    from pix2pix.presets import get_preset

    cfg = get_preset("facades")
    ds = PairedDataset.from_config(cfg.data, cfg.model, "train", train=True, root=SHARED_DATA / "facades")
    assert len(ds) == 400 and ds.layout == "aligned"
    item = ds[(0, 1)]
    assert item["A"].shape == item["B"].shape == (3, 256, 256)
    raw = _dataset(SHARED_DATA / "facades", preprocess="none", direction="BtoA")[0]
    assert raw["A"].shape == (3, 256, 256)

    def saturation(t):  # the label palette is saturated colours, the facade photos mostly muted
        return float((t.amax(0) - t.amin(0)).mean())

    # BtoA: the input is the colour-coded label map (the right half of each file), the target the photo
    assert saturation(raw["A"]) > 1.0 > 0.5 > saturation(raw["B"])
