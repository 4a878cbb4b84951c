"""Datasets opened the way a saved model saw its data: the one place that turns a model card's geometry
into a dataset (evaluation, instance encoding, the demo).

At test time (the reference's test options) nothing is random: a resize-and-crop model sees its
inputs resized to crop_size (no crop), a scale-width-and-crop model the full image scaled to
load_size; other modes keep their sizes. For encoding training instances the training
preprocessing is kept, without flips and with a centre crop.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from ..io.model_card import DataGeometry, ModelCard
from .label_dataset import LabelDataset
from .paired import PairedDataset


def test_geometry(geometry: DataGeometry) -> tuple[str, int, int]:
    """(preprocess, load_size, crop_size) of the deterministic test-time version of `geometry`."""
    mode, load, crop = geometry.preprocess, geometry.load_size, geometry.crop_size
    if mode == "resize_and_crop":
        return mode, crop, crop
    if mode == "scale_width_and_crop":
        return "scale_width", load, crop
    return mode, load, crop


def model_dataset(card: ModelCard, root: str | Path, phase: str = "test", *, test_time: bool = True,
                  require_images: bool = False) -> PairedDataset | LabelDataset:
    """The `phase` split of `root` prepared as the model expects, without augmentation."""
    g = card.data
    mode, load, crop = test_geometry(g) if test_time else (g.preprocess, g.load_size, g.crop_size)
    if card.family == "pix2pixhd":
        labels = card.labels
        assert labels is not None  # the card checks it
        label_set = card.label_set()
        return LabelDataset(root, phase, label_nc=labels.label_nc, use_instance=labels.use_instance,
                            preprocess=mode, load_size=load, crop_size=crop, flip=False, train=False,
                            ignore_index=labels.ignore_index, class_from_folder=labels.class_from_folder,
                            require_images=require_images,
                            palette=label_set.palette_array if label_set is not None else None, label_set=label_set)
    data = DataConfig(direction=g.direction, layout=g.layout, color_space=g.color_space, preprocess=mode,
                      load_size=load, crop_size=crop, flip=False, instance_edges=g.instance_edges)
    return PairedDataset(root, phase, data=data, in_channels=card.image_channels, out_channels=card.out_channels,
                         train=False)
