"""Run reports: sample grids, an SVG loss plot and the index.html that shows them over training."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .io.atomic import write_text

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def image_grid(rows: Sequence[Sequence[Image.Image]], pad: int = 2) -> Image.Image:
    """Tile images row by row (e.g. input | output | target) on a white background."""
    cell_w = max(im.width for row in rows for im in row)
    cell_h = max(im.height for row in rows for im in row)
    cols = max(len(row) for row in rows)
    grid = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, len(rows) * cell_h + (len(rows) + 1) * pad), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.convert("RGB"), (pad + c * (cell_w + pad), pad + r * (cell_h + pad)))
    return grid


def read_stats(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_plot_svg(records: Sequence[dict[str, Any]], keys: Sequence[str] | None = None, width: int = 640,
                  height: int = 320, x_key: str = "step") -> str:
    """A line plot of `keys` against `x_key` as a standalone SVG (no plotting library needed)."""
    keys = list(keys or sorted({k for r in records for k in r.get("losses", {})}))
    series = {k: [(r[x_key], r["losses"][k]) for r in records
                  if k in r.get("losses", {}) and math.isfinite(r["losses"][k])] for k in keys}
    points = [p for s in series.values() for p in s]
    left, right, top, bottom = 56, 130, 16, 36
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>']
    if not points:
        out.append(f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">no losses logged yet</text></svg>')
        return "".join(out)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for i in range(5):
        yv, xv = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{xv:.0f}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(x_key)}</text>')
    for i, (key, pts) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        ly = top + 14 * i + 8
        out.append(f'<line x1="{width - right + 8}" y1="{ly}" x2="{width - right + 24}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 28}" y="{ly + 4}">{html.escape(key)}</text>')
    out.append("</svg>")
    return "".join(out)


def write_run_index(run_dir: str | Path) -> Path:
    """Write run_dir/loss.svg and run_dir/index.html showing the loss plot and every sample grid, newest first."""
    run_dir = Path(run_dir)
    records = read_stats(run_dir / "stats.jsonl")
    write_text(run_dir / "loss.svg", loss_plot_svg(records))
    samples = sorted((run_dir / "samples").glob("step_*.png"), reverse=True)
    config = (run_dir / "config.json").read_text() if (run_dir / "config.json").exists() else "{}"
    last = records[-1] if records else {}
    rows = "\n".join(
        f'<h3>step {int(p.stem.split("_")[1])}</h3><img src="samples/{p.name}" alt="{p.stem}">' for p in samples
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:24px}} img{{max-width:100%;image-rendering:pixelated}}
pre{{background:#f4f4f4;padding:8px;max-height:300px;overflow:auto}}</style></head>
<body><h1>{html.escape(run_dir.name)}</h1>
<p>step {last.get("step", 0)} &middot; epoch {last.get("epoch", 0)} &middot; columns: input | output | target</p>
<img src="loss.svg" alt="losses">
{rows}
<h2>config</h2><pre>{html.escape(config)}</pre>
</body></html>
"""
    write_text(run_dir / "index.html", page)
    return run_dir / "index.html"
