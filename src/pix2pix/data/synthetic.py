"""A synthetic street-like world: label maps, instance maps and photos with known ground truth.

No download is needed, so this is the project's demo data, its test fixture and a benchmark.
Every scene is a view across a street: sky, buildings with windows on the skyline, a far
sidewalk with pedestrians, trees and poles, a road with parked and moving cars and trucks,
sometimes a near sidewalk and the ego vehicle's bonnet (``void``) at the bottom.

Ground truth a benchmark can check:

- ``label``: one class id per pixel (`CLASS_NAMES`, colours in `PALETTE`).
- ``instance``: the Cityscapes convention. Pixels of an instance class (`INSTANCE_CLASSES`) hold
  ``class_id * 1000 + k`` with ``k >= 0`` unique per object in the image; other pixels hold
  their class id. Objects are drawn back to front, so the map holds the visible front object.
  Same-class objects often touch (cars parked bumper to bumper, people shoulder to shoulder),
  so only the instance map separates them.
- ``styles``: each instance's appearance is one of a few discrete styles (`STYLES`, e.g. five
  car body colours). The styles are far apart in colour, so an instance's mean colour
  identifies its style and a feature encoder + k-means should recover them.

`render_scene` draws one scene into numpy arrays; `write_synthetic_dataset` writes a dataset
in both the pix2pixHD layout (``train_label``/``train_inst``/``train_img``) and the aligned
A|B layout (``AB/train``), plus ``classes.json`` and ``styles.json``. Image ``i`` is seeded
from ``(seed, i)``, so it is byte-identical whatever ``num`` is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..io.atomic import write_json
from .images import save_image
from .labels import INSTANCE_ID_MULTIPLIER, instance_id

# ----------------------------------------------------------------------------- classes

VOID, SKY, BUILDING, VEGETATION, ROAD, SIDEWALK, POLE, CAR, PERSON, TRUCK = range(10)

CLASS_NAMES: tuple[str, ...] = (
    "void", "sky", "building", "vegetation", "road", "sidewalk", "pole", "car", "person", "truck",
)
LABEL_NC = len(CLASS_NAMES)

# Cityscapes colours for the colour-coded label maps (the A side of the A|B pairs).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),        # void
    (70, 130, 180),   # sky
    (70, 70, 70),     # building
    (107, 142, 35),   # vegetation
    (128, 64, 128),   # road
    (244, 35, 232),   # sidewalk
    (153, 153, 153),  # pole (and the sign on it)
    (0, 0, 142),      # car
    (220, 20, 60),    # person
    (0, 0, 70),       # truck
)

INSTANCE_CLASSES: tuple[int, ...] = (CAR, PERSON, TRUCK)
MIN_SIZE = 32


class Style(NamedTuple):
    """One discrete appearance of an instance class: car body colour, clothing colour."""

    name: str
    color: tuple[int, int, int]


# Hues far apart so that a per-instance mean colour (body plus a darker share of windows,
# wheels, skin) is still nearest to its own style colour.
STYLES: dict[int, tuple[Style, ...]] = {
    CAR: (
        Style("red", (200, 35, 35)),
        Style("blue", (35, 75, 205)),
        Style("yellow", (235, 200, 40)),
        Style("white", (235, 235, 230)),
        Style("green", (40, 150, 70)),
    ),
    PERSON: (
        Style("red", (205, 45, 50)),
        Style("blue", (45, 90, 205)),
        Style("yellow", (235, 195, 45)),
        Style("green", (50, 165, 80)),
    ),
    TRUCK: (
        Style("orange", (235, 120, 25)),
        Style("white", (230, 230, 225)),
        Style("teal", (30, 140, 150)),
    ),
}

_PALETTE_ARRAY = np.array(PALETTE, dtype=np.uint8)


class InstanceStyle(NamedTuple):
    """Ground truth of one instance: its class id and its index into ``STYLES[class_id]``."""

    class_id: int
    style: int


@dataclass(frozen=True)
class Scene:
    """One rendered scene.

    label: uint8 [H, W] class ids. instance: int32 [H, W] (see the module docstring).
    photo: uint8 [H, W, 3]. styles: every instance id present in ``instance`` -> its style.
    """

    label: np.ndarray
    instance: np.ndarray
    photo: np.ndarray
    styles: dict[int, InstanceStyle]


def colorize_label(label: np.ndarray) -> np.ndarray:
    """Class-id map [H, W] -> colour-coded uint8 [H, W, 3] using `PALETTE`."""
    return _PALETTE_ARRAY[label]


# ----------------------------------------------------------------------------- sizes


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """Parse "256" (square) or "512x256" (width x height) into (width, height)."""
    match = _SIZE_RE.match(str(text))
    if match is None:
        raise ConfigError(
            f"size {text!r} is not a size: write one number for a square image (e.g. 256) "
            "or WIDTHxHEIGHT (e.g. 512x256)."
        )
    width = int(match[1])
    height = int(match[2]) if match[2] else width
    return _check_size(width, height)


def _check_size(width: int, height: int) -> tuple[int, int]:
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ConfigError(
            f"size {width}x{height} is too small: the synthetic world needs at least "
            f"{MIN_SIZE} pixels on each side; use e.g. 64 or 256."
        )
    return width, height


def _normalize_size(size: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, str):
        return parse_size(size)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return _check_size(int(size), int(size))
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)):
        return _check_size(int(size[0]), int(size[1]))
    raise ConfigError(
        f"size {size!r} is not a size: pass an int (square), a (width, height) pair or a string "
        "like '256' or '512x256'."
    )


# ----------------------------------------------------------------------------- drawing helpers


class _Box(NamedTuple):
    """The on-screen part of an object's bounding box, with normalised coordinates.

    u (1, n) and v (m, 1) are the pixel centres in box units (0..1 across the full, unclipped
    box), so shapes are written once in box units and broadcast to (m, n) masks.
    """

    sl: tuple[slice, slice]
    u: np.ndarray
    v: np.ndarray
    w: float
    h: float


class _Canvas:
    """The three maps being drawn, plus a shared per-pixel noise field for textures.

    `rng` here is for textures only; the scene's layout, objects and styles come from a separate
    generator, so retouching a texture never moves an object or changes the ground truth.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.rng = rng
        self.w, self.h = width, height
        self.label = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.int32)
        self.photo = np.zeros((height, width, 3), np.float32)
        # One draw of fine noise reused by every texture: cheaper than one per object.
        self.fine = rng.standard_normal((height, width), dtype=np.float32)

    def box(self, x0: float, y0: float, w: float, h: float) -> _Box | None:
        # Pixels whose centre lies inside the box, so abutting boxes neither overlap nor leave gaps.
        ix0, iy0 = max(0, math.ceil(x0 - 0.5)), max(0, math.ceil(y0 - 0.5))
        ix1, iy1 = min(self.w, math.ceil(x0 + w - 0.5)), min(self.h, math.ceil(y0 + h - 0.5))
        if ix1 <= ix0 or iy1 <= iy0 or w <= 0 or h <= 0:
            return None
        u = ((np.arange(ix0, ix1, dtype=np.float32) + 0.5 - x0) / w)[None, :]
        v = ((np.arange(iy0, iy1, dtype=np.float32) + 0.5 - y0) / h)[:, None]
        return _Box((slice(iy0, iy1), slice(ix0, ix1)), u, v, w, h)

    def paint(self, box: _Box, mask: np.ndarray, rgb: np.ndarray, class_id: int,
              inst_id: int | None = None) -> None:
        """Draw `rgb` where `mask` is set: the later (front) object wins every pixel it covers."""
        value = class_id if inst_id is None else inst_id
        if mask.all():  # whole rectangle (sky, ground, facades): plain slice assignment is fastest
            self.label[box.sl] = class_id
            self.instance[box.sl] = value
            self.photo[box.sl] = rgb
            return
        np.copyto(self.label[box.sl], class_id, where=mask, casting="unsafe")
        np.copyto(self.instance[box.sl], value, where=mask, casting="unsafe")
        np.copyto(self.photo[box.sl], rgb, where=mask[..., None], casting="unsafe")

    def noise(self, box: _Box, sigma: float) -> np.ndarray:
        """Fine noise for the box, shaped (m, n, 1) to add to colours."""
        return self.fine[box.sl][..., None] * sigma

    def smooth_noise(self, rows: int, cols: int, cell: float) -> np.ndarray:
        """Blotchy noise (about unit variance) with features about `cell` pixels wide."""
        gh, gw = max(2, round(rows / cell) + 2), max(2, round(cols / cell) + 2)
        grid = self.rng.standard_normal((gh, gw)).astype(np.float32)
        return np.asarray(Image.fromarray(grid).resize((cols, rows), Image.BILINEAR), dtype=np.float32)


def _rgb(color: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    return np.asarray(color, dtype=np.float32)


def _shade(color: np.ndarray, v: np.ndarray, top: float = 1.08, bottom: float = 0.88) -> np.ndarray:
    """Vertical shading (lit from above): colour scaled from `top` at v=0 to `bottom` at v=1."""
    return color * (top + (bottom - top) * np.clip(v, 0.0, 1.0))[..., None]


def _disc(box: _Box, cu: float, cv: float, radius_px: float) -> np.ndarray:
    dx = (box.u - cu) * box.w
    dy = (box.v - cv) * box.h
    return dx * dx + dy * dy <= radius_px * radius_px


# ----------------------------------------------------------------------------- scene layout


@dataclass
class _Layout:
    horizon: float     # y of the horizon
    base: float        # y where buildings meet the far sidewalk
    curb: float        # y where the far sidewalk meets the road
    near: float        # y where the road ends (near sidewalk below; == height when there is none)

    def scale(self, y: float, height: int) -> float:
        """Object scale at ground row `y`: a gentle perspective, larger towards the bottom."""
        return 0.5 + 1.2 * (y - self.horizon) / (height - self.horizon)


def _sample_layout(rng: np.random.Generator, height: int) -> _Layout:
    horizon = rng.uniform(0.36, 0.44) * height
    base = horizon + rng.uniform(0.06, 0.09) * height
    curb = base + rng.uniform(0.07, 0.10) * height
    near = rng.uniform(0.86, 0.92) * height if rng.random() < 0.5 else float(height)
    return _Layout(horizon, base, curb, near)


# ----------------------------------------------------------------------------- stuff textures


def _draw_sky(cv: _Canvas, lay: _Layout) -> None:
    rows = min(cv.h, math.ceil(lay.base))
    box = cv.box(0, 0, cv.w, rows)
    assert box is not None
    t = np.clip(box.v * rows / max(lay.horizon, 1.0), 0, 1)[..., None]
    rgb = _rgb((70, 120, 195)) * (1 - t) + _rgb((185, 210, 235)) * t
    # Soft clouds: thresholded low-frequency noise blended towards white.
    clouds = cv.smooth_noise(rows, cv.w, cell=0.12 * cv.h)
    amount = np.clip((clouds - 0.6) * 0.8, 0, 0.7)[..., None]
    rgb = rgb * (1 - amount) + _rgb((242, 242, 246)) * amount + cv.noise(box, 2.0)
    cv.paint(box, np.ones((1, 1), bool), rgb, SKY)


_FACADES = ((150, 140, 130), (176, 160, 138), (125, 88, 74), (160, 165, 172),
            (200, 190, 168), (108, 110, 122), (182, 120, 95))


def _draw_building(cv: _Canvas, x0: float, width: float, top: float, base: float) -> None:
    rng = cv.rng
    box = cv.box(x0, top, width, base - top)
    if box is None:
        return
    facade = _rgb(_FACADES[rng.integers(len(_FACADES))]) * rng.uniform(0.9, 1.1)
    rgb = np.broadcast_to(facade, (box.v.shape[0], box.u.shape[1], 3)) + cv.noise(box, 5.0)
    # Window grid in pixels: a lit/dark value per window so facades are not uniform.
    cell_w = max(3.0, rng.uniform(0.035, 0.06) * cv.h)
    cell_h = cell_w * rng.uniform(1.1, 1.5)
    px = box.u * width
    py = box.v * (base - top)
    cx, fx = np.divmod(px - 0.3 * cell_w, cell_w)
    cy, fy = np.divmod(py - 0.4 * cell_h, cell_h)
    shop = py > (base - top) - max(4.0, 0.1 * (base - top))  # ground floor: a darker shop front
    window = (fx < 0.55 * cell_w) & (fy < 0.6 * cell_h) & (cx >= 0) & (cy >= 0)
    window &= (px < width - 0.3 * cell_w) & ~shop
    lit = rng.random((64, 64)).astype(np.float32)  # per-window brightness, looked up by cell
    bright = lit[cy.astype(int) % 64, cx.astype(int) % 64]
    glass = _rgb((48, 58, 74)) + bright[..., None] * _rgb((90, 100, 110))
    rgb = np.where(window[..., None], glass, rgb)
    rgb = np.where(shop[..., None], rgb * 0.6, rgb)
    cv.paint(box, np.ones((1, 1), bool), rgb, BUILDING)


def _draw_buildings(cv: _Canvas, rng: np.random.Generator, lay: _Layout) -> list[float]:
    """Buildings along the skyline (placed with the layout `rng`); returns gap centres for trees."""
    x = -rng.uniform(0, 0.1) * cv.h
    gaps = []
    while x < cv.w:
        width = rng.uniform(0.14, 0.32) * cv.h
        if rng.random() < 0.15:
            gaps.append(x + 0.3 * width)
            x += 0.6 * width
            continue
        top = lay.horizon - rng.uniform(0.08, 0.45) * cv.h
        _draw_building(cv, x, width, top, lay.base)
        x += width
    return gaps


def _foliage(cv: _Canvas, box: _Box) -> np.ndarray:
    """Green blotchy texture: two scales of smooth noise modulate a leaf green."""
    m, n = box.v.shape[0], box.u.shape[1]
    coarse = cv.smooth_noise(m, n, cell=max(2.0, 0.03 * cv.h))
    fine = cv.smooth_noise(m, n, cell=max(1.5, 0.01 * cv.h))
    light = np.clip(0.8 + 0.18 * coarse + 0.12 * fine, 0.45, 1.3)[..., None]
    return _rgb((62, 118, 44)) * light + cv.noise(box, 6.0)


def _draw_hedge(cv: _Canvas, x0: float, width: float, height: float, base: float) -> None:
    box = cv.box(x0, base - 1.4 * height, width, 1.4 * height)
    if box is None:
        return
    edge = cv.smooth_noise(1, box.u.shape[1], cell=max(2.0, 0.02 * cv.h))
    mask = box.v >= 0.3 + 0.12 * edge  # ragged top edge
    cv.paint(box, mask, _foliage(cv, box), VEGETATION)


def _draw_tree(cv: _Canvas, xc: float, bottom: float, height: float) -> None:
    trunk_w = max(1.5, 0.05 * height)
    box = cv.box(xc - trunk_w / 2, bottom - 0.55 * height, trunk_w, 0.55 * height)
    if box is not None:
        bark = _shade(_rgb((92, 72, 52)), box.u, 1.1, 0.8) + cv.noise(box, 5.0)
        cv.paint(box, np.ones((1, 1), bool), bark, VEGETATION)  # trunks are vegetation (Cityscapes)
    rx, ry = 0.32 * height, 0.3 * height
    box = cv.box(xc - 1.3 * rx, bottom - height - 0.3 * ry, 2.6 * rx, 2.6 * ry)
    if box is None:
        return
    wobble = cv.smooth_noise(box.v.shape[0], box.u.shape[1], cell=max(2.0, 0.25 * rx))
    du = (box.u - 0.5) * 2.6
    dv = (box.v - 0.5) * 2.6
    mask = du * du + dv * dv <= 1.0 + 0.3 * wobble  # a lumpy crown
    cv.paint(box, mask, _foliage(cv, box), VEGETATION)


def _draw_tiles(cv: _Canvas, y0: float, y1: float) -> None:
    box = cv.box(0, y0, cv.w, y1 - y0)
    if box is None:
        return
    tile = max(3.0, 0.035 * cv.h)
    px = box.u * cv.w
    py = box.v * (y1 - y0)
    ty, fy = np.divmod(py, tile * 0.6)  # foreshortened: tiles look flatter than wide
    offset = (ty % 2) * 0.5 * tile      # staggered rows
    tx, fx = np.divmod(px + offset, tile)
    grout = (fx < 1.0) | (fy < 1.0)
    jitter = cv.rng.uniform(0.9, 1.08, size=(32, 64)).astype(np.float32)
    bright = jitter[ty.astype(int) % 32, tx.astype(int) % 64][..., None]
    rgb = _rgb((178, 172, 165)) * bright + cv.noise(box, 4.0)
    rgb = np.where(grout[..., None], rgb * 0.72, rgb)
    cv.paint(box, np.ones((1, 1), bool), rgb, SIDEWALK)


def _draw_road(cv: _Canvas, lay: _Layout) -> None:
    rng = cv.rng
    box = cv.box(0, lay.curb, cv.w, lay.near - lay.curb)
    if box is None:
        return
    stains = cv.smooth_noise(box.v.shape[0], box.u.shape[1], cell=max(2.0, 0.08 * cv.h))
    rgb = _rgb((82, 82, 88)) * (1 + 0.05 * stains)[..., None] + cv.noise(box, 7.0)
    # A lighter curb edge, then lane markings: a dashed centre line and a solid line.
    py = box.v * (lay.near - lay.curb)
    px = box.u * cv.w
    curb = py < max(1.0, 0.012 * cv.h)
    rgb = np.where(curb[..., None], _rgb((150, 150, 148)) + cv.noise(box, 4.0), rgb)
    thick = max(1.0, 0.01 * cv.h)
    centre = 0.42 * (lay.near - lay.curb)
    period = 0.16 * cv.h
    dash = ((px + rng.uniform(0, period)) % period) < 0.55 * period
    marks = (np.abs(py - centre) < thick / 2 + 0.25) & dash
    if lay.near < cv.h:  # a solid edge line along the near curb
        marks |= np.abs(py - (lay.near - lay.curb - 2.5 * thick)) < thick / 2 + 0.25
    rgb = np.where(marks[..., None], _rgb((228, 228, 220)) + cv.noise(box, 4.0), rgb)
    cv.paint(box, np.ones((1, 1), bool), rgb, ROAD)


# ----------------------------------------------------------------------------- things


_GLASS = _rgb((58, 72, 94))
_TYRE = _rgb((28, 28, 31))
_HUB = _rgb((150, 150, 155))
_SKIN = ((236, 196, 164), (205, 152, 112), (150, 102, 70), (98, 68, 50))
_HAIR = ((30, 24, 20), (90, 60, 35), (160, 130, 80), (60, 60, 60))


def _shadow(cv: _Canvas, x0: float, bottom: float, length: float, thickness: float) -> None:
    """Darken the ground under a vehicle (photo only: the label stays road/sidewalk)."""
    box = cv.box(x0 - 0.03 * length, bottom - thickness, 1.06 * length, 2 * thickness)
    if box is None:
        return
    du, dv = (box.u - 0.5) * 2, (box.v - 0.5) * 2
    ground = (cv.label[box.sl] == ROAD) | (cv.label[box.sl] == SIDEWALK)
    mask = (du * du + dv * dv <= 1.0) & ground
    cv.photo[box.sl][mask] *= 0.55


def _draw_car(cv: _Canvas, x0: float, bottom: float, length: float, flip: bool,
              color: tuple[int, int, int], inst_id: int) -> None:
    h = 0.38 * length
    _shadow(cv, x0, bottom, length, 0.08 * h)
    box = cv.box(x0, bottom - h, length, h)
    if box is None:
        return
    u = 1.0 - box.u if flip else box.u  # front is at u = 1
    v = box.v
    body = (v >= 0.36) & (((u - 0.5) / 0.49) ** 8 + ((v - 0.62) / 0.26) ** 8 <= 1.0)  # rounded box
    t = np.clip((v - 0.02) / 0.40, 0.0, 1.0)
    left, right = 0.30 - 0.12 * t, 0.66 + 0.16 * t  # sloped rear window and windscreen
    cabin = (v >= 0.02) & (v < 0.42) & (u >= left) & (u <= right)
    window = (v >= 0.08) & (v < 0.36) & (u >= left + 0.035) & (u <= right - 0.04) & (np.abs(u - 0.49) > 0.02)
    wheels = _disc(box, 0.2, 0.84, 0.17 * h) | _disc(box, 0.8, 0.84, 0.17 * h)  # symmetric: no flip
    hubs = _disc(box, 0.2, 0.84, 0.07 * h) | _disc(box, 0.8, 0.84, 0.07 * h)
    rgb = _shade(_rgb(color), v, 1.1, 0.85) + cv.noise(box, 5.0)
    rgb = np.where(window[..., None], _GLASS * (1.25 - 0.5 * v[..., None]) + cv.noise(box, 4.0), rgb)
    head = (u > 0.955) & (v > 0.46) & (v < 0.56)
    tail = (u < 0.04) & (v > 0.44) & (v < 0.54)
    rgb = np.where(head[..., None], _rgb((245, 235, 190)), rgb)
    rgb = np.where(tail[..., None], _rgb((185, 20, 25)), rgb)
    rgb = np.where(wheels[..., None], np.where(hubs[..., None], _HUB, _TYRE) + cv.noise(box, 4.0), rgb)
    cv.paint(box, body | cabin | wheels, rgb, CAR, inst_id)


def _draw_truck(cv: _Canvas, x0: float, bottom: float, length: float, flip: bool,
                color: tuple[int, int, int], inst_id: int) -> None:
    h = 0.5 * length
    _shadow(cv, x0, bottom, length, 0.07 * h)
    box = cv.box(x0, bottom - h, length, h)
    if box is None:
        return
    u = 1.0 - box.u if flip else box.u  # cab at u = 1
    v = box.v
    cargo = (u >= 0.01) & (u <= 0.72) & (v >= 0.0) & (v <= 0.8)
    cab = (u >= 0.74) & (v <= 0.86) & (v >= 0.25 + 0.6 * np.clip(u - 0.93, 0, None))
    window = (u >= 0.80) & (u <= 0.95) & (v >= 0.31) & (v <= 0.5)
    chassis = (u >= 0.01) & (u <= 0.99) & (v > 0.78) & (v <= 0.88)
    wheel_us = (0.14, 0.31, 0.86)
    wheels = np.zeros((v.shape[0], u.shape[1]), bool)
    hubs = np.zeros_like(wheels)
    for wu in wheel_us:
        cu = 1.0 - wu if flip else wu
        wheels |= _disc(box, cu, 0.87, 0.13 * h)
        hubs |= _disc(box, cu, 0.87, 0.05 * h)
    rgb = _shade(_rgb(color), v, 1.08, 0.88) + cv.noise(box, 4.0)
    ribs = ((u * 14.0) % 1.0 < 0.07) & cargo  # panel seams on the cargo box
    rgb = np.where(ribs[..., None], rgb * 0.88, rgb)
    rgb = np.where(window[..., None], _GLASS * (1.25 - 0.5 * v[..., None]), rgb)
    rgb = np.where((chassis & ~cab)[..., None], _rgb((50, 50, 55)), rgb)
    rgb = np.where(wheels[..., None], np.where(hubs[..., None], _HUB, _TYRE) + cv.noise(box, 4.0), rgb)
    cv.paint(box, cargo | cab | chassis | wheels, rgb, TRUCK, inst_id)


def _draw_person(cv: _Canvas, xc: float, bottom: float, height: float,
                 color: tuple[int, int, int], skin: int, hair: int, inst_id: int) -> None:
    w = 0.32 * height
    box = cv.box(xc - w / 2, bottom - height, w, height)
    if box is None:
        return
    u, v = box.u, box.v
    du = np.abs(u - 0.5)
    head = _disc(box, 0.5, 0.085, 0.075 * height)
    hair_mask = head & (v < 0.07)
    torso = (v >= 0.16) & (v < 0.57) & (du <= 0.42 - 0.08 * (v - 0.16) / 0.41)
    legs = (v >= 0.56) & (v < 0.95) & (du >= 0.03) & (du <= 0.3 - 0.06 * (v - 0.56) / 0.39)
    shoes = (v >= 0.93) & (du >= 0.02) & (du <= 0.3)
    hands = (v >= 0.5) & (v < 0.57) & (du > 0.3) & torso
    cloth = _rgb(color)
    rgb = _shade(cloth, v, 1.1, 0.9) + cv.noise(box, 5.0)
    rgb = np.where(legs[..., None], rgb * 0.75, rgb)  # trousers: a darker shade of the outfit
    rgb = np.where((head | hands)[..., None], _rgb(_SKIN[skin]) + cv.noise(box, 3.0), rgb)
    rgb = np.where(hair_mask[..., None], _rgb(_HAIR[hair]), rgb)
    rgb = np.where(shoes[..., None], _rgb((30, 28, 28)), rgb)
    cv.paint(box, head | torso | legs | shoes, rgb, PERSON, inst_id)


_SIGNS = ("stop", "info", "warning")


def _draw_pole(cv: _Canvas, xc: float, bottom: float, height: float, sign: int | None) -> None:
    pw = max(1.0, 0.025 * height)
    box = cv.box(xc - pw / 2, bottom - height, pw, height)
    if box is not None:
        metal = _rgb((125, 125, 130)) * (1.15 - 0.5 * np.abs(box.u - 0.4))[..., None]  # round pole
        cv.paint(box, np.ones((1, 1), bool), metal + cv.noise(box, 3.0), POLE)
    if sign is None:
        return
    s = max(3.0, 0.14 * height)
    box = cv.box(xc - s / 2, bottom - height, s, s)
    if box is None:
        return
    du, dv = np.abs(box.u - 0.5), np.abs(box.v - 0.5)
    if _SIGNS[sign] == "stop":  # red ring, white centre
        r2 = du * du + dv * dv
        mask = r2 <= 0.25
        rgb = np.where((r2 <= 0.09)[..., None], _rgb((235, 235, 235)), _rgb((200, 30, 35)))
    elif _SIGNS[sign] == "info":  # blue square
        mask = np.ones_like(du * dv, bool)
        rgb = np.broadcast_to(_rgb((30, 75, 175)), mask.shape + (3,))
    else:  # yellow diamond
        mask = du + dv <= 0.5
        rgb = np.broadcast_to(_rgb((240, 200, 30)), mask.shape + (3,))
    cv.paint(box, mask, rgb + cv.noise(box, 3.0), POLE)


def _draw_hood(cv: _Canvas, depth: float, cu: float) -> None:
    """The ego vehicle's bonnet along the bottom edge: void, like Cityscapes' ego vehicle."""
    box = cv.box(0, cv.h - depth, cv.w, depth)
    if box is None:
        return
    curve = 1.0 - 0.55 * (1.0 - ((box.u - cu) / 0.8) ** 2)  # the bonnet bulges up in the middle
    mask = box.v >= curve
    rgb = _rgb((38, 38, 44)) * (1.5 - 0.6 * box.v)[..., None] + cv.noise(box, 3.0)
    cv.paint(box, mask, rgb, VOID)


# ----------------------------------------------------------------------------- scenes


class _Ids:
    """Hands out instance ids class*1000+k and remembers each one's style."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.count = dict.fromkeys(INSTANCE_CLASSES, 0)
        self.style: dict[int, int] = {}

    def new(self, class_id: int) -> tuple[int, tuple[int, int, int]]:
        inst_id = instance_id(class_id, self.count[class_id])
        self.count[class_id] += 1
        style = int(self.rng.integers(len(STYLES[class_id])))
        self.style[inst_id] = style
        return inst_id, STYLES[class_id][style].color


def _check_dims(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ConfigError(f"{name} {value!r} is not an integer: pass a pixel count like 256.")
    _check_size(int(width), int(height))


def render_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Draw one street scene of `width` x `height` pixels from `rng` (deterministic given its state)."""
    _check_dims(width, height)
    width, height = int(width), int(height)
    cv = _Canvas(np.random.default_rng(rng.integers(0, 2**63)), width, height)
    lay = _sample_layout(rng, height)
    ids = _Ids(rng)
    aspect = width / height
    H = float(height)

    # Background, back to front: sky, buildings, hedges, ground.
    _draw_sky(cv, lay)
    gaps = _draw_buildings(cv, rng, lay)
    _draw_tiles(cv, lay.base, lay.curb)
    _draw_road(cv, lay)
    if lay.near < height:
        _draw_tiles(cv, lay.near, H)
    for _ in range(int(rng.integers(0, 2 + round(aspect)))):
        hedge_w = rng.uniform(0.1, 0.3) * H
        _draw_hedge(cv, rng.uniform(-0.1 * H, width), hedge_w, rng.uniform(0.03, 0.06) * H, lay.base)

    # Things go into a list with their ground row (depth) and are drawn sorted back to front.
    things: list[tuple[float, int, Callable[[], None]]] = []

    def add(depth: float, draw: Callable[[], None]) -> None:
        things.append((depth, len(things), draw))

    walk_lo = lay.base + 0.35 * (lay.curb - lay.base)
    walk_hi = lay.curb - 0.1 * (lay.curb - lay.base)

    # Trees in the gaps between buildings and at random along the far sidewalk.
    tree_xs = list(gaps) + list(rng.uniform(0, width, size=int(rng.integers(0, 1 + round(2 * aspect)))))
    for x in tree_xs:
        y = lay.base + rng.uniform(0.1, 0.3) * (lay.curb - lay.base)
        add(y, partial(_draw_tree, cv, x, y, rng.uniform(0.35, 0.5) * H * lay.scale(y, height)))

    # Poles (some with a sign) at the curb.
    for _ in range(int(rng.integers(1, 2 + round(1.5 * aspect)))):
        x, y = rng.uniform(0, width), lay.curb - rng.uniform(0.05, 0.12) * (lay.curb - lay.base)
        sign = int(rng.integers(len(_SIGNS))) if rng.random() < 0.6 else None
        add(y, partial(_draw_pole, cv, x, y, 0.36 * H * lay.scale(y, height), sign))

    def person_group(n: int, x0: float, y: float, base_height: float) -> None:
        # Shoulder to shoulder: centres closer than a body width so the torsos touch.
        x = x0
        for _ in range(n):
            h = base_height * rng.uniform(0.93, 1.07)
            inst_id, color = ids.new(PERSON)
            skin, hair = int(rng.integers(len(_SKIN))), int(rng.integers(len(_HAIR)))
            add(y, partial(_draw_person, cv, x, y, h, color, skin, hair, inst_id))
            x += 0.32 * base_height * rng.uniform(0.68, 0.76)

    # Pedestrians on the far sidewalk, in groups of 1-3.
    for _ in range(int(rng.integers(1, 2 + round(1.5 * aspect)))):
        y = rng.uniform(walk_lo, walk_hi)
        n = int(rng.choice([1, 2, 2, 3]))
        person_group(n, rng.uniform(0, width), y, 0.17 * H * lay.scale(y, height))

    def car_row(n: int, x0: float, y: float, base_length: float) -> None:
        # Bumper to bumper: each car starts slightly before the previous one ends.
        x = x0
        for _ in range(n):
            length = base_length * rng.uniform(0.95, 1.05)
            inst_id, color = ids.new(CAR)
            flip = bool(rng.random() < 0.5)
            add(y, partial(_draw_car, cv, x, y, length, flip, color, inst_id))
            x += length * 0.97

    # Parked cars along the far curb: at least one row of touching cars.
    road = lay.near - lay.curb
    y_park = lay.curb + rng.uniform(0.1, 0.18) * road
    park_len = 0.3 * H * lay.scale(y_park, height)
    for r in range(1 + int(rng.random() < 0.4 * aspect)):
        n = int(rng.integers(2, 5)) if r == 0 else int(rng.integers(1, 4))
        x0 = rng.uniform(-0.5 * park_len, max(-0.5 * park_len, width - 1.5 * park_len))
        car_row(n, x0, y_park + rng.uniform(-0.01, 0.01) * H, park_len)

    # Traffic in the near lane: single cars, sometimes a queue of two.
    for _ in range(int(rng.integers(1, 2 + round(aspect)))):
        y = lay.curb + rng.uniform(0.6, 0.9) * road
        length = 0.3 * H * lay.scale(y, height)
        car_row(2 if rng.random() < 0.35 else 1, rng.uniform(-0.5 * length, width - 0.5 * length), y, length)

    # A truck in the middle lane now and then.
    if rng.random() < 0.45:
        y = lay.curb + rng.uniform(0.4, 0.5) * road
        length = 0.55 * H * lay.scale(y, height)
        inst_id, color = ids.new(TRUCK)
        x, flip = rng.uniform(-0.5 * length, width - 0.5 * length), bool(rng.random() < 0.5)
        add(y, partial(_draw_truck, cv, x, y, length, flip, color, inst_id))

    # Large pedestrians on the near sidewalk, in front of everything.
    if lay.near < height and rng.random() < 0.6:
        y = rng.uniform(lay.near + 0.5 * (H - lay.near), H - 1)
        person_group(int(rng.integers(1, 3)), rng.uniform(0, width), y, 0.17 * H * lay.scale(y, height))

    for _, _, draw in sorted(things, key=lambda t: (t[0], t[1])):
        draw()

    if rng.random() < 0.35:
        _draw_hood(cv, rng.uniform(0.07, 0.11) * H, rng.uniform(0.4, 0.6))

    # Global exposure so images differ in brightness; mild enough to keep styles apart.
    photo = cv.photo * rng.uniform(0.93, 1.06)
    photo = np.clip(np.rint(photo), 0, 255).astype(np.uint8)

    present = np.unique(cv.instance[cv.instance >= INSTANCE_ID_MULTIPLIER])
    styles = {int(i): InstanceStyle(int(i) // INSTANCE_ID_MULTIPLIER, ids.style[int(i)]) for i in present}
    return Scene(label=cv.label, instance=cv.instance, photo=photo, styles=styles)


# ----------------------------------------------------------------------------- datasets

_SUBDIRS = ("label", "inst", "img")
_NAME_RE = re.compile(r"^world_\d{5,}\.png$")


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for image `index` of a dataset with `seed` (independent of the dataset size)."""
    return np.random.default_rng([int(seed), int(index)])


def split_counts(num: int, test_fraction: float) -> tuple[int, int]:
    """(train, test): the last round(num * test_fraction) go to test, at least 1 when num >= 2."""
    n_test = math.floor(num * test_fraction + 0.5)
    if num >= 2:
        n_test = min(max(n_test, 1), num - 1)
    else:
        n_test = 0
    return num - n_test, n_test


def classes_info() -> dict:
    """The class table written to classes.json."""
    return {
        "label_nc": LABEL_NC,
        "classes": [
            {"id": i, "name": name, "color": list(PALETTE[i]), "instance": i in INSTANCE_CLASSES}
            for i, name in enumerate(CLASS_NAMES)
        ],
        "instance_classes": list(INSTANCE_CLASSES),
        "instance_id": f"class_id * {INSTANCE_ID_MULTIPLIER} + k for instance classes, class_id otherwise",
        "styles": {
            CLASS_NAMES[c]: [{"index": k, "name": st.name, "color": list(st.color)}
                             for k, st in enumerate(sts)]
            for c, sts in STYLES.items()
        },
    }


def write_synthetic_dataset(
    out_dir: str | Path,
    num: int,
    size: int | str | tuple[int, int] = 256,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> dict:
    """Write `num` synthetic scenes to `out_dir` and return a summary.

    Layout (NAME = world_00012):
      {train,test}_label/NAME.png  8-bit class ids
      {train,test}_inst/NAME.png   16-bit instance ids (class*1000+k for instance classes)
      {train,test}_img/NAME.png    RGB photo
      AB/{train,test}/NAME.png     colour-coded label | photo, width 2*W (AtoB = label -> photo)
      classes.json, styles.json    class table; ground-truth style of every instance
    The last round(num * test_fraction) images (at least 1 when num >= 2) are the test split.
    Generator-named files (world_NNNNN.png) left over from an earlier, larger run are removed
    so the folders always hold exactly this dataset.
    """
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"num {num!r} is not a positive integer: ask for at least 1 image.")
    width, height = _normalize_size(size)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed {seed!r} is not a non-negative integer: use e.g. 0.")
    if not isinstance(test_fraction, (int, float)) or not 0.0 <= float(test_fraction) < 1.0:
        raise ConfigError(
            f"test_fraction {test_fraction!r} is out of range: use a fraction in [0, 1), e.g. 0.2."
        )
    num, seed = int(num), int(seed)
    out = Path(out_dir)
    n_train, n_test = split_counts(num, float(test_fraction))
    digits = max(5, len(str(num - 1)))

    dirs = {f"{phase}_{kind}": out / f"{phase}_{kind}" for phase in ("train", "test") for kind in _SUBDIRS}
    dirs.update({"AB_train": out / "AB" / "train", "AB_test": out / "AB" / "test"})
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    ground_truth: dict[str, dict[str, dict]] = {"train": {}, "test": {}}
    written: dict[str, set[str]] = {key: set() for key in dirs}
    n_instances = 0
    for index in range(num):
        phase = "train" if index < n_train else "test"
        name = f"world_{index:0{digits}d}.png"
        scene = render_scene(scene_rng(seed, index), width, height)
        save_image(Image.fromarray(scene.label), dirs[f"{phase}_label"] / name)
        save_image(Image.fromarray(scene.instance.astype(np.uint16)), dirs[f"{phase}_inst"] / name)
        save_image(Image.fromarray(scene.photo), dirs[f"{phase}_img"] / name)
        ab = np.concatenate([colorize_label(scene.label), scene.photo], axis=1)
        save_image(Image.fromarray(ab), dirs[f"AB_{phase}"] / name)
        for key in (f"{phase}_label", f"{phase}_inst", f"{phase}_img", f"AB_{phase}"):
            written[key].add(name)
        ground_truth[phase][name[:-4]] = {
            str(i): {"class_id": s.class_id, "class": CLASS_NAMES[s.class_id], "style": s.style,
                     "style_name": STYLES[s.class_id][s.style].name}
            for i, s in scene.styles.items()
        }
        n_instances += len(scene.styles)

    for key, d in dirs.items():  # drop stale generator files from an earlier, larger run
        for path in d.iterdir():
            if _NAME_RE.match(path.name) and path.name not in written[key]:
                path.unlink()

    write_json(out / "classes.json", classes_info())
    write_json(out / "styles.json", {"seed": seed, "size": [width, height], **ground_truth})
    return {
        "out_dir": str(out),
        "num": num,
        "train": n_train,
        "test": n_test,
        "size": [width, height],
        "seed": seed,
        "label_nc": LABEL_NC,
        "instances": n_instances,
        "paths": {key: str(d) for key, d in dirs.items()}
        | {"classes_json": str(out / "classes.json"), "styles_json": str(out / "styles.json")},
    }
