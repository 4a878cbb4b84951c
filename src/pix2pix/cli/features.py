"""`pix2pix features`: encode the training instances of a pix2pixHD model and cluster them per class.

    pix2pix features runs/00004-pix2pixhd_synthetic [--data DIR] [--k 10] [--min-pixels N]

Writes clusters.safetensors + clusters.json next to the model (RUN/model/), where
`pix2pix translate --features cluster|random` and `LabelTranslator` find them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, DataError


def _data_root(run: Path, model_dir: Path, data: str | None) -> str:
    """--data, or the data.root recorded in the run's config.json."""
    if data:
        return data
    run_config = run / "config.json" if model_dir != run else model_dir.parent / "config.json"
    root = ""
    if run_config.is_file() and run_config.resolve() != (model_dir / "config.json").resolve():
        try:
            root = json.loads(run_config.read_text()).get("data", {}).get("root", "")
        except ValueError:
            root = ""
    if not root:
        raise ConfigError(f"no dataset given and {run} records none: pass --data DIR (the training data).")
    if not Path(root).is_dir():
        raise DataError(f"the run's data.root {root!r} (from {run_config}) does not exist from here: pass "
                        "--data DIR.")
    return root


def _cmd_features(args: argparse.Namespace) -> int:
    from ..features import compute_clusters, load_encoder, resolve_model_dir

    run = Path(args.run)
    model_dir = resolve_model_dir(run)
    load_encoder(model_dir)  # a clear error before anything else when the model has no encoder
    root = _data_root(run, model_dir, args.data)
    if args.k < 1:
        raise ConfigError(f"--k {args.k}: use at least 1 cluster per class.")
    if args.min_pixels is not None and args.min_pixels < 1:
        raise ConfigError(f"--min-pixels {args.min_pixels}: use a positive number of pixels.")
    clusters = compute_clusters(model_dir, root, k=args.k, min_pixels=args.min_pixels, seed=args.seed,
                                device=args.device, phase=args.phase, progress=sys.stderr.isatty())
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
    p.add_argument("run", metavar="RUN", help="training run directory (its model/ is used) or a model directory")
    p.add_argument("--data", help="dataset folder (default: the run's data.root)")
    p.add_argument("--phase", default="train", help="split to encode (default: train)")
    p.add_argument("--k", type=int, default=10, help="clusters per class (default 10, as the reference)")
    p.add_argument("--min-pixels", type=int, default=None,
                   help="keep instances of at least N pixels (default: the reference's rule, more than "
                        "(H*W//32)/2 pixels, about 1/64 of the image)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    p.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    p.add_argument("-o", "--output", help="folder to write the clusters to (default: the model directory)")
    p.set_defaults(func=_cmd_features)
    return p
