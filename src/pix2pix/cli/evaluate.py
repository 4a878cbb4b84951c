"""`pix2pix eval`: score generated images (L1, PSNR, SSIM, FID, KID, LPIPS, segmentation score).

    pix2pix eval --real DIR --fake DIR [--label-maps DIR --segmenter SEG] -o DIR
    pix2pix eval --model RUN --data DIR [--phase test] [--segmenter SEG] [-o DIR]

Writes OUT/metrics.json and OUT/metrics.md (and, with --model, the translated images in
OUT/real, OUT/fake, OUT/labels) and prints the markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from .options import (
    MODEL_HELP,
    Deprecated,
    add_device,
    add_label_set,
    add_model,
    add_output,
    add_progress,
    output_folder,
    show_progress,
)


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..data.label_sets import get_label_set
    from ..evaluation.evaluate import check_options, evaluate_folders, evaluate_model, format_markdown, write_report
    from ..evaluation.segmentation import import_factory
    from ..evaluation.segmenter import resolve_segmenter
    from ..runtime import resolve_device

    if bool(args.model) == bool(args.real or args.fake):
        raise ConfigError("give either --real DIR --fake DIR (images already generated) or --model RUN --data DIR "
                          "(translate a split first).")
    if args.model and not args.data:
        raise ConfigError("--model needs --data DIR: the dataset whose split is translated and compared.")
    if not args.model and not (args.real and args.fake):
        raise ConfigError("--real and --fake go together: the real images and the generated ones, paired by name.")
    if args.label_maps and not args.segmenter:
        raise ConfigError("--label-maps is used by the segmentation score: add --segmenter SEG.")
    if not args.model and not args.output:
        raise ConfigError("-o/--output DIR is required with --real/--fake: where metrics.json and metrics.md go.")
    check_options(args.batch_size, args.kid_subset_size, args.kid_subsets)
    if args.output:
        output_folder(args.output)
    device = resolve_device(args.device)
    label_set = get_label_set(args.label_set) if args.label_set else None
    segmenter = resolve_segmenter(args.segmenter, label_set, device) if args.segmenter else None
    extractor = import_factory(args.feature_extractor, "--feature-extractor")() if args.feature_extractor else None
    options = dict(feature_extractor=extractor, inception_weights=args.inception_weights, fid=not args.no_fid,
                   kid_subset_size=args.kid_subset_size, kid_subsets=args.kid_subsets,
                   lpips_net=None if args.no_lpips else args.lpips_net, batch_size=args.batch_size)
    progress = show_progress(args)
    if args.model:
        out = Path(args.output) if args.output else _default_out(args.model, args.phase)
        result = evaluate_model(args.model, args.data, out, phase=args.phase, segmenter=segmenter, device=device,
                                progress=progress, **options)
    else:
        out = Path(args.output)
        result = evaluate_folders(args.real, args.fake, labels_dir=args.label_maps, segmenter=segmenter, device=device,
                                  progress=progress, **options)
        write_report(result, out)
    print(format_markdown(result))
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")
    return 0


def _default_out(model: str, phase: str) -> Path:
    """RUN/eval-<phase> for a run directory (or a model directory's parent run)."""
    path = Path(model)
    run = path.parent if path.name == "model" else path
    return run / f"eval-{phase}"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="score generated images: L1, PSNR, SSIM, FID, KID, LPIPS, segmentation score",
        description="Compare generated images with real ones (paired by file name), or translate a dataset split "
                    "with a saved model first. FID/KID need the FID Inception weights on disk "
                    "(pt_inception-2015-12-05-6726825d.pth: --inception-weights, $PIX2PIX_INCEPTION_WEIGHTS or the "
                    "torch hub checkpoints folder); LPIPS needs torchvision and its backbone weights. Whatever "
                    "cannot be computed is listed with the reason.")
    src = p.add_argument_group("images")
    src.add_argument("--real", metavar="DIR", help="real images")
    src.add_argument("--fake", metavar="DIR", help="generated images, named as the real ones")
    add_model(src, required=False, help=f"translate --data with this model first: {MODEL_HELP}")
    src.add_argument("--data", metavar="DIR", help="with --model: the dataset")
    src.add_argument("--phase", default="test", help="with --model: the split to translate (default test)")
    add_output(p, "where metrics.json and metrics.md go (with --model also the images; default RUN/eval-PHASE)",
               old=("--out",))
    seg = p.add_argument_group("segmentation score")
    seg.add_argument("--segmenter", metavar="SEG",
                     help="a directory from `pix2pix segmenter train`, or module:factory / file.py:factory returning "
                          "a torch model [B,3,H,W] in [-1,1] -> logits [B,classes,h,w]")
    seg.add_argument("--label-maps", metavar="DIR",
                     help="with --real/--fake: the label maps the images were generated from (ids or colour-coded)")
    seg.add_argument("--labels", dest="label_maps", action=Deprecated, new="--label-maps", help=argparse.SUPPRESS)
    add_label_set(seg, "classes of an external segmenter: a preset (facades, cityscapes, ...) or classes.json")
    dist = p.add_argument_group("FID / KID / LPIPS")
    dist.add_argument("--inception-weights", metavar="FILE", help="the FID Inception weights file")
    dist.add_argument("--feature-extractor", metavar="MODULE:FACTORY",
                      help="use another feature network for FID/KID (uint8 [B,3,H,W] -> [B,d])")
    dist.add_argument("--no-fid", action="store_true", help="skip FID and KID")
    dist.add_argument("--kid-subset-size", type=int, default=1000,
                      help="KID subset size (default 1000; clamped to the number of images)")
    dist.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    dist.add_argument("--lpips-net", default="alex", choices=["alex", "vgg", "squeeze"], help="LPIPS backbone")
    dist.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--batch-size", type=int, default=8)
    add_device(p)
    add_progress(p)
    p.set_defaults(func=_cmd_eval)
    return p
