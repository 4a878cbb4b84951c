"""Evaluate generated images against real ones: image metrics, FID/KID, LPIPS and the segmentation score.

    result = evaluate_folders("real/", "fake/", labels_dir="labels/", segmenter=load_segmenter("seg/"))
    write_report(result, "eval/")                       # eval/metrics.json + eval/metrics.md
    result = evaluate_model("runs/00003-facades", "../shared/data/facades", "eval/", segmenter=...)

Files are paired by stem (a file without a partner is an error naming it); label maps by stem or
Cityscapes prefix. `evaluate_model` first translates a split of a dataset with a saved model (the
model's own preprocessing, deterministic: resized to the training size, centre-cropped, never
flipped) and writes the real, generated and label images beside the report, then evaluates those
folders the same way.

Per-pair metrics (L1, PSNR, SSIM on pixels in [0, 1]) are averaged over the pairs. FID and KID
(torchmetrics) need a feature extractor: the FID Inception network from local weights
(`pix2pix.evaluation.inception`) or any module given; without one they are reported missing with
the reason, never silently dropped.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..data.images import list_images, load_image, save_image
from ..data.label_dataset import pair_key
from ..data.label_sets import LabelSet
from ..data.layout import pair_by_stem
from ..errors import ConfigError, DataError
from ..inference import load_translator
from ..io.atomic import write_json, write_text
from ..runtime import as_device
from .distribution import FeatureSets, frechet_distance, kernel_distance, lpips_metric, lpips_unavailable
from .inception import find_inception_weights, inception_search_text, load_fid_inception
from .metrics import l1_error, psnr, ssim
from .segmentation import (
    LoadedSegmenter,
    confusion_matrix,
    predict_classes,
    read_label_ids,
    scores_from_confusion,
)

__all__ = ["TranslatedSplit", "evaluate_folders", "evaluate_model", "format_markdown", "pair_folders",
           "translate_split", "write_report"]

METRIC_INFO = {  # name -> (label, better)
    "l1": ("L1 (mean absolute error, pixels in [0, 1])", "lower"),
    "psnr": ("PSNR (dB)", "higher"),
    "ssim": ("SSIM", "higher"),
    "fid": ("FID", "lower"),
    "kid_mean": ("KID (mean over subsets)", "lower"),
    "kid_std": ("KID (std over subsets)", ""),
    "lpips": ("LPIPS", "lower"),
}


# ----------------------------------------------------------------------------- pairing


def pair_folders(real_dir: str | Path, fake_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(stem, real, fake) for every image, matched by file stem; any unmatched file is an error."""
    real_dir, fake_dir = Path(real_dir), Path(fake_dir)
    pairs, only_real, only_fake = pair_by_stem(list_images(real_dir), list_images(fake_dir))
    if only_real or only_fake:
        lines = [f"  {p} has no generated partner in {fake_dir}" for p in only_real]
        lines += [f"  {p} has no real partner in {real_dir}" for p in only_fake]
        raise DataError(f"{len(lines)} unpaired files: every generated image needs the real image of the same name; "
                        "add or remove files:\n" + "\n".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else ""))
    if not pairs:
        raise DataError(f"no images in {real_dir} and {fake_dir}.")
    return [(r.stem, r, f) for r, f in pairs]


def _match_labels(stems: list[str], labels_dir: Path) -> dict[str, Path]:
    by_key: dict[str, Path] = {}
    for p in list_images(labels_dir):
        by_key.setdefault(pair_key(p), p)
    missing = [s for s in stems if pair_key(s) not in by_key]
    if missing:
        raise DataError(f"{len(missing)} images have no label map in {labels_dir}, e.g. "
                        f"{', '.join(missing[:5])}: label maps are matched by file name.")
    return {s: by_key[pair_key(s)] for s in stems}


# ----------------------------------------------------------------------------- evaluation


def _uint8(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _to_signed(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1.0)


def _at_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """As in pix2pix's evaluation, an image is resized to its label map's size before segmenting."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class _Accumulator:
    l1: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)


def _feature_extractor(feature_extractor: nn.Module | None, inception_weights: str | Path | None, fid: bool,
                       device: torch.device) -> tuple[nn.Module | None, str]:
    """(extractor, its description) or (None, why FID/KID are missing)."""
    import importlib.util


    if not fid:
        return None, "skipped (--no-fid)"
    if importlib.util.find_spec("torchmetrics") is None:
        return None, "torchmetrics is not installed (pip install 'pix2pix[eval]')"
    if feature_extractor is not None:
        return feature_extractor.to(device).eval(), f"custom feature extractor ({type(feature_extractor).__name__})"
    weights = find_inception_weights(inception_weights)
    if weights is None:
        return None, (f"no FID Inception weights (pt_inception-2015-12-05-6726825d.pth) found; looked at "
                      f"{inception_search_text()}")
    return load_fid_inception(weights, device), f"FID InceptionV3 ({weights})"


def check_options(batch_size: int = 8, kid_subset_size: int = 1000, kid_subsets: int = 100, **_: Any) -> None:
    """The counts of an evaluation, checked before anything is translated or read (CLI flags named)."""
    for flag, value in (("--batch-size", batch_size), ("--kid-subset-size", kid_subset_size),
                        ("--kid-subsets", kid_subsets)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{flag} {value} ({flag[2:].replace('-', '_')}): use a whole number of at least 1.")


def evaluate_folders(real_dir: str | Path, fake_dir: str | Path, *, labels_dir: str | Path | None = None,
                     segmenter: LoadedSegmenter | None = None, feature_extractor: nn.Module | None = None,
                     inception_weights: str | Path | None = None, fid: bool = True, kid_subset_size: int = 1000,
                     kid_subsets: int = 100, lpips_net: str | None = "alex", batch_size: int = 8,
                     device: str | torch.device = "cpu", progress: bool = False,
                     notes: list[str] | None = None) -> dict[str, Any]:
    """Every metric for generated images in `fake_dir` against `real_dir`; the result is JSON-ready.

    The segmentation score needs `segmenter` and `labels_dir` (label maps the fakes were made from).
    """
    check_options(batch_size, kid_subset_size, kid_subsets)
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    pairs = pair_folders(real_dir, fake_dir)
    notes = list(notes or [])
    unavailable: dict[str, str] = {}
    if segmenter is not None and labels_dir is None:
        raise ConfigError("the segmentation score needs the label maps the images were made from: pass --labels DIR "
                          "(or --model RUN --data DIR, which takes them from the dataset).")
    labels = _match_labels([s for s, _, _ in pairs], Path(labels_dir)) if segmenter is not None else {}

    extractor, extractor_text = _feature_extractor(feature_extractor, inception_weights, fid, dev)
    features = FeatureSets(extractor) if extractor is not None else None
    if extractor is None:
        unavailable["fid"] = unavailable["kid"] = extractor_text
    lpips = None
    if lpips_net:
        reason = lpips_unavailable(lpips_net)
        if reason:
            unavailable["lpips"] = reason
        else:
            lpips = lpips_metric(lpips_net).to(dev)
    else:
        unavailable["lpips"] = "skipped (--no-lpips)"

    acc = _Accumulator()
    n = segmenter.n_classes if segmenter is not None else 0
    cm_fake = torch.zeros(n, n, dtype=torch.int64)
    cm_real = torch.zeros(n, n, dtype=torch.int64)
    resized = 0
    bar = tqdm(total=len(pairs), disable=not progress, unit="img")
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        reals, fakes = [], []
        for _, real_path, fake_path in chunk:
            real, fake = load_image(real_path, 3), load_image(fake_path, 3)
            if fake.size != real.size:
                fake = fake.resize(real.size, Image.BICUBIC)
                resized += 1
            reals.append(_uint8(real))
            fakes.append(_uint8(fake))
        for r, f in zip(reals, fakes, strict=True):  # per pair: sizes may differ between pairs
            rf, ff = r[None].double() / 255, f[None].double() / 255
            acc.l1.append(float(l1_error(ff, rf)))
            acc.psnr.append(float(psnr(ff, rf)))
            acc.ssim.append(float(ssim(ff, rf)))
        for group in _same_size_groups(reals, fakes):
            r_batch, f_batch = torch.stack([reals[i] for i in group]), torch.stack([fakes[i] for i in group])
            if features is not None:
                features.update(r_batch, real=True)
                features.update(f_batch, real=False)
            if lpips is not None:
                lpips.update(f_batch.float().div(255).to(dev), r_batch.float().div(255).to(dev))
        if segmenter is not None:
            labs = [read_label_ids(labels[stem], segmenter.label_set) for stem, _, _ in chunk]
            by_size: dict[tuple[int, int], list[int]] = {}
            for i, lab in enumerate(labs):
                by_size.setdefault(tuple(lab.shape), []).append(i)
            for size, group in by_size.items():
                truth = torch.stack([labs[i] for i in group])
                for images, cm in ((fakes, cm_fake), (reals, cm_real)):
                    x = torch.cat([_at_size(_to_signed(images[i])[None], size) for i in group])
                    cm += confusion_matrix(predict_classes(segmenter, x, size), truth, n, segmenter.ignore_index)
        bar.update(len(chunk))
    bar.close()
    if resized:
        notes.append(f"{resized} generated images differ in size from their real images and were resized "
                     "(bicubic) to the real size before comparing")

    count = len(pairs)
    metrics: dict[str, float | None] = {"l1": float(np.mean(acc.l1)), "ssim": float(np.mean(acc.ssim))}
    finite = [v for v in acc.psnr if math.isfinite(v)]
    metrics["psnr"] = float(np.mean(finite)) if finite else None
    if len(finite) < count:
        notes.append(f"{count - len(finite)} of {count} pairs are identical (infinite PSNR): "
                     + ("left out of the PSNR mean" if finite else "PSNR is infinite"))
    settings: dict[str, Any] = {"feature_extractor": extractor_text if extractor is not None else None}
    if features is not None:
        real_f, fake_f = features.tensors()
        if count < 2:
            unavailable["fid"] = unavailable["kid"] = f"FID and KID need at least 2 images; there is {count}"
        else:
            metrics["fid"] = frechet_distance(real_f, fake_f)
            subset = min(kid_subset_size, count)
            if subset < kid_subset_size:
                notes.append(f"KID subset size {kid_subset_size} exceeds the {count} images: clamped to {subset}")
            metrics["kid_mean"], metrics["kid_std"] = kernel_distance(real_f, fake_f, subset, kid_subsets)
            settings.update(kid_subset_size=subset, kid_subsets=kid_subsets)
            if count < 2048:
                notes.append(f"FID from {count} images is biased upwards (the features have 2048 dimensions for "
                             "Inception): compare FIDs only at equal image counts")
    if lpips is not None:
        metrics["lpips"] = float(lpips.compute())
        settings["lpips_net"] = lpips_net
    result: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "real": str(real_dir), "fake": str(fake_dir), "labels": str(labels_dir) if labels_dir else None,
        "images": count, "metrics": metrics, "unavailable": unavailable, "settings": settings, "notes": notes,
    }
    if segmenter is not None:
        names = segmenter.label_set.class_names
        result["segmentation"] = {
            "segmenter": segmenter.name, "label_set": segmenter.label_set.name, "classes": list(names),
            "ignore_id": segmenter.ignore_index,
            "generated": scores_from_confusion(cm_fake).to_dict(names),
            "real": scores_from_confusion(cm_real).to_dict(names),
        }
    return result


def _same_size_groups(reals: list[torch.Tensor], fakes: list[torch.Tensor]) -> Iterator[list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(reals):
        groups.setdefault(tuple(r.shape), []).append(i)
    yield from groups.values()


# ----------------------------------------------------------------------------- translating a split


@dataclass
class TranslatedSplit:
    real_dir: Path
    fake_dir: Path
    labels_dir: Path | None
    notes: list[str]


def _save_ids(ids: np.ndarray, path: Path) -> None:
    """An id map as an 8-bit PNG (16-bit when ids exceed 254); IGNORE is stored as the largest value."""
    big = ids.max(initial=0) > 254
    top = 65535 if big else 255
    arr = np.where(ids < 0, top, ids).astype(np.uint16 if big else np.uint8)
    save_image(Image.fromarray(arr), path)


def translate_split(model: str | Path, data_root: str | Path, out_dir: str | Path, *, phase: str = "test",
                    label_set: LabelSet | None = None, device: str | torch.device = "auto",
                    progress: bool = False) -> TranslatedSplit:
    """Translate `phase` of `data_root` with a saved model (either family) into out_dir/{real,fake}; with
    `label_set`, also write the label maps (the inputs, as class ids) into out_dir/labels."""
    translator = load_translator(model, device=device)
    out_dir = Path(out_dir)
    dirs = {k: out_dir / k for k in ("real", "fake", "labels")}
    count = 0
    for pair in translator.test_pairs(data_root, phase, label_set=label_set, progress=progress):
        save_image(pair.fake, dirs["fake"] / f"{pair.key}.png")
        save_image(pair.real, dirs["real"] / f"{pair.key}.png")
        if pair.label_ids is not None:
            _save_ids(pair.label_ids, dirs["labels"] / f"{pair.key}.png")
        count += 1
    notes = [f"translated {count} images of {Path(data_root)} ({phase}) with {translator.describe()}, "
             f"preprocessed as at test time"]
    inputs = translator.inputs()
    if inputs.features:
        notes.append("instance features: " + ("cluster 0 of each class" if inputs.clusters is not None
                                              else "zero (the model directory has no clusters)"))
    return TranslatedSplit(dirs["real"], dirs["fake"], dirs["labels"] if label_set is not None else None, notes)


def evaluate_model(model: str | Path, data_root: str | Path, out_dir: str | Path, *, phase: str = "test",
                   segmenter: LoadedSegmenter | None = None, device: str | torch.device = "auto",
                   progress: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Translate `phase` of `data_root` with `model` into out_dir, evaluate, write the report; returns the result."""
    check_options(**kwargs)
    dev = as_device(device)
    split = translate_split(model, data_root, out_dir, phase=phase,
                            label_set=segmenter.label_set if segmenter is not None else None, device=dev,
                            progress=progress)
    result = evaluate_folders(split.real_dir, split.fake_dir, labels_dir=split.labels_dir, segmenter=segmenter,
                              device=dev, progress=progress, notes=split.notes, **kwargs)
    result["model"] = str(model)
    result["data"] = str(data_root)
    result["phase"] = phase
    write_report(result, out_dir)
    return result


# ----------------------------------------------------------------------------- report


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def format_markdown(result: dict[str, Any]) -> str:
    """The report as a markdown page: metric table, segmentation score table, notes."""
    metrics, missing = result["metrics"], result.get("unavailable", {})
    subject = f"`{result['fake']}` against `{result['real']}`"
    if result.get("model"):
        subject = f"model `{result['model']}` on `{result['data']}` ({result.get('phase', 'test')})"
    lines = [f"# Evaluation of {subject}", "", f"{result['images']} image pairs; {result['created']}.", "",
             "| metric | value | |", "|---|---|---|"]
    for key, (label, better) in METRIC_INFO.items():
        group = "kid" if key.startswith("kid") else key
        if key in metrics:
            digits = 2 if key in ("psnr", "fid") else 4
            lines.append(f"| {label} | {_fmt(metrics[key], digits)} | {better + ' is better' if better else ''} |")
        elif key != "kid_std" and group in missing:
            same = group == "kid" and missing.get("fid") == missing[group]
            lines.append(f"| {label} | — | unavailable: {'as FID' if same else missing[group]} |")
        elif key == "psnr":
            lines.append(f"| {label} | — | identical images (infinite) |")
    seg = result.get("segmentation")
    if seg:
        lines += ["", "## Segmentation score", "",
                  f"Segmenter `{seg['segmenter']}`, label set `{seg['label_set']}` ({len(seg['classes'])} classes). "
                  "The generated images are segmented and compared with the label maps they were made from; the "
                  "real images give the ceiling. Mean class accuracy averages over classes present in the labels, "
                  "mean IoU over classes present in the labels or the prediction.", "",
                  "| images | per-pixel acc. | per-class acc. | class IoU |", "|---|---|---|---|"]
        for row, key in (("generated", "generated"), ("real (ceiling)", "real")):
            s = seg[key]
            lines.append(f"| {row} | {s['pixel_accuracy']:.3f} | {s['mean_class_accuracy']:.3f} | "
                         f"{s['mean_iou']:.3f} |")
        lines += ["", "| class | IoU generated | IoU real | accuracy generated | accuracy real |",
                  "|---|---|---|---|---|"]
        for name in seg["classes"]:
            g, r = seg["generated"]["per_class"][name], seg["real"]["per_class"][name]
            lines.append(f"| {name} | {_fmt(g['iou'], 3)} | {_fmt(r['iou'], 3)} | {_fmt(g['accuracy'], 3)} | "
                         f"{_fmt(r['accuracy'], 3)} |")
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    settings = {k: v for k, v in result.get("settings", {}).items() if v is not None}
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items())]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """out_dir/metrics.json and out_dir/metrics.md, each written atomically."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "metrics.json", out_dir / "metrics.md"
    write_json(json_path, result)
    write_text(md_path, format_markdown(result))
    return json_path, md_path
