"""`pix2pix demo`: the end-to-end demo on the synthetic world."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, num=args.num, size=args.size, seed=args.seed, max_steps=args.steps,
             progress=sys.stderr.isatty())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthesise data, train a small model on CPU, evaluate, write a report")
    p.add_argument("--out", default="demo", help="output folder (default demo/)")
    p.add_argument("--num", type=int, default=240, help="synthetic scenes to generate")
    p.add_argument("--size", type=int, default=128, help="scene size in pixels")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (default: the preset's 30 epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
