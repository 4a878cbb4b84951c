"""The editor's model side: load a saved model with its classes and clusters, read maps, generate photos.

`EditorModel.load(model_dir, clusters=..., labels=..., data=...)` works for both families:

- pix2pix (a `Translator`): the input is the colour-coded label map, as in the A side of the
  synthetic world's A|B pairs, so the editor paints ids and feeds ``palette[label]``. Such a
  model stores no class table; it comes from ``--labels`` (a label set name or classes.json),
  the ``--data`` folder's classes.json, or the training run's recorded data folder.
- pix2pixHD (a `LabelTranslator`): label ids + instance map; a model trained with the feature
  encoder gets per-instance features from the k-means clusters (``features="cluster"`` with the
  user's choices; the default is cluster 0, the largest). Without clusters it runs with zero
  features and the style panel says how to compute them. The class table is the one saved with
  the model (or ``--labels``).

A ``--clusters`` file must belong to the model: same feature width, class ids inside the model's
label range, and the same class names where the file records them. Anything else is a clear
error before the server starts.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..clusters import Clusters
from ..data.images import IMAGE_EXTENSIONS, tensor_to_array
from ..data.label_dataset import is_kind, pair_key, sibling_folder
from ..data.label_sets import LabelSet, get_label_set
from ..data.labels import cityscapes_instance_class, map_label_ids
from ..errors import CheckpointError, ConfigError, DataError
from ..inference import BaseTranslator, load_translator
from ..io.model_card import ModelCard
from ..io.model_dir import recorded_data_root, resolve_model_dir
from .ops import LabelSpace

MAX_SIDE = 4096  # uploads and blank canvases: at most 4096 x 4096 pixels
MIN_SIDE = 8

__all__ = ["MAX_SIDE", "DatasetFolders", "EditorModel", "StylePreview", "decode_image", "encode_png",
           "instance_ids", "label_ids", "render_view"]


# ----------------------------------------------------------------------------- images


def decode_image(data: bytes | str, what: str, max_side: int = MAX_SIDE) -> Image.Image:
    """Raw bytes, base64 text or a data: URL -> a decoded PIL image no larger than max_side per side."""
    if isinstance(data, str):
        text = data.split(",", 1)[1] if data.startswith("data:") else data
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"the {what} is not base64-encoded image data.") from None
    if not data:
        raise DataError(f"the {what} is empty.")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size  # from the header: refuse huge images before decoding them
        if width > max_side or height > max_side:
            raise DataError(f"the {what} is {width}x{height} pixels; the limit is {max_side}x{max_side}.")
        if width < MIN_SIDE or height < MIN_SIDE:
            raise DataError(f"the {what} is {width}x{height} pixels; it needs at least {MIN_SIDE} per side.")
        img.load()
    except UnidentifiedImageError:
        raise DataError(f"the {what} is not an image (PNG, BMP, TIFF, ...): upload a label map saved as an image "
                        "file.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"the {what} could not be decoded ({exc}): re-export it as PNG.") from None
    return img


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _integer_map(img: Image.Image, what: str, source: str) -> np.ndarray | None:
    """The ids of a one-channel image (L, P, I, I;16, 1) or a gray RGB image; None for a colour image."""
    if img.mode in ("L", "P", "1") or img.mode.startswith("I"):
        return np.asarray(img).astype(np.int64)
    if img.mode == "F":
        arr = np.asarray(img)
        if not np.all(arr == np.round(arr)):
            raise DataError(f"{source}: the {what} holds fractional values; it must hold integer ids.")
        return arr.astype(np.int64)
    if img.mode == "LA":
        return np.asarray(img.getchannel(0)).astype(np.int64)
    rgb = np.asarray(img.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0].astype(np.int64)
    return None


def label_ids(img: Image.Image, palette: np.ndarray, source: str = "the label map") -> np.ndarray:
    """A label image -> int64 ids: one id per pixel (8/16-bit, palette PNG), or exactly the palette's colours."""
    ids = _integer_map(img, "label map", source)
    if ids is not None:
        return ids
    colours = _packed(np.asarray(img.convert("RGB")))
    table = _packed(palette)
    order = np.argsort(table, kind="stable")  # where colours repeat, the lowest id wins
    uniq, first = np.unique(table[order], return_index=True)
    ids_by_colour = order[first]
    pos = np.searchsorted(uniq, colours).clip(max=len(uniq) - 1)
    exact = uniq[pos] == colours
    if not exact.all():
        bad = np.unique(colours[~exact])[:3]
        shown = ", ".join(f"#{int(c):06x}" for c in bad)
        raise DataError(f"{source} is a colour image with colours that are not in the label set's palette ({shown}): "
                        "upload ids (an 8/16-bit gray PNG) or a map painted in the palette's exact colours.")
    return ids_by_colour[pos].astype(np.int64)


def instance_ids(img: Image.Image, source: str = "the instance map") -> np.ndarray:
    """An instance image (8/16/32-bit ids) -> int64 ids."""
    ids = _integer_map(img, "instance map", source)
    if ids is None:
        raise DataError(f"{source} is a colour image; instance maps hold one integer id per pixel: save it as an "
                        "8- or 16-bit gray PNG.")
    return ids


def encode_png(image: np.ndarray | Image.Image) -> bytes:
    """PNG bytes, fast (compression level 1: the editor sends one per edit)."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _edges(ids: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another id (both sides), as the boundary map the model sees."""
    edge = np.zeros(ids.shape, dtype=bool)
    dx = ids[:, 1:] != ids[:, :-1]
    dy = ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


def render_view(label: np.ndarray, instance: np.ndarray, palette: np.ndarray,
                selection: np.ndarray | None = None) -> np.ndarray:
    """What the user paints on: class colours, object outlines darkened, the selected object outlined in yellow."""
    rgb = palette[label].astype(np.float32)
    rgb[_edges(instance)] *= 0.45
    if selection is not None and selection.any():
        rgb[selection] = 0.7 * rgb[selection] + 0.3 * 255.0
        inner = selection.copy()
        inner[1:, :] &= selection[:-1, :]
        inner[:-1, :] &= selection[1:, :]
        inner[:, 1:] &= selection[:, :-1]
        inner[:, :-1] &= selection[:, 1:]
        rgb[selection & ~inner] = (255.0, 214.0, 0.0)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- datasets


_LABEL_SUFFIX = "_label"


def check_file_name(name: Any, what: str = "name") -> str:
    """A plain file name from a listing: no path separators, no '..', no control characters."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise DataError(f"the {what} must be a file name from the dataset listing.")
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") or any(ord(ch) < 32 for ch in name):
        raise DataError(f"the {what} {name!r} is refused: give a name from the dataset listing, without path "
                        "separators or '..'.")
    return name


class DatasetFolders:
    """Label maps of a dataset folder by split and file name: {split}_label/ (with {split}_inst/ beside it).

    Only names in the listing can be opened, so a request cannot reach any other file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} does not exist: pass --data DIR (a folder with "
                            "train_label/, test_label/ ...).")
        self._items: dict[tuple[str, str], tuple[Path, Path | None]] = {}
        folders = [self.root] if self.root.name.endswith(_LABEL_SUFFIX) else sorted(self.root.iterdir())
        for folder in folders:
            if not (folder.is_dir() and folder.name.endswith(_LABEL_SUFFIX)):
                continue
            split = folder.name[:-len(_LABEL_SUFFIX)] or "label"
            inst_folder = sibling_folder(folder, "inst")
            instances = {}
            if inst_folder is not None:
                instances = {pair_key(p): p for p in sorted(inst_folder.iterdir()) if p.is_file()
                             and p.suffix.lower() in IMAGE_EXTENSIONS and is_kind(p, "inst")}
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and is_kind(p, "label"):
                    self._items[(split, p.name)] = (p, instances.get(pair_key(p)))
        if not self._items:
            raise DataError(f"{self.root} has no label maps: expected folders like train_label/ and test_label/ "
                            "(the pix2pixHD layout that `pix2pix data synth` writes).")

    def listing(self) -> list[dict[str, Any]]:
        return [{"split": s, "name": n, "instance": inst is not None} for (s, n), (_, inst) in self._items.items()]

    def paths(self, split: Any, name: Any) -> tuple[Path, Path | None]:
        key = (check_file_name(split, "split"), check_file_name(name))
        if key not in self._items:
            raise KeyError(f"{key[0]}/{key[1]} is not in the dataset listing.")
        return self._items[key]


# ----------------------------------------------------------------------------- the model


@dataclass
class StylePreview:
    """One cluster of the selected object's class: how the object looks with it."""

    index: int
    count: int  # training instances in the cluster
    color: tuple[int, int, int]  # the object's mean colour in the preview
    thumbnail: np.ndarray  # uint8 [h, w, 3]


def _resolve_label_set(model_dir: Path, card: ModelCard, labels: str | Path | None,
                       data_dir: Path | None) -> LabelSet:
    if labels:
        return get_label_set(labels)
    saved = card.label_set()
    if saved is not None:
        return saved
    for root in (data_dir, recorded_data_root(model_dir)):
        if root is not None and (root / "classes.json").is_file():
            return LabelSet.from_classes_json(root / "classes.json")
    if card.labels is not None:
        return LabelSet.from_dict({"label_nc": card.labels.label_nc}, name="generated")
    raise ConfigError(f"{model_dir} is a pix2pix model, which stores no class table: pass --label-set NAME "
                      "(cityscapes, synthetic, ... or a classes.json) or --data DIR with a classes.json, so the editor "
                      "knows the classes and the colours the model was trained on.")


def _check_clusters(clusters: Clusters, label_set: LabelSet, source: str) -> None:
    """Refuse clusters computed for another model: class ids outside the label range or other class names."""
    outside = [c for c in clusters.classes if not 0 <= c < label_set.label_nc]
    if outside:
        raise CheckpointError(f"{source} holds clusters for class ids {outside[:10]}, but the model has classes "
                              f"0..{label_set.label_nc - 1}: these clusters belong to another model; compute them "
                              "for this one with `pix2pix features RUN`.")
    names = clusters.meta.get("class_names") or {}
    differ = [(int(c), n, label_set.class_names[int(c)]) for c, n in names.items()
              if n and str(c).lstrip("-").isdigit() and 0 <= int(c) < label_set.label_nc
              and n != label_set.class_names[int(c)]]
    if differ:
        c, theirs, ours = differ[0]
        raise CheckpointError(f"{source} was computed for other classes (class {c} is {theirs!r} there, {ours!r} in "
                              f"this model): compute clusters for this model with `pix2pix features RUN`.")


class EditorModel:
    """A saved pix2pix or pix2pixHD model, its classes and clusters, as the editor uses them."""

    def __init__(self, translator: BaseTranslator, label_set: LabelSet, *, model_dir: Path | None = None) -> None:
        self.translator = translator
        self.inputs = translator.inputs()
        self.family = self.inputs.family
        self.label_set = label_set
        self.model_dir = model_dir
        self.palette = label_set.palette_array
        erase = label_set.ignore_id if label_set.ignore_id is not None else 0
        self.space = LabelSpace(label_set.label_nc, frozenset(label_set.instance_classes), erase)
        self.clusters: Clusters | None = self.inputs.clusters
        self.use_features = self.inputs.features
        self._lock = threading.Lock()  # one generation at a time: concurrent ones only fight over the cores

    @classmethod
    def load(cls, model: str | Path, *, clusters: str | Path | None = None, labels: str | Path | None = None,
             data: str | Path | None = None, device: str = "auto") -> EditorModel:
        """Load a model (directory, run, published name), checking that clusters and classes fit it."""
        model_dir = resolve_model_dir(model, progress=True)
        card = ModelCard.read(model_dir)
        label_set = _resolve_label_set(model_dir, card, labels, Path(data) if data else None)
        loaded = None
        if clusters is not None:
            if not card.use_features:
                what = "a pix2pix model" if card.family != "pix2pixhd" else \
                    "a pix2pixHD model trained without the encoder"
                raise ConfigError(f"--clusters {clusters}: {model_dir} is {what}, which has no instance features; "
                                  "clusters apply to pix2pixHD models trained with use_features=true.")
            loaded = Clusters.load(clusters, feat_num=card.feat_num)
        translator = load_translator(model_dir, device=device, clusters=loaded)
        inputs = translator.inputs()
        if inputs.label_ids:
            model_nc = card.labels.label_nc if card.labels is not None else 0
            if model_nc != label_set.label_nc:
                raise ConfigError(f"the label set {label_set.name!r} has {label_set.label_nc} classes but the model "
                                  f"was trained with label_nc {model_nc}: pass the model's label set.")
            if inputs.clusters is not None:
                _check_clusters(inputs.clusters, label_set, str(inputs.clusters.meta.get("path", clusters)))
        elif inputs.family == "pix2pixhd" or inputs.in_channels != 3 or card.data.color_space != "rgb" \
                or card.data.layout == "colorization":
            raise ConfigError(f"{model_dir} takes {inputs.in_channels}-channel images, not label maps the editor "
                              "can paint: it drives label-map -> photo models (pix2pix: the colour-coded label map "
                              "as a 3-channel RGB input; pix2pixHD: class ids).")
        return cls(translator, label_set, model_dir=model_dir)

    # -- facts for the page -------------------------------------------------------------------------
    @property
    def has_styles(self) -> bool:
        return self.use_features and self.clusters is not None

    def num_clusters(self, class_id: int) -> int:
        return self.clusters.num_clusters(class_id) if self.has_styles and self.clusters is not None else 0

    def styles_note(self) -> str:
        if self.family != "pix2pixhd":
            return "pix2pix models have no per-object styles: the label map alone decides the photo."
        if not self.use_features:
            return "this pix2pixHD model was trained without the feature encoder, so objects have no styles."
        if self.clusters is None:
            return ("this model has no clusters yet, so objects use zero features: run `pix2pix features RUN` "
                    "(or pass --clusters FILE) to get styles.")
        return "styles are the k-means clusters of the training objects' features, largest first."

    def info(self) -> dict[str, Any]:
        ls = self.label_set
        classes = [{"id": i, "name": ls.class_names[i], "color": list(ls.palette[i]),
                    "thing": i in ls.instance_classes, "clusters": self.num_clusters(i)} for i in range(ls.label_nc)]
        return {"family": self.family, "model": str(self.model_dir or ""), "label_set": ls.name,
                "label_nc": ls.label_nc, "classes": classes, "erase_class": self.space.erase_class,
                "styles": self.has_styles, "styles_note": self.styles_note(),
                "device": str(self.translator.device), "max_side": MAX_SIDE, "uses_instances": self.inputs.instances}

    # -- generation -----------------------------------------------------------------------------------
    def object_class(self, label: np.ndarray, instance: np.ndarray, inst_id: int) -> int:
        """The class of an instance as the feature map sees it: the majority label inside it."""
        inside = label[instance == inst_id]
        if inside.size == 0:
            return int(cityscapes_instance_class(int(inst_id)))
        return int(np.bincount(inside).argmax())

    def valid_styles(self, label: np.ndarray, instance: np.ndarray, styles: dict[int, int]) -> dict[int, int]:
        """The styles whose cluster exists for the instance's class (others fall back to the default)."""
        return {i: k for i, k in styles.items() if k < self.num_clusters(self.object_class(label, instance, i))}

    def _features_mode(self) -> str:
        return "cluster" if self.clusters is not None else "zero"

    def _map_tensors(self, label: np.ndarray, instance: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        lab = torch.from_numpy(label.astype(np.int64))[None, None]
        inst = torch.from_numpy(instance.astype(np.int64))[None, None]
        return lab, inst

    @torch.no_grad()
    def generate(self, label: np.ndarray, instance: np.ndarray, styles: dict[int, int]) -> tuple[np.ndarray, float]:
        """(the photo, uint8 [H, W, 3]; seconds the model took, input preparation and read-back included)."""
        with self._lock:
            start = time.perf_counter()
            if self.inputs.label_ids:
                lab, inst = self._map_tensors(label, instance)
                choices = self.valid_styles(label, instance, styles) if self.has_styles else None
                out = self.translator.translate_tensor(lab, inst, features=self._features_mode(), choices=choices)
                photo = tensor_to_array(out[0])
            else:
                ids = Image.fromarray(instance.astype(np.int32)) if self.inputs.instances else None  # its edges
                photo = np.asarray(self.translator(Image.fromarray(self.palette[label]), ids).convert("RGB"))
            return photo, time.perf_counter() - start

    @torch.no_grad()
    def style_previews(self, label: np.ndarray, instance: np.ndarray, styles: dict[int, int], inst_id: int,
                       thumb: int = 72, batch: int = 4) -> list[StylePreview]:
        """How object `inst_id` looks under each cluster of its class: the crop around it, one batched pass."""
        class_id = self.object_class(label, instance, inst_id)
        k_total = self.num_clusters(class_id)
        mask = instance == inst_id
        if k_total == 0 or not mask.any():
            return []
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        margin = max(8, (max(y1 - y0, x1 - x0)) // 4)
        h, w = label.shape
        y0, y1, x0, x1 = max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)
        lab_c, inst_c, mask_c = label[y0:y1, x0:x1], instance[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        base = self.valid_styles(lab_c, inst_c, styles)
        with self._lock:
            lab, inst = self._map_tensors(lab_c, inst_c)
            variants = self.translator.style_variants(lab, inst, inst_id, list(range(k_total)), base, batch=batch)
        outs = [tensor_to_array(o) for o in variants]
        counts = self.clusters.counts.get(class_id, []) if self.clusters is not None else []
        scale = thumb / max(mask_c.shape)
        size = (max(1, round(mask_c.shape[1] * scale)), max(1, round(mask_c.shape[0] * scale)))
        previews = []
        for k, arr in enumerate(outs):
            colour = tuple(int(v) for v in arr[mask_c].mean(0).round())
            small = np.asarray(Image.fromarray(arr).resize(size, Image.BILINEAR))
            previews.append(StylePreview(k, int(counts[k]) if k < len(counts) else 0, colour, small))  # type: ignore[arg-type]
        return previews

    # -- maps -----------------------------------------------------------------------------------------
    def read_maps(self, label_img: Image.Image, instance_img: Image.Image | None,
                  source: str = "upload") -> tuple[np.ndarray, np.ndarray | None]:
        """(label ids, instance ids or None) from images, checked against the model's classes."""
        label = label_ids(label_img, self.palette, f"the {source} label map")
        labels = self.translator.card.labels  # ids as training read them: unlabeled values, ignore_index
        label = map_label_ids(label, self.space.label_nc, label_set=self.label_set,
                              ignore_index=labels.ignore_index if labels is not None else None)
        if label.min() < 0 or label.max() >= self.space.label_nc:
            bad = np.unique(label[(label < 0) | (label >= self.space.label_nc)])[:10].tolist()
            raise DataError(f"the {source} label map holds ids {bad}, outside this model's classes "
                            f"0..{self.space.label_nc - 1} ({self.label_set.name}): upload a map made with the "
                            "model's label set.")
        instance = None
        if instance_img is not None:
            instance = instance_ids(instance_img, f"the {source} instance map")
            if instance.shape != label.shape:
                raise DataError(f"the {source} instance map is {instance.shape[1]}x{instance.shape[0]} but the label "
                                f"map is {label.shape[1]}x{label.shape[0]}: give maps of the same size.")
            if instance.min() < 0:
                raise DataError(f"the {source} instance map holds negative ids; ids must be 0 or more.")
        return label, instance
