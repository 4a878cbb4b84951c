"""`data.instance_edges`: pix2pix's label-map input plus the boundary map of the instance map (pix2pixHD's edge
channel). Hand-made maps, the dataset against pix2pixHD's loader on the same crops, the networks' widths, the
saved card, translation with and without instance maps, and the errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from pix2pix.cli.main import main
from pix2pix.config import validate
from pix2pix.data import for_model
from pix2pix.data.images import open_map
from pix2pix.data.label_dataset import LabelDataset
from pix2pix.data.paired import PairedDataset, color_region_ids, edge_channel
from pix2pix.data.transforms import apply_params, sample_params
from pix2pix.editor.session import EditorModel
from pix2pix.errors import CheckpointError, ConfigError, DataError
from pix2pix.inference import Translator, load_translator
from pix2pix.io.hub import readme_for
from pix2pix.io.model_card import DataGeometry, ModelCard, NetworkSpec
from pix2pix.models import create_generator
from pix2pix.presets import get_preset
from pix2pix.runtime import seed_everything
from pix2pix.training.trainer import build_trainer, train

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_touching_objects_of_one_class_are_split_by_the_edge_channel():
    # two cars (ids 26001, 26002) side by side on road (7): one colour in the label map, two instances here
    inst = torch.tensor([[[7, 7, 7, 7],
                          [7, 26001, 26002, 7],
                          [7, 26001, 26002, 7]]])
    edges = edge_channel(inst)
    assert edges.shape == (1, 3, 4) and set(edges.unique().tolist()) == {-1.0, 1.0}
    # every pixel next to another instance is 1; the cars' line between them included, road far away not
    assert edges[0].tolist() == [[-1, 1, 1, -1],
                                 [1, 1, 1, 1],
                                 [1, 1, 1, 1]]
    # the colour map alone: one region per colour, so the two cars are one region with no line between them
    colour = torch.full((3, 3, 4), -1.0)
    colour[:, 1:, 1:3] = torch.tensor([0.0, 0.5, 1.0])[:, None, None]
    ids = color_region_ids(colour)
    assert ids.shape == (1, 3, 4) and ids[0, 1, 1] == ids[0, 2, 2] and ids[0, 0, 0] != ids[0, 1, 1]
    assert edge_channel(ids)[0, 1:, 1:3].tolist() == [[1, 1], [1, 1]]  # the region's rim, not a middle line
    assert edge_channel(torch.tensor([[[4, 4], [4, 4]]])).eq(-1).all()


@pytest.fixture
def edge_config(world, tmp_path):
    cfg = get_preset("tiny")
    cfg.data.root, cfg.train.runs_dir, cfg.train.device = str(world / "AB"), str(tmp_path / "runs"), "cpu"
    cfg.data.instance_edges = True
    return cfg


def test_the_channel_follows_the_pairs_crop_and_flip(edge_config, world):
    """The same random crop and flip as the label map: equal to pix2pixHD's loader's boundaries on the same draw."""
    d = edge_config.data
    paired = PairedDataset.from_config(d, edge_config.model, "train")
    hd = LabelDataset(world, "train", label_nc=0, preprocess=d.preprocess, load_size=d.load_size,
                      crop_size=d.crop_size, flip=True)
    assert [p.a.stem for p in paired.items] == [it.key for it in hd.items]
    for index in range(len(paired)):
        for seed in range(4):  # four draws of crop and flip per pair
            a, b = paired[(index, seed)], hd[(index, seed)]
            assert a["A"].shape == (4, d.crop_size, d.crop_size)
            assert torch.equal(a["B"], b["image"])  # the same draw (its label side holds ids, not colours)
            assert torch.equal(a["A"][3:], edge_channel(b["instance"]))
    off = get_preset("tiny").data
    off.root = d.root
    assert PairedDataset.from_config(off, edge_config.model, "train")[0]["A"].shape[0] == 3


def test_a_run_trains_saves_and_translates_with_the_instance_maps(edge_config, world, tmp_path):
    edge_config.loss.lambda_seg = 1.0  # the segmenting D reads the palette from the colour channels only
    seed_everything(0)
    t = build_trainer(edge_config, CPU)
    assert next(t.net_g.parameters()).shape[1] == 4  # G's first convolution
    assert t.net_d.pair.model[0].in_channels == 4 + 3 and t.net_d.segmenter.down[0].in_channels == 3
    ds = t.objective.make_dataset("train", train=True)
    losses = t.train_step(default_collate([ds[(0, 1)], ds[(1, 1)]]))
    assert {"D_seg", "G_seg"} <= set(losses) and all(torch.isfinite(v) for v in losses.values())

    edge_config.train.max_steps, edge_config.train.sample_every = 2, 1000
    run = train(edge_config)
    card = json.loads((run.run_dir / "model" / "config.json").read_text())
    assert card["data"]["instance_edges"] is True and card["generator"]["in_channels"] == 4
    tr = load_translator(run.run_dir / "model", device="cpu")
    assert (tr.in_channels, tr.image_channels) == (4, 3)
    assert "a 3-channel image plus its instance map's boundaries (`--instances`) in" in readme_for(tr.card, "u/m")

    # evaluation reads test_inst/ beside AB/, resized like the label map (nearest), and shows the colours only
    item = for_model.model_dataset(tr.card, world / "AB", "test")[0]
    mode, load, crop = for_model.test_geometry(tr.card.data)
    inst = open_map(world / "test_inst" / "world_00004.png")
    params = sample_params(inst.size, mode, load, crop, flip=False, rng=None)
    ids = torch.from_numpy(np.asarray(apply_params(inst, params, Image.NEAREST)).astype(np.int64))[None]
    assert item["A"].shape[0] == 4 and torch.equal(item["A"][3:], edge_channel(ids))
    (pair,) = tr.test_pairs(world / "AB", "test")
    assert pair.input.mode == "RGB" and pair.fake.size == (crop, crop)

    # files: the A half of the test pair, with its instance map (by name) and without
    a_half = tmp_path / "in" / "world_00004.png"
    a_half.parent.mkdir()
    Image.open(world / "AB" / "test" / "world_00004.png").crop((0, 0, 40, 40)).save(a_half)
    notes: list[str] = []
    with_maps = tr.translate_files([a_half], tmp_path / "with", instance_dir=world / "test_inst", log=notes.append)
    assert main(["translate", str(a_half), "--model", str(run.run_dir / "model"), "-o", str(tmp_path / "cli"),
                 "--instances", str(world / "test_inst"), "--backend", "torch", "--device", "cpu"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli" / a_half.name)), np.asarray(Image.open(with_maps[0])))
    without = tr.translate_files([a_half], tmp_path / "without", log=notes.append)
    assert len(notes) == 1 and "each colour region of the label maps counts as one instance" in notes[0]
    label, inst = Image.open(a_half), open_map(world / "test_inst" / "world_00004.png")
    assert np.array_equal(np.asarray(Image.open(with_maps[0])), np.asarray(tr(label, inst)))
    assert np.array_equal(np.asarray(Image.open(without[0])), np.asarray(tr(label)))
    colour_only, with_inst = tr.image_to_input(label), tr.image_to_input(label, instance=inst)
    assert torch.equal(colour_only[3:], edge_channel(color_region_ids(colour_only[:3])))
    # every class boundary is an instance boundary too; the instance map adds the lines inside a class
    assert torch.equal(colour_only[:3], with_inst[:3]) and (with_inst[3:] >= colour_only[3:]).all()

    # the editor paints instances too and hands them to the model (a scene where touching objects share a class)
    editor = EditorModel.load(run.run_dir / "model", labels=world / "classes.json", device="cpu")
    assert editor.inputs.instances
    label, instance = (np.asarray(open_map(world / f"train_{kind}" / "world_00002.png")) for kind in ("label", "inst"))
    photo, _ = editor.generate(label, instance, {})
    colours = Image.fromarray(editor.palette[label])
    assert np.array_equal(photo, np.asarray(tr(colours, Image.fromarray(instance.astype(np.int32)))))
    assert not np.array_equal(photo, np.asarray(tr(colours)))  # the lines inside a class reach G


def test_missing_maps_and_misplaced_switches_are_one_line_errors(edge_config, world, tmp_path, capsys):
    hd = get_preset("tiny_hd")
    hd.data.instance_edges = True
    with pytest.raises(ConfigError, match="model.family=pix2pix"):
        validate(hd)
    for preset, key, value in (("colorization", "layout", "colorization"), ("tiny", "in_channels", 4)):
        cfg = get_preset(preset)
        cfg.data.instance_edges = True
        setattr(cfg.data if key == "layout" else cfg.model, key, value)
        with pytest.raises(ConfigError, match="data.instance_edges=true"):
            validate(cfg)

    copy = tmp_path / "copy"
    shutil.copytree(world / "AB", copy / "AB")
    with pytest.raises(DataError, match=r"needs instance maps in .*train_inst"):
        PairedDataset.from_config(edge_config.data, edge_config.model, root=copy / "AB")
    shutil.copytree(world / "train_inst", copy / "train_inst")
    (copy / "train_inst" / "world_00001.png").unlink()
    with pytest.raises(DataError, match=r"world_00001.png has no instance map .*\(1 of 4 pairs lack one\)"):
        PairedDataset.from_config(edge_config.data, edge_config.model, root=copy / "AB")
    code = main(["train", "--preset", "tiny", "--data", str(copy / "AB"), "--runs-dir", str(tmp_path / "runs"),
                 "--set", "data.instance_edges=true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "world_00001.png has no instance map" in err[0]

    # a card claiming the channel on a generator that cannot hold it; a plain model refuses instance maps
    g = create_generator("unet", 3, 3, ngf=2, num_downs=5)
    with pytest.raises(CheckpointError, match="data.instance_edges"):
        ModelCard(generator=NetworkSpec.of(g), data=DataGeometry(instance_edges=True)).check()
    g4 = create_generator("unet", 4, 3, ngf=2, num_downs=5)
    edges = Translator(g4, ModelCard(generator=NetworkSpec.of(g4), data=DataGeometry(instance_edges=True)),
                       device="cpu")
    with pytest.raises(DataError, match=r"world_00001.png has no instance map .*\(1 of 2 images lack one\)"):
        edges.translate_files([tmp_path / "world_00000.png", tmp_path / "world_00001.png"], tmp_path / "o",
                              instance_dir=copy / "train_inst")
    plain = Translator(g, device="cpu")
    with pytest.raises(ConfigError, match="trained without instance maps"):
        plain.translate_files([], tmp_path / "o", instance_dir=world / "test_inst")
