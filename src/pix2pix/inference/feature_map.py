"""The generator's instance-feature channels at inference: one vector per instance, painted over its pixels.

Each instance gets a chosen or random cluster centre of its class (`pix2pix.clusters`), the
encoding of a real image, or an explicit vector; classes without clusters get zeros (the
reference leaves them uninitialised).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..clusters import Clusters
from ..data.labels import index_map, instance_segments, segment_classes
from ..errors import ConfigError, DataError
from ..models import run_padded
from ..models.encoder import instance_mean_features

__all__ = ["FEATURE_MODES", "feature_map"]

FEATURE_MODES = ("cluster", "random", "encode", "zero")


def _choice_vector(value: Any, feat_num: int, inst_id: int) -> torch.Tensor | None:
    """None for a cluster index, else the explicit feature vector [feat_num]."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"choice for instance {inst_id} is {value!r}: give a cluster index or {feat_num} floats.")
    if isinstance(value, numbers.Integral) or (isinstance(value, torch.Tensor) and value.dim() == 0
                                               and not value.is_floating_point()):
        return None
    vec = torch.as_tensor(value, dtype=torch.float32).flatten()
    if vec.numel() != feat_num:
        raise ConfigError(f"the feature vector for instance {inst_id} has {vec.numel()} values; the model "
                          f"uses feat_num {feat_num}.")
    return vec


@torch.no_grad()
def feature_map(label: torch.Tensor | None, instance: torch.Tensor, clusters: Clusters | None = None,
                choices: Mapping[int, int | Sequence[float] | torch.Tensor] | None = None,
                feat_num: int | None = None, *, mode: str = "cluster", seed: int = 0,
                encoder: nn.Module | None = None, style_image: torch.Tensor | None = None,
                default_cluster: int = 0) -> torch.Tensor:
    """The generator's feature channels [B, feat_num, H, W] (float32, on the instance map's device).

    Every instance (per batch item) gets one vector, painted over all its pixels:

    - ``choices[instance_id]`` when given: an int picks that cluster of the instance's class
      (an error when the class has fewer clusters); a sequence of feat_num floats is used as is.
      Ids not present in the map are ignored.
    - otherwise by `mode`: ``"cluster"``: cluster ``default_cluster`` (modulo the class's cluster
      count; cluster 0 is the largest); ``"random"``: a uniformly random cluster, reproducible for
      `seed` (draws in order of batch item, then instance id); ``"encode"``: the encoder's
      instance-averaged features of `style_image` [B, 3, H, W] (the same size as the map);
      ``"zero"``: zeros.
    - instances of classes without clusters get zeros (cluster and random modes).

    An instance's class is the majority label id inside it (`label` [B, 1, H, W] ids; `label`
    None or RGB: the instance id, Cityscapes style).
    """
    if mode not in FEATURE_MODES:
        raise ConfigError(f"feature mode {mode!r}: use one of {', '.join(FEATURE_MODES)}.")
    if clusters is not None:
        if feat_num is not None:
            clusters.check_feat_num(feat_num)
        feat_num = clusters.feat_num
    if feat_num is None and encoder is not None:
        feat_num = int(getattr(encoder, "arch", {}).get("out_channels", 0)) or None
    if feat_num is None:
        raise ConfigError("feature_map needs feat_num (or clusters / an encoder that define it).")
    inst = index_map(instance, "instance")
    device = inst.device
    b, h, w = inst.shape
    lab = None
    if label is not None and not (label.dim() == 4 and label.shape[1] != 1):
        lab = index_map(label, "label").to(device)
        if lab.shape != inst.shape:
            raise DataError(f"the label map is {tuple(lab.shape[-2:])} but the instance map is {(h, w)}: "
                            "give maps of the same size.")
    seg, ids, counts = instance_segments(inst)
    n_seg = counts.numel()
    n_ids = ids.numel()
    seg_ids = ids.repeat(b)
    classes = segment_classes(seg, n_seg, ids, lab)
    table = torch.zeros(n_seg, feat_num, dtype=torch.float32, device=device)

    if mode in ("cluster", "random"):
        if clusters is None:
            raise ConfigError(f"feature mode {mode!r} needs clusters: compute them with `pix2pix features RUN` "
                              "(or use the 'encode' or 'zero' mode).")
        if clusters.classes:
            cls_ids = torch.tensor(clusters.classes, device=device)
            kmax = max(clusters.num_clusters(c) for c in clusters.classes)
            bank = torch.zeros(len(cls_ids), kmax, feat_num, device=device)
            nk = torch.zeros(len(cls_ids), dtype=torch.long, device=device)
            for i, c in enumerate(clusters.classes):
                bank[i, :clusters.num_clusters(c)] = clusters.centres[c].to(device)
                nk[i] = clusters.num_clusters(c)
            pos = torch.searchsorted(cls_ids, classes).clamp(max=len(cls_ids) - 1)
            has = cls_ids[pos] == classes
            n_c = torch.where(has, nk[pos], torch.zeros_like(pos))
            if mode == "random":
                gen = torch.Generator().manual_seed(int(seed))
                u = torch.rand(n_seg, generator=gen, dtype=torch.float64).to(device)
                pick = (u * n_c.double()).floor().long()
                pick = torch.minimum(pick, (n_c - 1).clamp(min=0))
            else:
                pick = torch.remainder(torch.full_like(n_c, int(default_cluster)), n_c.clamp(min=1))
            vec = bank[pos, pick]
            table = torch.where((has & (n_c > 0))[:, None], vec, table)
    elif mode == "encode":
        if encoder is None:
            raise ConfigError("feature mode 'encode' needs the model's encoder (a model trained with features).")
        if style_image is None:
            raise ConfigError("feature mode 'encode' needs a real image (style_image) to encode.")
        style = style_image.to(device, torch.float32)
        if style.dim() == 3:
            style = style[None]
        if style.shape[0] != b or style.shape[-2:] != (h, w):
            raise DataError(f"the style image is {tuple(style.shape)} but the instance map is {(b, h, w)}: "
                            "encode an image of the same size as the label map.")
        rows = instance_mean_features(run_padded(encoder, style).float(), inst)
        table[rows.batch_index * n_ids + torch.searchsorted(ids, rows.instance_id)] = rows.features

    if choices:
        seg_present = counts > 0
        for raw_id, value in choices.items():
            inst_id = int(raw_id)
            where = (seg_ids == inst_id) & seg_present
            if not bool(where.any()):
                continue
            vec = _choice_vector(value, feat_num, inst_id)
            if vec is None:
                index = int(value)
                if clusters is None:
                    raise ConfigError(f"a cluster was chosen for instance {inst_id}, but there are no clusters: "
                                      "run `pix2pix features` first, or give a feature vector.")
                for s in where.nonzero().flatten().tolist():
                    c = int(classes[s])
                    n = clusters.num_clusters(c)
                    if not 0 <= index < n:
                        raise ConfigError(f"instance {inst_id} (class {c}) has clusters 0..{n - 1}; cluster "
                                          f"{index} does not exist." if n else
                                          f"instance {inst_id} is of class {c}, which has no clusters.")
                    table[s] = clusters.centres[c][index].to(device)
            else:
                table[where] = vec.to(device)
    return table[seg.reshape(-1)].view(b, h, w, feat_num).permute(0, 3, 1, 2).contiguous()
