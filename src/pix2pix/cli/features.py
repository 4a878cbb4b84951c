"""`pix2pix features`: encode the training instances of a pix2pixHD model and cluster them per class.

    pix2pix features runs/00004-pix2pixhd_synthetic [--data DIR] [--k 10] [--min-pixels N]

Writes clusters.safetensors + clusters.json next to the model (RUN/model/), where
`pix2pix translate --features cluster|random` and `LabelTranslator` find them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from .options import add_device, add_model, add_output, add_progress, show_progress


def _data_root(model_dir: Path, data: str | None) -> str:
    """--data, or the data.root recorded in the run's config.json."""
    from ..io.model_dir import recorded_data_root

    if data:
        return data
    root = recorded_data_root(model_dir)
    if root is None:
        raise ConfigError(f"no dataset given, and {model_dir.parent} records none that exists here: pass --data DIR "
                          "(the training data).")
    return str(root)


def _cmd_features(args: argparse.Namespace) -> int:
    from ..features import compute_clusters, load_encoder
    from ..io.model_dir import resolve_model_dir

    if bool(args.run) == bool(args.model):
        raise ConfigError("features: name the model once, with --model RUN_OR_MODEL_DIR.")
    if args.run:
        print("note: `pix2pix features RUN` is deprecated; use `pix2pix features --model RUN`.", file=sys.stderr)
    model_dir = resolve_model_dir(args.model or args.run, progress=True)
    load_encoder(model_dir)  # a clear error before anything else when the model has no encoder
    root = _data_root(model_dir, args.data)
    if args.k < 1:
        raise ConfigError(f"--k {args.k}: use at least 1 cluster per class.")
    if args.min_pixels is not None and args.min_pixels < 1:
        raise ConfigError(f"--min-pixels {args.min_pixels}: use a positive number of pixels.")
    clusters = compute_clusters(model_dir, root, k=args.k, min_pixels=args.min_pixels, seed=args.seed,
                                device=args.device, phase=args.phase, progress=show_progress(args))
    out = Path(args.output) if args.output else model_dir
    path = clusters.save(out)
    names = clusters.meta.get("class_names", {})
    rule = (f"smaller than {args.min_pixels} pixels" if args.min_pixels is not None else
            "not above the reference's size threshold, (H*W//32)/2 pixels")
    print(f"encoded {clusters.meta.get('instances', 0)} instances from {clusters.meta.get('items', 0)} images "
          f"of {root}; {clusters.meta.get('skipped_small', 0)} {rule} were skipped")
    for c in clusters.classes:
        name = names.get(str(c), "")
        counts = clusters.counts[c]
        print(f"  class {c:>3} {name:<16} {sum(counts):>6} instances -> {len(counts):>2} clusters {counts}")
    print(f"wrote {path} and {path.with_name('clusters.json')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "features", help="cluster a pix2pixHD model's instance features per class (k-means)",
        description="Encode every training instance with the model's feature encoder, run k-means per class "
                    "and save the cluster centres next to the model (clusters.safetensors + clusters.json), "
                    "for `translate --features cluster|random`.")
    add_model(p, required=False)
    p.add_argument("run", nargs="?", metavar="RUN", help=argparse.SUPPRESS)  # the former spelling of --model
    p.add_argument("--data", help="dataset folder (default: the run's data.root)")
    p.add_argument("--phase", default="train", help="split to encode (default: train)")
    p.add_argument("--k", type=int, default=10, help="clusters per class (default 10, as the reference)")
    p.add_argument("--min-pixels", type=int, default=None,
                   help="keep instances of at least N pixels (default: the reference's rule, more than "
                        "(H*W//32)/2 pixels, about 1/64 of the image)")
    add_device(p)
    p.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    add_output(p, "folder to write the clusters to (default: the model directory)")
    add_progress(p)
    p.set_defaults(func=_cmd_features)
    return p
