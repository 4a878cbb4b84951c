"""The end-to-end demo: synthesise data, train, translate the test split, write a report.

    pix2pix demo --out demo

Everything runs on the CPU in a few minutes with no download: the synthetic street
world (label map -> photo) is generated, a small U-Net pix2pix is trained with the
`synthetic` preset, the test labels are translated and scored against the real
photos (L1, PSNR, SSIM), and demo/report.html shows samples, metrics and losses.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from .data.images import image_to_tensor, save_image
from .evaluation import l1_error, psnr, ssim
from .inference import BaseTranslator, load_translator
from .io.atomic import write_text
from .presets import get_preset
from .report import image_grid, read_stats
from .training.trainer import train


def evaluate_split(translator: BaseTranslator, root: str | Path, phase: str = "test",
                   save_dir: Path | None = None) -> tuple[dict[str, float], list[list[Any]], int]:
    """Mean L1 / PSNR / SSIM of the translated split against its photos ([0, 1] scale), grid rows, pair count.

    With `save_dir`, every generated image is written there under its input's key.
    """
    scores: dict[str, list[float]] = {"L1": [], "PSNR": [], "SSIM": []}
    rows = []
    for pair in translator.test_pairs(root, phase):
        f01, r01 = (image_to_tensor(pair.fake)[None] + 1) / 2, (image_to_tensor(pair.real)[None] + 1) / 2
        scores["L1"].append(float(l1_error(f01, r01)))
        scores["PSNR"].append(float(psnr(f01, r01)))
        scores["SSIM"].append(float(ssim(f01, r01)))
        if save_dir is not None:
            save_image(pair.fake, save_dir / f"{pair.key}.png")
        if len(rows) < 8:
            rows.append([pair.input, pair.fake, pair.real])
    return {k: sum(v) / len(v) for k, v in scores.items()}, rows, len(scores["L1"])


def run_demo(out_dir: str | Path = "demo", *, num: int = 240, size: int = 128, seed: int = 0, max_steps: int = 0,
             progress: bool = False, log: Any = print) -> Path:
    """Run the whole demo into `out_dir`; returns the report path."""
    from .data.synthetic import write_synthetic_dataset

    out_dir = Path(out_dir)
    started = time.perf_counter()
    data_dir = out_dir / "data"
    if not (data_dir / "AB" / "train").is_dir():
        log(f"generating {num} synthetic street scenes of {size}x{size} in {data_dir}")
        write_synthetic_dataset(data_dir, num=num, size=size, seed=seed)
    cfg = get_preset("synthetic")
    cfg.data.root = str(data_dir / "AB")
    cfg.train.runs_dir = str(out_dir / "runs")
    cfg.train.max_steps = max_steps
    cfg.train.seed = seed
    cfg.train.device = "cpu"
    log(f"training pix2pix ({cfg.model.generator}, ngf {cfg.model.ngf}) on the CPU")
    result = train(cfg, progress=progress, log=log)
    trained = time.perf_counter()

    translator = load_translator(result.run_dir / "model", device="cpu")
    metrics, rows, n_test = evaluate_split(translator, cfg.data.root, "test", save_dir=out_dir / "results")
    grid = image_grid(rows)
    grid.save(out_dir / "samples.png")
    write_text(out_dir / "loss.svg", (result.run_dir / "loss.svg").read_text())
    summary = {"test_pairs": n_test, "metrics": metrics, "steps": result.step,
               "train_seconds": round(trained - started, 1), "total_seconds": round(time.perf_counter() - started, 1),
               "run_dir": str(result.run_dir)}
    write_text(out_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    report = _write_report(out_dir, summary, read_stats(result.run_dir / "stats.jsonl"))
    log(f"test split ({n_test} pairs): L1 {metrics['L1']:.4f}  PSNR {metrics['PSNR']:.2f} dB  "
        f"SSIM {metrics['SSIM']:.4f}")
    log(f"report: {report.resolve()}")
    return report


def _write_report(out_dir: Path, summary: dict[str, Any], stats: list[dict[str, Any]]) -> Path:
    m = summary["metrics"]
    run_dir = Path(summary["run_dir"])
    run = html.escape(str(run_dir.relative_to(out_dir) if run_dir.is_relative_to(out_dir) else run_dir))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pix2pix demo</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1000px}} img{{max-width:100%;image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}</style></head>
<body><h1>pix2pix demo: synthetic street world, labels &rarr; photo</h1>
<p>{summary['steps']} training steps on the CPU in {summary['train_seconds']} s
({summary['total_seconds']} s in all). Training run: <a href="{run}/index.html">{run}</a>.</p>
<h2>Test split ({summary['test_pairs']} pairs), generated vs real photo</h2>
<table><tr><th>L1 (0-1 scale)</th><th>PSNR (dB)</th><th>SSIM</th></tr>
<tr><td>{m['L1']:.4f}</td><td>{m['PSNR']:.2f}</td><td>{m['SSIM']:.4f}</td></tr></table>
<h2>Samples: label map | generated | real</h2><img src="samples.png" alt="samples">
<h2>Losses ({len(stats)} log points)</h2><img src="loss.svg" alt="loss curves">
</body></html>
"""
    path = out_dir / "report.html"
    write_text(path, page)
    return path
