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


def _frame(out: list[str], bounds: tuple[float, float, float, float], margins: tuple[int, int, int, int],
           size: tuple[int, int], x_label: str, x_format: str) -> tuple[Any, Any]:
    """Draw the plot area's box, five ticks per axis and the x label; return the data -> pixel maps (sx, sy)."""
    (x0, x1, y0, y1), (left, right, top, bottom), (width, height) = bounds, margins, size
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for i in range(5):
        yv, xv = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">'
                   f'{x_format.format(xv)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    return sx, sy


def _legend(out: list[str], i: int, name: str, at: tuple[int, int]) -> str:
    """The i-th legend entry (a short line and the name) right of the plot area; returns its colour."""
    colour, (x, top) = _COLOURS[i % len(_COLOURS)], at
    ly = top + 14 * i + 8
    out.append(f'<line x1="{x + 8}" y1="{ly}" x2="{x + 24}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
    out.append(f'<text x="{x + 28}" y="{ly + 4}">{html.escape(name)}</text>')
    return colour


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
    sx, sy = _frame(out, (x0, x1, y0, y1), (left, right, top, bottom), (width, height), x_key, "{:.0f}")
    for i, (key, pts) in enumerate(series.items()):
        colour = _legend(out, i, key, (width - right, top))
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
    out.append("</svg>")
    return "".join(out)


def line_plot_svg(series: Sequence[dict[str, Any]], *, x_label: str = "", y_label: str = "", title: str = "",
                  hlines: Sequence[tuple[str, float]] = (), width: int = 720, height: int = 380) -> str:
    """Lines with optional spread bands, as a standalone SVG (no plotting library needed).

    Each series is {"name", "x": [...], "y": [...]} with optional "low" and "high" lists (same length) drawn
    as a shaded band around the line; points whose y is None are left out. `hlines` are (label, y) dashed
    reference lines across the plot.
    """
    left, right, top, bottom = 60, 170, 28 if title else 14, 40
    pw, ph = width - left - right, height - top - bottom
    lines = []
    for s in series:
        pts = [(float(x), float(y), s.get("low", [None] * len(s["x"]))[i], s.get("high", [None] * len(s["x"]))[i])
               for i, (x, y) in enumerate(zip(s["x"], s["y"], strict=True)) if y is not None and math.isfinite(y)]
        lines.append((str(s["name"]), pts))
    xs = [p[0] for _, pts in lines for p in pts]
    ys = [v for _, pts in lines for p in pts for v in p[1:] if v is not None] + [y for _, y in hlines]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11"><rect width="100%" height="100%" fill="white"/>']
    if title:
        out.append(f'<text x="{left + pw / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>')
    if not xs:
        out.append(f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">no points yet</text></svg>')
        return "".join(out)
    x0, x1, y0, y1 = min(0.0, min(xs)), max(xs), min(ys), max(ys)
    pad = 0.05 * (y1 - y0) if y1 > y0 else 0.05 * max(abs(y0), 1.0)
    y0 = max(0.0, y0 - pad) if y0 >= 0 else y0 - pad  # values that are never negative keep a zero floor
    y1, x1 = y1 + pad, x1 if x1 > x0 else x0 + 1
    sx, sy = _frame(out, (x0, x1, y0, y1), (left, right, top, bottom), (width, height), x_label, "{:.3g}")
    out.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">{html.escape(y_label)}</text>')
    for i, (label, y) in enumerate(hlines):  # labels alternate between the right and the left end
        tx, anchor = (left + pw - 4, "end") if i % 2 == 0 else (left + 4, "start")
        out.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + pw}" y2="{sy(y):.1f}" stroke="#555" '
                   f'stroke-dasharray="4 3"/><text x="{tx}" y="{sy(y) - 4:.1f}" text-anchor="{anchor}" '
                   f'fill="#555">{html.escape(label)}</text>')
    for i, (name, pts) in enumerate(lines):
        colour = _legend(out, i, name, (width - right, top))
        band = [p for p in pts if p[2] is not None and p[3] is not None]
        if len(band) > 1:
            edge = [f"{sx(x):.1f},{sy(hi):.1f}" for x, _, _, hi in band]
            edge += [f"{sx(x):.1f},{sy(lo):.1f}" for x, _, lo, _ in reversed(band)]
            out.append(f'<polygon fill="{colour}" fill-opacity="0.15" stroke="none" points="{" ".join(edge)}"/>')
        for x, _, lo, hi in band:
            out.append(f'<line x1="{sx(x):.1f}" y1="{sy(lo):.1f}" x2="{sx(x):.1f}" y2="{sy(hi):.1f}" '
                       f'stroke="{colour}" stroke-width="1"/>')
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _, _ in pts)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"/>')
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y, _, _ in pts]
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
