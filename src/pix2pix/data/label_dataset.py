"""Label-map datasets for pix2pixHD: label (+ instance) maps -> photos, and class-conditional folders.

Layouts:

- pix2pixHD: ``root/{phase}_label/``, ``root/{phase}_inst/``, ``root/{phase}_img/``, files
  paired by stem. Cityscapes' own names (``aachen_000000_000019_gtFine_labelIds.png``,
  ``..._gtFine_instanceIds.png``, ``..._leftImg8bit.png``) are paired by their common prefix
  (``aachen_000000_000019``), so the three folders may hold files named either way.
- Cityscapes as downloaded: ``root/gtFine/{phase}/{city}/`` and ``root/leftImg8bit/{phase}/{city}/``.
- class folders (``class_from_folder=True``): ``root/{phase}/{class_name}/*`` images; classes
  sorted by folder name give the class index, and each image gets a constant label map of its
  class, so the same pix2pixHD generator and discriminator do classic class-conditional GANs.

Items are dicts: ``label`` LongTensor [1, H, W] of class ids (FloatTensor [3, H, W] in [-1, 1]
when ``label_nc == 0``: the "labels" are RGB images), ``instance`` LongTensor [1, H, W] (when
instance maps are used; 16-bit ids kept exactly), ``image`` FloatTensor [3, H, W] in [-1, 1]
(when the split has images; a test split may not), ``path`` (the label file). Label and instance
maps are resized, cropped and flipped with NEAREST and the same parameters as the image. One-hot
and boundary maps are made batched on the device by the model (`pix2pix.data.labels`). Label ids are
read through `map_label_ids` (the label set's unlabeled values, e.g. COCO-Stuff's 255, become its void
id; with ``ignore_index``, ids outside 0..label_nc-1 become that class), so training, sample grids,
features and evaluation all see the same ids; ids still out of range are reported by `one_hot`, or up
front by `check_label_ids` (and `pix2pix data check`).

A key may be an index or ``(index, seed)``: the seed makes the crop and flip reproducible.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import PREPROCESS_MODES
from ..errors import ConfigError, DataError
from .images import IMAGE_EXTENSIONS, convert_channels, image_to_tensor, list_images, load_image, open_map
from .label_sets import nearest_palette_ids
from .labels import label_condition_map, map_label_ids
from .transforms import apply_params, sample_params

__all__ = ["LabelDataset", "LabelItem", "check_label_ids", "is_kind", "match_by_key", "open_map", "pair_key",
           "scan_label_ids", "sibling_folder"]


# Cityscapes file-name suffixes: the part before them is the key shared by the files of one frame.
_CITYSCAPES_SUFFIX = re.compile(
    r"_(?:(?:gtFine|gtCoarse)_(?:labelIds|instanceIds|labelTrainIds|color|polygons)|leftImg8bit)$"
)
# Files of another kind that may sit beside the ones wanted in a Cityscapes folder: skipped.
_NOT_LABEL = re.compile(r"_(?:gtFine|gtCoarse)_(?:instanceIds|color|polygons)$|_leftImg8bit$")
_NOT_INSTANCE = re.compile(r"_(?:gtFine|gtCoarse)_(?:labelIds|labelTrainIds|color|polygons)$|_leftImg8bit$")
_NOT_IMAGE = re.compile(r"_(?:gtFine|gtCoarse)_\w+$")


_OTHER_KINDS = {"label": _NOT_LABEL, "inst": _NOT_INSTANCE, "img": _NOT_IMAGE}


def is_kind(path: str | Path, kind: str) -> bool:
    """Whether `path` can be a file of `kind` (label, inst, img): not another kind's Cityscapes file."""
    return not _OTHER_KINDS[kind].search(Path(path).stem)


def sibling_folder(folder: str | Path, kind: str) -> Path | None:
    """The pix2pixHD layout's partner folder: ``{phase}_label/`` -> ``{phase}_inst/`` (kind inst) or
    ``{phase}_img/`` (kind img), when it exists."""
    folder = Path(folder)
    if not folder.name.endswith("_label"):
        return None
    sibling = folder.with_name(f"{folder.name[:-len('_label')]}_{kind}")
    return sibling if sibling.is_dir() else None


def match_by_key(label_paths: Sequence[Path], folder: str | Path, kind: str, what: str) -> dict[Path, Path]:
    """For each label file, the file of `kind` in `folder` with the same stem or Cityscapes prefix (`pair_key`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist.")
    by_key: dict[str, Path] = {}
    for p in list_images(folder):
        if is_kind(p, kind):
            by_key.setdefault(pair_key(p), p)
    missing = [p for p in label_paths if pair_key(p) not in by_key]
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:10]) + ("\n  ..." if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} label maps have no {what} in {folder} (matched by file name or "
                        f"Cityscapes prefix): add them, or remove the label maps:\n{shown}")
    return {p: by_key[pair_key(p)] for p in label_paths}


def pair_key(path: str | Path) -> str:
    """The name shared by the label, instance and image files of one sample.

    The file stem, minus a Cityscapes suffix: ``aachen_000000_000019_gtFine_labelIds.png`` and
    ``aachen_000000_000019_leftImg8bit.png`` both give ``aachen_000000_000019``.
    """
    return _CITYSCAPES_SUFFIX.sub("", Path(path).stem)


@dataclass(frozen=True)
class LabelItem:
    key: str
    label: Path | None  # None in class-folder mode
    instance: Path | None
    image: Path | None
    class_index: int | None = None


def _by_key(files: Iterable[Path], skip: re.Pattern[str], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if skip.search(f.stem):
            continue
        key = pair_key(f)
        if key in out:
            raise DataError(f"{out[key]} and {f} in {folder} both belong to sample '{key}': "
                            "keep one file per sample in each folder.")
        out[key] = f
    return out


def _list_tree(folder: Path) -> list[Path]:
    """Image files anywhere under `folder` (Cityscapes keeps one subfolder per city)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _unpaired_error(missing: dict[str, list[Path]]) -> DataError:
    lines = [f"  {p} has no partner in {where}" for where, paths in missing.items() for p in paths]
    return DataError(
        f"{len(lines)} unpaired files: every label file needs an instance map and an image with the same name (or "
        "the same Cityscapes prefix, e.g. aachen_000000_000019); add or remove files:\n" + "\n".join(lines[:20])
        + ("\n  ..." if len(lines) > 20 else "")
    )


def map_ids_tensor(img: Image.Image, path: Path, what: str, palette: np.ndarray | None) -> torch.Tensor:
    """A map from `open_map` (after transforms) -> LongTensor [1, H, W]."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        if palette is not None and what == "label":
            arr = nearest_palette_ids(arr, palette)
        elif np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]  # a gray map saved as RGB
        else:
            fix = ("set label_nc 0 to use RGB images as the input, or give the label set's palette so colours "
                   "map to ids (nearest_palette_ids)") if what == "label" else "save the ids as an 8/16-bit PNG"
            raise DataError(f"{path} is a colour image, but {what} maps hold one id per pixel: {fix}.")
    return torch.from_numpy(arr.astype(np.int64))[None]


class LabelDataset(Dataset):
    """Label maps (+ instance maps) and photos for pix2pixHD, or class-conditional image folders."""

    def __init__(self, root: str | Path, phase: str = "train", *, label_nc: int | None,
                 use_instance: bool = True, preprocess: str = "scale_width_and_crop", load_size: int = 1024,
                 crop_size: int = 512, flip: bool = True, train: bool = True, ignore_index: int | None = None,
                 class_from_folder: bool = False, max_items: int = 0, require_images: bool = False,
                 palette: Sequence[Sequence[int]] | np.ndarray | None = None, label_set: Any = None) -> None:
        self.root = Path(root)
        self.phase = phase
        self.preprocess, self.load_size, self.crop_size = preprocess, int(load_size), int(crop_size)
        self.flip, self.train = bool(flip), bool(train)
        if ignore_index is not None and ignore_index < 0:
            ignore_index = None  # the config's -1: out-of-range ids are an error
        self.ignore_index = ignore_index
        self.class_from_folder = bool(class_from_folder)
        self.palette = None if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
        self.label_set = label_set  # a LabelSet: its unlabeled values are read as its void id
        self.classes: list[str] = []
        if preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"preprocess {preprocess!r} is not one of {', '.join(PREPROCESS_MODES)}.")
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} does not exist: check --data.")
        if self.class_from_folder:
            self.layout = "class_folders"
            self.use_instance = False
            self.items = self._find_class_items()
            n = len(self.classes)
            if label_nc is None or label_nc == 0:
                label_nc = n
            elif label_nc < n:
                raise DataError(f"{self.root / phase} has {n} class folders but label_nc is {label_nc}: "
                                f"set label_nc to {n} (or leave it unset).")
        else:
            if label_nc is None or label_nc < 0:
                raise ConfigError(f"label_nc {label_nc!r}: give the number of label ids (35 for Cityscapes), "
                                  "or 0 when the label folder holds RGB images.")
            self.use_instance = bool(use_instance)
            self.items = self._find_label_items()
        self.label_nc = int(label_nc)
        if ignore_index is not None and self.label_nc and not 0 <= ignore_index < self.label_nc:
            raise ConfigError(f"ignore_index {ignore_index} is outside 0..{self.label_nc - 1} (label_nc="
                              f"{self.label_nc}): the ignore class must be one of the label ids.")
        self.has_images = all(it.image is not None for it in self.items)
        if require_images and not self.has_images:
            raise DataError(f"{self.root}: the {phase} split has no images ({phase}_img/ is missing), "
                            "but they are needed here (training): add the photos there.")
        if max_items > 0:
            self.items = self.items[:max_items]

    # ------------------------------------------------------------------ discovery

    def _find_label_items(self) -> list[LabelItem]:
        root, phase = self.root, self.phase
        label_dir, inst_dir, img_dir = (root / f"{phase}_{k}" for k in ("label", "inst", "img"))
        if label_dir.is_dir():
            self.layout = "pix2pixhd"
            label_files, list_dir = list_images(label_dir), list_images
        elif (root / "gtFine" / phase).is_dir():
            self.layout = "cityscapes"
            label_dir = inst_dir = root / "gtFine" / phase
            img_dir = root / "leftImg8bit" / phase
            label_files = [p for p in _list_tree(label_dir) if p.stem.endswith("_labelIds")]

            def list_dir(folder: Path) -> list[Path]:
                files = _list_tree(folder)
                return [p for p in files if p.stem.endswith("_instanceIds")] if folder == inst_dir else files
        else:
            raise DataError(f"{label_dir} does not exist: a label dataset needs {phase}_label/ (+ {phase}_inst/, "
                            f"{phase}_img/) in {root}, or Cityscapes' gtFine/{phase}/ and leftImg8bit/{phase}/.")
        labels = _by_key(label_files, _NOT_LABEL, label_dir)
        if not labels:
            raise DataError(f"no label maps found in {label_dir}: add .png files or point --data elsewhere.")
        missing: dict[str, list[Path]] = {}

        def partners(folder: Path, skip: re.Pattern[str]) -> dict[str, Path]:
            found = _by_key(list_dir(folder), skip, folder)
            extra = sorted(p for k, p in found.items() if k not in labels)
            lonely = sorted(p for k, p in labels.items() if k not in found)
            if extra:
                missing[str(label_dir)] = missing.get(str(label_dir), []) + extra
            if lonely:
                missing[str(folder)] = missing.get(str(folder), []) + lonely
            return found

        instances: dict[str, Path] = {}
        if self.use_instance:
            if not inst_dir.is_dir():
                raise DataError(f"{inst_dir} does not exist: add the instance maps there, or set use_instance "
                                "false to train without instance boundaries (pix2pixHD's --no_instance).")
            instances = partners(inst_dir, _NOT_INSTANCE)
        # A split without photos (pix2pixHD's test split) has no {phase}_img/, or an empty one.
        has_images = img_dir.is_dir() and bool(list_dir(img_dir))
        images: dict[str, Path] = partners(img_dir, _NOT_IMAGE) if has_images else {}
        if missing:
            raise _unpaired_error(missing)
        return [LabelItem(k, labels[k], instances.get(k), images.get(k)) for k in sorted(labels)]

    def _find_class_items(self) -> list[LabelItem]:
        folder = self.root / self.phase
        if not folder.is_dir():
            folder = self.root
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        classes = [c for c in classes if list_images(folder / c)]
        if not classes:
            raise DataError(f"no class folders with images in {folder}: class-conditional data is "
                            f"{self.root}/{self.phase}/<class name>/*.png.")
        self.classes = classes
        return [LabelItem(f"{c}/{p.stem}", None, None, p, class_index=i)
                for i, c in enumerate(classes) for p in list_images(folder / c)]

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.items)

    def _params(self, size: tuple[int, int], seed: int | None, source: Path):
        rng = (random.Random(seed) if seed is not None else random.Random()) if self.train else None
        return sample_params(size, self.preprocess, self.load_size, self.crop_size, flip=self.flip, rng=rng,
                             source=str(source))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.items[index]
        if item.label is None:  # class-folder mode
            img = load_image(item.image, 3)
            img = apply_params(img, self._params(img.size, seed, item.image))
            assert item.class_index is not None
            return {"label": label_condition_map(item.class_index, img.height, img.width),
                    "image": image_to_tensor(img), "path": str(item.image), "class_index": item.class_index}

        label_img = load_image(item.label, 3) if self.label_nc == 0 else open_map(item.label)
        inst_img = open_map(item.instance) if item.instance is not None else None
        photo = load_image(item.image, 3) if item.image is not None else None
        for other, path in ((inst_img, item.instance), (photo, item.image)):
            if other is not None and other.size != label_img.size:
                raise DataError(f"{item.label} is {label_img.width}x{label_img.height} but {path} is "
                                f"{other.width}x{other.height}: the files of one sample must have the same size.")
        params = self._params(label_img.size, seed, item.label)
        out: dict[str, Any] = {}
        if self.label_nc == 0:
            out["label"] = image_to_tensor(convert_channels(apply_params(label_img, params), 3, item.label))
        else:
            ids = map_ids_tensor(apply_params(label_img, params, Image.NEAREST), item.label, "label", self.palette)
            out["label"] = map_label_ids(ids, self.label_nc, ignore_index=self.ignore_index, label_set=self.label_set)
        if inst_img is not None:
            out["instance"] = map_ids_tensor(apply_params(inst_img, params, Image.NEAREST), item.instance,
                                          "instance", None)
        if photo is not None:
            out["image"] = image_to_tensor(apply_params(photo, params))
        out["path"] = str(item.label)
        return out


# ---------------------------------------------------------------------- id checks


def _file_ids(dataset: LabelDataset, item: LabelItem) -> set[int]:
    img = open_map(item.label)
    arr = np.asarray(img)
    if arr.dtype == np.uint8 and arr.ndim == 2:  # the common case: a histogram is much faster than a sort
        return {int(v) for v in np.flatnonzero(np.bincount(arr.ravel(), minlength=256))}
    ids = map_ids_tensor(img, item.label, "label", dataset.palette)
    return {int(v) for v in np.unique(ids.numpy())}


def scan_label_ids(dataset: LabelDataset) -> set[int]:
    """Every label id in the dataset's label files (one pass over the files as stored)."""
    if dataset.class_from_folder:
        return {it.class_index for it in dataset.items if it.class_index is not None}
    if dataset.label_nc == 0:
        raise DataError(f"{dataset.root}: label_nc is 0, so the label folder holds RGB images, not ids.")
    ids: set[int] = set()
    for item in dataset.items:
        ids |= _file_ids(dataset, item)
    return ids


def check_label_ids(dataset: LabelDataset) -> set[int]:
    """Scan the label files and raise a DataError naming the files whose ids do not fit label_nc.

    Ids out of range are fine when the dataset has an ignore_index (they map to it). Returns the ids.
    """
    if dataset.class_from_folder or dataset.label_nc == 0:
        return scan_label_ids(dataset) if dataset.class_from_folder else set()
    ids: set[int] = set()
    bad: list[tuple[Path, list[int]]] = []
    unlabeled = set(getattr(dataset.label_set, "unlabeled_ids", ()) or ())
    for item in dataset.items:
        found = _file_ids(dataset, item)
        ids |= found
        out = sorted(i for i in found if not 0 <= i < dataset.label_nc and i not in unlabeled)
        if out and item.label is not None:
            bad.append((item.label, out))
    if bad and dataset.ignore_index is None:
        lines = "\n".join(f"  {p}: ids {v}" for p, v in bad[:20]) + ("\n  ..." if len(bad) > 20 else "")
        top = max(max(v) for _, v in bad)
        raise DataError(f"{len(bad)} label files hold ids outside 0..{dataset.label_nc - 1} "
                        f"(label_nc={dataset.label_nc}): set label_nc to at least {top + 1}, or map them to an "
                        f"ignore class with the ignore_index option:\n{lines}")
    return ids
