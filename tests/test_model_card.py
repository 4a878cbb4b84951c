"""The model card: one typed schema, validated field by field; format 1 files still load, translate and resume."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_pair_images, write_aligned
from PIL import Image

from pix2pix.cli.main import main
from pix2pix.config import apply_overrides
from pix2pix.errors import CheckpointError
from pix2pix.inference import LabelTranslator, Translator, load_translator
from pix2pix.io.model_card import FORMAT_VERSION, DataGeometry, LabelSpec, ModelCard, NetworkSpec, Provenance
from pix2pix.io.pretrained import from_pretrained, save_model, save_pretrained
from pix2pix.models import create_generator
from pix2pix.report import read_stats
from pix2pix.training.trainer import load_run_config, train

FORMAT1 = Path(__file__).parent / "fixtures" / "format1"


def _assert_as_made(actual: np.ndarray, fixture: str) -> None:
    """Equal to the stored output up to float rounding: the fixtures were made on one CPU, and oneDNN picks its
    kernels by the CPU's instruction set, so another CPU differs in the last bits (~3e-8 seen); a weight or layer
    that loaded differently moves the output by orders of magnitude more."""
    np.testing.assert_allclose(actual, np.load(FORMAT1 / fixture), rtol=0, atol=1e-6)


def _card_error(tmp_path: Path, config: object) -> str:
    model = tmp_path / "model"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(FORMAT1 / "pix2pix_run" / "model", model)
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        load_translator(model, device="cpu")
    message = str(info.value)
    assert "\n" not in message and str(model / "config.json") in message
    return message


# ----------------------------------------------------------------------------- format 1 files


def test_format1_pix2pix_model_translates_as_before():
    translator = load_translator(FORMAT1 / "pix2pix_run", device="cpu")  # a run directory: its model/
    assert isinstance(translator, Translator)
    card = translator.card
    assert card.family == "pix2pix" and card.provenance.step == 4
    assert (card.data.preprocess, card.data.load_size, card.data.crop_size) == ("resize_and_crop", 34, 32)
    x = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    _assert_as_made(translator.translate_tensor(x).numpy(), "pix2pix_expected.npy")


def test_format1_imported_model_keeps_its_source_and_direction():
    translator = load_translator(FORMAT1 / "imported_resnet", device="cpu")
    assert translator.card.data.direction == "BtoA" and translator.card.provenance.source == "latest_net_G.pth"
    x = torch.linspace(-1, 1, 3 * 20 * 28).reshape(1, 3, 20, 28)
    _assert_as_made(translator.translate_tensor(x).numpy(), "imported_expected.npy")


def test_format1_pix2pixhd_model_with_features_and_clusters_translates_as_before():
    translator = load_translator(FORMAT1 / "pix2pixhd_run" / "model", device="cpu")
    assert isinstance(translator, LabelTranslator)
    card = translator.card
    assert card.labels.label_nc == 10 and card.use_features and card.feat_num == 3
    assert card.label_set().class_names[7] == "car" and translator.clusters is not None
    label = torch.from_numpy(np.asarray(Image.open(FORMAT1 / "label.png")).astype(np.int64))[None, None]
    inst = torch.from_numpy(np.asarray(Image.open(FORMAT1 / "inst.png")).astype(np.int64))[None, None]
    for mode in ("cluster", "zero"):
        out = translator.translate_tensor(label, inst, features=mode)
        _assert_as_made(out.numpy(), f"pix2pixhd_expected_{mode}.npy")
    out = translator.translate_tensor(label, inst, features="cluster", choices={int(inst.max()): 1})
    _assert_as_made(out.numpy(), "pix2pixhd_expected_choice.npy")


@pytest.mark.parametrize("name", ["pix2pix_run", "pix2pixhd_run"])
def test_format1_runs_resume_to_the_same_losses(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(FORMAT1 / name, run)
    data = tmp_path / "data"
    if name == "pix2pix_run":
        write_aligned(data, "train", make_pair_images(4, size=(32, 32), seed=0))
        write_aligned(data, "test", make_pair_images(1, size=(32, 32), seed=1))
    else:
        from pix2pix.data.synthetic import write_synthetic_dataset

        write_synthetic_dataset(data, num=3, size=32, seed=2)
    cfg = apply_overrides(load_run_config(run), ["train.max_steps=6"])
    cfg.data.root = str(data)
    train(cfg, resume=run, log=lambda *a: None)
    expected = json.loads((FORMAT1 / "resumed_losses.json").read_text())[name]
    resumed = [r["losses"] for r in read_stats(run / "stats.jsonl") if r["step"] > 4]
    # strict: the same number of steps; approx on each dict: the same keys, values up to float rounding
    # (see _assert_as_made)
    for r, e in zip(resumed, expected, strict=True):
        assert r == pytest.approx(e, rel=1e-5, abs=1e-7)
    assert ModelCard.read(run / "model").to_dict()["format_version"] == FORMAT_VERSION  # re-saved as format 2


# ----------------------------------------------------------------------------- the schema


def test_card_round_trips_and_writes_one_place(tmp_path):
    g = create_generator("global", 14, 3, ngf=2, n_downsample=1, n_blocks=1)
    e = create_generator("encoder", 3, 3, ngf=2, n_downsample=1)
    card = ModelCard(family="pix2pixhd", labels=LabelSpec(label_nc=10, ignore_index=0),
                     data=DataGeometry(preprocess="scale_width", load_size=64, crop_size=32),
                     provenance=Provenance(step=7, preset="tiny_hd", metrics={"test": {"mIoU": 0.5}}))
    save_model(tmp_path / "m", card, {"generator": g, "encoder": e})
    read = ModelCard.read(tmp_path / "m")
    assert read == card.with_network("generator", NetworkSpec.of(g)).with_network("encoder", NetworkSpec.of(e))
    assert read.feat_num == 3 and read.labels.channels == 11
    net = from_pretrained(tmp_path / "m", kind="encoder")
    assert net.card == read


def test_save_pretrained_default_card_and_second_network(tmp_path):
    g = create_generator("unet", 3, 3, ngf=2, num_downs=3)
    save_pretrained(g, tmp_path / "m")
    card = ModelCard.read(tmp_path / "m")
    assert card.family == "pix2pix" and card.generator.name == "unet" and card.discriminator is None
    from pix2pix.models import create_discriminator

    save_pretrained(create_discriminator("patchgan", 6, ndf=2, n_layers=1), tmp_path / "m", kind="discriminator")
    card = ModelCard.read(tmp_path / "m")
    assert card.generator.name == "unet" and card.discriminator.in_channels == 6


@pytest.mark.parametrize("kind, name, kwargs", [
    ("generator", "unet", {"num_downs": 3, "ngf": 4}),
    ("generator", "unet", {"num_downs": 3, "ngf": 4, "input_skip": True}),
    ("generator", "resnet", {"n_blocks": 1, "ngf": 4}),
    ("generator", "global", {"ngf": 4, "n_downsample": 2, "n_blocks": 1}),
    ("generator", "local", {"ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1, "n_blocks_local": 1}),
    ("generator", "crn", {"ngf": 8, "n_modules": 3}), ("encoder", "encoder", {"ngf": 4, "n_downsample": 2}),
    ("discriminator", "patchgan", {"ndf": 4, "n_layers": 2}),
    ("discriminator", "multiscale", {"ndf": 4, "n_layers": 2, "num_D": 2})])
def test_saved_networks_load_without_initialising_and_compute_the_same(kind, name, kwargs, tmp_path, monkeypatch):
    from pix2pix.io import pretrained
    from pix2pix.io.pretrained import load_network
    from pix2pix.models import create_discriminator

    torch.manual_seed(0)
    make = create_discriminator if kind == "discriminator" else create_generator
    net = (make(name, 6, **kwargs) if kind == "discriminator" else make(name, 3, 3, **kwargs)).eval()
    card = ModelCard(family="pix2pixhd", labels=LabelSpec(label_nc=5)) if kind == "encoder" else ModelCard()
    save_model(tmp_path / "m", card, {kind: net})
    devices = []
    build = pretrained.build_from_arch
    monkeypatch.setattr(pretrained, "build_from_arch",
                        lambda *a, **k: devices.append(torch.empty(0).device.type) or build(*a, **k))
    loaded = load_network(tmp_path / "m", ModelCard.read(tmp_path / "m"), kind)
    assert devices == ["meta"]  # built once, with no memory and no random initialisation
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert tensors and not any(t.is_meta for t in tensors) and all(p.requires_grad for p in loaded.parameters())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True))
    x = torch.randn(1, 6 if kind == "discriminator" else 3, 32, 32)
    with torch.no_grad():
        want, got = net(x), loaded(x)
    flat = lambda o: list(o) if not isinstance(o, (list, tuple)) else [t for i in o for t in flat(i)]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(flat(want), flat(got), strict=True))


def test_a_network_holding_a_tensor_the_file_lacks_is_built_normally(tmp_path, monkeypatch):
    from pix2pix.io import pretrained

    class WithScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)  # not in the state dict

    net = WithScale()
    monkeypatch.setattr(pretrained, "build_from_arch", lambda arch, kind: WithScale())
    loaded = pretrained._build_from_state({}, "generator", net.state_dict(), "w.safetensors")
    assert not loaded.scale.is_meta and loaded.scale.item() == 2.0
    assert torch.equal(loaded.conv.weight, net.conv.weight)


def test_inconsistent_channels_are_refused(tmp_path):
    g = create_generator("global", 12, 3, ngf=2, n_downsample=1, n_blocks=1)  # label_nc 10 + boundary = 11
    with pytest.raises(CheckpointError, match="generator.in_channels"):
        save_model(tmp_path / "m", ModelCard(family="pix2pixhd", labels=LabelSpec(label_nc=10)), {"generator": g})
    assert not (tmp_path / "m" / "generator.safetensors").exists()  # nothing half-written


@pytest.mark.parametrize(("edit", "field"), [
    (lambda c: c["generator"].pop("name"), "generator.name"),
    (lambda c: c["generator"].pop("kwargs"), "generator.kwargs"),
    (lambda c: c.__setitem__("generator", None), "generator"),
    (lambda c: c.__setitem__("format_version", "1"), "format_version"),
    (lambda c: c["generator"].__setitem__("in_channels", "3"), "generator.in_channels"),
    (lambda c: c["generator"].__setitem__("in_channels", 0), "generator.in_channels"),
    (lambda c: c["data"].__setitem__("preprocess", "squash"), "data.preprocess"),
    (lambda c: c["data"].__setitem__("direction", "sideways"), "data.direction"),
    (lambda c: c["data"].__setitem__("crop_size", True), "data.crop_size"),
    (lambda c: c.__setitem__("data", []), "data"),
])
def test_bad_fields_name_the_file_and_the_field(tmp_path, edit, field):
    config = json.loads((FORMAT1 / "pix2pix_run" / "model" / "config.json").read_text())
    edit(config)
    message = _card_error(tmp_path, config)
    if field == "generator":  # a null generator leaves no network at all
        assert "describes no network" in message
    else:
        assert f"field '{field}'" in message


def test_not_an_object_newer_format_and_bad_json(tmp_path):
    assert "the top level" in _card_error(tmp_path, ["not", "a", "card"])
    assert "newer than" in _card_error(tmp_path, {"format_version": FORMAT_VERSION + 1})
    model = tmp_path / "model"
    (model / "config.json").write_text('{"format_version": NaN}')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ModelCard.read(model)


def test_cli_reports_a_broken_card_in_one_line(tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(FORMAT1 / "pix2pix_run" / "model", model)
    config = json.loads((model / "config.json").read_text())
    del config["generator"]["name"]
    (model / "config.json").write_text(json.dumps(config))
    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(img)
    assert main(["translate", str(img), "--model", str(model), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "generator.name" in err and not (tmp_path / "out").exists()


def test_import_records_source_and_sha256(tmp_path, capsys):
    import hashlib

    g = create_generator("unet_128", 3, 3, ngf=2)
    path = tmp_path / "latest_net_G.pth"
    torch.save(g.state_dict(), path)
    out = tmp_path / "imported"
    assert main(["import-reference", str(path), "--arch", "unet_128", "--ngf", "2", "-o", str(out),
                 "--direction", "BtoA"]) == 0
    card = ModelCard.read(out)
    assert card.provenance.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card.provenance.source == str(path) and card.data.direction == "BtoA"


def test_package_import_is_lazy():
    import subprocess

    code = "import sys, pix2pix; print('torch' in sys.modules, 'pix2pix.training.trainer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
