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

`load_translator(dir)` returns a `Translator` or a `LabelTranslator` by the saved model's family.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.images import convert_channels, image_to_tensor, load_image, save_image, tensor_to_image
from ..data.label_inputs import LabelInputs
from ..errors import CheckpointError, ConfigError, DataError, Pix2PixError
from ..features import CLUSTERS_WEIGHTS, FEATURE_MODES, Clusters, feature_map, load_encoder, resolve_model_dir
from ..io.pretrained import from_pretrained, read_config
from ..models import run_padded
from ..runtime import resolve_device

MapLike = Image.Image | np.ndarray | torch.Tensor

__all__ = ["LabelTranslator", "file_seed", "load_translator", "match_by_key"]


def _ids_from_array(arr: np.ndarray, what: str, palette: np.ndarray | None, source: str) -> np.ndarray:
    """[H, W] ids (or a gray / palette-coloured [H, W, 3] map) -> int64 [H, W]."""
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            arr = rgb[..., 0]
        elif palette is not None and what == "label":
            from ..data.label_sets import nearest_palette_ids

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


def match_by_key(label_paths: Sequence[Path], folder: str | Path, what: str,
                 skip: Any = None) -> dict[Path, Path]:
    """For each label file, the file in `folder` with the same stem or Cityscapes prefix (`pair_key`)."""
    from ..data.images import list_images
    from ..data.label_dataset import pair_key

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist.")
    by_key: dict[str, Path] = {}
    for p in list_images(folder):
        if skip is not None and skip.search(p.stem):
            continue
        by_key.setdefault(pair_key(p), p)
    missing = [p for p in label_paths if pair_key(p) not in by_key]
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:10]) + ("\n  ..." if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} label maps have no {what} in {folder} (matched by file name or "
                        f"Cityscapes prefix):\n{shown}")
    return {p: by_key[pair_key(p)] for p in label_paths}


def file_seed(seed: int, key: str) -> int:
    """The random-feature seed of one file: depends on the seed and the file's key, not the file order."""
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**63)


class LabelTranslator:
    """A pix2pixHD generator (+ feature encoder and clusters) and the label encoding it was trained with."""

    def __init__(self, generator: nn.Module, data: Mapping[str, Any], *, encoder: nn.Module | None = None,
                 clusters: Clusters | None = None, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.data = dict(data)
        self.label_nc = int(self.data.get("label_nc", 35))
        ignore = self.data.get("ignore_index", -1)
        self.use_instance = bool(self.data.get("use_instance", True))
        self.use_features = bool(self.data.get("use_features", False))
        self.feat_num = int(self.data.get("feat_num", 3))
        self.inputs = LabelInputs(self.label_nc, self.use_instance,
                                  None if ignore is None or int(ignore) < 0 else int(ignore))
        self.generator = generator.to(self.device).eval()
        self.encoder = encoder.to(self.device).eval() if encoder is not None else None
        expected = self.inputs.channels + (self.feat_num if self.use_features else 0)
        got = getattr(generator, "arch", {}).get("in_channels")
        if got is not None and int(got) != expected:
            raise CheckpointError(f"the generator takes {got} input channels, but the saved data settings give "
                                  f"{expected} (label_nc {self.label_nc}, instance {self.use_instance}, features "
                                  f"{self.feat_num if self.use_features else 0}): the model directory is inconsistent.")
        if clusters is not None and self.use_features:
            clusters.check_feat_num(self.feat_num)
        self.clusters = clusters
        label_set = self.data.get("label_set")
        self.palette = None
        if label_set and label_set.get("classes"):
            from ..data.label_sets import LabelSet

            self.palette = LabelSet.from_dict(label_set).palette_array

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "auto",
                        clusters: Clusters | str | Path | None = None) -> LabelTranslator:
        """Load G (and E when the model uses features, and clusters.safetensors from the directory if there).

        `clusters`: a `Clusters`, a path to clusters (directory or file), or None for the model's own.
        """
        directory = resolve_model_dir(directory)
        config = read_config(directory)
        data = config.get("data", {})
        if data.get("family") != "pix2pixhd":
            raise CheckpointError(f"{directory} holds a {data.get('family', 'pix2pix')} model, not pix2pixHD: "
                                  "use Translator (or load_translator, which picks the right one).")
        dev = resolve_device(device) if isinstance(device, str) else device
        generator = from_pretrained(directory, device=dev)
        encoder = None
        use_features = bool(data.get("use_features", False))
        if use_features and "encoder" in config:
            encoder, _ = load_encoder(directory, dev)
        feat_num = int(data.get("feat_num", 3))
        if isinstance(clusters, (str, Path)):
            clusters = Clusters.load(clusters, feat_num=feat_num if use_features else None)
        elif clusters is None and use_features and (directory / CLUSTERS_WEIGHTS).is_file():
            clusters = Clusters.load(directory, feat_num=feat_num)
        translator = cls(generator, data, encoder=encoder, clusters=clusters, device=dev)
        translator.model_dir = directory
        return translator

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
            return t.to(self.device).long(), True
        if isinstance(x, Image.Image):
            arr = _pil_ids(x, what, self.palette, source)
        elif isinstance(x, np.ndarray):
            arr = _ids_from_array(x, what, self.palette, source)
        else:
            raise Pix2PixError(f"cannot read a {type(x).__name__} as a {what} map: pass a PIL image, a numpy "
                               "array or a tensor.")
        return torch.from_numpy(arr)[None, None].to(self.device), False

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
        cond = self.inputs.encode(label, instance if self.use_instance else None, source=source)
        if self.use_features:
            assert instance is not None
            feats = self.feature_channels(label, instance, features=features, choices=choices,
                                          style_image=style_image, seed=seed, cluster=cluster)
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

    def translate_files(self, label_paths: Sequence[str | Path], out_dir: str | Path,
                        instance_dir: str | Path | None = None, *, features: str = "cluster",
                        choices: Mapping[int, Any] | None = None, cluster: int = 0,
                        style_dir: str | Path | None = None, seed: int = 0,
                        progress: bool = False) -> list[Path]:
        """Translate label files into `out_dir` (PNG named by the file's stem, minus a Cityscapes suffix).

        Instance maps (and, for features='encode', real images from `style_dir`) are matched to the
        label files by stem or Cityscapes prefix. Without `instance_dir`, a model using instances
        takes each label map as its own instance map. Random features use `file_seed(seed, key)`
        per file, so a file's result does not depend on the other files.
        """
        from tqdm import tqdm

        from ..data.label_dataset import _NOT_IMAGE, _NOT_INSTANCE, open_map, pair_key

        paths = [Path(p) for p in label_paths]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        instances = match_by_key(paths, instance_dir, "instance map", _NOT_INSTANCE) if instance_dir else {}
        styles = match_by_key(paths, style_dir, "style image", _NOT_IMAGE) if style_dir else {}
        if features == "encode" and self.use_features and not style_dir:
            raise ConfigError("features='encode' needs real images to encode: pass style_dir (--style-images DIR).")
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


def load_translator(directory: str | Path, **kwargs: Any):
    """A `Translator` (pix2pix) or `LabelTranslator` (pix2pixHD) for the model saved in `directory`.

    Keyword arguments go to the chosen class's `from_pretrained` (device, paper_mode, clusters).
    """
    from .translator import Translator

    directory = resolve_model_dir(directory)
    family = read_config(directory).get("data", {}).get("family", "pix2pix")
    if family == "pix2pixhd":
        if "paper_mode" in kwargs:
            if kwargs.pop("paper_mode"):
                raise ConfigError("paper_mode applies to pix2pix models (dropout / batch norm); this is pix2pixHD.")
        return LabelTranslator.from_pretrained(directory, **kwargs)
    if kwargs.pop("clusters", None) is not None:
        raise ConfigError("clusters apply to pix2pixHD models with the feature encoder; this is a pix2pix model.")
    return Translator.from_pretrained(directory, **kwargs)
