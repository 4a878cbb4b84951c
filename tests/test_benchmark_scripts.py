"""benchmarks/feature_clusters.py and benchmarks/editor_latency.py end to end at a tiny size.

Each script runs as a user runs it (a subprocess of `python benchmarks/X.py`), on a synthetic world of
32x32 (feature clusters) or 64x64 (editor) scenes trained for 2 steps: numbers without meaning, but every
stage of the real script, on the library's current API. The checks are on what the output says.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["data.load_size=36", "data.crop_size=32", "train.batch_size=2", "model.norm=batch",
             "model.upsample=resize_conv"]


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _table(md: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first markdown table after `heading`, header and rule left out."""
    lines: list[str] = []
    for line in md.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    assert len(lines) >= 3, f"no table under {heading!r}"
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def _unit(cell: str) -> float:
    value = float(cell.split()[0])
    assert 0.0 <= value <= 1.0, cell
    return value


@pytest.fixture(scope="module")
def clusters_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("feature_clusters")
    args = ["--out", str(work / "out"), "--num", "12", "--size", "32", "--steps", "2", "--threads", "1",
            "--edit-images", "2", "--edit-instances", "1", "--edit-min-pixels", "16", "--md", str(work / "fc.md")]
    for o in OVERRIDES:
        args += ["--set", o]
    _run("feature_clusters.py", args, work)
    return work, (work / "fc.md").read_text(), json.loads((work / "out" / "results.json").read_text())


@pytest.mark.slow
def test_feature_clusters_purity_table(clusters_run):
    _, md, results = clusters_run
    rows = _table(md, "## Style purity of k-means clusters")
    assert rows and all(len(r) == 11 for r in rows)
    rules = {r[0] for r in rows}
    assert rules == {"reference (> 16 px)", ">= 16 px"}  # (32 * 32 // 32) / 2, and --edit-min-pixels
    for r in rows:
        assert int(r[2]) > 0 and int(r[3]) > 0  # instances, styles present
        for cell in r[5:]:
            _unit(cell)
    for rule in rules:  # the pooled rows hold the classes' instances, and their mean purity
        for k in ("per class", "10"):
            per_class = [r for r in rows if r[0] == rule and r[1] != "all (pooled)"
                         and (r[4] == "10") == (k == "10")]
            pooled = next(r for r in rows if r[0] == rule and r[1] == "all (pooled)" and r[4] == k)
            n = sum(int(r[2]) for r in per_class)
            assert int(pooled[2]) == n
            mean = sum(float(r[5]) * int(r[2]) for r in per_class) / n
            assert abs(float(pooled[5]) - mean) < 2e-3
    # the synthetic styles are far apart in colour: k-means on the true mean colour with K = the number of
    # styles finds them (this fails when instances and their true styles are paired up wrongly)
    for r in rows:
        if r[1] == "all (pooled)" and r[4] == "per class":
            assert float(r[9]) >= 0.9 and float(r[10]) >= 0.9
    assert results["purity"] and all(0 <= p["trained_purity"] <= 1 for p in results["purity"])


@pytest.mark.slow
def test_feature_clusters_locality_table_and_overrides(clusters_run):
    work, md, results = clusters_run
    rows = _table(md, "## Edit locality")
    assert rows[-1][0] == "all" and len(rows) >= 2
    for r in rows:
        assert int(r[1]) > 0  # edits
        for cell in (r[2], r[3], r[4]):
            _unit(cell)
        if r[7].split()[0] != "n/a":
            _unit(r[7])
    assert int(rows[-1][1]) == sum(int(r[1]) for r in rows[:-1])
    assert results["locality"]["all"]["edits"] == int(rows[-1][1])
    assert 0.0 <= results["locality"]["photo_classifier_accuracy"] <= 1.0
    assert results["locality"]["photo_instances"] > 0
    # the overrides are recorded, and they reached the model that was measured
    assert "Overrides of the preset (`--set`): " + ", ".join(f"`{o}`" for o in OVERRIDES) + "." in md
    assert results["overrides"] == OVERRIDES and results["steps"] == 2
    assert re.search(r"global G ngf 16 norm batch upsample resize_conv, feature encoder feat_num 3", md)
    model = Path(results["model"])
    card = json.loads((model / "config.json").read_text())
    assert card["generator"]["kwargs"]["norm"] == "batch"
    assert card["generator"]["kwargs"]["upsample"] == "resize_conv"
    assert card["data"]["crop_size"] == 32
    assert (model / "clusters.safetensors").is_file()  # saved next to the model, as `pix2pix features` does
    assert json.loads((model / "clusters.json").read_text())["k"] == 10


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"pix2pix_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_feature_clusters_bad_input(tmp_path, capsys):
    fc = _load("feature_clusters")
    threads = torch.get_num_threads()
    try:
        assert fc.main(["--out", str(tmp_path / "o"), "--set", "model.nrm=batch", "--threads", str(threads)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "model.nrm" in err[0] and "model.norm" in err[0]
        assert not (tmp_path / "o" / "data").exists()  # refused before writing the world
        with pytest.raises(SystemExit) as exc:
            fc.main(["--run", str(tmp_path), "--set", "model.norm=batch"])
        assert exc.value.code == 2
        assert "--set" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_editor_latency_tiny(tmp_path):
    proc = _run("editor_latency.py", ["--train-steps", "2", "--edits", "2", "--skip-hd", "--work", str(tmp_path),
                                      "--synthetic-num", "6", "--synthetic-size", "64", "--crop-size", "64"],
                tmp_path)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| (a)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "(a) pix2pixhd_synthetic, 2 steps, encoder + clusters"  # the step from the model card
    assert cells[1] == "64x64" and cells[2] == "cpu" and cells[3] == "2"
    round_trip, p90, model_time = (float(c.removesuffix(" ms")) for c in cells[4:7])
    assert 0 < round_trip <= p90 and 0 <= model_time <= round_trip  # the server's share is part of the trip
    assert re.fullmatch(r"stroke \d+, style \d+ ms", cells[7])  # styles: the clusters were computed and loaded
