"""benchmarks/gpu_check.sh: its dry run on the CPU goes through every section, and its report keeps what the
sections that finished measured when others fail or run out of time."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("env", "tests", "train_hd", "local", "infer", "train_p2p")


def _load_gpu_check():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("pix2pix_gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gc = _load_gpu_check()


def test_report_keeps_finished_sections_and_says_what_failed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    gc._write(work, "env", "- gpu: NVIDIA H200")
    gc._write(work, "train_hd", "| a table |", [{"name": "bf16 speed", "value": "2.10x", "limit": ">= 3x",
                                                "pass": False}])
    (work / "env.status").write_text("0 3 20")
    (work / "tests.status").write_text("1 40 100")
    (work / "tests.log").write_text("collected 10 items\nFAILED tests/test_gpu.py::test_channels_last_on_cuda\n")
    (work / "train_hd.status").write_text("0 120 140")
    (work / "local.status").write_text("124 70 70")
    (work / "local.log").write_text("[hd_local_2048 g1 library] ready in 60s\n")
    report = gc.build_report(work, dry_run=False, command="bash benchmarks/gpu_check.sh")
    assert report.startswith("# GPU check")
    assert "- gpu: NVIDIA H200" in report and "| a table |" in report
    assert "| bf16 speed | 2.10x | >= 3x | **FAIL** |" in report
    assert re.search(r"local enhancer 2048x1024 step within 24 GiB \| not measured \(\*\*timed out\*\* \(limit 70 s\)",
                     report)
    assert "editor < 50 ms per edit at 1024x512 | not measured (not run)" in report
    assert "**failed** (exit status 1)" in report and "FAILED tests/test_gpu.py::test_channels_last_on_cuda" in report
    assert "ready in 60s" in report  # a timed-out section's log tail
    for section in SECTIONS:
        assert f"| {section}: " in report


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_dry_run_goes_through_every_section(tmp_path):
    out = tmp_path / "results_gpu.md"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text()
    assert "**dry run**" in report
    status = {s: (tmp_path / "work" / f"{s}.status").read_text().split() for s in SECTIONS}
    assert all(v[0] == "0" for v in status.values()), status
    table = report.split("## Sections")[1].split("## 1.")[0]
    sections = re.findall(r"^\| (\w+): .* \| (.*) \| (.*) \|$", table, re.M)
    assert [(name, st) for name, st, _ in sections] == [(s, "ok") for s in SECTIONS]
    targets = report.split("## Targets")[1].split("## Sections")[0]
    rows = [ln for ln in targets.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) == 3 and all(ln.endswith(("PASS |", "**FAIL** |")) for ln in rows)
    for title in ("CUDA tests", "pix2pixHD global at 1024x512", "local enhancer at 2048x1024", "editor latency",
                  "pix2pix at 256x256"):
        assert title in report
    saved = json.loads((tmp_path / "work" / "train_hd_raw.json").read_text())
    assert {r["variant"] for r in saved["runs"]} == {"plain", "library", gc.FAST}
    assert all("error" not in r for r in saved["runs"])
