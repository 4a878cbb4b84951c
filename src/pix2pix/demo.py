"""The end-to-end demo: both systems on the synthetic street world, on the CPU, in a few minutes.

    pix2pix demo -o demo

No download: the synthetic world (label maps, instance maps, photos) is generated, then

1. pix2pix (colour-coded label map -> photo, preset `DEMO_PIX2PIX`) and pix2pixHD (label ids +
   instance boundaries + per-instance style features -> photo, preset `DEMO_HD`) are trained;
2. the pix2pixHD model's instance features are clustered (k-means per class, as
   `pix2pix features` does) and one test label map is rendered in each style cluster;
3. both are scored on the test split: L1, PSNR, SSIM against the real photos, and the
   segmentation score (a small segmenter trained on the real training photos segments the
   generated ones; the real test photos give the ceiling);
4. demo/report.html shows the samples, the style strip, the scores and the loss curves.

The step counts are fixed (so a run is reproducible for a seed), each learning-rate schedule is
compressed to them (half constant, half linear decay to zero, the papers' proportions), and each
training also has a time cap (so the demo keeps its few minutes on a slower machine). Both presets
train in bf16 where the CPU computes it natively (`train.precision=auto`: 1.2x the pix2pix steps and
1.6x the pix2pixHD steps per second on the development VM, benchmarks/quality.md), in fp32 elsewhere.
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data.for_model import model_dataset
from .data.images import image_to_tensor, save_image, tensor_to_image
from .data.label_sets import LabelSet
from .data.synthetic import CAR, INSTANCE_CLASSES, PERSON, write_synthetic_dataset
from .evaluation import l1_error, psnr, ssim
from .evaluation.segmentation import segmentation_score
from .evaluation.segmenter import LoadedSegmenter, load_segmentation_data, score_real_images, train_segmenter
from .features import compute_clusters
from .inference import BaseTranslator, LabelTranslator, load_translator
from .io.atomic import write_json, write_text
from .presets import get_preset
from .report import image_grid, read_stats
from .training.schedules import epochs_for_steps
from .training.trainer import TrainResult, train

DEMO_PIX2PIX = "synthetic"  # presets of the two models
DEMO_HD = "pix2pixhd_synthetic"


@dataclass
class DemoPlan:
    """How much each part of the demo trains: steps (reproducible) and a time cap (seconds) on each."""

    pix2pix_steps: int = 700
    hd_steps: int = 200
    segmenter_steps: int = 300
    pix2pix_seconds: float = 72.0  # the caps plus ~2 min of install, data and scoring: 5 min on a slow spell
    hd_seconds: float = 60.0
    segmenter_seconds: float = 20.0
    clusters: int = 6  # k-means clusters per class for the style strip


@dataclass
class Scores:
    """A model's test-split scores."""

    pairs: int
    l1: float
    psnr: float
    ssim: float
    pixel_accuracy: float | None = None
    mean_iou: float | None = None
    iou_person: float | None = None
    iou_car: float | None = None


def score_split(translator: BaseTranslator, root: str | Path, segmenter: LoadedSegmenter | None,
                save_dir: Path | None = None, rows: int = 6) -> tuple[Scores, list[list[Image.Image]]]:
    """The test split translated and scored; the first `rows` pairs as grid rows (input | generated | real)."""
    sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
    grid, fakes, labels, count = [], [], [], 0
    label_set = segmenter.label_set if segmenter is not None else None
    for pair in translator.test_pairs(root, "test", label_set=label_set):
        fake, real = image_to_tensor(pair.fake)[None], image_to_tensor(pair.real)[None]
        f01, r01 = (fake + 1) / 2, (real + 1) / 2
        sums["l1"] += float(l1_error(f01, r01))
        sums["psnr"] += float(psnr(f01, r01))
        sums["ssim"] += float(ssim(f01, r01))
        count += 1
        if pair.label_ids is not None:
            fakes.append(fake)
            labels.append(torch.from_numpy(pair.label_ids)[None])
        if save_dir is not None:
            save_image(pair.fake, save_dir / f"{pair.key}.png")
        if len(grid) < rows:
            grid.append([pair.input, pair.fake, pair.real])
    scores = Scores(pairs=count, **{k: v / max(count, 1) for k, v in sums.items()})
    if segmenter is not None and fakes:
        seg = segmentation_score(segmenter, fakes, labels)
        scores.pixel_accuracy, scores.mean_iou = seg.pixel_accuracy, seg.mean_iou
        scores.iou_person, scores.iou_car = seg.class_iou[PERSON], seg.class_iou[CAR]
    return scores, grid


def style_strip(translator: LabelTranslator, root: Path, clusters: int) -> tuple[list[Image.Image], str]:
    """One test label map (the one with the most cars and people) rendered in each style cluster: every object
    takes cluster k of its class (k modulo the class's cluster count)."""
    ds = model_dataset(translator.card, root, "test")
    best, best_count = 0, -1
    for i in range(len(ds)):
        ids = np.unique(ds[i]["instance"].numpy())
        count = int(sum((ids // 1000 == c).sum() for c in INSTANCE_CLASSES if c in (CAR, PERSON)))
        if count > best_count:
            best, best_count = i, count
    item = ds[best]
    label, inst = item["label"][None], item["instance"][None]
    frames = [translator.label_picture(item["label"])]
    for k in range(clusters):
        out = translator.translate_tensor(label, inst, features="cluster", cluster=k)
        frames.append(tensor_to_image(out[0].float().cpu()))
    return frames, Path(item["path"]).stem


def _train(preset: str, root: Path, runs: Path, steps: int, seconds: float, seed: int, progress: bool,
           log: Any) -> TrainResult:
    cfg = get_preset(preset)
    cfg.data.root, cfg.train.runs_dir, cfg.train.device, cfg.train.seed = str(root), str(runs), "cpu", seed
    cfg.train.max_steps, cfg.train.max_seconds = steps, seconds
    cfg.train.tensorboard = False
    pairs = len(list((root / ("train" if cfg.model.family == "pix2pix" else "train_label")).glob("*.png")))
    cfg.optim.n_epochs, cfg.optim.n_epochs_decay = epochs_for_steps(steps, pairs, cfg.train.batch_size)
    log(f"training {preset}: {cfg.model.family} {cfg.model.generator} (ngf {cfg.model.ngf}), {steps} steps "
        f"(at most {seconds:g} s)")
    return train(cfg, progress=progress, log=log)


def run_demo(out_dir: str | Path = "demo", *, num: int = 240, size: int = 128, seed: int = 0,
             plan: DemoPlan | None = None, progress: bool = False, log: Any = print) -> Path:
    """Run the whole demo into `out_dir`; returns the report path."""
    plan = plan or DemoPlan()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    data = out_dir / "data"
    if not (data / "AB" / "train").is_dir():
        log(f"generating {num} synthetic street scenes of {size}x{size} in {data}")
        write_synthetic_dataset(data, num=num, size=size, seed=seed)
    runs = out_dir / "runs"
    p2p = _train(DEMO_PIX2PIX, data / "AB", runs, plan.pix2pix_steps, plan.pix2pix_seconds, seed, progress, log)
    hd = _train(DEMO_HD, data, runs, plan.hd_steps, plan.hd_seconds, seed, progress, log)
    log("clustering the pix2pixHD model's instance features (k-means per class)")
    # objects of at least 1/256 of the image (64 px at 128x128): the reference's rule keeps few pedestrians here
    compute_clusters(hd.run_dir / "model", data, k=plan.clusters, min_pixels=max(4, size * size // 256),
                     seed=seed).save(hd.run_dir / "model")

    segmenter, ceiling = None, None
    if plan.segmenter_steps > 0:
        log(f"training a segmenter on the real training photos ({plan.segmenter_steps} steps)")
        label_set = LabelSet.from_classes_json(data / "classes.json")
        train_data = load_segmentation_data(data, "train", label_set)
        net, _ = train_segmenter(train_data, steps=plan.segmenter_steps, max_seconds=plan.segmenter_seconds,
                                 batch_size=8, lr=1e-3, ngf=16, seed=seed)
        segmenter = LoadedSegmenter(net.eval(), label_set, train_data.size, name="demo segmenter")
        real = score_real_images(segmenter, load_segmentation_data(data, "test", label_set))
        ceiling = {"pixel_accuracy": real.pixel_accuracy, "mean_iou": real.mean_iou,
                   "iou_person": real.class_iou[PERSON], "iou_car": real.class_iou[CAR]}

    p2p_tr = load_translator(p2p.run_dir / "model", device="cpu")
    hd_tr = load_translator(hd.run_dir / "model", device="cpu")
    p2p_scores, p2p_rows = score_split(p2p_tr, data / "AB", segmenter, out_dir / "results" / "pix2pix")
    hd_scores, hd_rows = score_split(hd_tr, data, segmenter, out_dir / "results" / "pix2pixhd")
    image_grid(p2p_rows).save(out_dir / "samples_pix2pix.png")
    image_grid(hd_rows).save(out_dir / "samples_pix2pixhd.png")
    frames, strip_key = style_strip(hd_tr, data, plan.clusters)
    image_grid([frames]).save(out_dir / "styles.png")
    for name, run in (("pix2pix", p2p), ("pix2pixhd", hd)):
        write_text(out_dir / f"loss_{name}.svg", (run.run_dir / "loss.svg").read_text())
    summary = {"plan": asdict(plan), "seconds": round(time.perf_counter() - started, 1), "ceiling": ceiling,
               "style_map": strip_key,
               "models": {"pix2pix": {"preset": DEMO_PIX2PIX, "steps": p2p.step, "run_dir": str(p2p.run_dir),
                                      "scores": asdict(p2p_scores)},
                          "pix2pixhd": {"preset": DEMO_HD, "steps": hd.step, "run_dir": str(hd.run_dir),
                                        "scores": asdict(hd_scores)}}}
    write_json(out_dir / "metrics.json", summary)
    report = _write_report(out_dir, summary, {n: read_stats(r.run_dir / "stats.jsonl") for n, r in
                                              (("pix2pix", p2p), ("pix2pixhd", hd))})
    for name, s in (("pix2pix", p2p_scores), ("pix2pixHD", hd_scores)):
        seg = f", mean IoU {s.mean_iou:.3f}" if s.mean_iou is not None else ""
        log(f"{name} test split ({s.pairs} pairs): L1 {s.l1:.4f}, PSNR {s.psnr:.2f} dB, SSIM {s.ssim:.4f}{seg}")
    if ceiling is not None:
        log(f"real test photos (the segmentation ceiling): mean IoU {ceiling['mean_iou']:.3f}")
    log(f"report: {report.resolve()}")
    return report


def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _write_report(out_dir: Path, summary: dict[str, Any], stats: dict[str, list[dict[str, Any]]]) -> Path:
    ceiling = summary["ceiling"]
    rows = []
    for name, label in (("pix2pix", "pix2pix (label colours &rarr; photo)"),
                        ("pix2pixhd", "pix2pixHD (label ids + instances + styles &rarr; photo)")):
        m = summary["models"][name]
        s = m["scores"]
        ratio = (s["mean_iou"] / ceiling["mean_iou"]) if ceiling and s["mean_iou"] is not None else None
        rows.append(f"<tr><td style='text-align:left'>{label}</td><td>{m['steps']}</td><td>{_fmt(s['l1'], 4)}</td>"
                    f"<td>{_fmt(s['psnr'], 2)}</td><td>{_fmt(s['ssim'])}</td><td>{_fmt(s['pixel_accuracy'])}</td>"
                    f"<td>{_fmt(s['mean_iou'])}</td><td>{_fmt(ratio, 2)}</td><td>{_fmt(s['iou_person'])}</td>"
                    f"<td>{_fmt(s['iou_car'])}</td></tr>")
    if ceiling:
        rows.append(f"<tr><td style='text-align:left'>real photos (ceiling)</td><td></td><td></td><td></td><td></td>"
                    f"<td>{_fmt(ceiling['pixel_accuracy'])}</td><td>{_fmt(ceiling['mean_iou'])}</td><td>1.00</td>"
                    f"<td>{_fmt(ceiling['iou_person'])}</td><td>{_fmt(ceiling['iou_car'])}</td></tr>")
    links = " &middot; ".join(
        f"<a href='{html.escape(str(Path(m['run_dir']).relative_to(out_dir)))}/index.html'>{n} run</a>"
        for n, m in summary["models"].items() if Path(m["run_dir"]).is_relative_to(out_dir))
    plan = summary["plan"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pix2pix demo</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1100px}} img{{max-width:100%;image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}</style></head>
<body><h1>pix2pix and pix2pixHD on the synthetic street world</h1>
<p>Both models trained on the CPU ({plan['pix2pix_steps']} and {plan['hd_steps']} steps at most); the whole demo took
{summary['seconds']} s. {links}.</p>
<h2>Test split: generated against the real photos</h2>
<table><tr><th>model</th><th>steps</th><th>L1</th><th>PSNR (dB)</th><th>SSIM</th><th>pixel acc.</th>
<th>mean IoU</th><th>/ ceiling</th><th>IoU person</th><th>IoU car</th></tr>
{''.join(rows)}</table>
<p>The segmentation score: a small segmenter trained on the real training photos segments the generated test photos,
compared with the label maps they were made from; the real test photos give the ceiling. It trains for seconds, so
it is far weaker than the quality benchmark's (<code>benchmarks/quality.py</code>, whose segmenter reaches a mean IoU
of about 0.89 on the real photos): it misses the small things (people, poles) the generated photos miss too, and the
ratio to its ceiling flatters them.</p>
<h2>pix2pix samples: label map | generated | real</h2><img src="samples_pix2pix.png" alt="pix2pix samples">
<h2>pix2pixHD samples: label map | generated | real</h2><img src="samples_pix2pixhd.png" alt="pix2pixHD samples">
<h2>pix2pixHD styles: one label map ({html.escape(summary['style_map'])}), every object in style cluster 0, 1, ...</h2>
<img src="styles.png" alt="one label map in several style clusters">
<p>The clusters are k-means centres of the feature encoder's per-instance features (as <code>pix2pix features</code>
computes them); <code>pix2pix edit --model {html.escape(str(Path(summary['models']['pix2pixhd']['run_dir'])))}</code>
lets you pick them per object.</p>
<h2>Losses</h2><img src="loss_pix2pix.svg" alt="pix2pix losses"> <img src="loss_pix2pixhd.svg" alt="pix2pixHD losses">
<p>{len(stats['pix2pix'])} and {len(stats['pix2pixhd'])} log points.</p>
</body></html>
"""
    path = out_dir / "report.html"
    write_text(path, page)
    return path
