"""pix2pixHD instance features: encode the training instances, cluster them per class, paint feature maps.

After a pix2pixHD model is trained with the feature encoder E (``model.use_features=true``),
the reference encodes every training instance, keeps the large ones, runs k-means (K = 10)
per class and, at test time, paints one cluster centre into every instance of the feature map
that is concatenated to the generator's input. This module does the same:

- `encode_instances(model, dataset)`: E on every training item (label, instance, photo) with
  the training preprocessing but no augmentation (centre crop, no flip); one feature vector
  per instance (E's output averaged inside the instance), with its class (the majority label id
  inside the instance, which is also right where an instance id does not follow Cityscapes'
  ``class * 1000 + k``) and where it came from (sample key, instance id).
  Small instances are skipped. Default: the reference's rule, keep an instance when its area is
  more than half of ``(H * W) // 32`` pixels, i.e. more than about 1/64 of the image (on a
  128x128 image: more than 256 pixels); ``min_pixels=N`` keeps instances of at least N pixels.
- `kmeans(x, k, seed)`: k-means++ initialisation and Lloyd iterations in torch, deterministic
  for a seed, k' = min(k, number of distinct points) clusters, ordered by size (largest first).
- `compute_clusters` / `cluster_features` -> `Clusters`: centres [K_c, feat_num] and counts per
  class, saved as ``clusters.safetensors`` (one tensor ``class_{id}`` per class; no pickle) plus
  ``clusters.json`` (feat_num, k, classes, counts, the model they came from), both written
  atomically, by default into the model directory. `Clusters.load(path, feat_num=...)` checks
  the feature width against the model's (a CheckpointError when they differ).
- `feature_map(label, instance, clusters, choices, ...)`: the generator's feature channels
  [B, feat_num, H, W]: per instance a chosen cluster, a random cluster (seeded), the encoding
  of a real image, or an explicit vector; instances of classes without clusters get zeros (the
  reference leaves them uninitialised).
- `cluster_purity(assignments, styles)`: how well clusters match known styles (the synthetic
  world's ``styles.json``).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .data.labels import cityscapes_instance_class
from .errors import CheckpointError, ConfigError, DataError
from .io.atomic import atomic_path, write_json
from .models import run_padded
from .models.encoder import instance_mean_features

__all__ = [
    "CLUSTERS_JSON",
    "CLUSTERS_WEIGHTS",
    "FEATURE_MODES",
    "Clusters",
    "EncodedInstances",
    "cluster_features",
    "cluster_purity",
    "cluster_purity_by_class",
    "compute_clusters",
    "encode_instances",
    "feature_map",
    "instance_classes",
    "kmeans",
    "load_encoder",
    "reference_min_pixels",
    "resolve_model_dir",
]

CLUSTERS_WEIGHTS = "clusters.safetensors"
CLUSTERS_JSON = "clusters.json"
CLUSTERS_FORMAT = 1
FEATURE_MODES = ("cluster", "random", "encode", "zero")
_BLOCK = 32  # the reference's area unit: (H * W) // 32


# ----------------------------------------------------------------------------- models


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory (config.json + weights), given it or a training run directory (RUN/model)."""
    path = Path(path)
    if not (path / "generator.safetensors").is_file() and (path / "model" / "config.json").is_file():
        return path / "model"
    return path  # reading its config.json says what is wrong when it is not a model directory


def load_encoder(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(encoder in eval mode, the model's config.json) of a pix2pixHD model trained with features."""
    from .io.pretrained import from_pretrained, read_config

    model_dir = resolve_model_dir(model_dir)
    config = read_config(model_dir)
    data = config.get("data", {})
    if "encoder" not in config or not data.get("use_features", False):
        raise ConfigError(f"{model_dir} has no feature encoder: train the pix2pixHD model with "
                          "model.use_features=true (--set use_features=true) to get instance features.")
    return from_pretrained(model_dir, kind="encoder", device=device), config


def reference_min_pixels(height: int, width: int) -> float:
    """The reference's size rule: an instance is kept when its area exceeds this many pixels (~1/64 image)."""
    return 0.5 * ((height * width) // _BLOCK)


# ----------------------------------------------------------------------------- instance classes


def _index_map(x: torch.Tensor, what: str) -> torch.Tensor:
    """[B, 1, H, W] or [B, H, W] ids (integer-valued floats accepted) -> long [B, H, W]."""
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3:
        raise DataError(f"the {what} map has shape {tuple(x.shape)}; expected [B, 1, H, W] or [B, H, W] ids.")
    if x.is_floating_point():
        x = x.round()
    return x.long()


def _segments(instance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-pixel segment b * U + rank(id) [B, H, W], sorted unique ids [U], pixel count per segment [B * U])."""
    b = instance.shape[0]
    ids, inverse = torch.unique(instance, return_inverse=True)
    seg = inverse + torch.arange(b, device=instance.device).view(b, 1, 1) * ids.numel()
    return seg, ids, torch.bincount(seg.reshape(-1), minlength=b * ids.numel())


def _segment_classes(seg: torch.Tensor, n_segments: int, ids: torch.Tensor,
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
    inst = _index_map(instance, "instance")
    lab = None if label is None or (label.dim() == 4 and label.shape[1] != 1) else _index_map(label, "label")
    seg, ids, counts = _segments(inst)
    classes = _segment_classes(seg, counts.numel(), ids, lab)
    out: dict[int, int] = {}
    for s in (counts > 0).nonzero().flatten().tolist():
        out.setdefault(int(ids[s % ids.numel()]), int(classes[s]))
    return out


# ----------------------------------------------------------------------------- encoding


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


def _open_dataset(config: dict[str, Any], data: Any, phase: str):
    from .data.label_dataset import LabelDataset

    if isinstance(data, LabelDataset):
        dataset = data
    else:
        d = config.get("data", {})
        ignore = d.get("ignore_index", -1)
        dataset = LabelDataset(data, phase, label_nc=int(d.get("label_nc", 35)), use_instance=True,
                               preprocess=d.get("preprocess", "none"), load_size=int(d.get("load_size", 1024)),
                               crop_size=int(d.get("crop_size", 512)), flip=False, train=False,
                               ignore_index=None if ignore is None or ignore < 0 else int(ignore),
                               require_images=False)
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
def encode_instances(source: str | Path | tuple[nn.Module, dict[str, Any]], dataset: Any, *,
                     device: str | torch.device = "cpu", min_pixels: int | None = None, phase: str = "train",
                     batch_size: int = 8, progress: bool = False) -> EncodedInstances:
    """Run the trained encoder on every item of `dataset` and collect one feature vector per instance.

    `source`: a model (or run) directory, or ``(encoder, config)`` with config the model's
    config.json dict. `dataset`: a `LabelDataset` opened with ``train=False`` or a dataset folder,
    opened with the model's preprocessing (``phase`` split, no flip, centre crop). Instances with
    ``min_pixels`` pixels or more are kept; by default the reference's rule (more than
    ``0.5 * (H * W // 32)`` pixels). The class of an instance is the majority label id inside it
    (label_nc 0 models: the instance id, Cityscapes style). Items of equal size are encoded
    `batch_size` at a time (the encoder has instance norm only, so batching does not change results).
    """
    from tqdm import tqdm

    from .runtime import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    if isinstance(source, (str, Path)):
        encoder, config = load_encoder(source, dev)
        model_dir = str(resolve_model_dir(source))
    else:
        encoder, config = source
        model_dir = None
    encoder = encoder.to(dev).eval()
    dataset = _open_dataset(config, dataset, phase)
    label_nc = int(config.get("data", {}).get("label_nc", dataset.label_nc))
    feat_num = int(getattr(encoder, "arch", {}).get("out_channels", config.get("data", {}).get("feat_num", 3)))
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
            raise CheckpointError(f"the encoder gives {raw.shape[1]} channels, the model config says {feat_num}.")
        rows = instance_mean_features(raw.float(), instance)
        h, w = instance.shape[-2:]
        keep = (rows.pixel_count >= min_pixels) if min_pixels is not None else \
            (rows.pixel_count.double() > reference_min_pixels(h, w))
        skipped += int((~keep).sum())
        label = torch.stack([it["label"] for _, it in pending]).to(dev) if label_nc > 0 else None
        seg, ids, counts = _segments(_index_map(instance, "instance"))
        seg_classes = _segment_classes(seg, counts.numel(), ids,
                                       None if label is None else _index_map(label, "label"))
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


# ----------------------------------------------------------------------------- k-means


def _kmeans_pp(points: torch.Tensor, weights: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on distinct weighted points: each pick ~ weight * squared distance (no repeats)."""
    first = int(torch.multinomial(weights, 1, generator=gen))
    centres = [points[first]]
    d2 = ((points - points[first]) ** 2).sum(1)
    for _ in range(1, k):
        p = weights * d2
        nxt = int(torch.multinomial(p / p.sum(), 1, generator=gen))
        centres.append(points[nxt])
        d2 = torch.minimum(d2, ((points - points[nxt]) ** 2).sum(1))
    return torch.stack(centres)


def _lloyd(points: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor,
           iters: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    k = centres.shape[0]
    assign = torch.full((points.shape[0],), -1, dtype=torch.long)
    for _ in range(max(1, iters)):
        d2 = torch.cdist(points, centres).pow(2)
        new = d2.argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
        mass = torch.zeros(k, dtype=points.dtype).index_add_(0, assign, weights)
        sums = torch.zeros_like(centres).index_add_(0, assign, points * weights[:, None])
        empty = mass == 0
        centres = torch.where(empty[:, None], centres, sums / mass.clamp(min=1e-300)[:, None])
        for e in empty.nonzero().flatten().tolist():  # rare: move an empty centre to the worst-fit point
            far = int(d2.gather(1, assign[:, None]).flatten().argmax())
            centres[e] = points[far]
            assign[far] = e
    d2 = torch.cdist(points, centres).pow(2)
    assign = d2.argmin(1)
    inertia = float((weights * d2.gather(1, assign[:, None]).flatten()).sum())
    return centres, assign, inertia


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100, *,
           n_init: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of `x` [N, D]: (centres [k', D], assignment [N]) with k' = min(k, distinct points).

    k-means++ seeding and Lloyd iterations (until the assignment stops changing or `iters`),
    repeated `n_init` times with seeds drawn from `seed`; the lowest inertia wins. Computed in
    float64 on the CPU on the distinct points (weighted by multiplicity), so the result depends
    only on the set of points and the seed, not on their order. Clusters are ordered by size,
    largest first (ties: in the order found). Centres come back in x's dtype and device.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N, D] tensor; got shape {tuple(x.shape)}.")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1; got {k}.")
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    xd = x.detach().to("cpu", torch.float64)
    points, inverse, mult = torch.unique(xd, dim=0, return_inverse=True, return_counts=True)
    weights = mult.to(torch.float64)
    k_eff = min(int(k), points.shape[0])
    gen = torch.Generator().manual_seed(int(seed))
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for _ in range(max(1, int(n_init))):
        init = _kmeans_pp(points, weights, k_eff, gen)
        result = _lloyd(points, weights, init, iters)
        if best is None or result[2] < best[2] - 1e-12:
            best = result
    assert best is not None
    centres, assign, _ = best
    sizes = torch.zeros(k_eff, dtype=torch.float64).index_add_(0, assign, weights)
    order = torch.sort(-sizes, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k_eff)
    return centres[order].to(device=x.device, dtype=out_dtype), rank[assign][inverse].to(x.device)


# ----------------------------------------------------------------------------- clusters


@dataclass
class Clusters:
    """k-means centres of the encoded instance features, per class id."""

    feat_num: int
    centres: dict[int, torch.Tensor]  # class id -> [K_c, feat_num] float32
    counts: dict[int, list[int]]  # class id -> instances per cluster
    k: int = 10
    meta: dict[str, Any] = field(default_factory=dict)  # model, data, min_pixels, seed, names, ...

    def __post_init__(self) -> None:
        self.centres = {int(c): v.detach().to("cpu", torch.float32).contiguous()
                        for c, v in sorted(self.centres.items())}
        self.counts = {int(c): [int(n) for n in v] for c, v in sorted(self.counts.items())}
        for c, v in self.centres.items():
            if v.dim() != 2 or v.shape[1] != self.feat_num or v.shape[0] == 0:
                raise CheckpointError(f"clusters of class {c} have shape {tuple(v.shape)}; expected "
                                      f"[K, {self.feat_num}] with K >= 1.")

    @property
    def classes(self) -> list[int]:
        return sorted(self.centres)

    def num_clusters(self, class_id: int) -> int:
        """Clusters of `class_id` (0 when the class has none)."""
        v = self.centres.get(int(class_id))
        return 0 if v is None else int(v.shape[0])

    def check_feat_num(self, feat_num: int, source: str = "the model") -> None:
        if int(feat_num) != self.feat_num:
            where = self.meta.get("path", "these clusters")
            raise CheckpointError(f"{where} hold {self.feat_num}-channel features but {source} uses feat_num "
                                  f"{feat_num}: recompute them with `pix2pix features` for this model.")

    def assign(self, class_id: int, features: torch.Tensor) -> torch.Tensor:
        """Nearest cluster of each row of `features` [N, feat_num] among `class_id`'s centres [N]."""
        centres = self.centres.get(int(class_id))
        if centres is None:
            raise ConfigError(f"class {class_id} has no clusters.")
        return torch.cdist(features.to("cpu", torch.float64), centres.double()).argmin(1)

    # -- files ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write clusters.safetensors and clusters.json into `directory` (atomically); returns the weights path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / CLUSTERS_WEIGHTS
        tensors = {f"class_{c}": v for c, v in self.centres.items()}
        if not tensors:  # safetensors needs no tensors, but keep a well-formed file for any reader
            tensors = {"empty": torch.zeros(0, self.feat_num)}
        with atomic_path(weights) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "feat_num": str(self.feat_num),
                                                   "k": str(self.k)})
        meta = {k: v for k, v in self.meta.items() if k != "path"}
        write_json(directory / CLUSTERS_JSON, {
            "format_version": CLUSTERS_FORMAT, "feat_num": self.feat_num, "k": self.k, "classes": self.classes,
            "counts": {str(c): n for c, n in self.counts.items()}, **meta})
        return weights

    @classmethod
    def load(cls, path: str | Path, feat_num: int | None = None) -> Clusters:
        """Read clusters from a directory, clusters.safetensors or clusters.json (safetensors: no code runs).

        With `feat_num`, clusters of another feature width are a CheckpointError.
        """
        path = Path(path)
        if path.is_dir():
            path = path / CLUSTERS_WEIGHTS
        if path.suffix == ".json":  # the metadata file names its weights beside it
            weights = path.with_name(CLUSTERS_WEIGHTS) if path.name == CLUSTERS_JSON else path.with_suffix(
                ".safetensors")
        else:
            weights = path
        info_path = weights.with_name(CLUSTERS_JSON) if weights.name == CLUSTERS_WEIGHTS else \
            weights.with_suffix(".json")
        if not weights.is_file():
            raise CheckpointError(f"{weights} does not exist: compute clusters with `pix2pix features RUN --data "
                                  "DIR` (they are written next to the model).")
        try:
            tensors = load_file(str(weights))
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as f:
                header = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{weights} is not a readable safetensors file ({exc}).") from None
        info: dict[str, Any] = {}
        if info_path.is_file():
            try:
                info = json.loads(info_path.read_text())
            except ValueError as exc:
                raise CheckpointError(f"{info_path} is not valid JSON ({exc}).") from None
            if int(info.get("format_version", 0)) > CLUSTERS_FORMAT:
                raise CheckpointError(f"{info_path} has format version {info['format_version']}, newer than "
                                      f"this library's {CLUSTERS_FORMAT}: upgrade pix2pix.")
        centres: dict[int, torch.Tensor] = {}
        for name, t in tensors.items():
            if name == "empty":
                continue
            if not name.startswith("class_") or not name[6:].lstrip("-").isdigit():
                raise CheckpointError(f"{weights}: unexpected tensor {name!r} (expected class_<id>).")
            centres[int(name[6:])] = t
        if "feat_num" in info:
            stored = int(info["feat_num"])
        elif "feat_num" in header:
            stored = int(header["feat_num"])
        elif centres:
            stored = int(next(iter(centres.values())).shape[1])
        else:
            stored = int(tensors["empty"].shape[1]) if "empty" in tensors else 0
        raw_counts = info.get("counts", {})
        counts = {c: [int(n) for n in raw_counts.get(str(c), [0] * int(v.shape[0]))] for c, v in centres.items()}
        for c, n in counts.items():
            if len(n) != centres[c].shape[0]:
                raise CheckpointError(f"{info_path}: class {c} lists {len(n)} counts for {centres[c].shape[0]} "
                                      "centres: the two files do not belong together; recompute the clusters.")
        meta = {k: v for k, v in info.items() if k not in ("format_version", "feat_num", "k", "classes", "counts")}
        meta["path"] = str(weights)
        k = int(info.get("k", header.get("k", max((v.shape[0] for v in centres.values()), default=10))))
        clusters = cls(feat_num=stored, centres=centres, counts=counts, k=k, meta=meta)
        if feat_num is not None:
            clusters.check_feat_num(feat_num)
        return clusters


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


def compute_clusters(source: str | Path | tuple[nn.Module, dict[str, Any]], dataset: Any, *, k: int = 10,
                     min_pixels: int | None = None, seed: int = 0, device: str | torch.device = "cpu",
                     iters: int = 100, n_init: int = 10, phase: str = "train",
                     progress: bool = False) -> Clusters:
    """`encode_instances` then `cluster_features`: the clusters of a trained model (not yet saved)."""
    encoded = encode_instances(source, dataset, device=device, min_pixels=min_pixels, phase=phase,
                               progress=progress)
    if not encoded.features:
        raise DataError(f"no instance was large enough to encode in {encoded.data_root} "
                        f"({encoded.skipped} skipped): lower --min-pixels.")
    names = None
    if isinstance(source, (str, Path)):
        from .io.pretrained import read_config

        label_set = read_config(resolve_model_dir(source)).get("data", {}).get("label_set") or {}
    else:
        label_set = source[1].get("data", {}).get("label_set") or {}
    if label_set.get("classes"):
        names = {str(c["id"]): c.get("name", "") for c in label_set["classes"]}
    meta = {"class_names": {str(c): names.get(str(c), "") for c in encoded.features}} if names else {}
    return cluster_features(encoded, k, seed=seed, iters=iters, n_init=n_init, meta=meta)


# ----------------------------------------------------------------------------- feature maps


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
    inst = _index_map(instance, "instance")
    device = inst.device
    b, h, w = inst.shape
    lab = None
    if label is not None and not (label.dim() == 4 and label.shape[1] != 1):
        lab = _index_map(label, "label").to(device)
        if lab.shape != inst.shape:
            raise DataError(f"the label map is {tuple(lab.shape[-2:])} but the instance map is {(h, w)}: "
                            "give maps of the same size.")
    seg, ids, counts = _segments(inst)
    n_seg = counts.numel()
    n_ids = ids.numel()
    seg_ids = ids.repeat(b)
    classes = _segment_classes(seg, n_seg, ids, lab)
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


# ----------------------------------------------------------------------------- purity


def _as_class_dict(x: Mapping[int, Sequence[int]] | Sequence[int] | torch.Tensor) -> dict[Any, list[int]]:
    if isinstance(x, Mapping):
        return {c: [int(v) for v in (s.tolist() if isinstance(s, torch.Tensor) else s)] for c, s in x.items()}
    return {None: [int(v) for v in (x.tolist() if isinstance(x, torch.Tensor) else x)]}


def cluster_purity_by_class(assignments: Mapping[int, Sequence[int]] | Sequence[int],
                            true_styles: Mapping[int, Sequence[int]] | Sequence[int]) -> dict[Any, tuple[int, int]]:
    """Per class: (instances whose cluster's majority style is their own style, instances)."""
    a, s = _as_class_dict(assignments), _as_class_dict(true_styles)
    if set(a) != set(s):
        raise ValueError(f"assignments and styles cover different classes: {sorted(a, key=str)} vs "
                         f"{sorted(s, key=str)}.")
    out: dict[Any, tuple[int, int]] = {}
    for c in a:
        if len(a[c]) != len(s[c]):
            raise ValueError(f"class {c}: {len(a[c])} assignments but {len(s[c])} styles.")
        table: dict[int, dict[int, int]] = {}
        for cluster, style in zip(a[c], s[c], strict=True):
            row = table.setdefault(cluster, {})
            row[style] = row.get(style, 0) + 1
        out[c] = (sum(max(row.values()) for row in table.values()), len(a[c]))
    return out


def cluster_purity(assignments: Mapping[int, Sequence[int]] | Sequence[int],
                   true_styles: Mapping[int, Sequence[int]] | Sequence[int]) -> float:
    """Fraction of instances whose cluster's majority style equals their own style, pooled over classes.

    Both arguments are ``{class id: [one value per instance]}`` (or flat sequences for one
    class). 1.0 means every cluster holds one style (more clusters than styles can still be
    pure; swap the arguments for the converse: does each style sit in one cluster). NaN when empty.
    """
    per = cluster_purity_by_class(assignments, true_styles)
    total = sum(n for _, n in per.values())
    return float("nan") if total == 0 else sum(g for g, _ in per.values()) / total

