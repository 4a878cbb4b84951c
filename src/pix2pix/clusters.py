"""k-means of instance features and the clusters file format (pix2pixHD's style clusters).

- `kmeans(x, k, seed)`: k-means++ initialisation and Lloyd iterations in torch, deterministic
  for a seed, k' = min(k, number of distinct points) clusters, ordered by size (largest first).
- `Clusters`: centres [K_c, feat_num] and counts per class, saved as ``clusters.safetensors``
  (one tensor ``class_{id}`` per class; no pickle) plus ``clusters.json`` (feat_num, k, classes,
  counts, the model they came from), both written atomically, by default into the model
  directory. `Clusters.load(path, feat_num=...)` checks the feature width against the model's.
- `cluster_purity(assignments, styles)`: how well clusters match known styles (the synthetic
  world's ``styles.json``).

`pix2pix.features` computes clusters from a trained encoder; `pix2pix.inference.feature_map`
paints them into the generator's feature channels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, ConfigError
from .io.atomic import atomic_path, write_json
from .io.model_card import CLUSTER_FILES

__all__ = ["CLUSTERS_JSON", "CLUSTERS_WEIGHTS", "Clusters", "cluster_purity", "cluster_purity_by_class", "kmeans"]

CLUSTERS_WEIGHTS, CLUSTERS_JSON = CLUSTER_FILES
CLUSTERS_FORMAT = 1


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


# ----------------------------------------------------------------------------- the clusters file


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
