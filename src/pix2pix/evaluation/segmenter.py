"""A segmentation network for the segmentation score, trained on real photos and their label maps.

    data = load_segmentation_data("../shared/data/facades", "train", get_label_set("facades"), size=64)
    net, info = train_segmenter(data, steps=2000)
    save_segmenter(net, "runs/seg-facades", data.label_set, data.size, info)
    seg = load_segmenter("runs/seg-facades")          # a LoadedSegmenter for segmentation_score

The network is the library's U-Net (as many down-samplings as the size allows, batch norm, no
dropout) producing `feature_channels` maps, then a 1x1 convolution to class logits; it is
trained with cross-entropy (unlabelled pixels ignored) and Adam. A segmenter directory holds
config.json (architecture, label set with names and palette, input size, training record) and
segmenter.safetensors, written atomically.

Data: pix2pix pairs (A|B images, or A/ and B/ folders), one side photos and the other label
maps, or pix2pixHD folders ({phase}_label/ + {phase}_img/, Cityscapes' gtFine/leftImg8bit).
Colour-coded label maps (facades) become class ids by the nearest palette colour, at full
resolution, before being resized with nearest-neighbour sampling; photos are resized bilinearly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import DataConfig
from ..data.images import convert_channels, load_image
from ..data.label_dataset import LabelDataset, open_map
from ..data.label_sets import LabelSet
from ..data.paired import PairedDataset
from ..errors import CheckpointError, ConfigError, DataError
from ..io.atomic import atomic_path, write_json
from ..models import build_from_arch, create_generator, run_padded
from ..nn.state import load_state_strict
from ..runtime import as_device
from .segmentation import IGNORE, LoadedSegmenter, load_external_segmenter, read_label_ids, segmentation_score

__all__ = ["SEGMENTER_WEIGHTS", "SegmentationData", "Segmenter", "build_segmenter", "is_segmenter_dir",
           "load_segmentation_data", "load_segmenter", "resolve_segmenter", "save_segmenter", "score_real_images",
           "train_segmenter"]

SEGMENTER_WEIGHTS = "segmenter.safetensors"
SEGMENTER_FORMAT = 1


class Segmenter(nn.Module):
    """backbone (a registry generator, images -> feature maps) + 1x1 conv head -> logits [B, n_classes, H, W]."""

    def __init__(self, backbone: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(int(backbone.arch["out_channels"]), n_classes, 1)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(run_padded(self.backbone, x))


def build_segmenter(n_classes: int, size: tuple[int, int], ngf: int = 32, feature_channels: int = 32) -> Segmenter:
    """A U-Net segmenter for images of `size` (H, W): down-samplings until the smaller side is 1 (2..8)."""
    downs = max(2, min(8, int(math.log2(max(1, min(size))))))
    backbone = create_generator("unet", 3, feature_channels, ngf=ngf, num_downs=downs, norm="batch", dropout=False)
    return Segmenter(backbone, n_classes)


# ----------------------------------------------------------------------------- storage


def save_segmenter(net: Segmenter, directory: str | Path, label_set: LabelSet, input_size: tuple[int, int],
                   training: dict[str, Any] | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(directory / SEGMENTER_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(directory / "config.json", {
        "format_version": SEGMENTER_FORMAT, "library": "pix2pix", "kind": "segmenter",
        "segmenter": {"backbone": net.backbone.arch, "n_classes": net.n_classes},
        "input": {"size": list(input_size), "range": "[-1, 1]"},
        "label_set": label_set.to_classes_json(), "training": training or {},
    })
    return directory


def is_segmenter_dir(path: str | Path) -> bool:
    return (Path(path) / SEGMENTER_WEIGHTS).is_file()


def _read_segmenter_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: train a segmenter with `pix2pix segmenter train`.") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}): retrain the segmenter.") from None
    if not isinstance(config, dict) or not isinstance(config.get("format_version"), int) \
            or config["format_version"] > SEGMENTER_FORMAT:
        raise CheckpointError(f"{path}: not a segmenter config of format {SEGMENTER_FORMAT} (a newer library's, or "
                              "edited): retrain the segmenter or upgrade pix2pix.")
    return config


def load_segmenter(directory: str | Path, device: str | torch.device = "cpu") -> LoadedSegmenter:
    directory = Path(directory)
    config = _read_segmenter_config(directory)
    if config.get("kind") != "segmenter":
        raise CheckpointError(f"{directory} is not a segmenter directory (no \"kind\": \"segmenter\" in its "
                              "config.json): train one with `pix2pix segmenter train`.")
    spec = config["segmenter"]
    net = Segmenter(build_from_arch(spec["backbone"]), int(spec["n_classes"]))
    weights = directory / SEGMENTER_WEIGHTS
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise CheckpointError(f"{weights} is missing or not a readable safetensors file ({exc}).") from None
    load_state_strict(net, state, str(weights))
    label_set = LabelSet.from_dict(config["label_set"], name=config["label_set"].get("name", "custom"),
                                   source=str(directory / "config.json"))
    dev = as_device(device)
    size = config.get("input", {}).get("size")
    return LoadedSegmenter(net.to(dev).eval(), label_set, tuple(size) if size else None, name=str(directory),
                           device=dev)


def resolve_segmenter(spec: str | Path, label_set: LabelSet | None = None,
                      device: str | torch.device = "cpu") -> LoadedSegmenter:
    """A segmenter directory, or `module:factory` / `file.py:factory` for an external model."""
    dev = as_device(device)
    if is_segmenter_dir(spec):
        seg = load_segmenter(spec, dev)
        if label_set is not None and label_set.label_nc != seg.n_classes:
            raise ConfigError(f"--label-set {label_set.name} has {label_set.label_nc} classes but the segmenter "
                              f"{spec} has {seg.n_classes}: drop --label-set (the segmenter carries its own).")
        return seg
    if Path(spec).is_dir():
        raise ConfigError(f"{spec} holds no {SEGMENTER_WEIGHTS}: train a segmenter with `pix2pix segmenter train` "
                          "or give module:factory.")
    return load_external_segmenter(str(spec), label_set, dev)


# ----------------------------------------------------------------------------- data


@dataclass
class SegmentationData:
    """Photos (uint8 [N, 3, H, W]) and class ids (int64 [N, H, W], IGNORE where unlabelled)."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    label_set: LabelSet
    source: str  # which side / folder held the labels, for messages
    side: str | None = None  # "A" or "B" for pix2pix pairs

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def float_images(self, index: torch.Tensor | slice) -> torch.Tensor:
        return self.images[index].float().div(127.5).sub(1.0)


def _palette_distance(img: Image.Image, label_set: LabelSet) -> float:
    """Mean distance of a picture's colours to the nearest palette colour (small for label maps)."""
    arr = np.asarray(img.convert("RGB").resize((64, 64), Image.NEAREST)).reshape(-1, 3).astype(np.int64)
    pal = label_set.palette_array.astype(np.int64)
    return float(np.sqrt(((arr[:, None, :] - pal[None]) ** 2).sum(-1).min(1)).mean())


def _target_size(first: tuple[int, int], size: int | None) -> tuple[int, int]:
    """(H, W): height `size`, width by the first image's aspect ratio; the first image's size without `size`."""
    w, h = first
    if size is None:
        return h, w
    return int(size), max(1, int(round(size * w / h)))


def _resized(photo: Image.Image, ids: np.ndarray, hw: tuple[int, int], source: str,
             fixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = hw
    if photo.size != (w, h):
        if fixed:
            raise DataError(f"{source} is {photo.width}x{photo.height} but the first pair is {w}x{h}: pass --size "
                            "to resize every pair to one size.")
        photo = photo.resize((w, h), Image.BILINEAR)
    if ids.shape != (h, w):
        ids = np.asarray(Image.fromarray(ids.astype(np.int32)).resize((w, h), Image.NEAREST)).astype(np.int64)
    img = torch.from_numpy(np.asarray(convert_channels(photo, 3, source)).copy()).permute(2, 0, 1).contiguous()
    return img, torch.from_numpy(ids)


def load_segmentation_data(root: str | Path, phase: str, label_set: LabelSet, size: int | None = None, *,
                           side: str = "auto", max_items: int = 0) -> SegmentationData:
    """Photos and label maps of a split, resized to height `size` (None: keep the size, which must be one).

    `side`: which half / folder of pix2pix pairs holds the label maps, "A", "B" or "auto" (the side whose
    colours lie nearest the label set's palette). pix2pixHD folders need no side.
    """
    root = Path(root)
    if side not in ("auto", "A", "B"):
        raise ConfigError(f"side {side!r}: use A, B or auto.")
    if (root / f"{phase}_label").is_dir() or (root / "gtFine" / phase).is_dir():
        ds = LabelDataset(root, phase, label_nc=label_set.label_nc, use_instance=False, preprocess="none",
                          flip=False, train=False, require_images=True, max_items=max_items)

        def pairs():
            for item in ds.items:
                yield item.key, load_image(item.image, 3), open_map(item.label), str(item.label)

        source = f"{phase}_label/"
        stream = pairs()
    else:
        ds = PairedDataset(root, phase, data=DataConfig(preprocess="none", flip=False, max_items=max_items),
                           train=False)
        if ds.layout == "colorization":
            raise DataError(f"{root} is a colorization dataset: it has no label maps to train a segmenter on.")
        if side == "auto":
            probe = [ds.load_pair(i) for i in range(min(8, len(ds)))]
            dist_a = float(np.mean([_palette_distance(a, label_set) for a, _ in probe]))
            dist_b = float(np.mean([_palette_distance(b, label_set) for _, b in probe]))
            if min(dist_a, dist_b) > 0.5 * max(dist_a, dist_b):
                raise DataError(f"{root}: cannot tell which side holds the {label_set.name} label maps (mean palette "
                                f"distance A {dist_a:.1f}, B {dist_b:.1f}): pass --side A or --side B.")
            side = "A" if dist_a < dist_b else "B"

        def pairs():
            for i, it in enumerate(ds.items):
                a, b = ds.load_pair(i)
                photo, lab = (b, a) if side == "A" else (a, b)
                yield Path(it.a).stem, photo, lab, str(it.a)

        source = f"side {side}"
        stream = pairs()
    images, labels, names = [], [], []
    hw: tuple[int, int] | None = None
    for name, photo, lab, src in stream:
        if lab.size != photo.size:
            raise DataError(f"{src}: the label map is {lab.width}x{lab.height} but the photo is "
                            f"{photo.width}x{photo.height}.")
        hw = hw or _target_size(photo.size, size)
        img, ids = _resized(photo.convert("RGB"), read_label_ids(lab, label_set).numpy(), hw, src, fixed=size is None)
        images.append(img)
        labels.append(ids)
        names.append(name)
    if not images:
        raise DataError(f"no pairs found in {root} ({phase}).")
    return SegmentationData(torch.stack(images), torch.stack(labels), names, label_set, source,
                            side if source.startswith("side") else None)


# ----------------------------------------------------------------------------- training


def check_training_options(*, steps: int = 2000, max_seconds: float | None = None, batch_size: int = 8,
                           lr: float = 1e-3, ngf: int = 32, max_items: int = 0) -> None:
    """The segmenter's training settings in range, checked before any data is read (CLI flags named)."""
    rules = (("--steps", steps, steps >= 1, "train for at least 1 step"),
             ("--batch-size", batch_size, batch_size >= 1, "use at least 1"),
             ("--ngf", ngf, ngf >= 1, "use at least 1 filter (default 32)"),
             ("--max-items", max_items, max_items >= 0, "use 0 (every pair) or more"),
             ("--lr", lr, math.isfinite(lr) and lr > 0, "use a finite learning rate above 0, e.g. 1e-3"),
             ("--max-seconds", max_seconds, max_seconds is None or (math.isfinite(max_seconds) and max_seconds > 0),
              "use a positive number of seconds (or leave it out)"))
    for flag, value, ok, fix in rules:
        if not ok:
            raise ConfigError(f"{flag} {value}: {fix}.")


def train_segmenter(data: SegmentationData, *, steps: int = 2000, max_seconds: float | None = None,
                    batch_size: int = 8, lr: float = 1e-3, ngf: int = 32, seed: int = 0,
                    device: str | torch.device = "cpu", log: Callable[[str], None] | None = None,
                    log_every: int = 100) -> tuple[Segmenter, dict[str, Any]]:
    """Cross-entropy training with random horizontal flips; stops after `steps` or `max_seconds`."""
    check_training_options(steps=steps, max_seconds=max_seconds, batch_size=batch_size, lr=lr, ngf=ngf)
    dev = as_device(device)
    torch.manual_seed(seed)
    net = build_segmenter(data.label_set.label_nc, data.size, ngf=ngf).to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = data.images.shape[0]
    start = time.perf_counter()
    loss_avg, step = float("nan"), 0
    while step < steps and (max_seconds is None or time.perf_counter() - start < max_seconds):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        x, y = data.float_images(idx), data.labels[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        loss = F.cross_entropy(net(x.to(dev)), y.to(dev), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = float(loss.detach())
        loss_avg = value if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * value
        if log and (step % log_every == 0 or step == 1):
            log(f"step {step:>6}  loss {loss_avg:.4f}  {time.perf_counter() - start:6.1f}s")
    seconds = time.perf_counter() - start
    net.eval()
    info = {"steps": step, "seconds": round(seconds, 1), "batch_size": batch_size, "lr": lr, "ngf": ngf,
            "seed": seed, "final_loss": round(loss_avg, 4), "images": n, "labels_from": data.source}
    return net, info


def score_real_images(segmenter: LoadedSegmenter, data: SegmentationData, batch_size: int = 16):
    """The segmentation score of the real photos against their labels (the ceiling for generated ones)."""
    batches = range(0, data.images.shape[0], batch_size)
    return segmentation_score(segmenter, (data.float_images(slice(i, i + batch_size)) for i in batches),
                              (data.labels[i:i + batch_size] for i in batches))
