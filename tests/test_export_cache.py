"""translate's default CPU path: a model directory runs through an ONNX export made once, cached under
PIX2PIX_HOME/exports, reused while the model is unchanged, and replaced when it changes; PyTorch where the export
cannot be made or does not apply."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli.main import main
from pix2pix.export import cache as export_cache
from pix2pix.export.parity import ExportError
from pix2pix.inference import load_translator
from pix2pix.inference.base import resolve_backend
from pix2pix.io.model_card import LabelSpec, ModelCard
from pix2pix.io.pretrained import save_model
from pix2pix.registry import create_generator

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or
                                importlib.util.find_spec("onnx") is None,
                                reason="onnx / onnxruntime are not installed (pip install 'pix2pix[export]')")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PIX2PIX_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "exports"


def _unet_model(folder, seed=0):
    torch.manual_seed(seed)
    save_model(folder, ModelCard(), {"generator": create_generator("unet", 3, 3, num_downs=3, ngf=4)})
    return folder


def _pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_translate_exports_once_reuses_and_replaces_when_the_model_changes(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_cache, "EXPORT_FROM_IMAGES", 1)  # one image stands for a long job
    monkeypatch.setattr(export_cache, "USE_FROM_IMAGES", 1)
    model = _unet_model(tmp_path / "model")
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(image)

    assert main(["translate", str(image), "--model", str(model), "--backend", "torch", "-o", str(tmp_path / "t")]) == 0
    assert not home.exists()  # --backend torch makes no export
    capsys.readouterr()
    assert main(["translate", str(image), "--model", str(model), "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "exporting once to ONNX" in err and err.count("max relative") == 2  # the parity check is printed
    (first,) = home.iterdir()
    files = sorted(os.listdir(first))  # the export, and onnxruntime's optimised graph for a faster start next time
    assert files[1:] == ["config.json", "export.json", "generator.onnx"] and files[0].startswith(".generator.ort-")
    optimized = first / files[0]
    eager, exported = _pixels(tmp_path / "t" / "in.png"), _pixels(tmp_path / "a" / "in.png")
    assert exported.shape == (45, 70, 3) and np.abs(exported - eager).max() <= 1  # uint8 rounding of 1e-6
    assert load_translator(model, backend="auto", device="cpu").generator.backend == "onnxruntime"

    made, optimized_made = (first / "generator.onnx").stat().st_mtime_ns, optimized.stat().st_mtime_ns
    assert main(["translate", str(image), "--model", str(model), "-o", str(tmp_path / "b")]) == 0
    assert "exporting" not in capsys.readouterr().err and list(home.iterdir()) == [first]
    assert (first / "generator.onnx").stat().st_mtime_ns == made  # reused, not rewritten
    assert optimized.stat().st_mtime_ns == optimized_made and sorted(os.listdir(first)) == files
    assert np.array_equal(_pixels(tmp_path / "b" / "in.png"), exported)

    _unet_model(model, seed=1)  # retrained: new weights in the same directory
    os.utime(model / "generator.safetensors", ns=(made + 10**9, made + 10**9))  # even within a coarse clock tick
    assert main(["translate", str(image), "--model", str(model), "-o", str(tmp_path / "c")]) == 0
    assert "exporting once" in capsys.readouterr().err
    (second,) = home.iterdir()  # the stale export of this directory is gone
    assert second != first and second.name.split("-")[0] == first.name.split("-")[0]
    assert main(["translate", str(image), "--model", str(model), "--backend", "torch", "-o", str(tmp_path / "d")]) == 0
    assert np.abs(_pixels(tmp_path / "c" / "in.png") - _pixels(tmp_path / "d" / "in.png")).max() <= 1
    assert not np.array_equal(_pixels(tmp_path / "c" / "in.png"), exported)  # the new weights, not the old export


def test_short_jobs_use_an_existing_export_and_long_ones_make_it(home, tmp_path):
    model = _unet_model(tmp_path / "model")
    few, some, many = export_cache.USE_FROM_IMAGES - 1, export_cache.EXPORT_FROM_IMAGES - 1, \
        export_cache.EXPORT_FROM_IMAGES
    assert 1 <= few < some < many
    assert resolve_backend(model, "auto", images=few) == (model, "torch")
    assert resolve_backend(model, "auto", images=some) == (model, "torch") and not home.exists()  # nothing made
    folder, backend = resolve_backend(model, "auto", images=many)  # a job that pays for the export by itself
    assert backend == "onnxruntime" and folder.parent == home
    assert resolve_backend(model, "auto", images=some) == (folder, "onnxruntime")  # now worth using
    assert resolve_backend(model, "auto", images=few) == (model, "torch")  # onnxruntime starts slower
    assert resolve_backend(model, "auto") == (folder, "onnxruntime")  # the library: a translator for many calls


def test_a_users_own_export_folder_is_never_written_to(home, tmp_path):
    from pix2pix.export import export_model

    export_model(_unet_model(tmp_path / "model"), tmp_path / "mine", "onnx", log=None)
    before = sorted(os.listdir(tmp_path / "mine"))
    translator = load_translator(tmp_path / "mine", device="cpu")
    assert translator.generator.backend == "onnxruntime" and sorted(os.listdir(tmp_path / "mine")) == before
    assert not home.exists()


def test_the_library_default_and_the_eager_cases_stay_on_pytorch(home, tmp_path, monkeypatch):
    model = _unet_model(tmp_path / "model")
    assert load_translator(model, device="cpu").generator.__class__.__name__ != "ExportedGenerator"
    assert resolve_backend(model, None) == (model, "torch")  # the API's default writes nothing
    assert resolve_backend(model, "auto", paper_mode=True) == (model, "torch")  # dropout on: the eager network
    assert resolve_backend(model, "auto", device=torch.device("cuda")) == (model, "torch")
    assert not home.exists()

    monkeypatch.setattr(export_cache, "_runtime_installed", lambda: False)
    assert resolve_backend(model, "auto") == (model, "torch")
    monkeypatch.undo()
    monkeypatch.setenv("PIX2PIX_HOME", str(home.parent))

    def failing(*args, **kwargs):
        raise ExportError("generator exported to onnx differs from eager PyTorch by 1e-3")

    monkeypatch.setattr(export_cache, "export_model", failing)
    said = []
    assert resolve_backend(model, "auto", log=said.append) == (model, "torch")
    assert "the ONNX export failed (generator exported to onnx differs" in said[-1] and "PyTorch" in said[-1]


def test_a_pix2pixhd_model_translates_through_its_cached_export_like_pytorch(home, tmp_path):
    torch.manual_seed(0)
    labels = LabelSpec(label_nc=5, use_instance=True)
    nets = {"generator": create_generator("global", labels.channels + 3, 3, ngf=4, n_downsample=2, n_blocks=1),
            "encoder": create_generator("encoder", 3, 3, ngf=4, n_downsample=2)}
    save_model(tmp_path / "model", ModelCard(family="pix2pixhd", labels=labels), nets)
    fast = load_translator(tmp_path / "model", backend="auto", device="cpu")
    eager = load_translator(tmp_path / "model", backend="torch", device="cpu")
    assert fast.generator.backend == "onnxruntime" and fast.encoder.kind == "encoder"
    gen = torch.Generator().manual_seed(1)
    label = torch.randint(0, 5, (1, 1, 26, 35), generator=gen)
    inst = label * 1000 + torch.randint(0, 2, (1, 1, 26, 35), generator=gen)
    style = torch.rand(1, 3, 26, 35, generator=gen) * 2 - 1
    want = eager(label, inst, features="encode", style_image=style)
    got = fast(label, inst, features="encode", style_image=style)
    assert (got - want).abs().max() / want.abs().max() < 1e-4
