"""Whole `pix2pix translate` processes on the CPU: the default (`--backend auto`) against `--backend torch`.

    python benchmarks/translate_cli.py --out benchmarks/translate_cli.md
    python benchmarks/translate_cli.py --quick          # tiny widths: checks the script, times nothing real

Models (untrained, saved as model directories): `unet_256` (ngf 64) on 256x256 photos, and
pix2pixHD's `global` generator (ngf 64, 35 labels + instance boundaries, no encoder) on 512x256
label and instance maps. Each process is timed from start to exit (Python start-up, loading, the
images, writing the PNGs). First a job of EXPORT_FROM_IMAGES (256) images, the shortest that
makes the export, once per backend with an empty export cache: the default's process exports
the model (`pix2pix.export.cache`, parity check included), then translates on onnxruntime. Then
shorter jobs in rounds that alternate the backends, so the shared machine's load hits both
alike: a folder of USE_FROM_IMAGES (16), for which the default reuses the export, and one image,
which the default runs on PyTorch (onnxruntime starts later than it gains), so that row shows
the noise. The last column compares every PNG with `--backend torch`'s (max |difference|, 8-bit).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import machine_info  # noqa: E402  (benchmarks/benchmark.py: one /proc reader)

from pix2pix.export.cache import EXPORT_FROM_IMAGES, USE_FROM_IMAGES
from pix2pix.io.model_card import LabelSpec, ModelCard
from pix2pix.io.pretrained import save_model
from pix2pix.registry import create_generator


def make_models(root: Path, quick: bool) -> dict[str, tuple[Path, list[str], list[str], int]]:
    """name -> (model directory, input files, translate's other arguments, images of the "folder" job)."""
    ngf = 8 if quick else 64
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    unet = root / "unet_256"
    save_model(unet, ModelCard(), {"generator": create_generator("unet_256", 3, 3, ngf=ngf)})
    photos = root / "photos"
    photos.mkdir()
    for i in range(LONG_JOB):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(photos / f"p{i:03d}.png")

    labels = LabelSpec(label_nc=35, use_instance=True)
    hd = root / "global"
    save_model(hd, ModelCard(family="pix2pixhd", labels=labels),
               {"generator": create_generator("global", labels.channels, 3, ngf=ngf, n_downsample=4, n_blocks=9)})
    maps, insts = root / "test_label", root / "test_inst"
    maps.mkdir()
    insts.mkdir()
    for i in range(LONG_JOB):
        label = np.kron(rng.integers(0, 35, (8, 16)), np.ones((32, 32), dtype=np.int64)).astype(np.uint8)
        Image.fromarray(label).save(maps / f"m{i:03d}.png")
        Image.fromarray(label.astype(np.uint16) * 1000 + 1).save(insts / f"m{i:03d}.png")
    return {"unet_256 256x256": (unet, sorted(map(str, photos.iterdir())), [], USE_FROM_IMAGES),
            "global 512x256": (hd, sorted(map(str, maps.iterdir())), ["--instances", str(insts)], USE_FROM_IMAGES)}


LONG_JOB = EXPORT_FROM_IMAGES  # the shortest job that makes the export
CLI = "from pix2pix.cli.main import main; raise SystemExit(main())"  # the `pix2pix` script, by this interpreter


def translate(model: Path, inputs: list[str], backend: str, out: Path, env: dict[str, str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", CLI, "translate", *inputs, "--model", str(model), "--backend", backend,
           "-o", str(out), "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr}")
    return took


def max_level_difference(a: Path, b: Path) -> int:
    worst = 0
    for p in sorted(a.iterdir()):
        x = np.asarray(Image.open(p), dtype=np.int16)
        worst = max(worst, int(np.abs(x - np.asarray(Image.open(b / p.name), dtype=np.int16)).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", help="write the markdown table here too")
    args = p.parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    info = machine_info("cpu")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "PIX2PIX_HOME": str(root / "home"), "OMP_NUM_THREADS": "2"}
        models = make_models(root, args.quick)
        rows = []
        for name, (model, files, extra, n) in models.items():
            # the first job of EXPORT_FROM_IMAGES or more makes the export: once, against PyTorch on the same images
            first_torch = translate(model, [*files, *extra], "torch", root / "o_torch", env)
            first = translate(model, [*files, *extra], "auto", root / "o_auto", env)
            rows.append(f"| {name} | {len(files)} images, first use (exports) | {first_torch:.2f} s | {first:.2f} s "
                        f"| {first_torch / first:.2f}x | {max_level_difference(root / 'o_auto', root / 'o_torch')} |")
            jobs = {"1 image": files[:1], f"{n} images": files[:n]}  # shorter jobs: the export exists now
            times: dict[tuple[str, str], list[float]] = {(j, b): [] for j in jobs for b in ("torch", "auto")}
            diffs = {}
            for _ in range(args.rounds):
                for job, job_files in jobs.items():
                    for backend in ("torch", "auto"):
                        out = root / f"o_{backend}"
                        times[job, backend].append(translate(model, [*job_files, *extra], backend, out, env))
                    diffs[job] = max_level_difference(root / "o_auto", root / "o_torch")
            for job in jobs:
                t, a = statistics.median(times[job, "torch"]), statistics.median(times[job, "auto"])
                rows.append(f"| {name} | {job} | {t:.2f} s | {a:.2f} s | {t / a:.2f}x | {diffs[job]} |")
        lines += ["# `pix2pix translate` processes: the default (cached ONNX export) against `--backend torch`", "",
                  f"Command: `python benchmarks/translate_cli.py {shlex.join(argv or sys.argv[1:])}`", "",
                  f"Date: {started:%Y-%m-%d %H:%M} (UTC). Machine: {info['cpu']} ({info.get('cpu_flags', '')}), "
                  f"{info['logical_cpus']} logical CPUs, torch {info['torch']}, OMP_NUM_THREADS=2; load average at "
                  f"start {info.get('load_average_at_start', '?')}."
                  + (" **--quick: tiny widths, not a measurement.**" if args.quick else ""), "",
                  f"Median wall time of a whole process over {args.rounds} alternating rounds (first use: one process "
                  "per backend).", "",
                  "| model | job | --backend torch | default (auto) | speed | max diff (8-bit levels) |",
                  "|---|---|---|---|---|---|", *rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
