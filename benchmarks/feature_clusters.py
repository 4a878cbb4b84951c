"""Instance-feature clusters of pix2pixHD on the synthetic world: style purity and edit locality.

    python benchmarks/feature_clusters.py --out bench_out/feature_clusters --num 200 --size 128 \
        --steps 600 --device cpu --md benchmarks/feature_clusters.md [--run RUN_DIR] [--set KEY=VALUE ...]

1. Data: the synthetic street world (`write_synthetic_dataset`), whose styles.json gives every
   instance's true style (car body colour, clothing colour, truck colour), or --data DIR.
2. Model: trains the `pix2pixhd_synthetic` preset (global G + feature encoder, no VGG) for
   --steps steps with the --set overrides, or takes --run RUN_DIR.
3. Purity: encodes every training instance (`pix2pix.features.encode_instances`, the
   reference's size rule unless --min-pixels), runs k-means per instance class with K = the
   number of styles of that class and with K = 10, and reports
   - purity: fraction of instances whose cluster's majority style is their own style
     (a high value with K = 10 can also come from splitting styles into several clusters),
   - inverse purity: fraction of instances whose style's majority cluster is their own cluster
     (1.0 only when each style sits in one cluster),
   and the same for a baseline that clusters each instance's mean photo colour (what a perfect
   colour encoder would give; the synthetic styles are far apart in colour).
4. Edits: the K = 10 clusters are saved next to the model (as `pix2pix features` does). On test
   scenes, the largest instances of the instance classes are switched from cluster 0 to every
   other cluster of their class; the mean absolute output change (in [0, 1] pixel units, over the
   3 channels) is reported inside the instance, outside it, and outside a band of R pixels
   around it (R = 8, 16). "Style control" is the fraction of edits after which the output's
   mean colour inside the instance is nearest to the style colour that is the majority of the
   chosen cluster (sanity check of that colour classifier on the real test photos reported too).

Numbers are from one run and one seed: small-sample noise is real, nothing is tuned.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pix2pix.config import apply_overrides  # noqa: E402
from pix2pix.data.label_dataset import LabelDataset  # noqa: E402
from pix2pix.data.synthetic import CLASS_NAMES, INSTANCE_CLASSES, STYLES, write_synthetic_dataset  # noqa: E402
from pix2pix.features import (  # noqa: E402
    EncodedInstances,
    cluster_features,
    cluster_purity_by_class,
    encode_instances,
    instance_classes,
    kmeans,
    reference_min_pixels,
    resolve_model_dir,
)
from pix2pix.inference import LabelTranslator  # noqa: E402
from pix2pix.io.pretrained import read_config  # noqa: E402
from pix2pix.models.encoder import instance_mean_features  # noqa: E402
from pix2pix.nn import init_weights  # noqa: E402
from pix2pix.presets import get_preset  # noqa: E402
from pix2pix.registry import build_from_arch  # noqa: E402
from pix2pix.training.trainer import train  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mean_photo_colours(dataset: LabelDataset) -> dict[tuple[str, int], torch.Tensor]:
    """(sample key, instance id) -> mean RGB of the photo inside the instance, in [0, 1]."""
    out = {}
    for i in range(len(dataset)):
        item = dataset[i]
        rows = instance_mean_features((item["image"][None] + 1) / 2, item["instance"][None])
        for iid, f in zip(rows.instance_id.tolist(), rows.features, strict=True):
            out[(dataset.items[i].key, iid)] = f
    return out


def style_colours(c: int) -> torch.Tensor:
    return torch.tensor([s.color for s in STYLES[c]], dtype=torch.float32) / 255.0


def nearest_style(c: int, rgb01: torch.Tensor) -> int:
    return int(((style_colours(c) - rgb01[None]) ** 2).sum(1).argmin())


def purity_pair(assign: torch.Tensor, styles: list[int]) -> tuple[float, float]:
    a = {0: assign.tolist()}
    s = {0: styles}
    good, n = cluster_purity_by_class(a, s)[0]
    inv, _ = cluster_purity_by_class(s, a)[0]
    return good / n, inv / n


def subset(encoded: EncodedInstances, size: int, min_pixels: int | None) -> EncodedInstances:
    """The instances kept by a size rule: >= min_pixels, or the reference's (> (H*W//32)/2 on size x size)."""
    feats, pixels, sources = {}, {}, {}
    for c, f in encoded.features.items():
        px = encoded.pixels[c]
        keep = px >= min_pixels if min_pixels is not None else px.double() > reference_min_pixels(size, size)
        if bool(keep.any()):
            feats[c], pixels[c] = f[keep], px[keep]
            sources[c] = [s for s, k in zip(encoded.sources[c], keep.tolist(), strict=True) if k]
    dropped = sum(encoded.counts().values()) - sum(int(f.shape[0]) for f in feats.values())
    return EncodedInstances(encoded.feat_num, feats, pixels, sources, skipped=encoded.skipped + dropped,
                            min_pixels=min_pixels, items=encoded.items, model_dir=encoded.model_dir,
                            data_root=encoded.data_root)


def measure_purity(sets: dict[str, EncodedInstances], rule: str, truth: dict, colours: dict, seed: int) -> list[dict]:
    """Purity of k-means on each feature set (trained E, untrained E) and on mean photo colours."""
    rows = []
    first = next(iter(sets.values()))
    for c in INSTANCE_CLASSES:
        if c not in first.features:
            continue
        srcs = first.sources[c]
        styles = [int(truth[key][str(iid)]["style"]) for key, iid in srcs]
        xs = {name: e.features[c] for name, e in sets.items()}
        xs["colour"] = torch.stack([colours[s] for s in srcs])
        for k_name, k in (("styles", len(STYLES[c])), ("10", 10)):
            row = {"class": CLASS_NAMES[c], "rule": rule, "K": k, "K_setting": k_name, "instances": len(styles),
                   "styles_present": len(set(styles))}
            for name, x in xs.items():
                _, assign = kmeans(x, k, seed=seed)
                row[f"{name}_clusters"] = int(assign.max()) + 1
                row[f"{name}_purity"], row[f"{name}_inverse"] = purity_pair(assign, styles)
            rows.append(row)
    for k_name in ("styles", "10"):  # pooled over classes
        sel = [r for r in rows if r["K_setting"] == k_name]
        if not sel:
            continue
        n = sum(r["instances"] for r in sel)
        pooled = {"class": "all (pooled)", "rule": rule, "K": "per class" if k_name == "styles" else 10,
                  "K_setting": k_name, "instances": n, "styles_present": sum(r["styles_present"] for r in sel)}
        for key in sel[0]:
            if key.endswith(("_purity", "_inverse")):
                pooled[key] = sum(r[key] * r["instances"] for r in sel) / n
        rows.append(pooled)
    return rows


@torch.no_grad()
def measure_locality(tr: LabelTranslator, data: Path, cluster_styles: dict, images: int, per_image: int,
                     min_pixels: int, radii: tuple[int, ...]) -> dict:
    from pix2pix.data.label_dataset import open_map

    labels = sorted((data / "test_label").glob("*.png"))[:images]
    truth = json.loads((data / "styles.json").read_text())["test"]
    per_class: dict[int, dict[str, list[float]]] = {}
    photo_ok = photo_n = 0
    for path in labels:
        label = torch.from_numpy(np.asarray(open_map(path)).astype(np.int64))
        inst = torch.from_numpy(np.asarray(open_map(data / "test_inst" / path.name)).astype(np.int64))
        photo = torch.from_numpy(np.array(open_map(data / "test_img" / path.name))).float().permute(2, 0, 1) / 255
        classes = instance_classes(label[None, None], inst[None, None])
        cands = [(int((inst == i).sum()), i) for i, c in classes.items()
                 if c in INSTANCE_CLASSES and tr.clusters.num_clusters(c) >= 2 and i >= 1000]
        cands = sorted([ci for ci in cands if ci[0] >= min_pixels], reverse=True)[:per_image]
        for i, c in classes.items():  # the colour classifier on the real photo
            if c in INSTANCE_CLASSES and str(i) in truth[path.stem] and int((inst == i).sum()) >= min_pixels:
                photo_n += 1
                photo_ok += nearest_style(c, photo[:, inst == i].mean(1)) == truth[path.stem][str(i)]["style"]
        for _, target in cands:
            c = classes[target]
            mask = inst == target
            bands = {r: F.max_pool2d(mask[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0
                     for r in radii}
            base = tr(label, inst, choices={target: 0})
            stats = per_class.setdefault(c, {"inside": [], "outside": [], "control": [],
                                             **{f"band{r}": [] for r in radii}})
            for j in range(1, tr.clusters.num_clusters(c)):
                out = tr(label, inst, choices={target: j})
                diff = (out - base).abs().mean(0) / 2  # [-1, 1] -> [0, 1] units
                stats["inside"].append(float(diff[mask].mean()))
                stats["outside"].append(float(diff[~mask].mean()))
                for r in radii:
                    far = ~bands[r]
                    stats[f"band{r}"].append(float(diff[far].mean()) if bool(far.any()) else float("nan"))
                want = cluster_styles.get(c, {}).get(j)
                if want is not None:
                    got = nearest_style(c, ((out + 1) / 2)[:, mask].mean(1))
                    stats["control"].append(float(got == want))
    result = {"photo_classifier_accuracy": photo_ok / max(photo_n, 1), "photo_instances": photo_n, "classes": {}}
    for c, s in per_class.items():
        result["classes"][CLASS_NAMES[c]] = {
            "edits": len(s["inside"]), "inside": float(np.mean(s["inside"])), "outside": float(np.mean(s["outside"])),
            **{f"outside_{r}px": float(np.nanmean(s[f"band{r}"])) for r in radii},
            "style_control": float(np.mean(s["control"])) if s["control"] else float("nan"),
            "control_edits": len(s["control"])}
    allv = {k: [v for s in per_class.values() for v in s[k]] for k in
            ("inside", "outside", "control", *[f"band{r}" for r in radii])}
    result["all"] = {"edits": len(allv["inside"]), "inside": float(np.mean(allv["inside"])),
                     "outside": float(np.mean(allv["outside"])),
                     **{f"outside_{r}px": float(np.nanmean(allv[f"band{r}"])) for r in radii},
                     "style_control": float(np.mean(allv["control"])) if allv["control"] else float("nan"),
                     "control_edits": len(allv["control"])}
    return result


def fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out/feature_clusters", help="working folder (data, run)")
    ap.add_argument("--data", help="existing synthetic dataset (default: generate one)")
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--run", help="existing run (or model) directory: skip training")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-pixels", type=int, default=None, help="default: the reference's size rule")
    ap.add_argument("--edit-images", type=int, default=20)
    ap.add_argument("--edit-instances", type=int, default=3, help="largest instances edited per test image")
    ap.add_argument("--edit-min-pixels", type=int, default=64)
    ap.add_argument("--md", help="write the results table here (markdown)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/feature_clusters.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    data = Path(args.data) if args.data else out / "data"
    if not args.data:
        log(f"writing {args.num} synthetic scenes at {args.size}px to {data}")
        write_synthetic_dataset(data, num=args.num, size=args.size, seed=args.seed)
    train_s = None
    if args.run:
        model = resolve_model_dir(args.run)
    else:
        cfg = get_preset("pix2pixhd_synthetic")
        cfg.data.root = str(data)
        cfg.train.runs_dir = str(out / "runs")
        cfg.train.device = args.device
        cfg.train.max_steps = args.steps
        cfg.train.tensorboard = False
        cfg.train.seed = args.seed
        apply_overrides(cfg, args.set)
        log(f"training pix2pixhd_synthetic for {cfg.train.max_steps} steps")
        t = time.time()
        result = train(cfg, progress=False)
        train_s = time.time() - t
        model = result.run_dir / "model"
        log(f"trained in {train_s:.0f} s: {model}")
    config = read_config(model)

    t = time.time()
    everything = encode_instances(model, data, device=args.device, min_pixels=1)
    encode_s = time.time() - t
    # control: the same encoder architecture, untrained (the trainer's initialisation, N(0, 0.02))
    torch.manual_seed(args.seed)
    untrained = init_weights(build_from_arch(config["encoder"], "generator"), "normal", 0.02, zero_bias=False)
    everything_untrained = encode_instances((untrained, config), data, device=args.device, min_pixels=1)
    d = config["data"]
    size = int(d["crop_size"])
    colours = mean_photo_colours(LabelDataset(data, "train", label_nc=d["label_nc"], use_instance=True,
                                              preprocess=d["preprocess"], load_size=d["load_size"],
                                              crop_size=d["crop_size"], flip=False, train=False))
    truth = json.loads((data / "styles.json").read_text())["train"]
    rules = {f"reference (> {reference_min_pixels(size, size):g} px)": args.min_pixels,
             f">= {args.edit_min_pixels} px": args.edit_min_pixels}
    if args.min_pixels is not None:
        rules = {f">= {args.min_pixels} px": args.min_pixels}
    purity, kept = [], {}
    for rule, mp in rules.items():
        sets = {"trained": subset(everything, size, mp), "untrained": subset(everything_untrained, size, mp)}
        kept[rule] = sets["trained"].counts()
        purity += measure_purity(sets, rule, truth, colours, args.seed)
    encoded = subset(everything, size, args.min_pixels)  # what `pix2pix features` keeps
    log(f"encoded {sum(everything.counts().values())} instances in {encode_s:.0f} s; kept per class {kept}")

    clusters = cluster_features(encoded, 10, seed=args.seed, meta={"benchmark": command})
    clusters.save(model)
    # majority true style of each K=10 cluster (from the training instances)
    cluster_styles: dict[int, dict[int, int]] = {}
    for c in INSTANCE_CLASSES:
        if c not in encoded.features:
            continue
        assign = clusters.assign(c, encoded.features[c]).tolist()
        styles = [int(truth[key][str(iid)]["style"]) for key, iid in encoded.sources[c]]
        votes: dict[int, Counter] = {}
        for a, s in zip(assign, styles, strict=True):
            votes.setdefault(a, Counter())[s] += 1
        cluster_styles[c] = {a: v.most_common(1)[0][0] for a, v in votes.items()}
    tr = LabelTranslator.from_pretrained(model, device=args.device)
    t = time.time()
    radii = (8, 16)
    locality = measure_locality(tr, data, cluster_styles, args.edit_images, args.edit_instances,
                                args.edit_min_pixels, radii)
    edit_s = time.time() - t
    log(f"edits in {edit_s:.0f} s")

    results = {"command": command, "model": str(model), "data": str(data), "train_seconds": train_s,
               "encode_seconds": encode_s, "total_seconds": time.time() - t0, "steps": config.get("step"),
               "kept": kept, "purity": purity, "cluster_counts": clusters.counts, "locality": locality,
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    n_train = len(list((data / "train_label").glob("*.png")))
    run_config = model.parent / "config.json"
    batch = json.loads(run_config.read_text())["train"]["batch_size"] if run_config.is_file() else "?"
    lines = ["# Instance-feature clusters on the synthetic world", "",
             "Produced by `benchmarks/feature_clusters.py` (its docstring defines every number). Command:", "",
             f"    {command}", "",
             f"Model: `pix2pixhd_synthetic` preset (global G ngf 16, feature encoder feat_num "
             f"{d['feat_num']}, no VGG), {config.get('step')} steps of batch {batch}"
             + (f", {train_s / 60:.1f} min of training" if train_s else "")
             + f" on {torch.get_num_threads()} CPU thread(s) (torch {torch.__version__}). "
             f"Data: {args.num} synthetic scenes at {args.size} px, {n_train} for training (clusters) and the rest "
             f"for the edits; images enter at the preset's preprocessing ({d['preprocess']}, {d['load_size']} -> "
             f"{d['crop_size']}, centre crop). The whole script took {(time.time() - t0) / 60:.1f} min.", "",
             "## Style purity of k-means clusters (training instances)", "",
             "k-means per class on: the trained encoder's instance features (E), the same encoder untrained "
             "(E0, a control: random conv features already see colour), and each instance's mean photo "
             "colour (RGB, what a perfect colour encoder would give). Purity: the cluster's majority style "
             "is the instance's own; inverse purity: the style's majority cluster is the instance's own "
             "(K = 10 can be pure by splitting styles; inverse purity shows that). Two size rules for which "
             "instances are kept: the reference's (`pix2pix features` default) and a lower one that keeps "
             "most pedestrians.", "",
             "| size rule | class | instances | styles | K | E purity | E inverse | E0 purity | E0 inverse | "
             "colour purity | colour inverse |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in purity:
        lines.append(f"| {r['rule']} | {r['class']} | {r['instances']} | {r['styles_present']} | {r['K']} | "
                     f"{fmt(r['trained_purity'])} | {fmt(r['trained_inverse'])} | {fmt(r['untrained_purity'])} | "
                     f"{fmt(r['untrained_inverse'])} | {fmt(r['colour_purity'])} | {fmt(r['colour_inverse'])} |")
    lines += ["", "## Edit locality (test scenes, K = 10 clusters from `pix2pix features`' default size rule)", "",
              f"The {args.edit_instances} largest car/person/truck instances (>= {args.edit_min_pixels} px) of "
              f"{args.edit_images} test scenes switched from cluster 0 to each other cluster of their class. Mean "
              "absolute output change in [0, 1] units. Style control: the edited instance's mean output colour "
              "is nearest to the majority style of the chosen cluster (chance is about 1/number of styles).", "",
              "| class | edits | inside | outside | outside, > 8 px away | outside, > 16 px away | "
              "inside / outside>8px | style control |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in [*locality["classes"].items(), ("all", locality["all"])]:
        ratio = s["inside"] / s["outside_8px"] if s["outside_8px"] > 0 else float("inf")
        lines.append(f"| {name} | {s['edits']} | {fmt(s['inside'])} | {fmt(s['outside'])} | "
                     f"{fmt(s['outside_8px'])} | {fmt(s['outside_16px'])} | {ratio:.1f} | "
                     f"{fmt(s['style_control'])} ({s['control_edits']}) |")
    lines += ["", f"The mean-colour style classifier is right for {locality['photo_classifier_accuracy']:.3f} of "
              f"{locality['photo_instances']} real test-photo instances (>= {args.edit_min_pixels} px), so it is a "
              "usable judge of the edited colours.", ""]
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text)
        log(f"wrote {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
