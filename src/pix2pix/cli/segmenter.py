"""`pix2pix segmenter train`: train the segmentation network behind the segmentation score.

    pix2pix segmenter train --data ../shared/data/facades --label-set facades --input-size 64 --steps 2000 -o runs/seg

Trains on the real photos and their label maps of a split (the photo side and the label side of
pix2pix pairs, or pix2pixHD's {phase}_img/ and {phase}_label/), saves the network with its label
set in a directory (config.json + segmenter.safetensors), and scores the real photos of
--eval-phase: the ceiling that `pix2pix eval --segmenter DIR` reports beside generated images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, Pix2PixError
from .options import Deprecated, add_device, add_label_set, add_output, add_progress, output_folder, show_progress


def _cmd_train(args: argparse.Namespace) -> int:
    from ..data.label_sets import get_label_set
    from ..evaluation.segmenter import (
        check_training_options,
        load_segmentation_data,
        load_segmenter,
        save_segmenter,
        score_real_images,
        train_segmenter,
    )
    from ..runtime import resolve_device

    if args.input_size is not None and args.input_size < 4:
        raise ConfigError(f"--input-size {args.input_size}: use at least 4 pixels.")
    check_training_options(steps=args.steps, max_seconds=args.max_seconds, batch_size=args.batch_size, lr=args.lr,
                           ngf=args.ngf, max_items=args.max_items)
    if args.output:
        output_folder(args.output)
    label_set = get_label_set(args.label_set)
    device = resolve_device(args.device)
    data = load_segmentation_data(args.data, args.phase, label_set, args.input_size, side=args.side,
                                  max_items=args.max_items)
    print(f"{data.images.shape[0]} {args.phase} pairs from {args.data}, labels from {data.source}, "
          f"{data.size[1]}x{data.size[0]} px, {label_set.label_nc} classes ({label_set.name})")
    net, info = train_segmenter(data, steps=args.steps, max_seconds=args.max_seconds, batch_size=args.batch_size,
                                lr=args.lr, ngf=args.ngf, seed=args.seed, device=device,
                                log=(lambda m: print(m, file=sys.stderr)) if show_progress(args) else None)
    info.update(data=str(args.data), phase=args.phase)
    out = Path(args.output) if args.output else _numbered(Path(args.runs_dir), label_set.name)
    save_segmenter(net, out, label_set, data.size, info)
    if args.eval_phase:
        try:
            test = load_segmentation_data(args.data, args.eval_phase, label_set, args.input_size or data.size[0],
                                          side=data.side or "auto")
        except Pix2PixError as exc:  # a missing split only skips the check
            print(f"no {args.eval_phase} split to score ({exc})", file=sys.stderr)
        else:
            scores = score_real_images(load_segmenter(out, device), test)
            info["real_scores"] = {"phase": args.eval_phase, "images": test.images.shape[0],
                                   "pixel_accuracy": scores.pixel_accuracy,
                                   "mean_class_accuracy": scores.mean_class_accuracy, "mean_iou": scores.mean_iou}
            save_segmenter(net, out, label_set, data.size, info)
            print(f"real {args.eval_phase} photos: per-pixel acc {scores.pixel_accuracy:.3f}, per-class acc "
                  f"{scores.mean_class_accuracy:.3f}, class IoU {scores.mean_iou:.3f}")
    print(f"trained {info['steps']} steps in {info['seconds']}s; segmenter: {out}")
    return 0


def _numbered(runs_dir: Path, name: str) -> Path:
    from ..training.trainer import create_run_dir

    return create_run_dir(runs_dir, f"segmenter-{name}")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("segmenter", help="train the segmentation network of the segmentation score")
    sub = p.add_subparsers(dest="segmenter_command", required=True, metavar="COMMAND")
    t = sub.add_parser("train", help="train a segmenter on real photos and their label maps",
                       description="Train a U-Net segmenter (cross-entropy) on the photos and label maps of a "
                                   "dataset split, for `pix2pix eval --segmenter DIR`.")
    t.add_argument("--data", required=True, help="dataset folder (pix2pix pairs or pix2pixHD label folders)")
    add_label_set(t, "classes and palette: facades, cityscapes, ade20k, coco_stuff, synthetic or a classes.json "
                     "(default facades)", default="facades")
    t.add_argument("--phase", default="train", help="split to train on (default train)")
    t.add_argument("--eval-phase", default="test", help="split whose real photos are scored afterwards ('' to skip)")
    t.add_argument("--side", default="auto", choices=["auto", "A", "B"],
                   help="which side of the pairs holds the label maps (default: the one matching the palette)")
    t.add_argument("--input-size", type=int, default=None,
                   help="resize to this height (width by the aspect ratio); default: keep the size")
    t.add_argument("--size", dest="input_size", type=int, action=Deprecated, new="--input-size", help=argparse.SUPPRESS)
    t.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    t.add_argument("--max-seconds", type=float, default=None, help="stop after this much wall-clock time")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--ngf", type=int, default=32, help="U-Net filters (default 32)")
    t.add_argument("--max-items", type=int, default=0, help="use only the first N pairs (0: all)")
    t.add_argument("--seed", type=int, default=0)
    add_device(t)
    add_output(t, "segmenter directory (default: a numbered one in --runs-dir)")
    add_progress(t)
    t.add_argument("--runs-dir", default="runs", help="where numbered directories go (default runs/)")
    t.set_defaults(func=_cmd_train)
    return p
