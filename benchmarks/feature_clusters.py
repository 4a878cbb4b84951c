"""Instance-feature clusters of pix2pixHD on the synthetic world: style purity and edit locality.

    python benchmarks/feature_clusters.py --out bench_out/feature_clusters --num 200 --size 128 \
        --steps 600 --device cpu --md benchmarks/feature_clusters.md [--run RUN_DIR] [--set KEY=VALUE ...]

1. Data: the synthetic street world (`write_synthetic_dataset`), whose styles.json gives every
   instance's true style (car body colour, clothing colour, truck colour), or --data DIR.
2. Model: trains the `pix2pixhd_synthetic` preset (global G + feature encoder, no VGG) for
   --steps steps with the --set overrides of that preset (e.g. --set model.norm=batch; the markdown
   lists them), or takes --run RUN_DIR.
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

from pix2pix.clusters import cluster_purity_by_class, kmeans  # noqa: E402
from pix2pix.config import apply_overrides  # noqa: E402
from pix2pix.data.for_model import model_dataset  # noqa: E402
from pix2pix.data.images import load_image, open_map  # noqa: E402
from pix2pix.data.label_dataset import LabelDataset  # noqa: E402
from pix2pix.data.labels import instance_classes  # noqa: E402
from pix2pix.data.synthetic import CLASS_NAMES, INSTANCE_CLASSES, STYLES, write_synthetic_dataset  # noqa: E402
from pix2pix.errors import Pix2PixError  # noqa: E402
from pix2pix.features import EncodedInstances, cluster_features, encode_instances, reference_min_pixels  # noqa: E402
from pix2pix.inference import LabelTranslator  # noqa: E402
from pix2pix.io.model_card import ModelCard  # noqa: E402
from pix2pix.io.model_dir import resolve_model_dir  # noqa: E402
from pix2pix.models.encoder import instance_mean_features  # noqa: E402
from pix2pix.nn import init_weights  # noqa: E402
from pix2pix.presets import get_preset  # noqa: E402
from pix2pix.registry import build_from_arch  # noqa: E402
from pix2pix.training.trainer import train  # noqa: E402

PRESET = "pix2pixhd_synthetic"


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


def nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN when none (a band wider than the image leaves nothing outside it)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


@torch.no_grad()
def measure_locality(tr: LabelTranslator, data: Path, cluster_styles: dict, images: int, per_image: int,
                     min_pixels: int, radii: tuple[int, ...]) -> dict:
    labels = sorted((data / "test_label").glob("*.png"))[:images]
    truth = json.loads((data / "styles.json").read_text())["test"]
    per_class: dict[int, dict[str, list[float]]] = {}
    photo_ok = photo_n = 0
    for path in labels:
        label = torch.from_numpy(np.asarray(open_map(path)).astype(np.int64))
        inst = torch.from_numpy(np.asarray(open_map(data / "test_inst" / path.name)).astype(np.int64))
        photo = torch.from_numpy(np.array(load_image(data / "test_img" / path.name))).float().permute(2, 0, 1) / 255
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
            **{f"outside_{r}px": nanmean(s[f"band{r}"]) for r in radii},
            "style_control": float(np.mean(s["control"])) if s["control"] else float("nan"),
            "control_edits": len(s["control"])}
    allv = {k: [v for s in per_class.values() for v in s[k]] for k in
            ("inside", "outside", "control", *[f"band{r}" for r in radii])}
    result["all"] = {"edits": len(allv["inside"]), "inside": float(np.mean(allv["inside"])),
                     "outside": float(np.mean(allv["outside"])),
                     **{f"outside_{r}px": nanmean(allv[f"band{r}"]) for r in radii},
                     "style_control": float(np.mean(allv["control"])) if allv["control"] else float("nan"),
                     "control_edits": len(allv["control"])}
    return result


def fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def model_summary(card: ModelCard) -> str:
    """The networks and losses behind the numbers, from the model card (overrides change them)."""
    g = card.generator
    parts = []
    if g is not None:
        kw = g.kwargs
        parts.append(f"{g.name} G" + "".join(f" {k} {kw[k]}" for k in ("ngf", "norm", "upsample") if k in kw))
    parts.append(f"feature encoder feat_num {card.feat_num}")
    vgg = card.provenance.recipe.get("loss", {}).get("lambda_vgg")
    if vgg is not None:
        parts.append("no VGG" if not vgg else f"VGG weight {vgg:g}")
    return ", ".join(parts)


def untrained_encoder(card: ModelCard, seed: int) -> torch.nn.Module:
    """The model's encoder architecture with the trainer's initialisation (the recipe's init, N(0, gain))."""
    assert card.encoder is not None
    m = card.provenance.recipe.get("model", {})
    torch.manual_seed(seed)
    net = build_from_arch(card.encoder.to_dict("encoder"), "encoder")
    return init_weights(net, m.get("init", "normal"), float(m.get("init_gain", 0.02)), zero_bias=False).eval()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out/feature_clusters", help="working folder (data, run)")
    ap.add_argument("--data", help="existing synthetic dataset (default: generate one)")
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--run", help="existing run (or model) directory: skip training")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override of the {PRESET} preset for the training (e.g. model.norm=batch); repeatable")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-pixels", type=int, default=None, help="default: the reference's size rule")
    ap.add_argument("--edit-images", type=int, default=20)
    ap.add_argument("--edit-instances", type=int, default=3, help="largest instances edited per test image")
    ap.add_argument("--edit-min-pixels", type=int, default=64)
    ap.add_argument("--md", help="write the results table here (markdown)")
    args = ap.parse_args(argv)
    if args.run and args.set:
        ap.error("--set overrides the preset for training; with --run the model is used as it was trained "
                 "(drop --set or --run)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, sys.argv[1:] if argv is None else argv)
    except Pix2PixError as exc:  # bad input (a --set key, a model directory): one line, as the CLI does
        print(f"feature_clusters.py: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str]) -> int:
    torch.set_num_threads(args.threads)
    command = "python benchmarks/feature_clusters.py " + " ".join(shlex.quote(a) for a in argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    data = Path(args.data) if args.data else out / "data"
    train_s = None
    if args.run:
        model = resolve_model_dir(args.run)
    else:
        cfg = get_preset(PRESET)
        cfg.data.root = str(data)
        cfg.train.runs_dir = str(out / "runs")
        cfg.train.device = args.device
        cfg.train.max_steps = args.steps
        cfg.train.tensorboard = False
        cfg.train.seed = args.seed
        apply_overrides(cfg, args.set)  # before writing data: a bad key fails at once
    if not args.data:
        log(f"writing {args.num} synthetic scenes at {args.size}px to {data}")
        write_synthetic_dataset(data, num=args.num, size=args.size, seed=args.seed)
    if not args.run:
        log(f"training {PRESET} for {cfg.train.max_steps} steps" + (f" with {' '.join(args.set)}" if args.set else ""))
        t = time.time()
        result = train(cfg, progress=False)
        train_s = time.time() - t
        model = result.run_dir / "model"
        log(f"trained in {train_s:.0f} s: {model}")
    card = ModelCard.read(model)
    if card.encoder is None:
        raise Pix2PixError(f"{model} has no feature encoder: this benchmark needs a pix2pixHD model trained with "
                           "model.use_features=true.")

    t = time.time()
    everything = encode_instances(model, data, device=args.device, min_pixels=1)
    encode_s = time.time() - t
    # control: the same encoder architecture, untrained (the trainer's initialisation)
    everything_untrained = encode_instances((untrained_encoder(card, args.seed), card), data, device=args.device,
                                            min_pixels=1)
    geometry = card.data
    size = geometry.crop_size
    train_set = model_dataset(card, data, "train", test_time=False)  # as encode_instances opens it
    assert isinstance(train_set, LabelDataset)
    colours = mean_photo_colours(train_set)
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
    if not encoded.features:
        raise Pix2PixError(f"no training instance of {data} passes the size rule at {size} px: use more or larger "
                           "scenes (--num, --size) or --min-pixels.")

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
    assert isinstance(tr, LabelTranslator)
    t = time.time()
    radii = (8, 16)
    locality = measure_locality(tr, data, cluster_styles, args.edit_images, args.edit_instances,
                                args.edit_min_pixels, radii)
    edit_s = time.time() - t
    log(f"edits in {edit_s:.0f} s")

    steps = card.provenance.step
    results = {"command": command, "model": str(model), "data": str(data), "preset": card.provenance.preset,
               "overrides": list(args.set), "train_seconds": train_s, "encode_seconds": encode_s,
               "total_seconds": time.time() - t0, "steps": steps, "kept": kept, "purity": purity,
               "cluster_counts": clusters.counts, "locality": locality,
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    n_train = len(list((data / "train_label").glob("*.png")))
    n_test = len(list((data / "test_label").glob("*.png")))
    scenes = f"{n_train + n_test} synthetic scenes " + (f"from `{data}`" if args.data else f"at {args.size} px")
    batch = card.provenance.recipe.get("train", {}).get("batch_size", "?")
    preset = card.provenance.preset or "?"
    if args.run:
        overrides = f"Model taken from `{args.run}` (trained elsewhere; its recipe is in its model card)."
    elif args.set:
        overrides = "Overrides of the preset (`--set`): " + ", ".join(f"`{o}`" for o in args.set) + "."
    else:
        overrides = "Overrides of the preset (`--set`): none."
    lines = ["# Instance-feature clusters on the synthetic world", "",
             "Produced by `benchmarks/feature_clusters.py` (its docstring defines every number). Command:", "",
             f"    {command}", "",
             f"Model: `{preset}` preset ({model_summary(card)}), {steps} steps of batch {batch}"
             + (f", {train_s / 60:.1f} min of training" if train_s else "")
             + f" on {torch.get_num_threads()} CPU thread(s) (torch {torch.__version__}). {overrides} "
             f"Data: {scenes}, {n_train} for training (clusters) and the rest "
             f"for the edits; images enter at the preset's preprocessing ({geometry.preprocess}, "
             f"{geometry.load_size} -> {geometry.crop_size}, centre crop). "
             f"The whole script took {(time.time() - t0) / 60:.1f} min.", "",
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
