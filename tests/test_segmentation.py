"""The segmentation score: confusion-matrix numbers on known cases, label reading, the segmenter and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from pix2pix.cli.main import main
from pix2pix.data.label_sets import LabelSet, colorize, get_label_set
from pix2pix.errors import ConfigError, DataError
from pix2pix.evaluation.segmentation import (
    IGNORE,
    LoadedSegmenter,
    confusion_matrix,
    predict_classes,
    read_label_ids,
    scores_from_confusion,
    segmentation_score,
)
from pix2pix.evaluation.segmenter import (
    build_segmenter,
    load_segmentation_data,
    load_segmenter,
    save_segmenter,
    train_segmenter,
)

PALETTE = ((200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40))
FOUR = LabelSet(name="four", label_nc=4, class_names=("red", "green", "blue", "yellow"), palette=PALETTE)


class PaletteModel(torch.nn.Module):
    """Logits = minus the squared distance to each palette colour: exact on palette-coloured images."""

    def __init__(self, palette=PALETTE) -> None:
        super().__init__()
        self.register_buffer("colors", torch.tensor(palette, dtype=torch.float32) / 127.5 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x[:, None] - self.colors[None, :, :, None, None]) ** 2).sum(2)


def test_confusion_matrix_and_scores_on_a_known_case():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    s = scores_from_confusion(cm)
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.class_accuracy[:3] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert s.class_accuracy[3] is None and s.class_iou[3] is None  # class 3: in neither truth nor prediction
    assert s.mean_class_accuracy == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert s.class_iou[:3] == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert s.mean_iou == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert s.pixels == 6


def test_predicted_but_absent_class_counts_in_iou_not_in_class_accuracy():
    target = torch.zeros(4, dtype=torch.long)
    pred = torch.tensor([0, 0, 1, 1])
    s = scores_from_confusion(confusion_matrix(pred, target, 2))
    assert s.class_accuracy == [0.5, None]
    assert s.mean_class_accuracy == pytest.approx(0.5)
    assert s.class_iou == pytest.approx([0.5, 0.0])  # class 1 was predicted: IoU 0, in the mean
    assert s.mean_iou == pytest.approx(0.25)


def test_ignored_and_out_of_range_pixels_are_not_counted():
    target = torch.tensor([0, 1, 2, IGNORE, 7])
    pred = torch.tensor([0, 1, 0, 1, 1])
    cm = confusion_matrix(pred, target, 3, ignore_index=2)
    assert int(cm.sum()) == 2 and scores_from_confusion(cm).pixel_accuracy == 1.0
    with pytest.raises(DataError):
        scores_from_confusion(torch.zeros(3, 3, dtype=torch.long))


def _colour(labels: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(colorize(labels[:, None], FOUR)).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_segmentation_score_has_the_known_answer():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    labels[1, :4, :] = 2  # image 1: top half class 2
    real = _colour(labels)
    fake_labels = labels.clone()
    fake_labels[:, :, :2] = 3  # the generator painted the two left columns as class 3
    fake = _colour(fake_labels)
    model = PaletteModel()
    assert segmentation_score(model, [real], [labels], label_set=FOUR).pixel_accuracy == 1.0
    s = segmentation_score(model, [fake[0], fake[1]], [labels[0], labels[1]], label_set=FOUR)
    expected = confusion_matrix(fake_labels, labels, 4)
    assert s.confusion == expected.tolist()
    assert s.pixel_accuracy == pytest.approx(1 - 32 / 128)
    # class 0 (48 px) lost 24 to class 3, class 2 (32 px) lost 8, class 1 intact, class 3 never true
    assert s.class_accuracy[:3] == pytest.approx([0.5, 1.0, 0.75]) and s.class_accuracy[3] is None
    assert s.mean_class_accuracy == pytest.approx(0.75)
    assert s.class_iou == pytest.approx([0.5, 1.0, 0.75, 0.0])  # class 3 was predicted: IoU 0, in the mean
    assert s.mean_iou == pytest.approx(0.5625)


def test_predict_classes_resizes_and_never_predicts_the_void_class():
    void = LabelSet(name="v", label_nc=4, class_names=("void", "a", "b", "c"), palette=PALETTE, ignore_id=0)
    seg = LoadedSegmenter(PaletteModel(), void, input_size=(4, 4))
    labels = torch.zeros(1, 8, 8, dtype=torch.long)  # everything looks like the void colour
    pred = predict_classes(seg, _colour(labels), (16, 16))
    assert pred.shape == (1, 16, 16) and int((pred == 0).sum()) == 0


def test_segmenter_with_the_wrong_number_of_classes_is_a_clear_error():
    seg = LoadedSegmenter(PaletteModel(PALETTE[:3]), FOUR)
    with pytest.raises(ConfigError, match="3 classes"):
        predict_classes(seg, torch.zeros(1, 3, 4, 4), (4, 4))


def test_read_label_ids_from_colour_coded_and_id_maps(tmp_path: Path):
    ids = np.array([[0, 1], [2, 3]])
    noisy = colorize(ids, FOUR).astype(int) + np.array([[[9, -7, 5]]])  # JPEG-like colour noise
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(tmp_path / "c.png")
    assert read_label_ids(tmp_path / "c.png", FOUR).tolist() == ids.tolist()
    Image.fromarray(np.array([[0, 3], [9, 1]], dtype=np.uint8)).save(tmp_path / "g.png")
    assert read_label_ids(tmp_path / "g.png", FOUR).tolist() == [[0, 3], [IGNORE, 1]]
    void = LabelSet(name="v", label_nc=4, class_names=("void", "a", "b", "c"), palette=PALETTE, ignore_id=0)
    assert read_label_ids(tmp_path / "g.png", void).tolist() == [[IGNORE, 3], [IGNORE, 1]]


@pytest.mark.skipif(not (SHARED_DATA / "facades" / "test").is_dir(), reason="../shared/data/facades is absent")
def test_facades_palette_matches_the_label_images():
    facades = get_label_set("facades")
    pal = facades.palette_array.astype(int)
    used = set()
    for name in ("1.jpg", "2.jpg", "10.jpg", "50.jpg"):
        pair = np.asarray(Image.open(SHARED_DATA / "facades" / "test" / name).convert("RGB")).astype(int)
        label, photo = pair[:, 256:], pair[:, :256]
        dist = np.sqrt(((label[:, :, None, :] - pal[None, None]) ** 2).sum(-1))
        # heavy JPEG noise at edges, but the label colours sit on the palette and the photo's do not
        assert np.median(dist.min(-1)) < 30 and float((dist.min(-1) < 80).mean()) > 0.8
        assert np.median(np.sqrt(((photo[:, :, None] - pal[None, None]) ** 2).sum(-1)).min(-1)) > 100
        used |= set(np.unique(dist.argmin(-1)).tolist())
    assert len(used) >= 9


def _labelled_pairs(root: Path, n: int = 6, size: int = 16) -> None:
    """A|B pairs: A a photo-like recolouring, B the colour-coded label map (FOUR's palette)."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for i in range(n):
        ids = np.kron(rng.integers(0, 4, (size // 4, size // 4)), np.ones((4, 4), dtype=int))
        photo = (255 - colorize(ids, FOUR).astype(int) + rng.integers(0, 20, (size, size, 3))).clip(0, 255)
        ab = np.concatenate([photo.astype(np.uint8), colorize(ids, FOUR)], 1)
        Image.fromarray(ab).save(root / ("train" if i < n - 2 else "test") / f"{i}.png")


def test_segmentation_data_finds_the_label_side_and_decodes_ids(tmp_path: Path):
    _labelled_pairs(tmp_path)
    data = load_segmentation_data(tmp_path, "train", FOUR, size=8)
    assert data.side == "B" and data.images.shape == (4, 3, 8, 8) and data.labels.shape == (4, 8, 8)
    raw = np.asarray(Image.open(tmp_path / "train" / "0.png").convert("RGB"))[:, 16:]
    full = read_label_ids(Image.fromarray(raw), FOUR)
    assert torch.equal(data.labels[0], full[::2, ::2])  # nearest-neighbour resize of the decoded ids
    Image.new("RGB", (40, 20)).save(tmp_path / "train" / "odd.png")
    with pytest.raises(DataError, match="pass --size"):
        load_segmentation_data(tmp_path, "train", FOUR, size=None, side="B")


def test_segmenter_trains_saves_and_loads_identically(tmp_path: Path):
    _labelled_pairs(tmp_path)
    data = load_segmentation_data(tmp_path, "train", FOUR)
    net, info = train_segmenter(data, steps=3, batch_size=2, ngf=4)
    assert info["steps"] == 3 and np.isfinite(info["final_loss"])
    save_segmenter(net, tmp_path / "seg", FOUR, data.size, info)
    config = json.loads((tmp_path / "seg" / "config.json").read_text())
    assert config["kind"] == "segmenter" and config["label_set"]["label_nc"] == 4
    loaded = load_segmenter(tmp_path / "seg")
    x = data.float_images(slice(0, 2))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))
    assert loaded.label_set.class_names == FOUR.class_names and loaded.input_size == (16, 16)


def test_segmenter_covers_odd_sizes():
    net = build_segmenter(5, (20, 12), ngf=4, feature_channels=4).eval()
    assert net(torch.zeros(1, 3, 20, 12)).shape == (1, 5, 20, 12)


def test_segmenter_train_cli(tmp_path: Path, capsys):
    _labelled_pairs(tmp_path / "data")
    (tmp_path / "four.json").write_text(json.dumps(FOUR.to_classes_json()))
    rc = main(["segmenter", "train", "--data", str(tmp_path / "data"), "--label-set", str(tmp_path / "four.json"),
               "--steps", "2", "--batch-size", "2", "--ngf", "4", "--device", "cpu", "-o", str(tmp_path / "seg")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "labels from side B" in out and "real test photos: per-pixel acc" in out
    config = json.loads((tmp_path / "seg" / "config.json").read_text())
    assert config["training"]["real_scores"]["images"] == 2
    assert (tmp_path / "seg" / "segmenter.safetensors").is_file()
