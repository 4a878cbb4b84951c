"""Label sets: class names, colours and instance classes of the datasets pix2pixHD is used with.

A `LabelSet` says how many label ids a dataset has (``label_nc``, the one-hot width), what
each id is called and which colour shows it. Presets:

- ``cityscapes``: 35 ids, pix2pixHD's label_nc. Ids 0..33 are the Cityscapes ``labelIds``
  with their official names and colours (cityscapesScripts ``labels.py``); the license plate,
  id -1 in Cityscapes, gets id 34. Id 0 (unlabeled) is the void class. Instance classes:
  person, rider, car, truck, bus, caravan, trailer, train, motorcycle, bicycle.
- ``ade20k``: 151 ids. 0 is "other" (unlabelled pixels in the SceneParsing annotations) and
  1..150 are the SceneParsing 150 classes in ``objectInfo150`` order (short names), with the
  benchmark's colour table (``color150``).
- ``coco_stuff``: 183 ids as in COCO-Stuff's ``labels.txt``: 0 unlabeled, 1..91 the COCO
  things (the 11 ids COCO removed keep their names and are simply never used), 92..182 the
  stuff classes. COCO-Stuff has no official colour table: the palette is generated
  deterministically (the PASCAL VOC bit-interleaving colour map). COCO-Stuff marks unlabeled
  pixels 255: the label set declares 255 as an ``unlabeled_ids`` value, so wherever a label map is
  read (training, sample grids, translate, the editor, features, evaluation, ``data check``) a 255
  becomes id 0, "unlabeled" (`pix2pix.data.labels.map_label_ids`), with or without
  ``data.ignore_index``. Its ``stuffthingmaps`` PNGs store the other ids minus one (0 = person):
  add 1 modulo 256 to get the ids used here (which turns 255 into 0 as well).
- ``facades``: the CMP Facade Database (Tylecek and Sara, GCPR 2013) as colour-coded in pix2pix's
  facades A|B pairs: 12 classes, CMP's label ids 1..12 minus one, with the colours measured on
  those label images (a jet-like ramp); no void class (``background`` is real content).
- ``synthetic``: the synthetic street world (`pix2pix.data.synthetic`), the same table as its
  ``classes.json``; `LabelSet.from_classes_json` reads such a file for any dataset.

`colorize` turns an id map into an RGB picture; `nearest_palette_ids` goes the other way for
colour-coded label images (e.g. JPEG-compressed facades labels), by the nearest palette colour.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import Config, DataConfig
from ..errors import ConfigError, DataError, did_you_mean
from .images import open_map
from .labels import map_label_ids
from .synthetic import classes_info

RGB = tuple[int, int, int]

__all__ = [
    "LABEL_SETS",
    "LabelSet",
    "colorize",
    "generate_palette",
    "get_label_set",
    "label_set_names",
    "nearest_palette_ids",
]


def generate_palette(n: int) -> tuple[RGB, ...]:
    """`n` distinct colours, deterministic: the PASCAL VOC colour map (id 0 is black)."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return tuple(colors)


@dataclass(frozen=True)
class LabelSet:
    """The ids of a labelled dataset: names, colours, the void id and the instance classes."""

    name: str
    label_nc: int
    class_names: tuple[str, ...]
    palette: tuple[RGB, ...]
    ignore_id: int | None = None  # the void / unlabelled class, if the dataset has one
    instance_classes: tuple[int, ...] = ()  # ids whose objects have instance ids (class*1000+k)
    # stored values outside 0..label_nc-1 that the dataset itself uses for "unlabeled" (COCO-Stuff's 255):
    # they are read as `ignore_id` (see pix2pix.data.labels.map_label_ids)
    unlabeled_ids: tuple[int, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.label_nc < 1:
            raise ConfigError(f"label set {self.name!r}: label_nc {self.label_nc} must be positive.")
        for what, seq in (("class_names", self.class_names), ("palette", self.palette)):
            if len(seq) != self.label_nc:
                raise ConfigError(f"label set {self.name!r}: {len(seq)} {what} for label_nc {self.label_nc}; "
                                  "give one per id.")
        for color in self.palette:
            if len(color) != 3 or not all(0 <= int(v) <= 255 for v in color):
                raise ConfigError(f"label set {self.name!r}: colour {color!r} is not an RGB triple in 0..255.")
        for i in ((self.ignore_id,) if self.ignore_id is not None else ()) + tuple(self.instance_classes):
            if not 0 <= i < self.label_nc:
                raise ConfigError(f"label set {self.name!r}: id {i} is outside 0..{self.label_nc - 1}.")
        if self.unlabeled_ids and self.ignore_id is None:
            raise ConfigError(f"label set {self.name!r}: unlabeled_ids {list(self.unlabeled_ids)} need an ignore_id "
                              "(the class they are read as): add one.")
        for i in self.unlabeled_ids:
            if 0 <= i < self.label_nc:
                raise ConfigError(f"label set {self.name!r}: unlabeled id {i} is one of the classes 0.."
                                  f"{self.label_nc - 1}; unlabeled_ids are stored values outside them (e.g. 255).")
        index = self._index
        for i, n in enumerate(self.class_names):
            index.setdefault(n, i)

    @property
    def palette_array(self) -> np.ndarray:
        """uint8 [label_nc, 3]."""
        return np.array(self.palette, dtype=np.uint8).reshape(-1, 3)

    def class_id(self, name: str) -> int:
        """The id of the class called `name` (the first one when names repeat)."""
        if name not in self._index:
            raise ConfigError(f"label set {self.name!r} has no class {name!r}.{did_you_mean(name, self._index)}")
        return self._index[name]

    def to_classes_json(self) -> dict:
        """The table in the classes.json format `from_classes_json` reads."""
        return {
            "name": self.name,
            "label_nc": self.label_nc,
            "classes": [{"id": i, "name": n, "color": list(c), "instance": i in self.instance_classes}
                        for i, (n, c) in enumerate(zip(self.class_names, self.palette, strict=True))],
            "instance_classes": list(self.instance_classes),
            "ignore_id": self.ignore_id,
            "unlabeled_ids": list(self.unlabeled_ids),
        }

    @classmethod
    def from_classes_json(cls, path: str | Path, name: str | None = None) -> LabelSet:
        """Read a classes.json (as written by the synthetic world; `to_classes_json` writes one).

        Format: {"label_nc": N, "classes": [{"id", "name", "color", "instance"?}, ...],
        "instance_classes"?: [...], "ignore_id"?: id, "unlabeled_ids"?: [255]}. Ids missing from "classes" are named
        ``class_N`` with a generated colour. Without "ignore_id", id 0 is the void id when it is
        named void/unlabeled/unlabelled.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path} does not exist: point at the dataset's classes.json.") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not readable JSON ({exc}): re-create the file.") from None
        saved = data.get("name") if isinstance(data, dict) else None
        return cls.from_dict(data, name=name or saved or path.parent.name or "custom", source=str(path))

    @classmethod
    def from_dict(cls, data: dict, name: str = "custom", source: str = "<classes>") -> LabelSet:
        if not isinstance(data, dict):
            raise DataError(f"{source}: a class table is a JSON object with 'label_nc' and 'classes', not "
                            f"{type(data).__name__}.")
        try:
            classes = list(data.get("classes", []))
            ids = [int(c["id"]) for c in classes]
            label_nc = int(data.get("label_nc", max(ids, default=-1) + 1))
            unlabeled = tuple(int(i) for i in data.get("unlabeled_ids") or ())
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: malformed class table ({exc!r}): each class needs an integer 'id'.") from None
        if ids and (min(ids) < 0 or max(ids) >= label_nc):
            raise DataError(f"{source}: class ids {min(ids)}..{max(ids)} do not fit label_nc {label_nc}: "
                            "fix label_nc or the ids.")
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: a class id is listed twice: give each id once.")
        generated = generate_palette(label_nc)
        names = [f"class_{i}" for i in range(label_nc)]
        palette: list[RGB] = list(generated)
        try:
            instance = {int(i) for i in data.get("instance_classes", [])}
            for c, i in zip(classes, ids, strict=True):
                names[i] = str(c.get("name", names[i]))
                if "color" in c:
                    palette[i] = tuple(int(v) for v in c["color"])  # type: ignore[assignment]
                if c.get("instance"):
                    instance.add(i)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: malformed class table ({exc}): colours are [R, G, B] integers, "
                            "instance_classes a list of ids.") from None
        ignore = data.get("ignore_id")
        if ignore is None and names and names[0].lower() in ("void", "unlabeled", "unlabelled"):
            ignore = 0
        try:
            return cls(name=name, label_nc=label_nc, class_names=tuple(names), palette=tuple(palette),
                       ignore_id=None if ignore is None else int(ignore), instance_classes=tuple(sorted(instance)),
                       unlabeled_ids=unlabeled)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: malformed class table ({exc}): ignore_id is an integer id.") from None
        except ConfigError as exc:
            raise DataError(f"{source}: {exc}") from None


# ----------------------------------------------------------------------------- Cityscapes

# (labelId, name, colour) from cityscapesScripts helpers/labels.py; license plate (-1) -> 34.
_CITYSCAPES: tuple[tuple[int, str, RGB], ...] = (
    (0, "unlabeled", (0, 0, 0)),
    (1, "ego vehicle", (0, 0, 0)),
    (2, "rectification border", (0, 0, 0)),
    (3, "out of roi", (0, 0, 0)),
    (4, "static", (0, 0, 0)),
    (5, "dynamic", (111, 74, 0)),
    (6, "ground", (81, 0, 81)),
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (9, "parking", (250, 170, 160)),
    (10, "rail track", (230, 150, 140)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (14, "guard rail", (180, 165, 180)),
    (15, "bridge", (150, 100, 100)),
    (16, "tunnel", (150, 120, 90)),
    (17, "pole", (153, 153, 153)),
    (18, "polegroup", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (29, "caravan", (0, 0, 90)),
    (30, "trailer", (0, 0, 110)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
    (34, "license plate", (0, 0, 142)),
)

CITYSCAPES = LabelSet(
    name="cityscapes",
    label_nc=35,
    class_names=tuple(n for _, n, _ in _CITYSCAPES),
    palette=tuple(c for _, _, c in _CITYSCAPES),
    ignore_id=0,
    instance_classes=(24, 25, 26, 27, 28, 29, 30, 31, 32, 33),
)

# ----------------------------------------------------------------------------- ADE20K

# SceneParsing 150 (objectInfo150 order, first synonym), ids 1..150; 0 is "other".
_ADE20K_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)

# The benchmark's colour table (color150), one colour per class 1..150.
_ADE20K_COLORS: tuple[RGB, ...] = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
    (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
    (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)

ADE20K = LabelSet(
    name="ade20k",
    label_nc=151,
    class_names=("other",) + _ADE20K_NAMES,
    palette=((0, 0, 0),) + _ADE20K_COLORS,
    ignore_id=0,
)

# ----------------------------------------------------------------------------- COCO-Stuff

# COCO-Stuff labels.txt: 0 unlabeled, 1..91 things (COCO's ids, removed ones included), 92..182 stuff.
_COCO_STUFF_NAMES = (
    "unlabeled", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe",
    "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass",
    "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table",
    "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave",
    "oven", "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush",
    # stuff, 92..182
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
_COCO_REMOVED_THINGS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)

COCO_STUFF = LabelSet(
    name="coco_stuff",
    label_nc=183,
    class_names=_COCO_STUFF_NAMES,
    palette=generate_palette(183),
    ignore_id=0,
    instance_classes=tuple(i for i in range(1, 92) if i not in _COCO_REMOVED_THINGS),
    unlabeled_ids=(255,),  # COCO-Stuff's own "unlabeled" value
)


# ----------------------------------------------------------------------------- CMP facades

# CMP's label_names.txt order (ids 1..12 there); colours as drawn in pix2pix's facades label halves.
FACADES = LabelSet(
    name="facades",
    label_nc=12,
    class_names=("background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco",
                 "molding", "pillar", "shop"),
    palette=((0, 0, 222), (0, 48, 255), (0, 128, 255), (1, 207, 255), (32, 255, 224), (112, 254, 142),
             (192, 255, 63), (255, 240, 1), (255, 159, 0), (255, 80, 0), (254, 0, 0), (174, 0, 1)),
)


def _synthetic() -> LabelSet:
    return LabelSet.from_dict(classes_info(), name="synthetic", source="pix2pix.data.synthetic")


LABEL_SETS = {"cityscapes": lambda: CITYSCAPES, "ade20k": lambda: ADE20K, "coco_stuff": lambda: COCO_STUFF,
              "synthetic": _synthetic, "facades": lambda: FACADES}
_ALIASES = {"ade": "ade20k", "ade20k150": "ade20k", "cocostuff": "coco_stuff", "coco": "coco_stuff",
            "city": "cityscapes", "cmp": "facades", "cmp_facades": "facades"}


def label_set_names() -> list[str]:
    return sorted(LABEL_SETS)


def get_label_set(name: str | Path) -> LabelSet:
    """A preset by name (cityscapes, ade20k, coco_stuff, facades, synthetic) or a classes.json path."""
    text = str(name)
    if text.endswith(".json") or Path(text).is_file():
        return LabelSet.from_classes_json(text)
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in LABEL_SETS:
        raise ConfigError(f"unknown label set {text!r}: choose one of {', '.join(label_set_names())} "
                          f"or give a classes.json path.{did_you_mean(key, LABEL_SETS)}")
    return LABEL_SETS[key]()


# ----------------------------------------------------------------------------- colour <-> ids


def _palette_array(palette: LabelSet | Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    if isinstance(palette, LabelSet):
        return palette.palette_array
    arr = np.asarray(palette)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise ConfigError(f"palette has shape {arr.shape}; expected [K, 3] RGB colours.")
    return arr.astype(np.int64).clip(0, 255).astype(np.uint8)


def colorize(label_map, label_set: LabelSet | Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Id map ([H, W], [1, H, W] or [B, 1, H, W]; tensor or array) -> RGB uint8 [..., H, W, 3].

    A leading channel axis of size 1 is dropped. With a `LabelSet`, its unlabeled values (COCO-Stuff's
    255) are shown in its void class's colour. Other ids outside the palette are a DataError.
    """
    if isinstance(label_map, torch.Tensor):
        label_map = label_map.detach().cpu().numpy()
    ids = np.asarray(label_map)
    if ids.ndim >= 3 and ids.shape[-3] == 1:
        ids = ids.squeeze(-3)
    if np.issubdtype(ids.dtype, np.floating):
        ids = np.rint(ids)
    ids = ids.astype(np.int64)
    if isinstance(label_set, LabelSet) and label_set.unlabeled_ids:
        ids = map_label_ids(ids, label_set.label_nc, label_set=label_set)
    pal = _palette_array(label_set)
    if ids.size and (ids.min() < 0 or ids.max() >= len(pal)):
        bad = np.unique(ids[(ids < 0) | (ids >= len(pal))])
        raise DataError(f"label ids {bad[:10].tolist()} are outside the palette's 0..{len(pal) - 1}: "
                        "use the label set the labels were made with.")
    return pal[ids]


def nearest_palette_ids(rgb, palette: LabelSet | Sequence[Sequence[int]] | np.ndarray):
    """Colour-coded label image (RGB [H, W, 3]: PIL image, array or tensor) -> ids [H, W] int64.

    Each pixel gets the id of the nearest palette colour (squared RGB distance), which undoes
    JPEG noise in colour-coded labels. Where the palette repeats a colour the lowest id wins.
    A tensor input ([H, W, 3] uint8, or [3, H, W] in [-1, 1] float) gives a tensor back.
    """
    as_tensor = isinstance(rgb, torch.Tensor)
    if as_tensor:
        t = rgb.detach().cpu()
        if t.is_floating_point():  # [3, H, W] in [-1, 1]
            t = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
        arr = t.numpy()
    else:
        arr = np.asarray(rgb.convert("RGB") if hasattr(rgb, "convert") else rgb)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise DataError(f"colour-coded label image has shape {arr.shape}; expected [H, W, 3] RGB.")
    arr = arr[..., :3].astype(np.int64)
    pal = _palette_array(palette).astype(np.int64)
    packed = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    colors, inverse = np.unique(packed.ravel(), return_inverse=True)  # few distinct colours, even in JPEGs
    rgb_u = np.stack([(colors >> 16) & 255, (colors >> 8) & 255, colors & 255], axis=1)
    ids = np.empty(len(colors), dtype=np.int64)
    for start in range(0, len(colors), 4096):
        chunk = rgb_u[start:start + 4096]
        d = ((chunk[:, None, :] - pal[None, :, :]) ** 2).sum(-1)
        ids[start:start + 4096] = d.argmin(1)
    out = ids[inverse.reshape(-1)].reshape(packed.shape)
    return torch.from_numpy(out) if as_tensor else out


IGNORE = -1  # the class id of pixels that are not counted (void, or outside the label set)


def read_label_ids(label_map: str | Path | Image.Image, label_set: LabelSet) -> torch.Tensor:
    """A label map (file or PIL image) -> int64 [H, W]: ids as stored (8/16-bit or palette PNG), or for a
    colour-coded image the nearest palette colour's id. The void id and ids outside the label set become
    `IGNORE`."""
    source = str(label_map) if isinstance(label_map, (str, Path)) else "label map"
    arr = np.asarray(open_map(label_map) if isinstance(label_map, (str, Path)) else label_map)
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            arr = rgb[..., 0]
        else:
            arr = nearest_palette_ids(np.ascontiguousarray(rgb), label_set)
    if arr.ndim != 2:
        raise DataError(f"{source}: a label map must hold [H, W] ids or be an RGB colour-coded image.")
    ids = torch.from_numpy(arr.astype(np.int64))
    ids[(ids < 0) | (ids >= label_set.label_nc)] = IGNORE
    if label_set.ignore_id is not None:
        ids[ids == label_set.ignore_id] = IGNORE
    return ids


def check_label_settings(d: DataConfig) -> None:
    """ignore_index inside the label ids, and a named label set with as many classes as label_nc."""
    if d.label_nc > 0 and d.ignore_index >= d.label_nc:
        raise ConfigError(f"data.ignore_index={d.ignore_index} is outside the label ids 0..{d.label_nc - 1} "
                          f"(data.label_nc={d.label_nc}): use -1 (ids outside the range are an error) or the id of "
                          "the class they should map to, e.g. 0.")
    if d.label_nc == 0 and d.ignore_index != -1 and not d.class_from_folder:
        raise ConfigError(f"data.ignore_index={d.ignore_index} with data.label_nc=0: RGB label images have no ids to "
                          "ignore; use -1.")
    if d.label_set and d.label_nc > 0 and not d.class_from_folder:
        label_set = get_label_set(d.label_set)
        if label_set.label_nc != d.label_nc:
            raise ConfigError(f"data.label_set={d.label_set!r} has {label_set.label_nc} classes but data.label_nc="
                              f"{d.label_nc}: set data.label_nc={label_set.label_nc}, or name the label set of these "
                              "label maps.")


def resolve_label_set(cfg: Config) -> LabelSet | None:
    """The configured label set (names and palette), or the synthetic world's classes.json in the data folder."""
    if cfg.data.label_set:
        return get_label_set(cfg.data.label_set)
    classes = Path(cfg.data.root) / "classes.json"
    return LabelSet.from_classes_json(classes) if cfg.data.root and classes.is_file() else None
