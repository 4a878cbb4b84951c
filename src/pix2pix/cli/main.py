"""`pix2pix` command: train, translate, import-reference, presets, data, demo, features.

Errors caused by the input (Pix2PixError) are printed as one message naming the file,
value and fix, with exit status 2 and no traceback.

The handlers import the library when they run (here and in the other cli modules): `pix2pix --help`
and `pix2pix study serve` then start without loading torch (`python -X importtime`: importing the
parser takes ~0.05 s; with torch imported at the top, ~1.8 s on the 2-core VM, ~3 s under load).
"""

from __future__ import annotations

import argparse
import glob
import importlib
import sys
from pathlib import Path
from typing import NoReturn

from .. import __version__
from ..errors import ConfigError, Pix2PixError
from .options import add_device, add_model, add_output, add_progress, output_folder, show_progress


def _cmd_train(args: argparse.Namespace) -> int:
    from ..config import apply_overrides
    from ..training.trainer import load_run_config, train

    if args.resume:
        if args.preset or args.config:
            raise Pix2PixError("--resume continues a run with its saved config; drop --preset/--config "
                               "(use --set to change a value such as train.max_steps).")
        cfg = apply_overrides(load_run_config(args.resume), args.set or [])
        if args.data:
            cfg.data.root = args.data
    else:
        cfg = _build_config(args)
    result = train(cfg, resume=args.resume, dry_run=args.dry_run, progress=show_progress(args))
    if args.dry_run:
        return 0
    print(f"run directory: {result.run_dir}\nmodel: {result.run_dir / 'model'}\n"
          f"report: {result.run_dir / 'index.html'}")
    return 130 if result.interrupted else 0


def _build_config(args: argparse.Namespace):
    """preset, then --config file, then --set overrides, then --data / --runs-dir."""
    from ..config import apply_overrides, load_config_file, update_config
    from ..presets import get_preset

    cfg = get_preset(args.preset or "facades")
    if args.config:
        update_config(cfg, load_config_file(args.config), source=args.config)
    apply_overrides(cfg, args.set or [])
    if args.data:
        cfg.data.root = args.data
    if args.runs_dir:
        cfg.train.runs_dir = args.runs_dir
    return cfg


def _cmd_coarse_to_fine(args: argparse.Namespace) -> int:
    from ..training.stages import coarse_to_fine

    first, second = coarse_to_fine(_build_config(args), progress=show_progress(args))
    print(f"global run: {first.run_dir}\nlocal run: {second.run_dir}\nmodel: {second.run_dir / 'model'}")
    return 130 if second.interrupted or first.interrupted else 0


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files, folders (their images) and glob patterns -> image paths, in order, without repeats."""
    from ..data.images import is_image_file, list_images

    paths: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            paths += list_images(p)
        elif p.is_file():
            paths.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
            if not matches:
                raise Pix2PixError(f"{pattern}: no such file, folder or matching glob.")
            paths += [m for m in matches if m.is_file() and is_image_file(m)]
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise Pix2PixError(f"no images found in {' '.join(patterns)}.")
    return unique


def _cmd_translate(args: argparse.Namespace) -> int:
    """Either family: the options of the other family are refused by the translator with one line."""
    from ..inference import check_options, load_translator
    from ..io.model_dir import resolve_model_dir

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: use at least 1 (images of one size per batch).")
    output_folder(args.output)
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    model = resolve_model_dir(args.model, progress=True)  # a bad model is the first thing to report
    paths = expand_inputs(args.inputs)
    translator = load_translator(model, device=args.device, paper_mode=args.paper_mode or None,
                                 clusters=args.clusters, backend=args.backend, images=len(paths), log=log)
    options = {k: v for k, v in {"batch_size": args.batch_size, "instance_dir": args.instances,
                                 "features": args.features, "cluster": args.cluster, "style_dir": args.style_images,
                                 "seed": args.seed}.items() if v is not None}
    check_options(options, translator.file_options, translator.family, "translate")
    written = translator.translate_files(paths, args.output, progress=show_progress(args),
                                         log=log, **options)
    print(f"wrote {len(written)} images to {args.output}")
    return 0


def _cmd_import_reference(args: argparse.Namespace) -> int:
    for flag, value, least in (("--in-channels", args.in_channels, 1), ("--out-channels", args.out_channels, 1),
                               ("--ngf", args.ngf, 1), ("--ndf", args.ndf, 1), ("--n-layers", args.n_layers, 0),
                               ("--crop-size", args.crop_size, 1)):
        if value is not None and value < least:
            raise ConfigError(f"{flag} {value}: use {least} or more.")
    output_folder(args.output)
    from ..io.model_card import DataGeometry, ModelCard, Provenance, sha256_file, utc_now
    from ..io.pretrained import save_model
    from ..io.reference import import_reference

    kwargs = {k: v for k, v in {"in_channels": args.in_channels, "out_channels": args.out_channels,
                                "ngf": args.ngf, "ndf": args.ndf, "norm": args.norm, "dropout": args.dropout,
                                "n_layers": args.n_layers, "upsample": args.upsample}.items() if v is not None}
    for item in args.arch_option or []:
        key, _, value = item.partition("=")
        kwargs[key] = int(value) if value.lstrip("-").isdigit() else value
    if args.arch in ("basic", "n_layers", "pixel", "patchgan"):
        kwargs.pop("ngf", None)
        kwargs.pop("dropout", None)
        kwargs.pop("upsample", None)
    else:
        kwargs.pop("ndf", None)
        kwargs.pop("n_layers", None)
    net = import_reference(args.checkpoint, args.arch, **kwargs)
    card = ModelCard(data=DataGeometry(preprocess="none", load_size=args.crop_size, crop_size=args.crop_size,
                                       direction=args.direction),
                     provenance=Provenance(source=str(args.checkpoint), sha256=sha256_file(args.checkpoint),
                                           created=utc_now()))
    save_model(args.output, card, {net.reference_kind: net})
    count = sum(p.numel() for p in net.parameters())
    print(f"imported {net.reference_kind} {args.arch} ({count:,} parameters) into {args.output}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from ..presets import PRESETS

    width = max(map(len, PRESETS))
    for name, preset in PRESETS.items():
        print(f"{name:<{width}}  {preset.description}")
    return 0


# Modules under pix2pix.cli with a `register(subparsers)` function, one per command group.
_SUBCOMMAND_MODULES = ("data", "demo", "features", "edit", "study", "evaluate", "segmenter", "export", "models")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (the option, what is wrong, where the help is), exit status 2.

    Subcommand parsers are made by the parent's class, so every verb gets this."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`).\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pix2pix", description="Paired image-to-image translation (pix2pix).")
    parser.add_argument("--version", action="version", version=f"pix2pix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a preset, config file and overrides")
    p.add_argument("--preset", help="named recipe (see `pix2pix presets`); default facades")
    p.add_argument("--data", help="dataset folder")
    p.add_argument("--config", help="JSON (or TOML) file of config values applied over the preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    p.add_argument("--runs-dir", help="where numbered run directories are created (default runs/)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and model sizes, train nothing")
    add_progress(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("coarse-to-fine", help="pix2pixHD: global stage at half resolution, then the local enhancer")
    p.add_argument("--preset", default="pix2pixhd_cityscapes_1024", help="a local-enhancer preset")
    p.add_argument("--data", help="dataset folder")
    p.add_argument("--config", help="JSON (or TOML) file of config values applied over the preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--runs-dir", help="where the two run directories are created (default runs/)")
    add_progress(p)
    p.set_defaults(func=_cmd_coarse_to_fine)

    p = sub.add_parser("translate", help="translate images with a saved model")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    add_model(p)
    add_output(p, "output folder", required=True)
    p.add_argument("--batch-size", type=int, help="pix2pix: images of one size per batch (default 1)")
    add_device(p)
    add_progress(p)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "openvino", "torchscript"],
                   help="auto (default): an export folder (`pix2pix export`, checked to 1e-4 of PyTorch) runs on its "
                        "format's runtime; a model directory on the CPU, for 16 images or more, on onnxruntime (the "
                        "fastest exact runtime, same outputs to 1e-4) through its ONNX export, made once by a job "
                        "of 256 images or more and cached under PIX2PIX_HOME/exports; otherwise on PyTorch. torch: "
                        "always the saved weights")
    p.add_argument("--paper-mode", action="store_true",
                   help="the paper's test protocol: dropout on, batch-norm with test-batch statistics")
    hd = p.add_argument_group("pix2pixHD models (label maps in)")
    hd.add_argument("--instances", metavar="DIR",
                    help="instance maps, matched to the label files by name or Cityscapes prefix (default: a "
                         "{phase}_inst/ folder beside {phase}_label/, else the label map itself); also for pix2pix "
                         "models trained with data.instance_edges (default: each colour region is one instance)")
    hd.add_argument("--features", choices=["cluster", "random", "encode", "zero"],
                    help="instance features of models trained with the encoder: a cluster centre (default), a "
                         "random cluster, the encoding of --style-images, or zeros")
    hd.add_argument("--clusters", metavar="FILE", help="clusters.safetensors (default: the model directory's)")
    hd.add_argument("--cluster", type=int, metavar="K",
                    help="with --features cluster: cluster K of every instance's class (0, the largest, by "
                         "default; taken modulo the class's cluster count)")
    hd.add_argument("--style-images", metavar="DIR", help="with --features encode: real images matched by name")
    hd.add_argument("--seed", type=int, help="with --features random: the seed (default 0)")
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser("import-reference", help="convert a pytorch-CycleGAN-and-pix2pix checkpoint")
    p.add_argument("checkpoint", help="e.g. latest_net_G.pth")
    p.add_argument("--arch", required=True,
                   help="generator (unet_256, unet_128, resnet_9blocks, resnet_6blocks) or discriminator "
                        "(basic, n_layers, pixel)")
    add_output(p, "model directory to write", required=True)
    p.add_argument("--in-channels", type=int)
    p.add_argument("--out-channels", type=int)
    p.add_argument("--ngf", type=int)
    p.add_argument("--ndf", type=int)
    p.add_argument("--n-layers", type=int, help="discriminator depth for --arch n_layers")
    p.add_argument("--norm", choices=["batch", "instance", "none"])
    p.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--upsample", choices=["transpose", "resize_conv"])
    p.add_argument("--arch-option", action="append", metavar="KEY=VALUE", help="other architecture options")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"], help="recorded for inference")
    p.add_argument("--crop-size", type=int, default=256, help="training size, recorded for reference")
    p.set_defaults(func=_cmd_import_reference)

    p = sub.add_parser("presets", help="list the training presets")
    p.set_defaults(func=_cmd_presets)

    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed in one line)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except Pix2PixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
