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
- `label_condition_map`: a constant label map for class-conditional (classic CGAN) generation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError

INSTANCE_ID_MULTIPLIER = 1000  # Cityscapes: instance id = class_id * 1000 + k

__all__ = [
    "INSTANCE_ID_MULTIPLIER",
    "boundary_map",
    "cityscapes_instance_class",
    "label_condition_map",
    "one_hot",
]


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


def label_condition_map(class_index: int, height: int, width: int, *,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """A constant label map LongTensor [1, height, width] holding `class_index` everywhere.

    This is how a class label (classic class-conditional GAN) feeds the pix2pixHD generator and
    discriminator: one-hot encoded it is a constant one-hot image.
    """
    if int(class_index) < 0:
        raise DataError(f"class index {class_index} is negative: class indices start at 0.")
    return torch.full((1, int(height), int(width)), int(class_index), dtype=torch.long, device=device)
