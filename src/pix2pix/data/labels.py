"""Label-map tensor operations for pix2pixHD: one-hot encoding, instance boundaries, Cityscapes ids.

These run batched on whatever device the tensors live on (training and inference), so the
dataset stays light: it returns integer label and instance maps and the model code turns them
into the generator input with `one_hot` and `boundary_map`.

- `one_hot`: integer ids [B, 1, H, W] -> float one-hot [B, label_nc, H, W] by a vectorised
  scatter. An id outside 0..label_nc-1 is a DataError naming the file(s) and the ids (the
  reference crashes with a device-side assert instead), unless `ignore_index` maps such ids to
  an ignore class.
- `boundary_map`: 1 where any 4-neighbour has a different instance id, both sides of a boundary
  marked, image borders not marked (the reference's ``get_edges``).
- `cityscapes_instance_class`: Cityscapes instance ids (class * 1000 + k for instance classes,
  the class id itself below 1000) -> class ids.
- `instance_id(class_id, k)`: the Cityscapes id of the k-th object of a class (class * 1000 + k).
- `instance_segments`, `segment_classes`, `instance_classes`: per-instance bookkeeping of batched
  instance maps (which segment each pixel is in, the majority class of each), for the feature
  encoder's pooling and the inference-time feature map.
- `label_condition_map`: a constant label map for class-conditional (classic CGAN) generation.
- `map_label_ids`: stored ids -> the ids a model sees, the one rule every path that reads label maps
  applies (training, sample grids, translate, the editor, features, evaluation, `data check`): a label
  set's own "unlabeled" values (COCO-Stuff's 255) become its void id, then ids outside
  0..label_nc-1 become `ignore_index` when one is set (and stay, to be reported, when none is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import ConfigError, DataError

INSTANCE_ID_MULTIPLIER = 1000  # Cityscapes: instance id = class_id * 1000 + k

Ids = TypeVar("Ids", np.ndarray, torch.Tensor)

__all__ = [
    "INSTANCE_ID_MULTIPLIER",
    "boundary_map",
    "cityscapes_instance_class",
    "index_map",
    "instance_classes",
    "instance_id",
    "instance_segments",
    "label_condition_map",
    "map_label_ids",
    "one_hot",
    "segment_classes",
]


def map_label_ids(ids: Ids, label_nc: int, *, ignore_index: int | None = None, label_set: Any = None) -> Ids:
    """Stored label ids (array or tensor, any shape) -> the ids training and inference use (a new object).

    1. `label_set`'s ``unlabeled_ids`` (values outside its range that mean "unlabeled", e.g. COCO-Stuff's
       255) become its ``ignore_id``;
    2. with `ignore_index` (>= 0), every id outside 0..label_nc-1 becomes `ignore_index`.
    Ids still outside the range are left for `one_hot` (or `data check`) to report with the file name.
    """
    is_tensor = isinstance(ids, torch.Tensor)
    out = ids.clone() if is_tensor else np.array(ids, copy=True)
    unlabeled = tuple(getattr(label_set, "unlabeled_ids", ()) or ())
    if unlabeled and label_set.ignore_id is not None:
        values = torch.tensor(unlabeled, dtype=out.dtype, device=out.device) if is_tensor else np.asarray(unlabeled)
        hit = torch.isin(out, values) if is_tensor else np.isin(out, values)
        out[hit] = label_set.ignore_id
    if ignore_index is not None and int(ignore_index) >= 0 and label_nc > 0:
        out[(out < 0) | (out >= label_nc)] = int(ignore_index)
    return out


def _as_index_map(label: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] or [B, H, W] integer (or integer-valued float) ids -> int64 [B, 1, H, W]."""
    if not isinstance(label, torch.Tensor):
        raise TypeError(f"label must be a torch.Tensor, not {type(label).__name__}")
    if label.dim() == 3:
        label = label.unsqueeze(1)
    if label.dim() != 4 or label.shape[1] != 1:
        raise DataError(f"label map has shape {tuple(label.shape)}; expected [B, 1, H, W] or [B, H, W] "
                        "integer class ids (one channel, not one-hot or RGB).")
    if label.is_floating_point():
        label = label.round()
    return label.long()


def _describe_sources(source: str | Sequence[str], bad_items: list[int]) -> str:
    if isinstance(source, str):
        return source or "label map"
    names = [str(source[i]) for i in bad_items if i < len(source)]
    if not names:
        return "label map"
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return shown


def one_hot(label: torch.Tensor, label_nc: int, *, ignore_index: int | None = None,
            source: str | Sequence[str] = "", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer class ids [B, 1, H, W] (or [B, H, W]) -> one-hot [B, label_nc, H, W] of `dtype`.

    An id < 0 or >= label_nc is a DataError naming `source` (a file name, or one name per batch
    item, e.g. ``batch["path"]``: only the items holding bad ids are named) and the ids, unless
    `ignore_index` is given: such ids are then mapped to that class (0 <= ignore_index < label_nc).
    The check costs one device synchronisation per call; with `ignore_index` there is none.
    A negative `ignore_index` means none (the config's ``data.ignore_index = -1``).
    """
    if ignore_index is not None and int(ignore_index) < 0:
        ignore_index = None
    if not isinstance(label_nc, int) or isinstance(label_nc, bool) or label_nc < 1:
        raise ConfigError(f"label_nc {label_nc!r} is not a positive integer: set it to the number of label ids.")
    if ignore_index is not None and not 0 <= int(ignore_index) < label_nc:
        raise ConfigError(f"ignore_index {ignore_index} is outside 0..{label_nc - 1} (label_nc={label_nc}): "
                          "the ignore class must be one of the label_nc classes.")
    index = _as_index_map(label)
    bad = (index < 0) | (index >= label_nc)
    if ignore_index is not None:
        index = torch.where(bad, torch.full_like(index, int(ignore_index)), index)
    elif bool(bad.any()):
        values = torch.unique(index[bad]).tolist()
        bad_items = torch.nonzero(bad.flatten(1).any(1)).flatten().tolist()
        shown = ", ".join(str(v) for v in values[:10]) + (f" (and {len(values) - 10} more)" if len(values) > 10 else "")
        need = max(values) + 1
        fix = (f"set label_nc to at least {need}" if max(values) >= label_nc else "fix the label files")
        raise DataError(
            f"{_describe_sources(source, bad_items)}: label ids {shown} are outside 0..{label_nc - 1} "
            f"(label_nc={label_nc}): {fix}, or map ids outside the range to an ignore class with the "
            "ignore_index option."
        )
    b, _, h, w = index.shape
    out = torch.zeros((b, label_nc, h, w), dtype=dtype, device=index.device)
    return out.scatter_(1, index, 1.0)


def boundary_map(instance: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Instance ids [B, 1, H, W] (or [B, H, W]) -> [B, 1, H, W] with 1 where a 4-neighbour differs.

    Both pixels on either side of a boundary are marked; the image border itself is not
    (pix2pixHD's get_edges). Two touching objects of the same class differ in instance id, so the
    line between them is marked: that is what the map adds over the label map.
    """
    if instance.dim() == 3:
        instance = instance.unsqueeze(1)
    if instance.dim() != 4:
        raise DataError(f"instance map has shape {tuple(instance.shape)}; expected [B, 1, H, W] or [B, H, W].")
    edge = torch.zeros(instance.shape, dtype=torch.bool, device=instance.device)
    dx = instance[..., :, 1:] != instance[..., :, :-1]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    dy = instance[..., 1:, :] != instance[..., :-1, :]
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.to(dtype)


def cityscapes_instance_class(instance_ids):
    """Cityscapes instance ids -> class ids: id // 1000 where id >= 1000, else the id itself.

    Accepts an int, a numpy array or a tensor and returns the same kind.
    """
    m = INSTANCE_ID_MULTIPLIER
    if isinstance(instance_ids, torch.Tensor):
        return torch.where(instance_ids >= m, torch.div(instance_ids, m, rounding_mode="floor"), instance_ids)
    if isinstance(instance_ids, np.ndarray):
        return np.where(instance_ids >= m, instance_ids // m, instance_ids)
    value = int(instance_ids)
    return value // m if value >= m else value


def instance_id(class_id: int, k: int) -> int:
    """The Cityscapes instance id of object k (0, 1, ...) of class `class_id`: class_id * 1000 + k."""
    if not 0 <= int(k) < INSTANCE_ID_MULTIPLIER:
        raise DataError(f"object index {k} is outside 0..{INSTANCE_ID_MULTIPLIER - 1}: a class holds at most "
                        f"{INSTANCE_ID_MULTIPLIER} objects in Cityscapes ids.")
    return int(class_id) * INSTANCE_ID_MULTIPLIER + int(k)


def index_map(x: torch.Tensor, what: str) -> torch.Tensor:
    """[B, 1, H, W] or [B, H, W] ids (integer-valued floats accepted) -> long [B, H, W]."""
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3:
        raise DataError(f"the {what} map has shape {tuple(x.shape)}; expected [B, 1, H, W] or [B, H, W] ids.")
    if x.is_floating_point():
        x = x.round()
    return x.long()


def instance_segments(instance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each (batch item, instance id) as one segment of [B, H, W] ids: (per-pixel segment b * U + rank(id)
    [B, H, W], sorted unique ids [U], pixel count per segment [B * U])."""
    b = instance.shape[0]
    ids, inverse = torch.unique(instance, return_inverse=True)
    seg = inverse + torch.arange(b, device=instance.device).view(b, 1, 1) * ids.numel()
    return seg, ids, torch.bincount(seg.reshape(-1), minlength=b * ids.numel())


def segment_classes(seg: torch.Tensor, n_segments: int, ids: torch.Tensor,
                     label: torch.Tensor | None) -> torch.Tensor:
    """Class id of every segment [n_segments]: the majority label inside it, or the instance id's class."""
    if label is None:
        return cityscapes_instance_class(ids).repeat(n_segments // max(ids.numel(), 1))
    lab = label.clamp(min=0)
    n_labels = int(lab.max()) + 1 if lab.numel() else 1
    hist = torch.bincount((seg * n_labels + lab).reshape(-1), minlength=n_segments * n_labels)
    return hist.view(n_segments, n_labels).argmax(1)


def instance_classes(label: torch.Tensor | None, instance: torch.Tensor) -> dict[int, int]:
    """{instance id: class id} for one map: the majority label id inside each instance.

    `label` None (or an RGB label, label_nc 0) falls back to the id itself, Cityscapes style
    (id // 1000 for ids >= 1000). With a batch, the first item where an id occurs decides.
    """
    inst = index_map(instance, "instance")
    lab = None if label is None or (label.dim() == 4 and label.shape[1] != 1) else index_map(label, "label")
    seg, ids, counts = instance_segments(inst)
    classes = segment_classes(seg, counts.numel(), ids, lab)
    out: dict[int, int] = {}
    for s in (counts > 0).nonzero().flatten().tolist():
        out.setdefault(int(ids[s % ids.numel()]), int(classes[s]))
    return out


def label_condition_map(class_index: int, height: int, width: int, *,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """A constant label map LongTensor [1, height, width] holding `class_index` everywhere.

    This is how a class label (classic class-conditional GAN) feeds the pix2pixHD generator and
    discriminator: one-hot encoded it is a constant one-hot image.
    """
    if int(class_index) < 0:
        raise DataError(f"class index {class_index} is negative: class indices start at 0.")
    return torch.full((1, int(height), int(width)), int(class_index), dtype=torch.long, device=device)
