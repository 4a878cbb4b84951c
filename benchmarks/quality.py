"""Quality benchmark: named training recipes at equal compute, several seeds, scored by segmentation.

    python benchmarks/quality.py --datasets facades --budget-seconds 900 --seeds 0,1,2 \
        --out benchmarks/quality.md                              # + benchmarks/quality.json, quality_facades.svg
    python benchmarks/quality.py --recipes reference,lsgan --budget-steps 2000 --seeds 0,1,2
    python benchmarks/quality.py --recipe-set mine=loss.gan_mode=hinge,model.upsample=resize_conv ...
    python benchmarks/quality.py --render benchmarks/quality.json --out benchmarks/quality.md

What it does, per dataset (facades labels->photo, `--facades DIR`, direction BtoA; the synthetic
street world of `pix2pix data synth`, label|photo pairs, AtoB):

1. Prepares the data in a cache folder outside the repository (`--cache`, default
   ~/.cache/pix2pix/quality): train/, val/ and test/ folders of symbolic links to the original
   files (never copies), with `--facades-val` / `--synthetic-val` training pairs held out as val/
   (chosen by `--split-seed`); the synthetic splits' instance maps beside them ({split}_inst/).
   Runs are scored on test/ (`--split val` to tune on val instead).
2. Trains one segmenter per dataset on the real training photos (`pix2pix.evaluation.segmenter`,
   fixed seed, steps, size), cached under a key of those settings.
3. Trains every recipe (`RECIPES` below, or `--recipe-set`) for every seed in its own subprocess
   (a fresh allocator and heap, one thread setting, process-wide switches such as the fast step's
   allocator tuning kept to that run; a crash stops one run). Each run trains in segments that end
   at `--fractions` of the budget, resuming exactly (`train(cfg, resume=run_dir)` after raising
   train.max_steps), and `run_dir/model` is scored after each segment: segmentation score
   (per-pixel accuracy, mean class accuracy, mean IoU, per-class IoU), L1, PSNR, SSIM, and FID/KID
   at the end of the budget with `--inception-weights`.
4. Writes the report (`--out`): mean ± std over seeds per recipe, the real-photo ceiling, quality
   at each fraction of the budget, a plot of mean IoU against training seconds per dataset (SVG
   beside the report), the command and the machine; and the raw results (`--json`), rewritten
   after every run. Rerunning the same command skips finished runs and continues a cut-off run
   from its last finished segment; a different budget, size, schedule, ... is refused, except with
   `--extend`: a larger `--budget-steps` under the constant schedule continues every run of the
   command's recipes and seeds from its checkpoint (a shorter constant-schedule run is the exact
   start of a longer one; measured bit-identical) and keeps its scores at steps that the new
   fractions also name. Runs the command leaves out stay in the JSON as "shorter", unreported.

Budgets. `--budget-steps N` ends segment k at round(f_k N) steps. `--budget-seconds S` counts
training time only: the sum of the trainer's own per-step wall-clock (stats.jsonl with
train.log_every=1: data loading + the step), not start-up, checkpoints, sample grids or the
evaluation. The trainer cannot stop at a time limit, so the harness predicts the step count: a
first chunk of `--calibration-steps` measures the step time, then each segment trains
round((f_k S - seconds so far) / mean step time) steps (the last chunk's mean, its first step
left out). A resumed chunk's first step pays the warm-up again (lazy allocation, the fast step's
convolution timing), which an uninterrupted run pays once: it is counted at the median of that
chunk's other steps. With both budgets a segment ends at whichever comes first.

Schedule (`--schedule`). The reference trains 100 + 100 epochs with a linear decay; no short
budget fits that. Default `constant`: the learning rate stays at optim.lr for every recipe, so
the score at a fraction of the budget is what a run with that shorter budget would give (the
curve is honest at every point). `linear` (with --budget-steps only): constant for the first half
of the budget's epochs, then linear decay to zero over the second half, as the reference's
proportions; the points before the end are then mid-schedule. The schedule keys belong to the
harness: recipes and --set may not change them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pix2pix.presets import IMPROVEMENTS, improvement_overrides  # noqa: E402

# name -> (what it tests, --set-style overrides applied on top of the reference). The reference is
# today's library defaults at the benchmark size: for facades at 128x128 that is unet_128, ngf 64,
# batch 1, 70x70 PatchGAN (ndf 64), batch norm, dropout, vanilla GAN, lambda_L1 100, Adam 2e-4 (0.5).
RECIPES: dict[str, tuple[str, list[str]]] = {
    "reference": ("today's defaults (pix2pix paper recipe) at the benchmark size", []),
    "l1_only": ("no adversarial term (the paper's L1 row): what the GAN adds", ["loss.lambda_gan=0"]),
    "lsgan": ("least-squares GAN loss", ["loss.gan_mode=lsgan"]),
    "hinge": ("hinge GAN loss", ["loss.gan_mode=hinge"]),
    "resize_conv": ("resize + convolution upsampling in G (no checkerboard)", ["model.upsample=resize_conv"]),
    "fast_step": ("same maths, faster step (fused Adam, allocator, conv backend)", ["train.fast_step=true"]),
    "batch4": ("batch 4 with lr x2 (sqrt scaling)", ["train.batch_size=4", "optim.lr=4e-4"]),
    "demo_net": ("the demo's small network: ngf/ndf 16, batch 4", ["model.ngf=16", "model.ndf=16",
                                                                    "train.batch_size=4"]),
    # the switches of issue 11; with a library version that lacks one, the recipe fails with the config's error
    "ema": ("exponential moving average of G's weights", ["train.ema_decay=0.999"]),
    "diffaug": ("DiffAugment of D's input pairs", ["loss.diffaugment=translation,cutout,color"]),
    "sn_d": ("spectral normalisation in D", ["model.spectral_norm_d=true"]),
    "ttur": ("two time-scale update rule: lr_G 1e-4, lr_D 4e-4", ["optim.lr=1e-4", "optim.lr_d=4e-4"]),
    "r1": ("R1 penalty on D's real pairs", ["loss.lambda_r1=1.0"]),
    "ema_diffaug": ("EMA + DiffAugment", ["train.ema_decay=0.999", "loss.diffaugment=translation,cutout,color"]),
    "combo": ("EMA + DiffAugment + spectral norm D + resize-conv",
              ["train.ema_decay=0.999", "loss.diffaugment=translation,cutout,color", "model.spectral_norm_d=true",
               "model.upsample=resize_conv"]),
}
# the improved presets (pix2pix.presets.IMPROVEMENTS) as recipes: the preset is what the benchmark measured
RECIPES.update({name: (f"the {name} preset's changes", improvement_overrides(name)) for name in IMPROVEMENTS})
REFERENCE = "reference"
DATASETS = ("facades", "synthetic")
# keys the harness sets for every run: a recipe changing them would not be measured the same way
HARNESS_KEYS = ("data.root", "data.direction", "data.crop_size", "train.max_steps", "train.seed", "train.runs_dir",
                "train.name", "train.log_every", "train.sample_every", "train.checkpoint_every", "train.device",
                "optim.lr_policy", "optim.n_epochs", "optim.n_epochs_decay")
FORMAT = "pix2pix-quality/1"


def _error(message: str) -> Exception:
    from pix2pix.errors import ConfigError

    return ConfigError(message)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- recipes


def parse_recipe_set(text: str) -> tuple[str, list[str]]:
    """'name=key=value,key=value' -> (name, ['key=value', ...]); a piece without '=' continues the value
    before it, so 'loss.diffaugment=translation,cutout' stays one override."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not all(c.isalnum() or c in "_-+." for c in name):
        raise _error(f"--recipe-set {text!r}: expected NAME=key=value,key=value (NAME of letters, digits, _-+.).")
    overrides: list[str] = []
    for piece in (p.strip() for p in rest.split(",") if p.strip()):
        if "=" in piece or not overrides:
            overrides.append(piece)
        else:
            overrides[-1] += "," + piece
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise _error(f"--recipe-set {text!r}: {bad[0]!r} is not key=value.")
    return name, overrides


def select_recipes(names: str | None, extra: list[str]) -> dict[str, list[str]]:
    """The recipes to run, reference first: --recipes (default all of RECIPES) plus every --recipe-set."""
    from pix2pix.errors import did_you_mean

    table = {k: list(v[1]) for k, v in RECIPES.items()}
    added: dict[str, list[str]] = {}
    for text in extra:
        name, overrides = parse_recipe_set(text)
        if name in table or name in added:
            raise _error(f"--recipe-set: recipe {name!r} is already defined: choose another name.")
        added[name] = overrides
    chosen = [n.strip() for n in names.split(",") if n.strip()] if names else list(table)
    for n in chosen:
        if n not in table and n not in added:
            raise _error(f"--recipes: unknown recipe {n!r}; defined: {', '.join([*table, *added])}."
                         + did_you_mean(n, [*table, *added]))
    order = [REFERENCE] + [n for n in chosen if n != REFERENCE] + [n for n in added if n not in chosen]
    return {n: (table.get(n) if n in table else added[n]) for n in order}


# ----------------------------------------------------------------------------- datasets


@dataclass
class Prepared:
    """A dataset ready to train on: root/{train,val,test} (symbolic links) and how to read its labels."""

    name: str
    root: Path
    direction: str
    label_set: str  # a label set name or a classes.json path
    label_side: str  # which side of the pairs holds the label maps
    counts: dict[str, int]
    key: str
    source: str


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _link_splits(root: Path, splits: dict[str, list[Path]], info: dict[str, Any]) -> None:
    """root/{split}/name -> the original file, for every split; ready.json last (a cut-off preparation redoes)."""
    from pix2pix.io.atomic import write_json

    if root.exists():
        shutil.rmtree(root)
    for split, files in splits.items():
        (root / split).mkdir(parents=True)
        for f in files:
            (root / split / f.name).symlink_to(f.resolve())
    write_json(root / "ready.json", {**info, "splits": {k: [f.name for f in v] for k, v in splits.items()}})


def _hold_out(files: list[Path], count: int, seed: int, what: str) -> tuple[list[Path], list[Path]]:
    """(train, val): `count` files chosen by `seed` go to val."""
    if not 0 <= count < len(files):
        raise _error(f"{what}: cannot hold out {count} of {len(files)} training pairs as val; use 0..{len(files) - 1}.")
    chosen = set(random.Random(seed).sample(range(len(files)), count))
    return [f for i, f in enumerate(files) if i not in chosen], [f for i, f in enumerate(files) if i in chosen]


def prepare_facades(source: Path, cache: Path, val_count: int, split_seed: int) -> Prepared:
    """facades' train/ and test/ as links, `val_count` training pairs held out as val/."""
    from pix2pix.data.images import list_images
    from pix2pix.errors import DataError

    if not (source / "train").is_dir() or not (source / "test").is_dir():
        raise DataError(f"{source} has no train/ and test/ folders of A|B pairs: point --facades at the facades "
                        "dataset (../shared/data/facades on the development machines).")
    train, test = list_images(source / "train"), list_images(source / "test")
    files = {"train": [(f.name, f.stat().st_size) for f in train], "test": [(f.name, f.stat().st_size) for f in test]}
    key = _hash({"source": str(source.resolve()), "files": files, "val": val_count, "seed": split_seed})[:12]
    root = cache / "data" / f"facades-{key}"
    kept, val = _hold_out(train, val_count, split_seed, f"--facades-val {val_count}")
    splits = {"train": kept, "test": test, **({"val": val} if val else {})}
    if not (root / "ready.json").is_file():
        _link_splits(root, splits, {"source": str(source.resolve()), "val_count": val_count, "split_seed": split_seed})
    return Prepared("facades", root, "BtoA", "facades", "B", {k: len(v) for k, v in splits.items()}, key,
                    str(source.resolve()))


def prepare_synthetic(cache: Path, num: int, size: int, seed: int, val_count: int, split_seed: int) -> Prepared:
    """The synthetic world (`pix2pix data synth`) written once into the cache; its AB/ pairs and instance maps
    linked into splits."""
    from pix2pix.data.images import list_images
    from pix2pix.data.synthetic import write_synthetic_dataset
    from pix2pix.io.atomic import write_json

    world = cache / "data" / f"synthetic-n{num}-s{size}-seed{seed}"
    if not (world / "ready.json").is_file():
        summary = write_synthetic_dataset(world, num=num, size=size, seed=seed)
        write_json(world / "ready.json", summary)
    train, test = list_images(world / "AB" / "train"), list_images(world / "AB" / "test")
    key = _hash({"world": world.name, "val": val_count, "seed": split_seed})[:12]
    root = world / f"pairs-val{val_count}-seed{split_seed}"
    kept, val = _hold_out(train, val_count, split_seed, f"--synthetic-val {val_count}")
    splits = {"train": kept, "test": test, **({"val": val} if val else {})}
    if not (root / "ready.json").is_file():
        _link_splits(root, splits, {"world": str(world), "val_count": val_count, "split_seed": split_seed})
    for split, files in splits.items():  # {split}_inst/ beside each split, for recipes with data.instance_edges
        if not (root / f"{split}_inst").is_dir():
            source, partial = world / ("test_inst" if split == "test" else "train_inst"), root / f".{split}_inst"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            for f in files:
                (partial / f.name).symlink_to((source / f.name).resolve())
            partial.rename(root / f"{split}_inst")
    return Prepared("synthetic", root, "AtoB", str(world / "classes.json"), "A", {k: len(v) for k, v in splits.items()},
                    key, f"pix2pix data synth --num {num} --size {size} --seed {seed}")


# ----------------------------------------------------------------------------- segmenter


def segmenter_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"size": args.size, "steps": args.segmenter_steps, "max_seconds": args.segmenter_seconds,
            "batch_size": args.segmenter_batch, "lr": args.segmenter_lr, "ngf": args.segmenter_ngf,
            "seed": args.segmenter_seed}


def ensure_segmenter(prepared: Prepared, cache: Path, settings: dict[str, Any], device: str,
                     log: Any = print) -> tuple[Path, dict[str, Any]]:
    """The segmenter of this dataset and settings: trained on the real training photos once, then reused."""
    from pix2pix.data.label_sets import get_label_set
    from pix2pix.evaluation.segmenter import is_segmenter_dir, load_segmentation_data, save_segmenter, train_segmenter
    from pix2pix.io.atomic import write_json

    key = _hash({"data": prepared.key, **settings})[:12]
    directory = cache / "segmenters" / f"{prepared.name}-{key}"
    record = directory / "quality.json"
    if is_segmenter_dir(directory) and record.is_file():
        return directory, json.loads(record.read_text())
    label_set = get_label_set(prepared.label_set)
    data = load_segmentation_data(prepared.root, "train", label_set, settings["size"], side=prepared.label_side)
    limit = "" if settings["max_seconds"] is None else f", at most {settings['max_seconds']:g} s"
    log(f"{prepared.name}: training the segmenter on {data.images.shape[0]} real training photos "
        f"({settings['steps']} steps{limit})")
    net, info = train_segmenter(data, steps=settings["steps"], max_seconds=settings["max_seconds"],
                                batch_size=settings["batch_size"], lr=settings["lr"], ngf=settings["ngf"],
                                seed=settings["seed"], device=device)
    save_segmenter(net, directory, label_set, data.size, info)
    info = {**info, "key": key, "settings": settings, "dir": str(directory)}
    write_json(record, info)
    return directory, info


# ----------------------------------------------------------------------------- configs


def reference_config(prepared: Prepared, size: int) -> Any:
    """Today's defaults at `size`: the reference's 286/256 resize-and-crop jitter scaled, a U-Net down to 1x1."""
    from pix2pix.config import Config

    if size < 16 or size & (size - 1):
        raise _error(f"--size {size}: use a power of two of at least 16 (the U-Net halves the image down to 1x1).")
    cfg = Config()
    cfg.preset = ""
    cfg.data.direction = prepared.direction
    cfg.data.load_size, cfg.data.crop_size = round(size * 286 / 256), size
    if size in (128, 256):
        cfg.model.generator = f"unet_{size}"
    else:
        cfg.model.generator, cfg.model.generator_kwargs = "unet", {"num_downs": int(math.log2(size))}
    return cfg


def _check_keys(overrides: list[str], where: str) -> None:
    from pix2pix.config import resolve_key

    for item in overrides:
        key = resolve_key(item.split("=", 1)[0].strip())
        if key in HARNESS_KEYS or key == "preset":
            raise _error(f"{where}: {key} is set by the benchmark for every run (size, seed, budget, schedule, "
                         "logging): remove it from the recipe.")


def run_config(prepared: Prepared, args: argparse.Namespace, overrides: list[str], seed: int,
               runs_dir: Path) -> Any:
    """reference -> --set -> recipe overrides -> the harness's settings (data, seed, logging, schedule)."""
    from pix2pix.config import apply_overrides, validate
    from pix2pix.training.schedules import epochs_for_steps

    cfg = reference_config(prepared, args.size)
    apply_overrides(cfg, list(args.set))
    apply_overrides(cfg, list(overrides))
    d, t, o = cfg.data, cfg.train, cfg.optim
    d.root, d.num_workers = str(prepared.root), 0 if d.num_workers < 0 else d.num_workers
    t.seed, t.device, t.runs_dir, t.name = seed, args.device, str(runs_dir), "run"
    t.log_every, t.sample_every, t.checkpoint_every, t.tensorboard = 1, 10**9, 10**9, False
    if args.schedule == "constant":
        o.lr_policy, o.n_epochs, o.n_epochs_decay = "constant", 10**6, 0
    else:  # linear over the step budget: half constant, half decay (the reference's 100 + 100 proportions)
        o.lr_policy = "linear"
        o.n_epochs, o.n_epochs_decay = epochs_for_steps(args.budget_steps, prepared.counts["train"], t.batch_size)
    return validate(cfg)


def check_recipes(recipes: dict[str, list[str]], prepared: list[Prepared], args: argparse.Namespace) -> None:
    """Every recipe builds a valid config and objective (e.g. a label set that loss.lambda_seg can read) before
    anything trains; each failing one is named with the library's error."""
    from pix2pix.errors import Pix2PixError
    from pix2pix.training.objectives import make_objective

    _check_keys(list(args.set), "--set")
    problems = []
    for name, overrides in recipes.items():
        try:
            _check_keys(overrides, f"recipe {name!r}")
            for p in prepared:
                make_objective(run_config(p, args, overrides, 0, Path("unused")))
        except Pix2PixError as exc:
            problems.append(f"recipe {name!r} ({', '.join(overrides) or 'no overrides'}): {exc}")
    if problems:
        working = [n for n in recipes if not any(p.startswith(f"recipe {n!r}") for p in problems)]
        raise _error("\n".join(problems) + f"\nRun only recipes that work with this version: --recipes "
                     f"{','.join(working)}")


# ----------------------------------------------------------------------------- budget and timing


def budget_step(fraction: float, budget_steps: int) -> int:
    """The step at which the segment ending at `fraction` of a step budget ends."""
    return max(1, round(fraction * budget_steps))


def plan_target(fraction: float, *, budget_steps: int | None, budget_seconds: float | None, steps_done: int,
                seconds_done: float, step_time: float | None, calibration_steps: int) -> tuple[int, bool]:
    """(step to train to, whether it is the calibration chunk) for the segment ending at `fraction` of the budget."""
    cap = budget_step(fraction, budget_steps) if budget_steps else None
    if budget_seconds is None:
        assert cap is not None
        return cap, False
    if step_time is None:
        first = max(1, calibration_steps)
        return (min(first, cap) if cap else first), True
    target = steps_done + max(0, round((fraction * budget_seconds - seconds_done) / step_time))
    return (min(target, cap) if cap else target), False


def step_seconds(records: list[dict[str, Any]], chunk_starts: list[int], upto: int) -> dict[int, float]:
    """Training seconds of each step 1..upto from stats.jsonl (one line per step); the first step of each
    resumed chunk is counted at the median of that chunk's other steps (its warm-up is a cost of resuming)."""
    secs: dict[int, float] = {}
    for r in records:
        s = int(r["step"])
        if s <= upto:
            rate = r.get("it_per_s")
            secs[s] = 1.0 / rate if rate else 0.0
    missing = [s for s in range(1, upto + 1) if s not in secs]
    if missing:
        raise RuntimeError(f"stats.jsonl has no line for step {missing[0]}: the harness needs train.log_every=1 "
                           "and the trainer's it_per_s per line to count training time.")
    bounds = sorted(set(chunk_starts)) + [upto]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if start > 0 and end > start + 1:
            secs[start + 1] = statistics.median(secs[s] for s in range(start + 2, end + 1))
    return secs


def chunk_step_time(records: list[dict[str, Any]], start: int, end: int) -> float:
    """Mean raw step time of steps start+1..end, leaving out the first (warm-up) when there are others."""
    times = [1.0 / r["it_per_s"] for r in records if start < int(r["step"]) <= end and r.get("it_per_s")]
    if len(times) > 1:
        times = times[1:]
    return sum(times) / len(times) if times else 0.0


# ----------------------------------------------------------------------------- one run (the worker)


def _scores(seg: dict[str, Any]) -> dict[str, Any]:
    return {"pixel_accuracy": seg["pixel_accuracy"], "mean_class_accuracy": seg["mean_class_accuracy"],
            "mean_iou": seg["mean_iou"], "class_iou": {k: v["iou"] for k, v in seg["per_class"].items()}}


def extend_progress(progress: dict[str, Any], fingerprint: str, budget_steps: int,
                    fractions: list[float]) -> dict[str, Any]:
    """A run's progress for a shorter step budget, re-keyed for a longer one (constant schedule: the shorter run
    is an exact prefix of the longer). Its scored points that fall on the new fractions' steps are kept, in
    order; if the run went past the first new point it has no score for, it cannot be reused (start afresh)."""
    targets = [budget_step(f, budget_steps) for f in fractions]
    by_steps = {s["steps"]: s for s in progress["segments"]}
    kept = []
    for fraction, target in zip(fractions, targets, strict=True):
        if target not in by_steps:
            break
        kept.append({**by_steps[target], "fraction": fraction})
    if len(kept) < len(targets) and progress["steps"] > targets[len(kept)]:
        return {}
    return {**progress, "fingerprint": fingerprint, "segments": kept}


def run_worker(spec: dict[str, Any], log: Any = None) -> dict[str, Any]:
    """Train one (dataset, recipe, seed) in segments, scoring after each; resumable from run_root/progress.json."""
    import torch

    from pix2pix.config import config_from_dict
    from pix2pix.evaluation import evaluate_model
    from pix2pix.evaluation.segmenter import load_segmenter
    from pix2pix.io.atomic import write_json
    from pix2pix.report import read_stats
    from pix2pix.training.state import load_training_state
    from pix2pix.training.trainer import load_run_config, train

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    torch.set_num_threads(int(spec["threads"]))
    root = Path(spec["run_root"])
    progress_path = root / "progress.json"

    def fingerprint_of(budget_steps: int | None, fractions: list[float]) -> str:
        fixed = {k: spec[k] for k in ("config", "budget_seconds", "calibration_steps", "split", "segmenter",
                                      "inception_weights")}
        return _hash(fixed | {"budget_steps": budget_steps, "fractions": fractions})

    fingerprint = fingerprint_of(spec["budget_steps"], spec["fractions"])
    progress: dict[str, Any] = json.loads(progress_path.read_text()) if progress_path.is_file() else {}
    earlier = {fingerprint_of(b["budget_steps"], b["fractions"]) for b in spec.get("earlier_budgets", [])}
    if progress.get("fingerprint") in earlier:  # the same run for a shorter budget (--extend): continue it
        progress = extend_progress(progress, fingerprint, spec["budget_steps"], spec["fractions"])
        if progress:
            for stale in root.glob("eval-*"):  # numbered by the old fractions; the kept points hold their scores
                shutil.rmtree(stale, ignore_errors=True)
            log(f"  {spec['label']}: continues from step {progress['steps']}, keeping "
                f"{len(progress['segments'])} scored point(s)")
    if progress.get("fingerprint") != fingerprint:  # a new run, or one made with other settings: start afresh
        for stale in [root / "train", *root.glob("eval-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        progress = {"fingerprint": fingerprint, "run_dir": None, "steps": 0, "chunk_starts": [], "planned": None,
                    "segments": []}
    if progress["planned"] is not None:  # the last chunk was cut off: continue from its checkpoint
        ckpt = Path(progress["run_dir"] or root / "none") / "checkpoints" / "latest.pt"
        step = int(load_training_state(ckpt)["step"]) if ckpt.is_file() else 0
        if step == 0:  # cut off before its first checkpoint
            shutil.rmtree(root / "train", ignore_errors=True)
            progress.update(run_dir=None, steps=0, chunk_starts=[], segments=[])
        elif step <= progress["steps"]:
            progress["chunk_starts"] = progress["chunk_starts"][:-1]
        progress.update(steps=max(step, progress["steps"]) if step else 0, planned=None)
    progress["segments"] = [s for s in progress["segments"] if s["steps"] <= progress["steps"]]

    def save() -> None:
        write_json(progress_path, progress)

    def train_to(target: int) -> None:
        progress["chunk_starts"].append(progress["steps"])
        progress["planned"] = target
        save()
        quiet = lambda *a, **k: None  # noqa: E731
        if progress["run_dir"] is None:
            cfg = config_from_dict(spec["config"])
            cfg.train.max_steps = target
            result = train(cfg, log=quiet)
            progress["run_dir"] = str(result.run_dir)
        else:
            cfg = load_run_config(progress["run_dir"])
            cfg.train.max_steps = target
            result = train(cfg, resume=progress["run_dir"], log=quiet)
        if result.interrupted:  # the trainer saved its state; the next start continues from there
            save()
            raise KeyboardInterrupt
        progress.update(steps=result.step, planned=None)
        save()

    def records() -> list[dict[str, Any]]:
        return read_stats(Path(progress["run_dir"]) / "stats.jsonl") if progress["run_dir"] else []

    def seconds_so_far() -> float:
        return sum(step_seconds(records(), progress["chunk_starts"], progress["steps"]).values())

    segmenter = load_segmenter(spec["segmenter"], spec["device"])
    fractions = spec["fractions"]
    label = spec["label"]
    for k, fraction in enumerate(fractions):
        if k < len(progress["segments"]):
            continue
        while True:
            starts = progress["chunk_starts"]
            step_time = chunk_step_time(records(), starts[-1], progress["steps"]) if starts else None
            target, calibrating = plan_target(
                fraction, budget_steps=spec["budget_steps"], budget_seconds=spec["budget_seconds"],
                steps_done=progress["steps"], seconds_done=seconds_so_far(), step_time=step_time,
                calibration_steps=spec["calibration_steps"])
            if target > progress["steps"]:
                train_to(target)
            if not calibrating:
                break
        last = k == len(fractions) - 1
        out = root / f"eval-{k}"
        if out.exists():
            shutil.rmtree(out)
        fid = bool(spec["inception_weights"]) and last
        result = evaluate_model(Path(progress["run_dir"]) / "model", spec["data_root"], out, phase=spec["split"],
                                segmenter=segmenter, device=spec["device"], fid=fid,
                                inception_weights=spec["inception_weights"] or None, lpips_net=None)
        if not last:  # keep the scores; the images of the final model stay for inspection
            for sub in ("real", "fake", "labels"):
                shutil.rmtree(out / sub, ignore_errors=True)
        m = result["metrics"]
        seconds = seconds_so_far()
        segment = {
            "fraction": fraction, "steps": progress["steps"], "train_seconds": seconds,
            "epochs": progress["steps"] * spec["config"]["train"]["batch_size"] / spec["train_pairs"],
            "chunks": len(progress["chunk_starts"]),
            "metrics": {key: m[key] for key in ("l1", "psnr", "ssim", "fid", "kid_mean", "kid_std") if key in m},
            "generated": _scores(result["segmentation"]["generated"]),
            "real": _scores(result["segmentation"]["real"]),
        }
        if fid and "fid" not in m:
            segment["unavailable"] = result.get("unavailable", {})
        progress["segments"].append(segment)
        save()
        log(f"  {label}: {fraction:g} of the budget, {segment['steps']} steps, {seconds:.1f} s: "
            f"mIoU {segment['generated']['mean_iou']:.3f} (real {segment['real']['mean_iou']:.3f}), "
            f"L1 {m['l1']:.4f}")
    return {"segments": progress["segments"], "run_dir": progress["run_dir"]}


def worker_main(spec_path: str) -> int:
    from pix2pix.errors import Pix2PixError
    from pix2pix.io.atomic import write_json

    spec = json.loads(Path(spec_path).read_text())
    try:
        write_json(spec["result"], run_worker(spec))
    except Pix2PixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run continues from its last segment when the command is run again", file=sys.stderr)
        return 130
    return 0


# ----------------------------------------------------------------------------- the benchmark


def _bench() -> Any:
    """benchmarks/benchmark.py, for its machine description and /proc readers."""
    import importlib.util

    if "pix2pix_benchmark" not in sys.modules:
        spec = importlib.util.spec_from_file_location("pix2pix_benchmark", Path(__file__).with_name("benchmark.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["pix2pix_benchmark"] = module
        spec.loader.exec_module(module)
    return sys.modules["pix2pix_benchmark"]


def machine() -> dict[str, str]:
    """The machine as benchmarks/benchmark.py describes it (CPU model and flags, CPUs, torch and its threads)."""
    return _bench().machine_info("cpu")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its finished children (the worker subprocesses)."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


class LoadMeter:
    """How many CPUs other processes kept busy on average over a stretch of time (from /proc/stat)."""

    def __init__(self) -> None:
        self.busy, self.own, self.start = _bench()._machine_busy_s(), _own_cpu_s(), time.perf_counter()

    def others_cpus(self) -> float | None:
        busy, wall = _bench()._machine_busy_s(), time.perf_counter() - self.start
        if busy < 0 or self.busy < 0 or wall <= 0:
            return None
        return max(0.0, (busy - self.busy) - (_own_cpu_s() - self.own)) / wall


def wait_for_quiet(limit_cpus: float, log: Any = print, sample_s: float = 5.0, give_up_s: float = 1800.0) -> float:
    """Wait until other processes use at most `limit_cpus` CPUs (over `sample_s`), at most `give_up_s`;
    returns the seconds waited."""
    start = time.perf_counter()
    told = False
    while True:
        meter = LoadMeter()
        time.sleep(sample_s)
        others = meter.others_cpus()
        waited = time.perf_counter() - start
        if others is None or others <= limit_cpus or waited >= give_up_s:
            if told:
                log(f"  ... waited {waited:.0f} s (other processes now {-1 if others is None else others:.2f} CPUs)")
            return waited
        if not told:
            log(f"  other processes use {others:.2f} CPUs (--wait-quiet {limit_cpus:g}): waiting")
            told = True


def extend_measurement(raw: dict[str, Any] | None, raw_path: Path, args: argparse.Namespace) -> None:
    """--extend: raise a saved measurement's step budget (and change its fractions) in place. Its runs become
    "shorter" (not reported) until a run of this budget continues them from their checkpoints."""
    if raw is None:
        raise _error(f"--extend continues a saved measurement, and {raw_path} holds none: drop --extend to start one.")
    old = raw.get("settings", {})
    if args.schedule != "constant" or old.get("schedule") != "constant" or args.budget_seconds is not None \
            or old.get("budget_seconds") is not None or args.budget_steps is None:
        raise _error("--extend needs --schedule constant and a step budget alone (--budget-steps), in the saved "
                     f"measurement ({raw_path}) and now: only then is a shorter run the start of a longer one.")
    if args.budget_steps < old["budget_steps"]:
        raise _error(f"--extend --budget-steps {args.budget_steps}: {raw_path} already trained "
                     f"{old['budget_steps']} steps; give at least that many.")
    if (args.budget_steps, args.fractions) == (old["budget_steps"], old["fractions"]):
        return  # extended before (this continues that)
    raw.setdefault("earlier_budgets", []).append({"budget_steps": old["budget_steps"], "fractions": old["fractions"]})
    old.update(budget_steps=args.budget_steps, fractions=args.fractions)
    for run in raw["runs"]:
        if run.get("status") == "done":
            run["status"] = "shorter"


def settings_of(args: argparse.Namespace, prepared: list[Prepared], segmenters: dict[str, dict]) -> dict[str, Any]:
    """What makes runs comparable: a saved measurement continues only with the same settings."""
    return {
        "datasets": {p.name: {"key": p.key, "source": p.source, "counts": p.counts} for p in prepared},
        "size": args.size, "budget_steps": args.budget_steps, "budget_seconds": args.budget_seconds,
        "fractions": args.fractions, "schedule": args.schedule, "calibration_steps": args.calibration_steps,
        "set": list(args.set), "split": args.split, "device": args.device, "threads": args.threads,
        "segmenter": segmenter_settings(args), "segmenter_keys": {k: v["key"] for k, v in segmenters.items()},
        "fid": bool(args.inception_weights),
    }


def _parse_fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _error(f"--fractions {text!r}: give increasing fractions ending at 1, e.g. 0.25,0.5,0.75,1.") from None
    if not values or values != sorted(set(values)) or values[0] <= 0 or values[-1] != 1:
        raise _error(f"--fractions {text!r}: give increasing fractions in (0, 1] ending at 1, e.g. 0.25,0.5,0.75,1.")
    return values


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _error(f"--seeds {text!r}: give seeds as integers, e.g. 0,1,2.") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise _error(f"--seeds {text!r}: give distinct non-negative seeds, e.g. 0,1,2.")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default="facades,synthetic", help="facades, synthetic or both (default both)")
    p.add_argument("--facades", type=Path, default=REPO.parent / "shared" / "data" / "facades",
                   help="facades in A|B layout (train/, test/); default ../shared/data/facades")
    p.add_argument("--size", type=int, default=128, help="image size (default 128)")
    p.add_argument("--facades-val", type=int, default=40, help="facades training pairs held out as val (default 40)")
    p.add_argument("--synthetic-num", type=int, default=240, help="synthetic scenes, 20%% test (default 240)")
    p.add_argument("--synthetic-seed", type=int, default=0)
    p.add_argument("--synthetic-val", type=int, default=24, help="synthetic training pairs held out (default 24)")
    p.add_argument("--split-seed", type=int, default=0, help="seed choosing the val pairs (default 0)")
    p.add_argument("--split", default="test", choices=["test", "val"], help="split that is scored (default test)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "pix2pix" / "quality",
                   help="data links, segmenters and runs, outside the repository (default ~/.cache/pix2pix/quality)")
    p.add_argument("--recipes", help=f"comma-separated recipes (default all: {', '.join(RECIPES)}); "
                                     "the reference always runs")
    p.add_argument("--recipe-set", action="append", default=[], metavar="NAME=KEY=VALUE,...",
                   help="define and run one more recipe, e.g. mine=loss.gan_mode=hinge,model.ngf=32")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every recipe, the reference included (e.g. model.ngf=32)")
    p.add_argument("--budget-seconds", type=float, help="training seconds per run")
    p.add_argument("--budget-steps", type=int, help="training steps per run")
    p.add_argument("--fractions", default="0.25,0.5,0.75,1", help="score at these fractions of the budget")
    p.add_argument("--seeds", default="0,1,2", help="seeds per recipe (default 0,1,2)")
    p.add_argument("--extend", action="store_true",
                   help="continue the saved measurement (--json) to a larger --budget-steps with these --fractions "
                        "(constant schedule): each run resumes from its checkpoint")
    p.add_argument("--schedule", default="constant", choices=["constant", "linear"],
                   help="learning-rate schedule of every run (default constant; linear needs --budget-steps)")
    p.add_argument("--calibration-steps", type=int, default=20,
                   help="with --budget-seconds: steps that measure the step time first (default 20)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    p.add_argument("--device", default="cpu", help="device of every run (default cpu)")
    p.add_argument("--segmenter-steps", type=int, default=2000)
    p.add_argument("--segmenter-seconds", type=float, default=None, help="also stop the segmenter after this time")
    p.add_argument("--segmenter-batch", type=int, default=8)
    p.add_argument("--segmenter-lr", type=float, default=1e-3)
    p.add_argument("--segmenter-ngf", type=int, default=32)
    p.add_argument("--segmenter-seed", type=int, default=0)
    p.add_argument("--inception-weights", metavar="FILE", help="FID/KID at the end of each run with these weights")
    p.add_argument("--wait-quiet", type=float, metavar="CPUS",
                   help="before each run, wait (up to 30 min) until other processes use at most CPUS CPUs")
    p.add_argument("--isolation", default="process", choices=["process", "inline"],
                   help="each run in its own subprocess (default) or in this process (tests, debugging)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "quality.md", help="report (markdown)")
    p.add_argument("--json", type=Path, help="raw results (default: --out with .json)")
    p.add_argument("--render", type=Path, metavar="RAW.json", help="only re-render a saved measurement")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from pix2pix.errors import Pix2PixError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    try:
        if args.render:
            if not args.render.is_file():
                raise _error(f"--render {args.render}: no such file.")
            for path in write_report(json.loads(args.render.read_text()), args.out):
                print(f"wrote {path}")
            return 0
        return run_benchmark(args, argv)
    except Pix2PixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue (finished runs are kept)", file=sys.stderr)
        return 130


def run_benchmark(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from pix2pix.io.atomic import write_json

    if args.budget_seconds is None and args.budget_steps is None:
        raise _error("give a budget: --budget-seconds S (training time per run) and/or --budget-steps N.")
    if (args.budget_seconds is not None and args.budget_seconds <= 0) or (args.budget_steps is not None
                                                                            and args.budget_steps < 1):
        raise _error("--budget-seconds and --budget-steps must be positive.")
    if args.schedule == "linear" and args.budget_steps is None:
        raise _error("--schedule linear decays over the step budget: add --budget-steps N (or use constant).")
    if args.threads < 1:
        raise _error(f"--threads {args.threads}: use at least 1.")
    args.fractions = _parse_fractions(args.fractions)
    seeds = _parse_seeds(args.seeds)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown or not datasets:
        raise _error(f"--datasets {args.datasets!r}: choose from {', '.join(DATASETS)}.")
    cache = args.cache.expanduser()
    if _inside(cache, REPO):
        raise _error(f"--cache {cache} is inside the repository: datasets and runs must stay out of it; "
                     "choose a folder elsewhere (default ~/.cache/pix2pix/quality).")
    raw_path = args.json or args.out.with_suffix(".json")
    recipes = select_recipes(args.recipes, args.recipe_set)
    torch.set_num_threads(args.threads)

    prepared = []
    for name in datasets:
        if name == "facades":
            prepared.append(prepare_facades(args.facades, cache, args.facades_val, args.split_seed))
        else:
            prepared.append(prepare_synthetic(cache, args.synthetic_num, args.size, args.synthetic_seed,
                                              args.synthetic_val, args.split_seed))
    check_recipes(recipes, prepared, args)
    segmenters = {p.name: ensure_segmenter(p, cache, segmenter_settings(args), args.device) for p in prepared}
    settings = settings_of(args, prepared, {k: v[1] for k, v in segmenters.items()})

    raw = json.loads(raw_path.read_text()) if raw_path.is_file() else None
    if args.extend:
        extend_measurement(raw, raw_path, args)
    if raw is not None:
        old = raw.get("settings", {})
        per_dataset = ("datasets", "segmenter_keys")  # a dataset may be added; one already there must match
        differ = sorted(k for k in set(old) | set(settings) if k not in per_dataset and old.get(k) != settings.get(k))
        differ += [f"{k}.{d}" for k in per_dataset for d in settings.get(k, {})
                   if d in old.get(k, {}) and old[k][d] != settings[k][d]]
        if raw.get("format") != FORMAT or differ:
            def value(where: dict, key: str) -> Any:
                head, _, sub = key.partition(".")
                return where.get(head, {}).get(sub) if sub else where.get(key)

            raise _error(f"{raw_path} holds a measurement with other settings ({', '.join(differ) or 'format'}: "
                         + "; ".join(f"{k} {value(old, k)!r} there, {value(settings, k)!r} now" for k in differ[:3])
                         + "): pass the same settings to continue it, or another --json and --out to start anew.")
        for k in per_dataset:
            raw["settings"][k] = {**old.get(k, {}), **settings[k]}
    else:
        raw = {"format": FORMAT, "id": f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}",
               "settings": settings, "invocations": [], "datasets": {}, "recipes": {}, "runs": []}
    command = "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in argv)
    raw["invocations"].append({"command": command, "date": _now(), "machine": machine()})
    for p in prepared:
        seg_dir, seg_info = segmenters[p.name]
        raw["datasets"][p.name] = {"source": p.source, "root": str(p.root), "counts": p.counts,
                                   "direction": p.direction, "segmenter": seg_info}
    for name, overrides in recipes.items():
        raw["recipes"][name] = {"overrides": overrides, "description": RECIPES[name][0] if name in RECIPES else
                                "defined with --recipe-set"}
    write_json(raw_path, raw)

    signal.signal(signal.SIGTERM, _on_sigterm)
    jobs = [(p, name, seed) for p in prepared for seed in seeds for name in recipes]  # seeds outer: all recipes early
    runs_root = cache / "runs" / raw["id"]  # a new measurement trains afresh; continuing one finds its runs
    started = time.perf_counter()
    for i, (p, name, seed) in enumerate(jobs, 1):
        overrides = recipes[name]
        done = next((r for r in raw["runs"] if (r["dataset"], r["recipe"], r["seed"]) == (p.name, name, seed)), None)
        if done is not None and done["overrides"] == overrides and done.get("status") == "done":
            print(f"[{i}/{len(jobs)}] {p.name} {name} seed {seed}: done before, skipped", flush=True)
            continue
        print(f"[{i}/{len(jobs)}] {p.name} {name} seed {seed} ...", flush=True)
        run_root = runs_root / p.name / f"{name}-{_hash(overrides)[:8]}" / f"seed{seed}"
        cfg = run_config(p, args, overrides, seed, run_root / "train")
        spec = {"label": f"{p.name}/{name}/seed{seed}", "config": cfg.to_dict(), "run_root": str(run_root),
                "data_root": str(p.root), "segmenter": str(segmenters[p.name][0]), "split": args.split,
                "budget_steps": args.budget_steps, "budget_seconds": args.budget_seconds,
                "fractions": args.fractions, "calibration_steps": args.calibration_steps, "threads": args.threads,
                "device": args.device, "inception_weights": args.inception_weights or "",
                "train_pairs": p.counts["train"], "result": str(run_root / "result.json"),
                "earlier_budgets": raw.get("earlier_budgets", [])}
        waited = wait_for_quiet(args.wait_quiet) if args.wait_quiet is not None else 0.0
        meter = LoadMeter()
        result = _run_one(spec, args.isolation)
        others = meter.others_cpus()
        runs = [r for r in raw["runs"] if (r["dataset"], r["recipe"], r["seed"]) != (p.name, name, seed)]
        runs.append({"dataset": p.name, "recipe": name, "seed": seed, "overrides": overrides, "status": "done",
                     "segments": result["segments"], "run_dir": result["run_dir"], "finished": _now(),
                     "wall_seconds": round(time.perf_counter() - meter.start, 1),
                     "others_cpus": None if others is None else round(others, 3), "waited_seconds": round(waited),
                     "cpu": raw["invocations"][-1]["machine"].get("cpu", "")})
        raw["runs"] = runs
        write_json(raw_path, raw)
        write_report(raw, args.out)
    paths = write_report(raw, args.out)
    print(f"wrote {', '.join(str(x) for x in paths)} and {raw_path} ({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption so that the running worker is asked to save and stop."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _run_one(spec: dict[str, Any], isolation: str) -> dict[str, Any]:
    from pix2pix.io.atomic import write_json

    if isolation == "inline":
        return run_worker(spec)
    spec_path = Path(spec["run_root"]) / "spec.json"
    write_json(spec_path, spec)
    result_path = Path(spec["result"])
    result_path.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)])
    try:
        code = proc.wait()
    except KeyboardInterrupt as exc:  # Ctrl-C reached the worker too; SIGTERM did not: pass it on as one
        if isinstance(exc, _Terminated) and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait()  # the worker saves its state after the current step
        raise
    if code == 130:
        raise KeyboardInterrupt
    if code != 0 or not result_path.is_file():
        raise _error(f"run {spec['label']} failed (exit status {code}; its messages are above). Its state is in "
                     f"{spec['run_root']}; fix the cause and run the same command again to continue.")
    return json.loads(result_path.read_text())


# ----------------------------------------------------------------------------- aggregation and report


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation (n-1), n) over the defined values; std is None below 2 values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def fmt(stats: tuple[float | None, float | None, int], digits: int = 3) -> str:
    mean, std, _ = stats
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


FINAL_VALUES = {  # column -> (value of a run's final segment, digits)
    "pixel_accuracy": (lambda s: s["generated"]["pixel_accuracy"], 3),
    "mean_class_accuracy": (lambda s: s["generated"]["mean_class_accuracy"], 3),
    "mean_iou": (lambda s: s["generated"]["mean_iou"], 3),
    "iou_ratio": (lambda s: s["generated"]["mean_iou"] / s["real"]["mean_iou"] if s["real"]["mean_iou"] else None, 3),
    "l1": (lambda s: s["metrics"].get("l1"), 4),
    "psnr": (lambda s: s["metrics"].get("psnr"), 2),
    "ssim": (lambda s: s["metrics"].get("ssim"), 3),
    "fid": (lambda s: s["metrics"].get("fid"), 1),
    "kid_mean": (lambda s: s["metrics"].get("kid_mean"), 4),
    "steps": (lambda s: s["steps"], 0),
    "train_seconds": (lambda s: s["train_seconds"], 0),
    "epochs": (lambda s: s["epochs"], 2),
}


def summarize(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset -> recipe -> {"n": seeds, column: (mean, std, n) of the final segments, "curve": per fraction
    (mean seconds, mean IoU stats), "class_iou": class -> stats}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    order = list(raw.get("recipes", {}))
    for run in sorted((r for r in raw["runs"] if r.get("status") == "done"),
                      key=lambda r: (order.index(r["recipe"]) if r["recipe"] in order else len(order), r["seed"])):
        out.setdefault(run["dataset"], {}).setdefault(run["recipe"], {"runs": []})["runs"].append(run)
    for recipes in out.values():
        for entry in recipes.values():
            runs = entry["runs"]
            finals = [r["segments"][-1] for r in runs]
            entry["seeds"] = [r["seed"] for r in runs]
            for col, (get, _) in FINAL_VALUES.items():
                entry[col] = mean_std([get(s) for s in finals])
            classes = list(finals[0]["generated"]["class_iou"])
            entry["class_iou"] = {c: mean_std([s["generated"]["class_iou"].get(c) for s in finals]) for c in classes}
            n_seg = min(len(r["segments"]) for r in runs)
            entry["curve"] = [{"fraction": runs[0]["segments"][k]["fraction"],
                               "seconds": mean_std([r["segments"][k]["train_seconds"] for r in runs]),
                               "steps": mean_std([r["segments"][k]["steps"] for r in runs]),
                               "mean_iou": mean_std([r["segments"][k]["generated"]["mean_iou"] for r in runs])}
                              for k in range(n_seg)]
            entry["real"] = {key: mean_std([s["real"][key] for s in finals])
                             for key in ("pixel_accuracy", "mean_class_accuracy", "mean_iou")}
            real_iou = [s["real"]["mean_iou"] for s in finals]
            entry["real_spread"] = (min(real_iou), max(real_iou))
    return out


def time_to_reach(curve: list[dict[str, Any]], level: float) -> tuple[float | None, bool]:
    """First training time at which the mean IoU curve reaches `level` (linear between points) and whether it
    was already there at the first point (then the time is an upper bound)."""
    prev = None
    for point in curve:
        x, y = point["seconds"][0], point["mean_iou"][0]
        if y is not None and y >= level:
            if prev is None:
                return x, True
            px, py = prev
            return (px + (x - px) * (level - py) / (y - py) if y > py else x), False
        if y is not None:
            prev = (x, y)
    return None, False


def _separated(a: tuple, b: tuple) -> bool:
    """The gap between two means is larger than both standard deviations."""
    return a[0] is not None and b[0] is not None and a[1] is not None and b[1] is not None and \
        abs(a[0] - b[0]) > max(a[1], b[1])


def plot_path(out: Path, dataset: str) -> Path:
    return out.with_name(f"{out.stem}_{dataset}.svg")


def render_plot(raw: dict[str, Any], dataset: str, recipes: dict[str, dict[str, Any]]) -> str:
    from pix2pix.report import line_plot_svg

    series = []
    for name, entry in recipes.items():
        curve = entry["curve"]
        ys = [c["mean_iou"] for c in curve]
        series.append({"name": f"{name} ({len(entry['seeds'])})", "x": [c["seconds"][0] for c in curve],
                       "y": [m for m, _, _ in ys],
                       "low": [None if s is None else m - s for m, s, _ in ys],
                       "high": [None if s is None else m + s for m, s, _ in ys]})
    hlines = []
    ref = recipes.get(REFERENCE)
    if ref:
        hlines.append(("real photos (ceiling)", ref["real"]["mean_iou"][0]))
        hlines.append(("reference, end of budget", ref["mean_iou"][0]))
    size = raw["settings"]["size"]
    return line_plot_svg(series, x_label="training seconds (mean over seeds)",
                         y_label=f"mean IoU on {raw['settings']['split']} (± std over seeds)",
                         title=f"{dataset} at {size}x{size}: segmentation score against training time",
                         hlines=hlines)


def render_markdown(raw: dict[str, Any], out: Path) -> str:
    s = raw["settings"]
    inv = raw["invocations"][-1] if raw["invocations"] else {"command": "?", "date": "?", "machine": {}}
    m = inv["machine"]
    budget = " and ".join(x for x in (f"{s['budget_seconds']:g} training seconds" if s["budget_seconds"] else "",
                                      f"{s['budget_steps']} steps" if s["budget_steps"] else "") if x)
    if raw.get("earlier_budgets"):  # --extend: each run continued its shorter run, which is its exact start
        budget += " (continued with --extend from " + ", then ".join(
            f"{b['budget_steps']}" for b in raw["earlier_budgets"]) + " steps; the earlier commands are in the JSON)"
    summary = summarize(raw)
    lines = [
        "# Quality benchmark: recipes at equal compute, scored by segmentation", "",
        "Command (from the repository root):", "", f"    {inv['command']}", "",
        f"Machine: {m.get('cpu', '?')}, {m.get('logical_cpus', '?')} logical CPUs, torch {m.get('torch', '?')} with "
        f"{s['threads']} thread(s), device {s['device']}; {m.get('platform', '')}. Last run started "
        f"{inv['date']} (load average then: {m.get('load_average_at_start', '?')}).",
    ]
    cpus = sorted({r.get("cpu", "") for r in raw["runs"]} - {""})
    if len(cpus) > 1:
        lines.append(f"Runs came from several machines: {'; '.join(cpus)}.")
    lines += [
        "",
        f"Budget per run: {budget}, scored at {', '.join(f'{f:g}' for f in s['fractions'])} of it. Training seconds "
        "are the trainer's own per-step wall-clock (data loading + step), without start-up, checkpoints and "
        "evaluation. Learning rate: "
        + ("constant at optim.lr for every recipe (each point is what a run with that shorter budget gives)."
           if s["schedule"] == "constant" else "constant for half the budget's epochs, then linear decay to 0.")
        + f" Scored on the {s['split']} split"
        + (f"; every recipe with --set {' '.join(s['set'])}" if s["set"] else "") + ".",
        "",
        "Each cell: mean ± sample standard deviation over the seeds (n - 1). mIoU / real: the generated photos' "
        "mean IoU over the real photos' (the ceiling); × reference: mean IoU over the reference's, with "
        "**bold** where the gap is larger than both standard deviations.",
    ]
    for dataset, recipes in summary.items():
        d = raw["datasets"].get(dataset, {})
        seg = d.get("segmenter", {})
        counts = d.get("counts", {})
        ref = recipes.get(REFERENCE)
        lines += ["", f"## {dataset}", "",
                  f"Data: {d.get('source', '?')} ({d.get('direction', '')}), "
                  + ", ".join(f"{v} {k}" for k, v in counts.items())
                  + f" pairs at {s['size']}x{s['size']}. Segmenter: U-Net (ngf {seg.get('ngf', '?')}) trained "
                  f"{seg.get('steps', '?')} steps of {seg.get('batch_size', '?')} in {seg.get('seconds', '?')} s on "
                  f"the real training photos (seed {seg.get('seed', '?')}, key {seg.get('key', '?')}).", ""]
        fid = any(e["fid"][0] is not None for e in recipes.values())
        head = ["recipe", "seeds", "per-pixel acc.", "mean class acc.", "mean IoU", "mIoU / real", "× reference",
                "L1", "PSNR", "SSIM"] + (["FID", "KID"] if fid else []) + ["steps", "epochs", "training s"]
        cols = ["pixel_accuracy", "mean_class_accuracy", "mean_iou", "iou_ratio", "ratio", "l1", "psnr", "ssim"] \
            + (["fid", "kid_mean"] if fid else []) + ["steps", "epochs", "train_seconds"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, e in recipes.items():
            cells = [name, str(len(e["seeds"]))]
            for col in cols:
                if col == "ratio":
                    if ref is None or not ref["mean_iou"][0] or e["mean_iou"][0] is None:
                        cells.append("—")
                    else:
                        text = f"{e['mean_iou'][0] / ref['mean_iou'][0]:.2f}x"
                        cells.append(f"**{text}**" if name != REFERENCE and _separated(e["mean_iou"], ref["mean_iou"])
                                     else text)
                else:
                    cells.append(fmt(e[col], FINAL_VALUES[col][1]))
            lines.append("| " + " | ".join(cells) + " |")
        if ref is not None:
            r = ref["real"]
            lo, hi = ref["real_spread"]
            cells = ["real photos (ceiling)", "", fmt(r["pixel_accuracy"]), fmt(r["mean_class_accuracy"]),
                     fmt(r["mean_iou"]), "1.000"] + [""] * (len(head) - 6)
            lines.append("| " + " | ".join(cells) + " |")
            if hi - lo > 1e-9:
                lines.append(f"\nThe real photos' mean IoU varied between runs ({lo:.4f}-{hi:.4f}).")
        # quality over time
        fractions = s["fractions"]
        lines += ["", "Mean IoU at each fraction of the budget (mean ± std @ mean training seconds), and when the "
                  "mean curve first reaches the reference's final mean IoU (linear between points; ≤ when the "
                  "first point is already there):", "",
                  "| recipe | " + " | ".join(f"{f:g}" for f in fractions) + " | reaches reference's final |",
                  "|---|" + "---|" * (len(fractions) + 1)]
        for name, e in recipes.items():
            cells = [f"{fmt(c['mean_iou'])} @ {c['seconds'][0]:.0f} s" for c in e["curve"]]
            cells += ["—"] * (len(fractions) - len(cells))
            reach = "—"
            if ref is not None and ref["mean_iou"][0] is not None:
                t, bound = time_to_reach(e["curve"], ref["mean_iou"][0])
                ref_t = ref["train_seconds"][0]
                reach = "not reached" if t is None else (f"{'≤ ' if bound else ''}{t:.0f} s"
                                                         + (f" ({t / ref_t:.2f} of the reference's)" if ref_t else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {reach} |")
        classes = list(next(iter(recipes.values()))["class_iou"])
        lines += ["", "Per-class IoU at the end of the budget (mean over seeds):", "",
                  "| recipe | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        for name, e in recipes.items():
            lines.append(f"| {name} | " + " | ".join("—" if e["class_iou"][c][0] is None else
                                                    f"{e['class_iou'][c][0]:.2f}" for c in classes) + " |")
        if ref is not None:
            real_iou = ref["runs"][0]["segments"][-1]["real"]["class_iou"]
            lines.append("| real photos | " + " | ".join("—" if real_iou.get(c) is None else f"{real_iou[c]:.2f}"
                                                         for c in classes) + " |")
        lines += ["", f"![mean IoU against training seconds, {dataset}]({plot_path(out, dataset).name})"]
    reported = [r for r in raw["runs"] if r.get("status") == "done"]
    busy = [r for r in reported if (r.get("others_cpus") or 0) > 0.25]
    if busy:
        lines += ["", f"**Shared machine:** during {len(busy)} of {len(reported)} runs other processes kept more "
                  "than 0.25 CPU busy on average (column 'others' below): with a time budget those runs reached "
                  "fewer steps, with a step budget their training seconds are inflated. Rerun them on a quiet "
                  "machine (remove them from the JSON) or use --wait-quiet."]
    lines += ["", "<details><summary>Every run</summary>", "",
              "| dataset | recipe | seed | steps | training s | wall s (with evaluation) | others (CPUs) | finished |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(reported, key=lambda r: r.get("finished", "")):
        final = r["segments"][-1]
        others = "?" if r.get("others_cpus") is None else f"{r['others_cpus']:.2f}"
        lines.append(f"| {r['dataset']} | {r['recipe']} | {r['seed']} | {final['steps']} | "
                     f"{final['train_seconds']:.0f} | {r.get('wall_seconds', 0):.0f} | {others} | "
                     f"{r.get('finished')} |")
    lines += ["", "</details>"]
    shorter = [r for r in raw["runs"] if r.get("status") == "shorter"]
    if shorter:
        lines += ["", "Not reported: runs of an earlier, shorter budget, kept in the JSON (`--extend` with their "
                  "recipe and seed continues them): " + ", ".join(
                      f"{r['dataset']} {r['recipe']} seed {r['seed']} ({r['segments'][-1]['steps']} steps)"
                      for r in shorter) + "."]
    lines += ["", "Recipes (overrides on top of the reference):", ""]
    for name, info in raw.get("recipes", {}).items():
        ov = ", ".join(f"`{o}`" for o in info["overrides"]) or "none"
        lines.append(f"- `{name}`: {info['description']}; {ov}")
    return "\n".join(lines) + "\n"


def write_report(raw: dict[str, Any], out: Path) -> list[Path]:
    """The markdown report at `out` and one plot per dataset beside it (out_<dataset>.svg)."""
    from pix2pix.io.atomic import write_text

    out = Path(out)
    write_text(out, render_markdown(raw, out))
    paths = [out]
    for dataset, recipes in summarize(raw).items():
        path = plot_path(out, dataset)
        write_text(path, render_plot(raw, dataset, recipes))
        paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(main())
