"""The demo end to end at a tiny size: both families trained, clustered, scored, and the report written."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from pix2pix.cli.main import main


def test_demo_trains_both_systems_and_reports_them(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--num", "8", "--image-size", "64", "--steps", "3"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["models"]) == {"pix2pix", "pix2pixhd"}
    for name, model in summary["models"].items():
        s = model["scores"]
        assert model["steps"] == 3 and s["pairs"] == 2, name  # 8 scenes: 2 in the test split
        assert 0 < s["l1"] < 1 and 0 <= s["mean_iou"] <= 1 and 0 <= s["pixel_accuracy"] <= 1, name
    assert 0 <= summary["ceiling"]["mean_iou"] <= 1
    page = (out / "report.html").read_text()
    for needle in ("pix2pix samples", "pix2pixHD samples", "styles.png", "ceiling", "loss_pix2pixhd.svg"):
        assert needle in page
    strip = Image.open(out / "styles.png")
    clusters = summary["plan"]["clusters"]
    assert strip.width > (clusters + 1) * 64  # the label map, then one picture per style cluster
    assert (out / "runs").is_dir() and len(list((out / "results" / "pix2pixhd").glob("*.png"))) == 2
    for model in summary["models"].values():  # each schedule compressed to the plan: 3 steps of 4 = 2 epochs of 6
        optim = json.loads((Path(model["run_dir"]) / "config.json").read_text())["optim"]
        assert (optim["n_epochs"], optim["n_epochs_decay"]) == (1, 1)
    assert "report:" in capsys.readouterr().out
