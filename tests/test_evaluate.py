"""`pix2pix eval`: image metrics on hand-made cases, FID/KID through torchmetrics, the report, the CLI."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli.main import main
from pix2pix.errors import CheckpointError, ConfigError, DataError
from pix2pix.evaluation import psnr, ssim
from pix2pix.evaluation.evaluate import evaluate_folders, pair_folders
from pix2pix.evaluation.inception import FIDInceptionV3, find_inception_weights, load_fid_inception

needs_torchmetrics = pytest.mark.skipif(importlib.util.find_spec("torchmetrics") is None,
                                        reason="torchmetrics is not installed (pip install 'pix2pix[eval]')")

CONFTEST_PALETTE = [[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]]


class MeanColour(torch.nn.Module):
    """A tiny feature extractor: the mean colour of each image in [0, 1] (3 features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3)) / 255


def _write(folder: Path, arrays: list[np.ndarray], prefix: str = "im") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a.astype(np.uint8)).save(folder / f"{prefix}{i}.png")


def _random_images(n: int, size: int = 32, seed: int = 0, low: int = 20, high: int = 200) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(low, high, (size, size, 3)) for _ in range(n)]


def test_identical_images_give_zero_error_perfect_ssim_and_infinite_psnr(tmp_path: Path):
    imgs = _random_images(3)
    _write(tmp_path / "real", imgs)
    _write(tmp_path / "fake", imgs)
    r = evaluate_folders(tmp_path / "real", tmp_path / "fake", fid=False, lpips_net=None)
    assert r["images"] == 3
    assert r["metrics"]["l1"] == 0.0 and r["metrics"]["ssim"] == pytest.approx(1.0)
    assert r["metrics"]["psnr"] is None and any("3 of 3 pairs are identical" in n for n in r["notes"])


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_psnr_of_a_known_noise_level(tmp_path: Path, sigma: float):
    rng = np.random.default_rng(1)
    grey = np.full((64, 64, 3), 128)
    noisy = [np.clip(np.round(grey + rng.normal(0, sigma * 255, grey.shape)), 0, 255) for _ in range(3)]
    _write(tmp_path / "real", [grey] * 3)
    _write(tmp_path / "fake", noisy)
    r = evaluate_folders(tmp_path / "real", tmp_path / "fake", fid=False, lpips_net=None)
    assert r["metrics"]["psnr"] == pytest.approx(10 * math.log10(1 / sigma**2), abs=0.15)
    assert r["metrics"]["l1"] == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.03)  # E|N(0, s)|
    assert 0 < r["metrics"]["ssim"] < 0.5


@needs_torchmetrics
def test_metrics_agree_with_torchmetrics():
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 40, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    theirs = peak_signal_noise_ratio(x, y, data_range=1.0, dim=(1, 2, 3), reduction="none")
    assert torch.allclose(psnr(x, y), theirs, atol=1e-6)
    # torchmetrics averages the SSIM map over the reflection-padded full image; ours (as Wang et al.'s code)
    # over the windows inside the image: the same map, cropped by the window radius
    _, full = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none", return_full_image=True)
    theirs = full[..., 5:-5, 5:-5].flatten(1).mean(1)
    assert torch.allclose(ssim(x, y), theirs, atol=1e-10)


@needs_torchmetrics
def test_fid_and_kid_with_a_small_feature_extractor(tmp_path: Path):
    real = _random_images(8, seed=2)
    _write(tmp_path / "real", real)
    _write(tmp_path / "same", real)
    _write(tmp_path / "shifted", [a + 10 for a in real])  # every pixel +10 grey levels: features move by 10/255
    same = evaluate_folders(tmp_path / "real", tmp_path / "same", feature_extractor=MeanColour(), lpips_net=None)
    shifted = evaluate_folders(tmp_path / "real", tmp_path / "shifted", feature_extractor=MeanColour(),
                               lpips_net=None)
    assert same["metrics"]["fid"] == pytest.approx(0.0, abs=1e-9)
    assert shifted["metrics"]["fid"] == pytest.approx(3 * (10 / 255) ** 2, rel=1e-5)  # equal covariances
    assert abs(same["metrics"]["kid_mean"]) < 0.2 * shifted["metrics"]["kid_mean"]
    assert shifted["settings"]["kid_subset_size"] == 8  # clamped to the 8 images, and said so
    assert any("KID subset size 1000 exceeds the 8 images" in n for n in shifted["notes"])
    assert "fid" not in shifted["unavailable"]


def test_unpaired_file_is_an_error_naming_it(tmp_path: Path):
    _write(tmp_path / "real", _random_images(2))
    _write(tmp_path / "fake", _random_images(3))
    with pytest.raises(DataError, match=r"im2\.png has no real partner"):
        pair_folders(tmp_path / "real", tmp_path / "fake")


@needs_torchmetrics
def test_missing_inception_weights_and_lpips_are_reported_with_the_reason(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PIX2PIX_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    imgs = _random_images(2)
    _write(tmp_path / "real", imgs)
    _write(tmp_path / "fake", imgs)
    r = evaluate_folders(tmp_path / "real", tmp_path / "fake")
    assert "fid" not in r["metrics"] and "pt_inception-2015-12-05-6726825d.pth" in r["unavailable"]["fid"]
    assert str(tmp_path / "hub") in r["unavailable"]["kid"]
    assert "lpips" in r["unavailable"]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert "torchvision" in r["unavailable"]["lpips"]


def test_inception_network_matches_the_fid_checkpoint_layout(tmp_path: Path):
    net = FIDInceptionV3()
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    assert len(state) == 566 and state["fc.weight"].shape == (1008, 2048)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    with torch.no_grad():
        feats = net(torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8))
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all()
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_fid_inception(tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="do not exist"):
        find_inception_weights(tmp_path / "absent.pth")


@needs_torchmetrics
@pytest.mark.skipif(find_inception_weights() is None,
                    reason="FID Inception weights (pt_inception-2015-12-05-6726825d.pth) are not in the torch hub "
                           "checkpoints folder or $PIX2PIX_INCEPTION_WEIGHTS; they cannot be downloaded here")
def test_real_inception_weights(tmp_path: Path):
    imgs = _random_images(3, size=48)
    _write(tmp_path / "real", imgs)
    _write(tmp_path / "fake", imgs)
    r = evaluate_folders(tmp_path / "real", tmp_path / "fake", lpips_net=None)
    assert r["metrics"]["fid"] == pytest.approx(0.0, abs=1e-3)
    assert "FID InceptionV3" in r["settings"]["feature_extractor"]


@needs_torchmetrics
def test_eval_cli_on_folders(tmp_path: Path, capsys):
    imgs = _random_images(4)
    _write(tmp_path / "real", imgs)
    _write(tmp_path / "fake", [np.clip(a + 5, 0, 255) for a in imgs])
    (tmp_path / "feat.py").write_text(
        "import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
        "        return x.float().mean(dim=(2, 3)) / 255\n\ndef factory():\n    return M()\n")
    rc = main(["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--out",
               str(tmp_path / "out"), "--feature-extractor", f"{tmp_path / 'feat.py'}:factory", "--device", "cpu"])
    assert rc == 0
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert result["metrics"]["fid"] == pytest.approx(3 * (5 / 255) ** 2, rel=1e-4)
    assert result["metrics"]["l1"] == pytest.approx(5 / 255, rel=1e-6)
    md = (tmp_path / "out" / "metrics.md").read_text()
    assert "| FID |" in md and "| LPIPS | — | unavailable:" in md
    assert "| FID |" in capsys.readouterr().out
    assert main(["eval", "--real", str(tmp_path / "real"), "--out", str(tmp_path / "o2")]) == 2
    assert "--real and --fake go together" in capsys.readouterr().err


def test_eval_cli_translates_a_split_and_scores_segmentation(tiny_config, tmp_path: Path):
    from pix2pix.data.label_sets import LabelSet, nearest_palette_ids
    from pix2pix.training.trainer import train

    tiny_config.train.max_steps = 1  # any saved model will do: the test is about the evaluation plumbing
    run = train(tiny_config).run_dir
    palette = [tuple(c) for c in CONFTEST_PALETTE]
    four = LabelSet(name="four", label_nc=4, class_names=("r", "g", "b", "y"), palette=tuple(palette))
    (tmp_path / "four.json").write_text(json.dumps(four.to_classes_json()))
    (tmp_path / "seg.py").write_text(
        "import torch\n\nclass Nearest(torch.nn.Module):\n"
        f"    colors = torch.tensor({CONFTEST_PALETTE}, dtype=torch.float32) / 127.5 - 1\n"
        "    def forward(self, x):\n"
        "        return -((x[:, None] - self.colors[None, :, :, None, None]) ** 2).sum(2)\n\n"
        "def factory():\n    return Nearest()\n")
    out = tmp_path / "eval"
    rc = main(["eval", "--model", str(run), "--data", tiny_config.data.root, "--segmenter",
               f"{tmp_path / 'seg.py'}:factory", "--label-set", str(tmp_path / "four.json"), "--out", str(out),
               "--no-fid", "--device", "cpu"])
    assert rc == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["images"] == 2 and result["phase"] == "test"
    assert sorted(p.name for p in (out / "fake").iterdir()) == ["p000.png", "p001.png"]
    # the label maps are the inputs (A, colour-coded) decoded at full size and resized like the images (40 -> 32)
    pair = np.asarray(Image.open(Path(tiny_config.data.root) / "test" / "p000.png").convert("RGB"))
    ids = nearest_palette_ids(pair[:, :40], four).astype(np.int32)
    expected = np.asarray(Image.fromarray(ids).resize((32, 32), Image.NEAREST))
    assert np.array_equal(np.asarray(Image.open(out / "labels" / "p000.png")), expected)
    assert Image.open(out / "real" / "p000.png").size == (32, 32)
    seg = result["segmentation"]
    assert seg["label_set"] == "four" and set(seg) >= {"generated", "real"}
    assert 0.0 <= seg["generated"]["pixel_accuracy"] <= 1.0
    assert "## Segmentation score" in (out / "metrics.md").read_text()


def test_eval_cli_on_a_pix2pixhd_model_with_a_trained_segmenter(tmp_path: Path):
    """Label maps as ids (pix2pixHD folders): segmenter training and scoring read them directly."""
    from pix2pix.data.synthetic import write_synthetic_dataset
    from pix2pix.presets import get_preset
    from pix2pix.training.trainer import train

    data = tmp_path / "syn"
    write_synthetic_dataset(data, num=4, size=32)
    cfg = get_preset("tiny_hd")
    cfg.data.root, cfg.train.runs_dir, cfg.train.device, cfg.train.max_steps = str(data), str(tmp_path / "r"), "cpu", 1
    run = train(cfg).run_dir
    assert main(["segmenter", "train", "--data", str(data), "--label-set", "synthetic", "--steps", "1", "--ngf", "4",
                 "--device", "cpu", "-o", str(tmp_path / "seg")]) == 0
    assert main(["eval", "--model", str(run), "--data", str(data), "--segmenter", str(tmp_path / "seg"), "--no-fid",
                 "--device", "cpu"]) == 0
    result = json.loads((run / "eval-test" / "metrics.json").read_text())
    labels = sorted((run / "eval-test" / "labels").iterdir())
    stored = np.asarray(Image.open(data / "test_label" / labels[0].name))
    assert np.array_equal(np.asarray(Image.open(labels[0])), stored)  # ids kept exactly (same size, preprocess)
    seg = result["segmentation"]
    assert seg["label_set"] == "synthetic" and seg["ignore_id"] == 0
    assert seg["real"]["per_class"]["void"] == {"accuracy": None, "iou": None}  # void pixels are not counted
