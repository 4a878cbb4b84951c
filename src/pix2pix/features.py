"""pix2pixHD instance features after training: encode every training instance, cluster them per class.

After a pix2pixHD model is trained with the feature encoder E (``model.use_features=true``),
the reference encodes every training instance, keeps the large ones and runs k-means (K = 10)
per class; at test time one cluster centre is painted into each instance of the feature map
(`pix2pix.inference.feature_map`). This module does the training-side part:

- `encode_instances(model, dataset)`: E on every training item (label, instance, photo) with
  the training preprocessing but no augmentation (centre crop, no flip); one feature vector
  per instance (E's output averaged inside the instance), with its class (the majority label id
  inside the instance, which is also right where an instance id does not follow Cityscapes'
  ``class * 1000 + k``) and where it came from (sample key, instance id).
  Small instances are skipped. Default: the reference's rule, keep an instance when its area is
  more than half of ``(H * W) // 32`` pixels, i.e. more than about 1/64 of the image (on a
  128x128 image: more than 256 pixels); ``min_pixels=N`` keeps instances of at least N pixels.
- `compute_clusters` / `cluster_features` -> `pix2pix.clusters.Clusters` (k-means per class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .clusters import Clusters, kmeans
from .data.for_model import model_dataset
from .data.label_dataset import LabelDataset
from .data.labels import index_map, instance_segments, segment_classes
from .errors import CheckpointError, ConfigError, DataError
from .io.model_card import ModelCard
from .io.model_dir import resolve_model_dir
from .io.pretrained import load_network
from .models import run_padded
from .models.encoder import instance_mean_features
from .runtime import as_device

__all__ = ["EncodedInstances", "cluster_features", "compute_clusters", "encode_instances", "load_encoder",
           "reference_min_pixels"]

_BLOCK = 32  # the reference's area unit: (H * W) // 32


def load_encoder(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """(encoder in eval mode, the model's card) of a pix2pixHD model trained with features."""
    card = ModelCard.read(model_dir)
    if card.encoder is None:
        raise ConfigError(f"{model_dir} has no feature encoder: train the pix2pixHD model with "
                          "model.use_features=true (--set use_features=true) to get instance features.")
    return load_network(model_dir, card, "encoder", device), card


def reference_min_pixels(height: int, width: int) -> float:
    """The reference's size rule: an instance is kept when its area exceeds this many pixels (~1/64 image)."""
    return 0.5 * ((height * width) // _BLOCK)


@dataclass
class EncodedInstances:
    """The encoded training instances, per class id."""

    feat_num: int
    features: dict[int, torch.Tensor]  # class -> [N_c, feat_num] float32 (CPU)
    pixels: dict[int, torch.Tensor]  # class -> [N_c] long, each instance's area
    sources: dict[int, list[tuple[str, int]]]  # class -> (sample key, instance id) per row
    skipped: int = 0  # instances below the size threshold
    min_pixels: int | None = None  # None: the reference's rule (see `reference_min_pixels`)
    items: int = 0  # dataset items encoded
    model_dir: str | None = None  # where the encoder came from (when loaded from a directory)
    data_root: str | None = None

    def counts(self) -> dict[int, int]:
        return {c: int(f.shape[0]) for c, f in sorted(self.features.items())}


def _instance_dataset(card: ModelCard, data: str | Path | LabelDataset, phase: str) -> LabelDataset:
    """`data` as a dataset of instances to encode: a given LabelDataset, or the folder opened as the model saw it."""
    dataset = data if isinstance(data, LabelDataset) else model_dataset(card, data, phase, test_time=False)
    assert isinstance(dataset, LabelDataset)
    if not dataset.use_instance:
        raise DataError(f"{dataset.root}: instance features need instance maps ({dataset.phase}_inst/); "
                        "this dataset was opened without them.")
    if not dataset.has_images:
        raise DataError(f"{dataset.root}: the {dataset.phase} split has no photos ({dataset.phase}_img/), "
                        "but encoding instance features needs the real images: add them or point --data at "
                        "the training data.")
    if dataset.train:
        raise ConfigError("encode the instances without augmentation: open the LabelDataset with train=False.")
    return dataset


@torch.no_grad()
def encode_instances(source: str | Path | tuple[nn.Module, ModelCard], dataset: str | Path | LabelDataset, *,
                     device: str | torch.device = "cpu", min_pixels: int | None = None, phase: str = "train",
                     batch_size: int = 8, progress: bool = False) -> EncodedInstances:
    """Run the trained encoder on every item of `dataset` and collect one feature vector per instance.

    `source`: a model (or run) directory, or ``(encoder, card)``. `dataset`: a `LabelDataset` opened
    with ``train=False`` or a dataset folder, opened with the model's preprocessing (``phase`` split, no
    flip, centre crop). Instances with ``min_pixels`` pixels or more are kept; by default the reference's
    rule (more than ``0.5 * (H * W // 32)`` pixels). The class of an instance is the majority label id inside it
    (label_nc 0 models: the instance id, Cityscapes style). Items of equal size are encoded
    `batch_size` at a time (the encoder has instance norm only, so batching does not change results).
    """
    dev = as_device(device)
    if isinstance(source, (str, Path)):
        model_dir: str | None = str(resolve_model_dir(source))
        encoder, card = load_encoder(model_dir, dev)
    else:
        (encoder, card), model_dir = source, None
    encoder = encoder.to(dev).eval()
    dataset = _instance_dataset(card, dataset, phase)
    label_nc = dataset.label_nc
    feat_num = int(encoder.arch["out_channels"])
    feats: dict[int, list[torch.Tensor]] = {}
    pixels: dict[int, list[torch.Tensor]] = {}
    sources: dict[int, list[tuple[str, int]]] = {}
    skipped = 0
    pending: list[tuple[str, dict[str, Any]]] = []

    def flush() -> None:
        nonlocal skipped
        keys = [k for k, _ in pending]
        image = torch.stack([it["image"] for _, it in pending]).to(dev)
        instance = torch.stack([it["instance"] for _, it in pending]).to(dev)
        raw = run_padded(encoder, image)
        if raw.shape[1] != feat_num:
            raise CheckpointError(f"the encoder gives {raw.shape[1]} channels, its card says {feat_num}.")
        rows = instance_mean_features(raw.float(), instance)
        h, w = instance.shape[-2:]
        keep = (rows.pixel_count >= min_pixels) if min_pixels is not None else \
            (rows.pixel_count.double() > reference_min_pixels(h, w))
        skipped += int((~keep).sum())
        label = torch.stack([it["label"] for _, it in pending]).to(dev) if label_nc > 0 else None
        seg, ids, counts = instance_segments(index_map(instance, "instance"))
        seg_classes = segment_classes(seg, counts.numel(), ids, None if label is None else index_map(label, "label"))
        classes = seg_classes[rows.batch_index * ids.numel() + torch.searchsorted(ids, rows.instance_id)]
        for c in torch.unique(classes[keep]).tolist():
            sel = keep & (classes == c)
            feats.setdefault(c, []).append(rows.features[sel].float().cpu())
            pixels.setdefault(c, []).append(rows.pixel_count[sel].cpu())
            sources.setdefault(c, []).extend(
                (keys[b], i) for b, i in zip(rows.batch_index[sel].tolist(), rows.instance_id[sel].tolist(),
                                             strict=True))
        pending.clear()

    for index in tqdm(range(len(dataset)), disable=not progress, unit="img"):
        item = dataset[index]
        if pending and (item["image"].shape != pending[0][1]["image"].shape or len(pending) >= batch_size):
            flush()  # consecutive items of one size share a batch (much faster than one by one on a CPU)
        pending.append((dataset.items[index].key, item))
    if pending:
        flush()
    encoded = EncodedInstances(
        feat_num=feat_num,
        features={c: torch.cat(v) for c, v in sorted(feats.items())},
        pixels={c: torch.cat(v) for c, v in sorted(pixels.items())},
        sources=dict(sorted(sources.items())), skipped=skipped, min_pixels=min_pixels, items=len(dataset),
        model_dir=model_dir, data_root=str(dataset.root))
    return encoded


def cluster_features(encoded: EncodedInstances, k: int = 10, *, seed: int = 0, iters: int = 100,
                     n_init: int = 10, meta: dict[str, Any] | None = None) -> Clusters:
    """k-means (k per class, fewer when a class has fewer distinct vectors) over encoded instances."""
    centres: dict[int, torch.Tensor] = {}
    counts: dict[int, list[int]] = {}
    for c, x in encoded.features.items():
        if x.shape[0] == 0:
            continue
        cen, assign = kmeans(x, k, seed=seed, iters=iters, n_init=n_init)
        centres[c] = cen.float()
        counts[c] = torch.bincount(assign, minlength=cen.shape[0]).tolist()
    info = {"model": encoded.model_dir, "data": encoded.data_root,
            "min_pixels": encoded.min_pixels if encoded.min_pixels is not None else "reference: > (H*W//32)/2",
            "seed": seed, "instances": sum(encoded.counts().values()), "skipped_small": encoded.skipped,
            "items": encoded.items, **(meta or {})}
    return Clusters(feat_num=encoded.feat_num, centres=centres, counts=counts, k=int(k), meta=info)


def compute_clusters(source: str | Path | tuple[nn.Module, ModelCard], dataset: str | Path | LabelDataset, *,
                     k: int = 10,
                     min_pixels: int | None = None, seed: int = 0, device: str | torch.device = "cpu",
                     iters: int = 100, n_init: int = 10, phase: str = "train",
                     progress: bool = False) -> Clusters:
    """`encode_instances` then `cluster_features`: the clusters of a trained model (not yet saved)."""
    encoded = encode_instances(source, dataset, device=device, min_pixels=min_pixels, phase=phase,
                               progress=progress)
    if not encoded.features:
        raise DataError(f"no instance was large enough to encode in {encoded.data_root} "
                        f"({encoded.skipped} skipped): lower --min-pixels.")
    card = ModelCard.read(resolve_model_dir(source)) if isinstance(source, (str, Path)) else source[1]
    label_set = card.label_set()
    meta = {"class_names": {str(c): label_set.class_names[c] if 0 <= c < label_set.label_nc else ""
                            for c in encoded.features}} if label_set is not None else {}
    return cluster_features(encoded, k, seed=seed, iters=iters, n_init=n_init, meta=meta)
