"""`pix2pix eval`: score generated images (L1, PSNR, SSIM, FID, KID, LPIPS, segmentation score).

    pix2pix eval --real DIR --fake DIR [--labels DIR --segmenter SEG] --out DIR
    pix2pix eval --model RUN --data DIR [--phase test] [--segmenter SEG] [--out DIR]

Writes OUT/metrics.json and OUT/metrics.md (and, with --model, the translated images in
OUT/real, OUT/fake, OUT/labels) and prints the markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..data.label_sets import get_label_set
    from ..evaluation.evaluate import evaluate_folders, evaluate_model, format_markdown, write_report
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
    if args.labels and not args.segmenter:
        raise ConfigError("--labels is used by the segmentation score: add --segmenter SEG.")
    device = resolve_device(args.device)
    label_set = get_label_set(args.label_set) if args.label_set else None
    segmenter = resolve_segmenter(args.segmenter, label_set, device) if args.segmenter else None
    extractor = import_factory(args.feature_extractor)() if args.feature_extractor else None
    options = dict(feature_extractor=extractor, inception_weights=args.inception_weights, fid=not args.no_fid,
                   kid_subset_size=args.kid_subset_size, kid_subsets=args.kid_subsets,
                   lpips_net=None if args.no_lpips else args.lpips_net, batch_size=args.batch_size)
    progress = sys.stderr.isatty()
    if args.model:
        out = Path(args.out) if args.out else _default_out(args.model, args.phase)
        result = evaluate_model(args.model, args.data, out, phase=args.phase, segmenter=segmenter, device=device,
                                progress=progress, **options)
    else:
        if not args.out:
            raise ConfigError("--out DIR is required with --real/--fake: where metrics.json and metrics.md go.")
        out = Path(args.out)
        result = evaluate_folders(args.real, args.fake, labels_dir=args.labels, segmenter=segmenter, device=device,
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
    src.add_argument("--model", metavar="RUN", help="a training run or model directory: translate --data first")
    src.add_argument("--data", metavar="DIR", help="with --model: the dataset")
    src.add_argument("--phase", default="test", help="with --model: the split to translate (default test)")
    p.add_argument("-o", "--out", metavar="DIR",
                   help="where metrics.json and metrics.md go (with --model also the images; default RUN/eval-PHASE)")
    seg = p.add_argument_group("segmentation score")
    seg.add_argument("--segmenter", metavar="SEG",
                     help="a directory from `pix2pix segmenter train`, or module:factory / file.py:factory returning "
                          "a torch model [B,3,H,W] in [-1,1] -> logits [B,classes,h,w]")
    seg.add_argument("--labels", metavar="DIR",
                     help="with --real/--fake: the label maps the images were generated from (ids or colour-coded)")
    seg.add_argument("--label-set", metavar="NAME",
                     help="classes of an external segmenter: a preset (facades, cityscapes, ...) or classes.json")
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    p.set_defaults(func=_cmd_eval)
    return p
