"""The segmentation score ("FCN-score"): segment generated images and compare with their input labels.

pix2pix scored Cityscapes labels->photo results by running a segmentation network (FCN-8s) on the
generated photos and comparing its prediction with the label map the photos were generated from;
pix2pixHD did the same with PSPNet. The same network on the real photos gives the ceiling (the
papers' "ground truth" row). Numbers, from a confusion matrix accumulated over the whole set:

- per-pixel accuracy: correctly labelled pixels / labelled pixels;
- mean class accuracy: the mean over classes of correct / true pixels of that class, over the
  classes present in the truth (a class never in the truth has no accuracy);
- mean IoU: the mean over classes of TP / (TP + FP + FN), over the classes present in the truth or
  the prediction.

So a class absent from both the prediction and the truth is left out of both means (the papers'
evaluation code takes ``nanmean`` of the per-class values the same way). Truth pixels with the
ignore id (the label set's void class) or an id outside the classes are not counted.

Any segmentation model plugs in through `SegmentationModel`: a callable (e.g. an ``nn.Module``)
mapping images [B, 3, H, W] with values in [-1, 1] (the generators' range) to class logits
[B, K, h, w]; h, w may differ from H, W (the logits are resized bilinearly to the label size).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.label_sets import IGNORE, LabelSet, read_label_ids
from ..errors import ConfigError, DataError

__all__ = ["IGNORE", "LoadedSegmenter", "SegmentationModel", "SegmentationScores", "confusion_matrix",
           "import_factory", "load_external_segmenter", "predict_classes", "read_label_ids", "scores_from_confusion",
           "segmentation_score"]



@runtime_checkable
class SegmentationModel(Protocol):
    """images [B, 3, H, W] in [-1, 1] -> logits [B, n_classes, h, w]."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------- scores


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, n_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """[n_classes, n_classes] int64 counts, rows = true class, columns = predicted class.

    Pixels whose truth is `ignore_index`, negative or >= n_classes are skipped.
    """
    if pred.shape != target.shape:
        raise DataError(f"prediction {tuple(pred.shape)} and label map {tuple(target.shape)} differ in size.")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target >= 0) & (target < n_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    pred, target = pred[keep], target[keep]
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= n_classes):
        raise DataError(f"predicted classes outside 0..{n_classes - 1}: the segmenter and the labels disagree on "
                        "the number of classes.")
    counts = torch.bincount(target * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).cpu()


@dataclass
class SegmentationScores:
    """The three numbers of the papers' tables, and the per-class values behind them (None: undefined)."""

    pixel_accuracy: float
    mean_class_accuracy: float
    mean_iou: float
    class_accuracy: list[float | None]
    class_iou: list[float | None]
    pixels: int
    confusion: list[list[int]] = field(repr=False)

    def to_dict(self, class_names: Iterable[str] | None = None) -> dict[str, Any]:
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.class_iou))]
        return {"pixel_accuracy": self.pixel_accuracy, "mean_class_accuracy": self.mean_class_accuracy,
                "mean_iou": self.mean_iou, "pixels": self.pixels,
                "per_class": {n: {"accuracy": a, "iou": i}
                              for n, a, i in zip(names, self.class_accuracy, self.class_iou, strict=True)},
                "confusion": self.confusion}


def scores_from_confusion(cm: torch.Tensor | np.ndarray) -> SegmentationScores:
    """Per-pixel accuracy, mean class accuracy and mean IoU of a confusion matrix (see the module doc)."""
    m = torch.as_tensor(np.asarray(cm), dtype=torch.float64)
    total = float(m.sum())
    if total == 0:
        raise DataError("no labelled pixels to score: every label pixel is ignored or outside the classes.")
    tp, truth, predicted = m.diag(), m.sum(1), m.sum(0)
    union = truth + predicted - tp
    acc = [float(tp[i] / truth[i]) if truth[i] > 0 else None for i in range(len(tp))]
    iou = [float(tp[i] / union[i]) if union[i] > 0 else None for i in range(len(tp))]
    defined_acc = [a for a in acc if a is not None]
    defined_iou = [v for v in iou if v is not None]
    return SegmentationScores(
        pixel_accuracy=float(tp.sum()) / total,
        mean_class_accuracy=sum(defined_acc) / len(defined_acc),
        mean_iou=sum(defined_iou) / len(defined_iou),
        class_accuracy=acc, class_iou=iou, pixels=int(total),
        confusion=[[int(v) for v in row] for row in np.asarray(cm).tolist()],
    )


# ----------------------------------------------------------------------------- models


@dataclass
class LoadedSegmenter:
    """A segmentation model with what scoring needs to know about it."""

    model: Callable[[torch.Tensor], torch.Tensor]
    label_set: LabelSet
    input_size: tuple[int, int] | None = None  # resize images to this (H, W) first (the training size)
    name: str = "segmenter"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def n_classes(self) -> int:
        return self.label_set.label_nc

    @property
    def ignore_index(self) -> int | None:
        return self.label_set.ignore_id


def import_factory(spec: str, flag: str = "--segmenter") -> Callable[[], Any]:
    """'package.module:factory' or 'path/to/file.py:factory' -> the factory callable."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"{flag} {spec!r}: give {'a segmenter directory or ' if flag == '--segmenter' else ''}"
                          "module:factory (e.g. my_models.seg:build or path/to/seg.py:build).")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"{flag} {spec!r}: {path} does not exist.")
        name = f"_pix2pix_segmenter_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"{flag} {spec!r}: cannot import {target} ({exc}); is it on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{flag} {spec!r}: {target} has no callable {attr!r}.")
    return factory


def load_external_segmenter(spec: str, label_set: LabelSet | None, device: torch.device | str = "cpu",
                            input_size: tuple[int, int] | None = None) -> LoadedSegmenter:
    """A model from `module:factory`. The factory takes no arguments and returns a `SegmentationModel`;
    its class ids are those of `label_set` (or of a ``label_set`` attribute on the model)."""
    model = import_factory(spec)()
    label_set = label_set or getattr(model, "label_set", None)
    if label_set is None:
        raise ConfigError(f"--segmenter {spec}: say which classes its outputs are with --label-set NAME or a "
                          "classes.json path (or give the model a `label_set` attribute).")
    if not callable(model):
        raise ConfigError(f"--segmenter {spec}: the factory returned a {type(model).__name__}, not a callable model.")
    device = torch.device(device)
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    return LoadedSegmenter(model, label_set, input_size, name=spec, device=device)


# ----------------------------------------------------------------------------- labels and prediction


@torch.no_grad()
def predict_classes(segmenter: LoadedSegmenter, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """images [B, 3, H, W] in [-1, 1] -> predicted classes [B, *size] (int64, CPU).

    Images go in at the segmenter's input size when it has one; logits are resized to `size`.
    The ignore class is never predicted.
    """
    x = images.to(segmenter.device, torch.float32)
    if segmenter.input_size is not None and tuple(x.shape[-2:]) != tuple(segmenter.input_size):
        x = F.interpolate(x, size=segmenter.input_size, mode="bilinear", align_corners=False, antialias=True)
    logits = segmenter.model(x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or logits.shape[0] != x.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"segmenter {segmenter.name} returned {got} for images {tuple(x.shape)}: a segmentation "
                          "model must return logits [B, n_classes, h, w].")
    if logits.shape[1] != segmenter.n_classes:
        raise ConfigError(f"segmenter {segmenter.name} returns {logits.shape[1]} classes but its label set "
                          f"{segmenter.label_set.name!r} has {segmenter.n_classes}: pass the matching --label-set.")
    logits = logits.float()
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    if segmenter.ignore_index is not None:
        logits[:, segmenter.ignore_index] = float("-inf")
    return logits.argmax(1).cpu()


def segmentation_score(model: LoadedSegmenter | SegmentationModel, images: Iterable[torch.Tensor],
                       labels: Iterable[torch.Tensor], label_set: LabelSet | None = None) -> SegmentationScores:
    """Score `images` (each [3, H, W] or [B, 3, H, W] in [-1, 1]) against `labels` (each [H, W] or [B, H, W]).

    `model` is a `LoadedSegmenter` or any `SegmentationModel` with `label_set` giving its classes.
    """
    if not isinstance(model, LoadedSegmenter):
        if label_set is None:
            raise ConfigError("segmentation_score needs label_set= to know the model's classes.")
        model = LoadedSegmenter(model, label_set, name=type(model).__name__)
    n = model.n_classes
    cm = torch.zeros(n, n, dtype=torch.int64)
    for img, lab in zip(images, labels, strict=True):
        img = img[None] if img.dim() == 3 else img
        lab = lab[None] if lab.dim() == 2 else lab
        pred = predict_classes(model, img, tuple(lab.shape[-2:]))
        cm += confusion_matrix(pred, lab, n, model.ignore_index)
    return scores_from_confusion(cm)
