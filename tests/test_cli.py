"""The command line end to end on the synthetic world: data synth -> train -> translate -> resume."""

import json

import numpy as np
import pytest
from PIL import Image

from pix2pix.cli.main import main


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", str(out), "--num", "6", "--size", "64", "--seed", "3"]) == 0
    return out


def test_synth_layout(synth_dir):
    assert len(list((synth_dir / "AB" / "train").glob("*.png"))) == 5
    assert len(list((synth_dir / "test_label").glob("*.png"))) == 1
    assert Image.open(next((synth_dir / "AB" / "train").glob("*.png"))).size == (128, 64)


def test_train_translate_and_resume(synth_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "--preset", "tiny", "--data", str(synth_dir / "AB"), "--runs-dir", str(runs),
            "--set", "max_steps=4", "--set", "checkpoint_every=2", "--no-progress"]
    assert main(args) == 0
    run = runs / "00000-tiny"
    assert "report: " in capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["max_steps"] == 4 and cfg["data"]["root"] == str(synth_dir / "AB")

    # translate a folder, a file and a glob; any size
    odd = tmp_path / "odd.png"
    Image.fromarray(np.zeros((45, 70, 3), dtype=np.uint8)).save(odd)
    out = tmp_path / "out"
    assert main(["translate", "--model", str(run / "model"), str(synth_dir / "AB" / "test"), str(odd),
                 str(synth_dir / "test_img" / "*.png"), "-o", str(out), "--batch-size", "2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and "odd.png" in names  # the test pair and its image share a stem
    assert Image.open(out / "odd.png").size == (70, 45)

    # resume for two more steps
    assert main(["train", "--resume", str(run), "--set", "max_steps=6", "--no-progress"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_dry_run_and_presets(synth_dir, capsys):
    assert main(["train", "--preset", "synthetic", "--data", str(synth_dir / "AB"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "generator: unet_128" in out and "net_g: UnetGenerator (2,617,507 parameters)" in out
    assert main(["presets"]) == 0
    assert "facades" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "facade", "--data", "x"], "Did you mean 'facades'"),
    (["train", "--preset", "tiny", "--data", "x", "--set", "lamda_l1=1"], "Did you mean 'lambda_l1'"),
    (["train", "--preset", "tiny", "--data", "/nonexistent/data"], "does not exist"),
    (["translate", "--model", "/nonexistent", "x.png", "-o", "o"], "no such model directory"),
    (["train", "--resume", "/nonexistent/run"], "--resume needs a run directory"),
])
def test_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_colorization_lab_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(6):
        arr = np.zeros((40, 40, 3), dtype=np.uint8)
        arr[:, :20] = rng.integers(0, 256, 3)
        arr[:, 20:] = rng.integers(0, 256, 3)
        Image.fromarray(arr).save(src / f"c{i}.png")
    data = tmp_path / "color"
    assert main(["data", "colorize", str(src), str(data), "--mode", "lab", "--test-fraction", "0.3"]) == 0
    runs = tmp_path / "runs"
    assert main(["train", "--preset", "colorization", "--data", str(data), "--runs-dir", str(runs),
                 "--set", "generator=unet", "--set", "model.generator_kwargs.num_downs=3", "--set", "ngf=4",
                 "--set", "ndf=4", "--set", "load_size=36", "--set", "crop_size=32", "--set", "max_steps=2",
                 "--no-progress"]) == 0
    model = next(runs.iterdir()) / "model"
    out = tmp_path / "out"
    assert main(["translate", "--model", str(model), str(src / "c0.png"), "-o", str(out)]) == 0
    img = Image.open(out / "c0.png")
    assert img.mode == "RGB" and img.size == (40, 40)
