"""`pix2pix demo`: the end-to-end demo on the synthetic world."""

from __future__ import annotations

import argparse

from .options import Deprecated, add_output, add_progress, output_folder, show_progress


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(output_folder(args.output), num=args.num, size=args.image_size, seed=args.seed, max_steps=args.steps,
             progress=show_progress(args))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthesise data, train a small model on CPU, evaluate, write a report")
    add_output(p, "output folder (default demo/)", default="demo", old=("--out",))
    p.add_argument("--num", type=int, default=240, help="synthetic scenes to generate")
    p.add_argument("--image-size", type=int, default=128, help="scene size in pixels")
    p.add_argument("--size", dest="image_size", type=int, action=Deprecated, new="--image-size", help=argparse.SUPPRESS)
    add_progress(p)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (default: the preset's 30 epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
