"""Edit operations on a label map, its instance map and per-instance styles, with undo and redo.

Pure numpy and no model, so the server applies them and the tests check them on hand-made arrays.

Instance ids follow the Cityscapes convention that the synthetic world and pix2pixHD use: a pixel
of a "thing" class (car, person: `LabelSpace.thing_classes`) holds ``class_id * 1000 + k`` with
``k`` unique per object; every other pixel holds its class id. So:

- a brush stroke or fill of a thing class makes a **new object** (the next free ``k`` of that
  class), unless the stroke is asked to grow an existing object of the same class (`grow=`);
  a stroke of any other class writes the class id into the instance map;
- erasing paints the label set's void class (`LabelSpace.erase_class`);
- an "object" under the cursor is an instance id >= 1000 (all its pixels, even when occlusion
  split it) or, for other ids, the 4-connected region of that id around the cursor, so clicking
  one patch of road selects that patch, not every road pixel of the image;
- relabelling an object keeps its pixels and gives them the new class (a new object id when
  the new class is a thing class);
- a style is a cluster index per instance id (`EditDocument.styles`); an id without one uses the
  model's default cluster. Styles of ids that no longer occur in the map are dropped, so a new
  object never inherits an erased object's style.

Every change is one step of the undo history, stored as the changed box of both maps and the other
styles, not as full copies: a step holds the state that undo (or redo) swaps back in, so it costs one
copy of its box. The history is bounded in steps and in bytes (`history_bytes`, per document); past
either bound the oldest steps are dropped, and `dropped_steps` counts them so the page can say so.

Work per request is bounded too: a stroke costs about the area of each segment's bounding box
(points x brush area for a dense stroke), and one whose estimate is over `MAX_STROKE_WORK` pixel
evaluations is refused with `WorkLimitError` before anything is computed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.labels import INSTANCE_ID_MULTIPLIER
from ..errors import DataError

INSTANCE_MULTIPLIER = INSTANCE_ID_MULTIPLIER  # instance id = class_id * 1000 + k for objects of thing classes
MAX_STROKE_POINTS = 20_000
MAX_RADIUS = 512.0
MAX_STROKE_WORK = 1 << 27  # pixel distance evaluations: about a second of one core (7 ns each, plus 25 us a segment)
SEGMENT_OVERHEAD = 4096  # what one segment costs beyond its pixels, in pixel evaluations
HISTORY_BYTES = 256 << 20  # undo + redo of one document

__all__ = [
    "HISTORY_BYTES",
    "INSTANCE_MULTIPLIER",
    "MAX_STROKE_WORK",
    "EditDocument",
    "LabelSpace",
    "Selection",
    "WorkLimitError",
    "connected_components",
    "instances_from_labels",
    "new_instance_id",
    "region_at",
    "stroke_mask",
    "stroke_work",
]


class WorkLimitError(DataError):
    """A request that would cost more than the editor allows (the server answers 413)."""


@dataclass(frozen=True)
class LabelSpace:
    """What the edits need to know about the model's classes."""

    label_nc: int
    thing_classes: frozenset[int] = frozenset()
    erase_class: int = 0

    def check_class(self, class_id: int) -> int:
        if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
            raise DataError(f"class {class_id!r} is not an integer id.")
        if not 0 <= int(class_id) < self.label_nc:
            raise DataError(f"class {class_id} is outside this model's classes 0..{self.label_nc - 1}.")
        return int(class_id)

    def is_thing(self, class_id: int) -> bool:
        return int(class_id) in self.thing_classes


# ----------------------------------------------------------------------------- masks


def _stroke_points(points: Sequence[Sequence[float]], radius: float) -> tuple[np.ndarray, float]:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise DataError("a stroke needs a list of [x, y] points.")
    if len(pts) > MAX_STROKE_POINTS:
        raise DataError(f"a stroke has {len(pts)} points; the limit is {MAX_STROKE_POINTS}: split it.")
    if not np.all(np.isfinite(pts)):
        raise DataError("stroke points must be finite numbers.")
    radius = float(radius)
    if not np.isfinite(radius) or not 0 < radius <= MAX_RADIUS:
        raise DataError(f"brush radius {radius} must be in (0, {MAX_RADIUS:g}] pixels.")
    return pts, radius


def stroke_work(shape: tuple[int, int], points: Sequence[Sequence[float]], radius: float) -> int:
    """What `stroke_mask` will cost, in pixel evaluations: each segment's bounding box (grown by the
    radius, clipped to the map) plus a fixed overhead per segment."""
    h, w = int(shape[0]), int(shape[1])
    pts, radius = _stroke_points(points, radius)
    a, b = (pts[:-1], pts[1:]) if len(pts) > 1 else (pts, pts)
    lo, hi = np.minimum(a, b) - radius, np.maximum(a, b) + radius
    width = np.clip(np.ceil(hi[:, 0]) + 1, 0, w) - np.clip(np.floor(lo[:, 0]), 0, w)
    height = np.clip(np.ceil(hi[:, 1]) + 1, 0, h) - np.clip(np.floor(lo[:, 1]), 0, h)
    return int((np.maximum(width, 0) * np.maximum(height, 0)).sum()) + SEGMENT_OVERHEAD * len(a)


def stroke_mask(shape: tuple[int, int], points: Sequence[Sequence[float]], radius: float,
                max_work: int = MAX_STROKE_WORK) -> np.ndarray:
    """Pixels within `radius` of the polyline through `points` (x, y in pixels; pixel (x, y) spans [x, x+1)).

    A pixel is in when its centre is within `radius` of a segment; the pixel under each point is
    always in, so a click with a small brush still paints one pixel. A stroke whose cost
    (`stroke_work`) is over `max_work` raises `WorkLimitError` before any work.
    """
    h, w = int(shape[0]), int(shape[1])
    pts, radius = _stroke_points(points, radius)
    work = stroke_work(shape, points, radius)
    if work > max_work:
        raise WorkLimitError(f"this stroke ({len(pts)} points, brush radius {radius:g}) would cost {work:,} pixel "
                             f"evaluations; the limit is {max_work:,}: use a smaller brush, fewer points (a fill "
                             "for large areas), or split the stroke.")
    mask = np.zeros((h, w), dtype=bool)
    segments = [(pts[i], pts[i + 1]) for i in range(len(pts) - 1)] or [(pts[0], pts[0])]
    r2 = radius * radius
    for a, b in segments:
        x0 = max(int(np.floor(min(a[0], b[0]) - radius)), 0)
        x1 = min(int(np.ceil(max(a[0], b[0]) + radius)) + 1, w)
        y0 = max(int(np.floor(min(a[1], b[1]) - radius)), 0)
        y1 = min(int(np.ceil(max(a[1], b[1]) + radius)) + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        cx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
        cy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
        d = b - a
        length2 = float(d @ d)
        t = 0.0 if length2 == 0 else np.clip(((cx - a[0]) * d[0] + (cy - a[1]) * d[1]) / length2, 0.0, 1.0)
        dist2 = (cx - (a[0] + t * d[0])) ** 2 + (cy - (a[1] + t * d[1])) ** 2
        mask[y0:y1, x0:x1] |= dist2 <= r2
    cols, rows = np.floor(pts[:, 0]).astype(np.int64), np.floor(pts[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    mask[rows[inside], cols[inside]] = True
    return mask


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True: (row, start, end exclusive), ordered by row then start."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (int32 map, 0 outside and 1..n inside, n).

    Works on horizontal runs (a few per row), joining runs of neighbouring rows that overlap,
    so large images cost little more than one pass over the pixels. Components are numbered
    in order of their first pixel (row-major).
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    out = np.zeros((h, w), dtype=np.int32)
    rows, starts, ends = _runs(mask)
    n = len(rows)
    if n == 0:
        return out, 0
    stride = w + 1
    start_key, end_key = rows * stride + starts, rows * stride + ends
    # run i touches the runs j of row i+1 with start_j < end_i and end_j > start_i
    lo = np.searchsorted(end_key, (rows + 1) * stride + starts, side="right")
    hi = np.searchsorted(start_key, (rows + 1) * stride + ends, side="left")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), count)
    b = np.repeat(lo, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
    parent = np.arange(n)
    while len(a):  # hook each edge's roots to the smaller one, then compress, until every edge is inside a tree
        ra, rb = parent[a], parent[b]
        if np.array_equal(ra, rb):
            break
        low = np.minimum(ra, rb)
        np.minimum.at(parent, ra, low)
        np.minimum.at(parent, rb, low)
        while True:
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
    _, comp = np.unique(parent, return_inverse=True)  # roots are first runs, so the order is row-major
    lengths = ends - starts
    total = int(lengths.sum())
    offsets = np.repeat(rows * w + starts - (np.cumsum(lengths) - lengths), lengths)
    out.reshape(-1)[np.arange(total) + offsets] = np.repeat(comp.astype(np.int32) + 1, lengths)
    return out, int(comp.max()) + 1


def _check_point(shape: tuple[int, int], x: float, y: float) -> tuple[int, int]:
    try:
        col, row = int(np.floor(float(x))), int(np.floor(float(y)))
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"point ({x!r}, {y!r}) is not a pair of numbers.") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise DataError(f"point ({x}, {y}) is outside the {shape[1]}x{shape[0]} map.")
    return row, col


def region_at(instance: np.ndarray, x: float, y: float, label: np.ndarray | None = None) -> np.ndarray:
    """The object under (x, y): every pixel of an instance id >= 1000, else the 4-connected region of the id.

    With `label`, a region also stops where the label changes (an id that is not a class id).
    """
    row, col = _check_point(instance.shape, x, y)
    inst_id = instance[row, col]
    same = instance == inst_id
    if inst_id >= INSTANCE_MULTIPLIER:
        return same
    if label is not None:
        same &= label == label[row, col]
    comps, _ = connected_components(same)
    return comps == comps[row, col]


def new_instance_id(instance: np.ndarray, class_id: int, taken: Iterable[int] = ()) -> int:
    """The next object id of `class_id`: class*1000 + (largest k in use + 1), else the smallest free k."""
    base = int(class_id) * INSTANCE_MULTIPLIER
    in_class = (instance >= base) & (instance < base + INSTANCE_MULTIPLIER)
    used = {int(i) for i in np.unique(instance[in_class])} | {int(i) for i in taken if base <= i < base + 1000}
    nxt = max(used) + 1 if used else base
    if nxt < base + INSTANCE_MULTIPLIER:
        return nxt
    free = sorted(set(range(base, base + INSTANCE_MULTIPLIER)) - used)
    if not free:
        raise DataError(f"class {class_id} already has {INSTANCE_MULTIPLIER} objects, the most its ids can number.")
    return free[0]


def instances_from_labels(label: np.ndarray, thing_classes: Iterable[int]) -> np.ndarray:
    """An instance map for a label map that has none: each connected blob of a thing class is an object.

    Objects of a class are numbered class*1000 + 0, 1, ... in row-major order of their first
    pixel (beyond 1000 blobs the rest share the last id); other pixels hold their class id.
    """
    label = np.asarray(label)
    instance = label.astype(np.int32)
    for c in sorted({int(c) for c in thing_classes}):
        comps, n = connected_components(label == c)
        if n:
            inside = comps > 0
            instance[inside] = c * INSTANCE_MULTIPLIER + np.minimum(comps[inside] - 1, INSTANCE_MULTIPLIER - 1)
    return instance


# ----------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Selection:
    """The object under a point: its instance id, class, pixel mask and style (None: the default)."""

    instance_id: int
    class_id: int
    mask: np.ndarray
    style: int | None

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())

    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive."""
        rows, cols = np.nonzero(self.mask.any(1))[0], np.nonzero(self.mask.any(0))[0]
        return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass
class _Step:
    """The other side of one change: the box's label and instance content and the styles that undo (or
    redo) swaps in, then holds what it swapped out."""

    box: tuple[slice, slice]
    label: np.ndarray
    instance: np.ndarray
    styles: dict[int, int]
    made: float  # time.monotonic() when the change was made: the oldest steps go first

    @property
    def nbytes(self) -> int:
        return int(self.label.nbytes + self.instance.nbytes) + 64 * (len(self.styles) + 4)


def _check_maps(label: np.ndarray, instance: np.ndarray, space: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    label, instance = np.asarray(label), np.asarray(instance)
    if label.ndim != 2 or label.size == 0:
        raise DataError(f"the label map has shape {label.shape}; expected a non-empty [H, W] map of ids.")
    if instance.shape != label.shape:
        raise DataError(f"the instance map is {instance.shape[::-1]} but the label map is {label.shape[::-1]} "
                        "(width, height): give maps of the same size.")
    for what, arr in (("label", label), ("instance", instance)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"the {what} map holds {arr.dtype} values; it must hold integer ids.")
    if label.min() < 0 or label.max() >= space.label_nc:
        bad = np.unique(label[(label < 0) | (label >= space.label_nc)])
        raise DataError(f"label ids {bad[:10].tolist()} are outside this model's classes 0..{space.label_nc - 1}: "
                        "use a label map made with the model's label set.")
    if instance.min() < 0 or instance.max() > np.iinfo(np.int32).max:
        raise DataError("instance ids must be in 0..2^31-1.")
    return label.astype(np.int32), instance.astype(np.int32)


class EditDocument:
    """A label map, its instance map and per-instance styles, changed by edit operations with undo/redo.

    The maps are int32 [H, W]; treat `label`, `instance` and `styles` as read-only (edits go
    through the methods, which record history). Each method returns whether anything changed;
    an edit that changes nothing is not recorded. `version` counts changes, undo and redo.
    """

    def __init__(self, label: np.ndarray, instance: np.ndarray | None, space: LabelSpace,
                 styles: Mapping[int, int] | None = None, history_limit: int = 100,
                 history_bytes: int = HISTORY_BYTES, max_stroke_work: int = MAX_STROKE_WORK) -> None:
        if instance is None:
            instance = instances_from_labels(np.asarray(label), space.thing_classes)
        self.space = space
        self.label, self.instance = _check_maps(label, instance, space)
        self.styles: dict[int, int] = {}
        self.history_limit = int(history_limit)
        self.history_bytes = int(history_bytes)
        self.max_stroke_work = int(max_stroke_work)
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._history_nbytes = 0
        self.dropped_steps = 0  # steps dropped to keep within the bounds, since the document was made
        self.version = 0
        if styles:
            self.styles = self._live_styles(self.instance, {int(k): int(v) for k, v in styles.items()})

    @classmethod
    def blank(cls, width: int, height: int, space: LabelSpace, fill: int | None = None, **kwargs) -> EditDocument:
        """A canvas of one class (default: the erase class)."""
        c = space.check_class(space.erase_class if fill is None else fill)
        label = np.full((int(height), int(width)), c, dtype=np.int32)
        return cls(label, None, space, **kwargs)

    @property
    def shape(self) -> tuple[int, int]:
        return self.label.shape  # type: ignore[return-value]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_steps(self) -> int:
        return len(self._undo)

    @property
    def redo_steps(self) -> int:
        return len(self._redo)

    @property
    def history_nbytes(self) -> int:
        """Bytes held by the undo and redo steps."""
        return self._history_nbytes

    @property
    def oldest_step(self) -> float | None:
        """When the oldest step still held was made (None without history)."""
        steps = self._undo[:1] + self._redo[:1]
        return min(step.made for step in steps) if steps else None

    def drop_oldest_step(self) -> int:
        """Forget the oldest undo step (or, without one, the last redo step); returns the bytes freed."""
        stack = self._undo if self._undo else self._redo
        if not stack:
            return 0
        step = stack.pop(0)
        self._history_nbytes -= step.nbytes
        self.dropped_steps += 1
        return step.nbytes

    # -- reading ----------------------------------------------------------------------------------
    def select(self, x: float, y: float) -> Selection:
        """The object under (x, y) (see the module docstring)."""
        mask = region_at(self.instance, x, y, self.label)
        row, col = _check_point(self.shape, x, y)
        inst_id = int(self.instance[row, col])
        return Selection(inst_id, int(self.label[row, col]), mask, self.styles.get(inst_id))

    # -- edits ------------------------------------------------------------------------------------
    def stroke(self, points: Sequence[Sequence[float]], radius: float, class_id: int, *,
               grow: int | None = None) -> bool:
        """Paint class `class_id` along the polyline; thing classes make a new object unless `grow` names one."""
        c = self.space.check_class(class_id)
        return self._paint(stroke_mask(self.shape, points, radius, self.max_stroke_work), c, grow)

    def erase(self, points: Sequence[Sequence[float]], radius: float) -> bool:
        """Paint the erase (void) class along the polyline."""
        return self.stroke(points, radius, self.space.erase_class)

    def fill(self, x: float, y: float, class_id: int) -> bool:
        """Give class `class_id` to the 4-connected region of equal label and instance id around (x, y)."""
        c = self.space.check_class(class_id)
        row, col = _check_point(self.shape, x, y)
        same = (self.label == self.label[row, col]) & (self.instance == self.instance[row, col])
        comps, _ = connected_components(same)
        region = comps == comps[row, col]
        if self.label[row, col] == c and (not self.space.is_thing(c) or self.instance[row, col] >= 1000):
            return False  # already this class (an object of a thing class stays that object)
        return self._paint(region, c, None)

    def relabel(self, x: float, y: float, class_id: int) -> bool:
        """Give the object under (x, y) class `class_id` (a new object id when it is a thing class)."""
        c = self.space.check_class(class_id)
        sel = self.select(x, y)
        if sel.class_id == c and (sel.instance_id >= INSTANCE_MULTIPLIER or not self.space.is_thing(c)) \
                and bool((self.label[sel.mask] == c).all()):
            return False
        return self._paint(sel.mask, c, None)

    def set_style(self, instance_id: int, cluster: int | None) -> bool:
        """Choose cluster `cluster` for instance `instance_id` (None: back to the model's default)."""
        inst_id = int(instance_id)
        if not bool((self.instance == inst_id).any()):
            raise DataError(f"instance {inst_id} is not in the map.")
        styles = dict(self.styles)
        if cluster is None:
            styles.pop(inst_id, None)
        else:
            if isinstance(cluster, bool) or not isinstance(cluster, (int, np.integer)) or cluster < 0:
                raise DataError(f"style {cluster!r} is not a cluster index (0, 1, ...).")
            styles[inst_id] = int(cluster)
        return self._commit(self.label, self.instance, styles)

    def set_styles(self, styles: Mapping[int, int]) -> bool:
        """Several styles in one undo step (e.g. randomise every object)."""
        merged = {**self.styles, **{int(k): int(v) for k, v in styles.items()}}
        return self._commit(self.label, self.instance, merged)

    def undo(self) -> bool:
        if not self._undo:
            return False
        step = self._undo.pop()
        self._swap(step)
        self._redo.append(step)
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        step = self._redo.pop()
        self._swap(step)
        self._undo.append(step)
        return True

    # -- internals ----------------------------------------------------------------------------------
    def _paint(self, mask: np.ndarray, class_id: int, grow: int | None) -> bool:
        if not mask.any():
            return False
        if self.space.is_thing(class_id):
            if grow is not None:
                grow = int(grow)
                if grow // INSTANCE_MULTIPLIER != class_id or not bool((self.instance == grow).any()):
                    raise DataError(f"cannot grow object {grow} with class {class_id}: it is not an object of that "
                                    "class in the map.")
                inst_id = grow
            else:
                inst_id = new_instance_id(self.instance, class_id)
        else:
            inst_id = class_id
        label, instance = self.label.copy(), self.instance.copy()
        label[mask] = class_id
        instance[mask] = inst_id
        return self._commit(label, instance, self.styles)

    @staticmethod
    def _live_styles(instance: np.ndarray, styles: Mapping[int, int]) -> dict[int, int]:
        return {i: k for i, k in sorted(styles.items()) if bool((instance == i).any())}

    def _commit(self, label: np.ndarray, instance: np.ndarray, styles: Mapping[int, int]) -> bool:
        changed = (label != self.label) | (instance != self.instance)
        styles = self._live_styles(instance, styles) if changed.any() else dict(styles)
        if not changed.any() and styles == self.styles:
            return False
        if changed.any():
            rows, cols = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
            box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        else:
            box = (slice(0, 0), slice(0, 0))
        for dropped in self._redo:
            self._history_nbytes -= dropped.nbytes
        self._redo.clear()
        step = _Step(box, self.label[box].copy(), self.instance[box].copy(), dict(self.styles), time.monotonic())
        self._undo.append(step)
        self._history_nbytes += step.nbytes
        while self._undo and (len(self._undo) > self.history_limit or self._history_nbytes > self.history_bytes):
            self.drop_oldest_step()  # may drop this very step when it alone is over the bound
        self.label, self.instance, self.styles = label, instance, dict(styles)
        self.version += 1
        return True

    def _swap(self, step: _Step) -> None:
        """Put the step's content in place and keep what it replaced in the step (new arrays: earlier ones
        handed out stay as they were)."""
        label, instance = self.label.copy(), self.instance.copy()
        held = label[step.box].copy(), instance[step.box].copy(), self.styles
        label[step.box], instance[step.box] = step.label, step.instance
        self.label, self.instance, self.styles = label, instance, dict(step.styles)
        step.label, step.instance, step.styles = held[0], held[1], dict(held[2])
        self.version += 1
