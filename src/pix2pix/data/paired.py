"""Paired datasets for pix2pix: A|B side-by-side images, A/ and B/ folders, colorization.

Each item is a dict with the input `A`, the target `B` (float tensors in [-1, 1],
after the direction swap) and `path`. With `data.instance_edges`, `A` has one more channel:
the boundaries of the pair's instance map (`instance_folder`), -1 inside objects and 1 on
the line between two of them, so that touching objects of one class stay apart.
A key may be an index or `(index, seed)`: the seed makes the random crop and flip of that
item reproducible, which is what lets an interrupted run resume exactly (see
training/sampling.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import DataConfig, ModelConfig
from ..errors import DataError
from .color import lab_image_tensors
from .images import convert_channels, image_to_tensor, list_images, open_image, open_map
from .label_dataset import map_ids_tensor
from .labels import boundary_map
from .layout import detect_layout, find_pairs, folder_pair_dirs
from .transforms import TransformParams, apply_params, sample_params


@dataclass(frozen=True)
class PairItem:
    a: Path
    b: Path | None  # None: both halves come from `a` (aligned or colorization)


def _phase_images(root: Path, phase: str) -> list[Path]:
    folder = root / phase
    if not folder.is_dir():
        if phase == "train" and list_images(root):
            folder = root  # the user pointed --data at the image folder itself
        else:
            raise DataError(f"{folder} does not exist: a dataset needs {root}/{phase}/ "
                            "(or A/ and B/ folders); check --data.")
    return list_images(folder)


def find_items(root: str | Path, phase: str, layout: str = "auto") -> tuple[str, list[PairItem]]:
    """The layout in use and the items of `phase`; an empty dataset is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist: check --data.")
    if layout == "auto":
        layout = detect_layout(root, phase)
    if layout == "folders":
        a_dir, b_dir = folder_pair_dirs(root, phase)
        items = [PairItem(a, b) for a, b in find_pairs(a_dir, b_dir)]
        where = f"{a_dir} and {b_dir}"
    else:
        items = [PairItem(p, None) for p in _phase_images(root, phase)]
        where = str(root / phase)
    if not items:
        raise DataError(f"no images found in {where}: add .png/.jpg files or point --data at another folder.")
    return layout, items


def instance_folder(root: Path, phase: str) -> Path:
    """Where the instance maps of `phase` are: root/{phase}_inst/, or beside root (`pix2pix data synth` writes
    AB/{phase}/ next to {phase}_inst/)."""
    for folder in (root / f"{phase}_inst", root.parent / f"{phase}_inst"):
        if folder.is_dir():
            return folder
    raise DataError(f"data.instance_edges needs instance maps in {root / f'{phase}_inst'} (or "
                    f"{root.parent / f'{phase}_inst'}), one per pair with the same name: add them, or drop "
                    "data.instance_edges.")


def instance_maps(paths: list[Path], folder: Path, what: str, fix: str) -> list[Path]:
    """The instance map in `folder` of each of `paths` (`what`: pairs, images), matched by file stem; a missing one
    is an error ending in `fix`."""
    by_stem = {p.stem: p for p in list_images(folder)}
    missing = [p for p in paths if p.stem not in by_stem]
    if missing:
        raise DataError(f"{missing[0]} has no instance map {folder / (missing[0].stem + '.png')} ({len(missing)} of "
                        f"{len(paths)} {what} lack one): {fix}")
    return [by_stem[p.stem] for p in paths]


def edge_channel(instance_ids: torch.Tensor) -> torch.Tensor:
    """Instance ids [1, H, W] -> the boundary map as an input channel [1, H, W]: 1 on boundaries, -1 elsewhere
    (the [-1, 1] range of the other input channels)."""
    return boundary_map(instance_ids[None])[0] * 2 - 1


def color_region_ids(image: torch.Tensor) -> torch.Tensor:
    """A label map [C, H, W] in [-1, 1] -> one id per colour [1, H, W]: each region taken as one instance
    (what an instance-edge model gets without an instance map; touching objects of one class merge)."""
    levels = ((image.float() + 1) * 127.5).round().long().clamp(0, 255)
    ids = torch.zeros_like(levels[:1])
    for channel in levels:
        ids = ids * 256 + channel
    return ids


class PairedDataset(Dataset):
    """Input/target pairs for pix2pix training and evaluation."""

    def __init__(self, root: str | Path, phase: str = "train", *, data: DataConfig | None = None,
                 in_channels: int = 3, out_channels: int = 3, train: bool = True) -> None:
        self.cfg = data or DataConfig()
        self.root = Path(root)
        self.phase = phase
        self.train = train
        self.in_channels, self.out_channels = in_channels, out_channels
        self.layout, self.items = find_items(self.root, phase, self.cfg.layout)
        if self.cfg.max_items > 0:
            self.items = self.items[: self.cfg.max_items]
        if self.layout == "colorization" and self.cfg.color_space == "lab" and (in_channels, out_channels) != (1, 2):
            raise DataError(f"{self.root}: Lab colorization maps L (1 channel) to ab (2 channels); "
                            "set model.in_channels=1 and model.out_channels=2 (the 'colorization' preset does).")
        self.instances: list[Path] = []
        if self.cfg.instance_edges:
            self.instances = instance_maps([it.a for it in self.items], instance_folder(self.root, phase), "pairs",
                                           "data.instance_edges needs one per pair with the same name; add them, "
                                           "or drop data.instance_edges.")

    @classmethod
    def from_config(cls, data: DataConfig, model: ModelConfig, phase: str = "train", train: bool = True,
                    root: str | Path | None = None) -> PairedDataset:
        root = root or data.root
        if not root:
            raise DataError("no dataset given: pass --data DIR (or set data.root).")
        return cls(root, phase, data=data, in_channels=model.in_channels, out_channels=model.out_channels,
                   train=train)

    def __len__(self) -> int:
        return len(self.items)

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The (A, B) images of item `index` as stored: full size, before preprocessing and the direction swap."""
        item = self.items[index]
        img = open_image(item.a)
        if item.b is not None:
            return img, open_image(item.b)
        if self.layout == "colorization":
            return img, img
        w, h = img.size
        if w % 2:
            raise DataError(f"{item.a}: width {w} is odd, so it cannot be an A|B pair of two equal halves; "
                            "re-create it with `pix2pix data combine`.")
        return img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.items[index]
        img_a, img_b = self.load_pair(index)
        if img_a.size != img_b.size:
            raise DataError(f"{item.a} is {img_a.size[0]}x{img_a.size[1]} but its partner {item.b} is "
                            f"{img_b.size[0]}x{img_b.size[1]}: the two images of a pair must have the same size.")
        img_size = img_a.size
        rng = random.Random(seed) if self.train else None
        if self.train and seed is None:
            rng = random.Random()
        params = sample_params(img_a.size, self.cfg.preprocess, self.cfg.load_size, self.cfg.crop_size,
                               flip=self.cfg.flip, rng=rng, source=str(item.a))
        img_a, img_b = apply_params(img_a, params), apply_params(img_b, params)
        if self.layout == "colorization":
            inp, target = self._colorization_tensors(img_a, item.a)
        else:
            if self.cfg.direction == "BtoA":
                img_a, img_b = img_b, img_a
            inp = image_to_tensor(convert_channels(img_a, self.in_channels, item.a))
            target = image_to_tensor(convert_channels(img_b, self.out_channels, item.b or item.a))
        if self.instances:
            inp = torch.cat([inp, self._edges(index, img_size, params)])
        return {"A": inp, "B": target, "path": str(item.a)}

    def _edges(self, index: int, size: tuple[int, int], params: TransformParams) -> torch.Tensor:
        path = self.instances[index]
        inst = open_map(path)
        if inst.size != size:
            raise DataError(f"{path} is {inst.size[0]}x{inst.size[1]} but its pair's images are {size[0]}x{size[1]}: "
                            "an instance map must have the size of the label map it belongs to.")
        return edge_channel(map_ids_tensor(apply_params(inst, params, Image.NEAREST), path, "instance", None))

    def _colorization_tensors(self, img: Image.Image, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = convert_channels(img, 3, path)
        if self.cfg.color_space == "lab":
            return lab_image_tensors(np.asarray(rgb))
        gray = image_to_tensor(convert_channels(rgb, 1, path))
        target = image_to_tensor(convert_channels(rgb, self.out_channels, path))
        return gray.expand(self.in_channels, -1, -1).clone(), target
