"""pix2pixHD inference: label (+ instance) maps -> photos, with the instance features chosen at test time.

    translator = LabelTranslator.from_pretrained("runs/00004-pix2pixhd_synthetic/model")
    photo = translator(Image.open("test_label/world_00090.png"), Image.open("test_inst/world_00090.png"))
    other = translator(label, instance, features="random", seed=3)
    edited = translator(label, instance, choices={7001: 2})  # car 7001 gets cluster 2 of its class

Label maps may be PIL images (mode L, I or P: ids; 16-bit instance ids are kept exactly),
numpy arrays of ids or LongTensors [H, W], [1, H, W] or [B, 1, H, W]; a label_nc 0 model takes
an RGB image instead. Any size: the input is padded to the generator's multiple and the output
cropped back. PIL or array input gives a PIL image; tensor input gives a tensor in [-1, 1].

Models trained with the feature encoder need per-instance features; ``features=``:
``"cluster"`` (the clusters' centre ``cluster``, 0 = the largest cluster, or per instance from
``choices``), ``"random"`` (a random cluster per instance, seeded), ``"encode"`` (the encoding
of a real image, ``style_image``) or ``"zero"``. Clusters come from `pix2pix features` and are
loaded from the model directory when present (see `pix2pix.features`).

`pix2pix.inference.load_translator(dir)` returns a `Translator` or a `LabelTranslator` by the saved
model's family.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..clusters import CLUSTERS_WEIGHTS, Clusters
from ..data.for_model import model_dataset
from ..data.images import convert_channels, image_to_tensor, load_image, save_image, tensor_to_image
from ..data.label_dataset import is_kind, match_by_key, open_map, pair_key, sibling_folder
from ..data.label_inputs import LabelInputs
from ..data.label_sets import IGNORE, colorize, generate_palette, nearest_palette_ids
from ..data.labels import map_label_ids
from ..errors import CheckpointError, ConfigError, DataError, Pix2PixError
from ..io.model_card import ModelCard
from ..models import run_padded
from ..runtime import as_device
from .base import BaseTranslator, ModelInputs, TestPair, load_networks
from .feature_map import FEATURE_MODES, feature_map

MapLike = Image.Image | np.ndarray | torch.Tensor

__all__ = ["LabelTranslator", "file_seed"]


def _ids_from_array(arr: np.ndarray, what: str, palette: np.ndarray | None, source: str) -> np.ndarray:
    """[H, W] ids (or a gray / palette-coloured [H, W, 3] map) -> int64 [H, W]."""
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            arr = rgb[..., 0]
        elif palette is not None and what == "label":
            arr = nearest_palette_ids(np.ascontiguousarray(rgb.astype(np.uint8)), palette)
        else:
            raise DataError(f"{source}: the {what} map is a colour image; {what} maps hold one integer id per "
                            "pixel (mode L, I or P).")
    if arr.ndim != 2:
        raise DataError(f"{source}: the {what} map has shape {arr.shape}; expected [H, W] ids.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(arr == np.round(arr)):
            raise DataError(f"{source}: the {what} map holds fractional values; it must hold integer ids.")
    return arr.astype(np.int64)


def _pil_ids(img: Image.Image, what: str, palette: np.ndarray | None, source: str) -> np.ndarray:
    if img.mode == "LA":
        img = img.getchannel(0)
    elif img.mode == "RGBA":
        img = img.convert("RGB")
    elif img.mode not in ("L", "P", "RGB", "1", "F") and not img.mode.startswith("I"):
        img = img.convert("RGB")
    return _ids_from_array(np.asarray(img), what, palette, source)


def file_seed(seed: int, key: str) -> int:
    """The random-feature seed of one file: depends on the seed and the file's key, not the file order."""
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**63)


class LabelTranslator(BaseTranslator):
    """A pix2pixHD generator (+ feature encoder and clusters) and the label encoding it was trained with."""

    family = "pix2pixhd"
    load_options = frozenset({"clusters", "backend"})
    file_options = frozenset({"instance_dir", "features", "choices", "cluster", "style_dir", "seed"})

    def __init__(self, generator: nn.Module, card: ModelCard, *, encoder: nn.Module | None = None,
                 clusters: Clusters | None = None, device: str | torch.device = "auto") -> None:
        if card.labels is None:
            raise CheckpointError("a pix2pixHD model card needs its 'labels' section.")
        self.device = as_device(device)
        self.card = card
        labels = card.labels
        self.label_nc = labels.label_nc
        self.use_instance = labels.use_instance
        self.use_features = card.use_features
        self.feat_num = card.feat_num
        self.encoding = LabelInputs(self.label_nc, self.use_instance,
                                           labels.ignore_index if labels.ignore_index >= 0 else None)
        self.generator = generator.to(self.device).eval()
        self.encoder = encoder.to(self.device).eval() if encoder is not None else None
        if self.use_features and self.encoder is None:
            raise CheckpointError("this model uses instance features but no encoder was given.")
        if clusters is not None and self.use_features:
            clusters.check_feat_num(self.feat_num)
        self.clusters = clusters
        label_set = card.label_set()
        self.label_set = label_set
        self.palette = label_set.palette_array if label_set is not None else None

    @classmethod
    def from_card(cls, model_dir: Path, card: ModelCard, *, device: str | torch.device = "auto",
                  clusters: Clusters | str | Path | None = None, backend: str = "torch") -> LabelTranslator:
        """Load G (and E when the model uses features, and clusters.safetensors from the directory if there).

        `clusters`: a `Clusters`, a path to clusters (directory or file), or None for the model's own.
        """
        dev = as_device(device)
        generator, encoder = load_networks(model_dir, card, backend, dev)
        if isinstance(clusters, (str, Path)):
            clusters = Clusters.load(clusters, feat_num=card.feat_num if card.use_features else None)
        elif clusters is None and card.use_features and (model_dir / CLUSTERS_WEIGHTS).is_file():
            clusters = Clusters.load(model_dir, feat_num=card.feat_num)
        translator = cls(generator, card, encoder=encoder, clusters=clusters, device=dev)
        translator.model_dir = model_dir
        return translator

    def inputs(self) -> ModelInputs:
        return ModelInputs("pix2pixhd", self.encoding.channels, self.card.out_channels,
                           label_set=self.label_set, label_ids=self.label_nc > 0,
                           instances=self.use_instance or self.use_features, features=self.use_features,
                           clusters=self.clusters, feature_modes=FEATURE_MODES if self.use_features else ())

    # -- input conversion --------------------------------------------------------------------------
    def _map_tensor(self, x: MapLike, what: str, source: str = "") -> tuple[torch.Tensor, bool]:
        """An id map as long [B, 1, H, W] on the device, and whether the input was a tensor."""
        source = source or f"<{what}>"
        if isinstance(x, torch.Tensor):
            t = x
            if t.is_floating_point():
                if not torch.equal(t, t.round()):
                    raise DataError(f"the {what} tensor holds fractional values: pass integer ids "
                                    "(a LongTensor) [H, W], [1, H, W] or [B, 1, H, W].")
            if t.dim() == 2:
                t = t[None, None]
            elif t.dim() == 3:
                if t.shape[0] != 1:
                    raise DataError(f"the {what} tensor has shape {tuple(x.shape)}: use [H, W], [1, H, W] or "
                                    "[B, 1, H, W] ids.")
                t = t[None]
            if t.dim() != 4 or t.shape[1] != 1:
                raise DataError(f"the {what} tensor has shape {tuple(x.shape)}: use [H, W], [1, H, W] or "
                                "[B, 1, H, W] ids.")
            return self._read_ids(t.to(self.device).long(), what), True
        if isinstance(x, Image.Image):
            arr = _pil_ids(x, what, self.palette, source)
        elif isinstance(x, np.ndarray):
            arr = _ids_from_array(x, what, self.palette, source)
        else:
            raise Pix2PixError(f"cannot read a {type(x).__name__} as a {what} map: pass a PIL image, a numpy "
                               "array or a tensor.")
        return self._read_ids(torch.from_numpy(arr)[None, None].to(self.device), what), False

    def _read_ids(self, ids: torch.Tensor, what: str) -> torch.Tensor:
        """Label ids as training read them (`map_label_ids`: the label set's unlabeled values, ignore_index)."""
        if what != "label" or self.label_nc == 0:
            return ids
        return map_label_ids(ids, self.label_nc, ignore_index=self.encoding.ignore_index, label_set=self.label_set)

    def _rgb_tensor(self, x: MapLike, what: str, source: str = "") -> tuple[torch.Tensor, bool]:
        """An RGB image as float [B, 3, H, W] in [-1, 1] on the device, and whether the input was a tensor."""
        if isinstance(x, torch.Tensor):
            t = x.float()
            if t.dim() == 3:
                t = t[None]
            if t.dim() != 4 or t.shape[1] != 3:
                raise DataError(f"the {what} tensor has shape {tuple(x.shape)}: use [3, H, W] or [B, 3, H, W] "
                                "in [-1, 1].")
            return t.to(self.device), True
        if isinstance(x, np.ndarray):
            arr = x
            if arr.dtype != np.uint8:
                arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            x = Image.fromarray(arr)
        if isinstance(x, Image.Image):
            return image_to_tensor(convert_channels(x, 3, source or f"<{what}>"))[None].to(self.device), False
        raise Pix2PixError(f"cannot read a {type(x).__name__} as an image: pass a PIL image, an array or a tensor.")

    # -- translation ----------------------------------------------------------------------------------
    def feature_channels(self, label: torch.Tensor, instance: torch.Tensor, *, features: str = "cluster",
                         choices: Mapping[int, Any] | None = None, style_image: torch.Tensor | None = None,
                         seed: int = 0, cluster: int = 0) -> torch.Tensor:
        """The feature maps [B, feat_num, H, W] fed to G (see `pix2pix.features.feature_map`)."""
        if features not in FEATURE_MODES:
            raise ConfigError(f"features={features!r}: use one of {', '.join(FEATURE_MODES)}.")
        if features in ("cluster", "random") and self.clusters is None:
            where = getattr(self, "model_dir", "the model directory")
            raise ConfigError(f"features={features!r} needs clusters, and {where} has none: run `pix2pix features "
                              f"RUN --data DIR` first (or use features='encode' with a real image, or 'zero').")
        if features == "encode" and self.encoder is None:
            raise ConfigError("features='encode' needs the model's encoder, which this model directory lacks.")
        lab = label if self.label_nc > 0 else None
        return feature_map(lab, instance, self.clusters, choices, self.feat_num, mode=features, seed=seed,
                           encoder=self.encoder, style_image=style_image, default_cluster=cluster)

    @torch.no_grad()
    def translate_tensor(self, label: torch.Tensor, instance: torch.Tensor | None = None, *,
                         features: str = "cluster", choices: Mapping[int, Any] | None = None,
                         style_image: torch.Tensor | None = None, seed: int = 0, cluster: int = 0,
                         source: str = "") -> torch.Tensor:
        """label [B, 1, H, W] ids (label_nc 0: [B, 3, H, W]) + instance [B, 1, H, W] -> [B, 3, H, W] in [-1, 1].

        Without an instance map, a model that uses instances takes the label map as one (each
        class region one instance, so touching objects of one class merge).
        """
        label = label.to(self.device)
        if instance is None and (self.use_instance or self.use_features):
            if self.label_nc == 0:
                raise DataError("this model uses instance maps and its labels are RGB images: pass the instance map.")
            instance = label
        if instance is not None:
            instance = instance.to(self.device).long()
            if instance.dim() == 3:
                instance = instance[:, None]
            if instance.shape[0] != label.shape[0] or instance.shape[-2:] != label.shape[-2:]:
                raise DataError(f"{source or 'the instance map'}: the instance map is {tuple(instance.shape)} but "
                                f"the label map is {tuple(label.shape)}: give maps of the same size.")
        feats = None
        if self.use_features:
            assert instance is not None
            feats = self.feature_channels(label, instance, features=features, choices=choices,
                                          style_image=style_image, seed=seed, cluster=cluster)
        if getattr(self.generator, "takes_label_maps", False):  # an exported graph that encodes the labels itself
            return self.generator(label, instance if self.use_instance else None, feats)
        cond = self.encoding.encode(label, instance if self.use_instance else None, source=source)
        if feats is not None:
            cond = torch.cat([cond, feats.to(cond.dtype)], 1)
        return run_padded(self.generator, cond)

    def __call__(self, label: MapLike, instance: MapLike | None = None, *, features: str = "cluster",
                 choices: Mapping[int, Any] | None = None, style_image: MapLike | None = None, seed: int = 0,
                 cluster: int = 0) -> Image.Image | torch.Tensor:
        """Translate one label map (or a batch of tensors). PIL / array in -> PIL out; tensor in -> tensor out."""
        if self.label_nc == 0:
            lab, is_tensor = self._rgb_tensor(label, "label")
            unbatched = is_tensor and label.dim() == 3  # type: ignore[union-attr]
        else:
            lab, is_tensor = self._map_tensor(label, "label")
            unbatched = is_tensor and label.dim() < 4  # type: ignore[union-attr]
        inst = None
        if instance is not None:
            inst, _ = self._map_tensor(instance, "instance")
            if inst.shape[0] == 1 and lab.shape[0] > 1:
                inst = inst.expand(lab.shape[0], -1, -1, -1)
        style = None
        if style_image is not None:
            style, _ = self._rgb_tensor(style_image, "style image")
        out = self.translate_tensor(lab, inst, features=features, choices=choices, style_image=style, seed=seed,
                                    cluster=cluster)
        if is_tensor:
            return out[0] if unbatched else out
        return tensor_to_image(out[0].float().cpu())

    def translate_files(self, paths: Sequence[str | Path], out_dir: str | Path, *, progress: bool = False,
                        log: Callable[[str], None] | None = None, instance_dir: str | Path | None = None,
                        features: str | None = None, choices: Mapping[int, Any] | None = None, cluster: int = 0,
                        style_dir: str | Path | None = None, seed: int = 0) -> list[Path]:
        """Translate label files into `out_dir` (PNG named by the file's stem, minus a Cityscapes suffix).

        Instance maps (and, for features='encode', real images from `style_dir`) are matched to the
        label files by stem or Cityscapes prefix. Without `instance_dir`, the ``{phase}_inst/``
        folder beside a ``{phase}_label/`` folder is used; failing that, a model using instances
        takes each label map as its own instance map (touching objects of one class merge). Files
        of another kind in a Cityscapes folder (``*_instanceIds``, ``*_color``, ...) are skipped.
        Random features use `file_seed(seed, key)` per file, so a file's result does not depend
        on the other files.
        """
        say = log or (lambda _: None)
        paths = [Path(p) for p in paths if is_kind(p, "label")]
        if not paths:
            raise DataError("no label maps among the inputs (only Cityscapes files of other kinds).")
        features = features or "cluster"
        if self.use_features and features in ("cluster", "random") and self.clusters is None:
            raise ConfigError(f"features {features!r} needs clusters: run `pix2pix features RUN --data DIR` first, "
                              "or pass --clusters FILE, or use --features encode --style-images DIR / --features zero.")
        if features == "encode" and self.use_features and not style_dir:
            raise ConfigError("features 'encode' needs real images to encode: pass --style-images DIR.")
        if instance_dir is None and (self.use_instance or self.use_features):
            folders = {p.parent for p in paths}
            instance_dir = sibling_folder(next(iter(folders)), "inst") if len(folders) == 1 else None
            say(f"instance maps: {instance_dir}" if instance_dir else
                "no instance maps given: each label map is used as its own instance map (touching objects of "
                "one class merge)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        instances = match_by_key(paths, instance_dir, "inst", "instance map") if instance_dir else {}
        styles = match_by_key(paths, style_dir, "img", "style image") if style_dir else {}
        written: list[Path] = []
        for p in tqdm(paths, disable=not progress, unit="img"):
            key = pair_key(p)
            if self.label_nc == 0:
                label = image_to_tensor(load_image(p, 3))[None]
            else:
                label, _ = self._map_tensor(open_map(p), "label", str(p))
            inst = None
            if p in instances:
                inst, _ = self._map_tensor(open_map(instances[p]), "instance", str(instances[p]))
            style = None
            if p in styles:
                style = image_to_tensor(load_image(styles[p], 3))[None]
            out = self.translate_tensor(label, inst, features=features, choices=choices, style_image=style,
                                        seed=file_seed(seed, key), cluster=cluster, source=str(p))
            target = out_dir / f"{key}.png"
            save_image(tensor_to_image(out[0].float().cpu()), target)
            written.append(target)
        return written

    def test_pairs(self, root: str | Path, phase: str = "test", *, label_set: Any = None,
                   progress: bool = False) -> Iterator[TestPair]:
        """The split with the model's test-time geometry; features from the clusters (cluster 0) or zeros."""
        if label_set is not None and self.label_nc and label_set.label_nc != self.label_nc:
            raise ConfigError(f"the segmenter's label set {label_set.name!r} has {label_set.label_nc} classes but the "
                              f"model's label maps have {self.label_nc}: use a segmenter trained on these labels.")
        ds = model_dataset(self.card, root, phase)
        if not ds.has_images:
            raise DataError(f"{root}: the {phase} split has no photos ({phase}_img/) to compare with: evaluate a "
                            "split that has them.")
        features = "cluster" if self.clusters is not None else "zero"
        for i in tqdm(range(len(ds)), disable=not progress, unit="img"):
            item = ds[i]
            inst = item.get("instance")
            fake = self.translate_tensor(item["label"][None], None if inst is None else inst[None],
                                         features=features, source=item["path"])[0]
            ids = None
            if label_set is not None:
                ids = item["label"][0].numpy().astype(np.int64)
                ids[(ids < 0) | (ids >= label_set.label_nc)] = IGNORE
            yield TestPair(pair_key(item["path"]), self.label_picture(item["label"]),
                           tensor_to_image(fake.float().cpu()), tensor_to_image(item["image"]), ids)

    def label_picture(self, label: torch.Tensor) -> Image.Image:
        """A label map [1, H, W] of ids in the label set's colours (generated ones without a label set); an RGB
        input [3, H, W] as it is."""
        if self.label_nc == 0:
            return tensor_to_image(label.float())
        palette = self.label_set if self.label_set is not None else \
            np.asarray(generate_palette(self.label_nc), dtype=np.uint8)
        return Image.fromarray(colorize(self._read_ids(label.cpu(), "label"), palette))

    @torch.no_grad()
    def style_variants(self, label: torch.Tensor, instance: torch.Tensor, inst_id: int, clusters: Sequence[int],
                       choices: Mapping[int, Any] | None = None, batch: int = 4) -> torch.Tensor:
        """Object `inst_id` under each cluster in `clusters` (the others as `choices` say): [K, 3, H, W].

        The label encoding is computed once and the variants run `batch` at a time (the editor's swatches).
        """
        label, instance = label.to(self.device), instance.to(self.device).long()
        cond = self.encoding.encode(label, instance if self.use_instance else None)
        outs = []
        for first in range(0, len(clusters), batch):
            ks = list(clusters[first:first + batch])
            feats = torch.cat([self.feature_channels(label, instance, features="cluster",
                                                     choices={**(choices or {}), inst_id: k}) for k in ks])
            if getattr(self.generator, "takes_label_maps", False):  # an exported graph with the encoding inside
                n = len(ks)
                outs.append(self.generator(label.expand(n, -1, -1, -1), instance.expand(n, -1, -1, -1)
                                           if self.use_instance else None, feats))
                continue
            x = torch.cat([cond.expand(len(ks), -1, -1, -1), feats.to(cond.dtype)], 1)
            outs.append(run_padded(self.generator, x))
        return torch.cat(outs)
