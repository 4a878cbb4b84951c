"""`pix2pix demo`: the end-to-end demo on the synthetic world."""

from __future__ import annotations

import argparse

from .options import Deprecated, add_output, add_progress, output_folder, show_progress


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import DemoPlan, run_demo

    plan = DemoPlan()
    if args.steps is not None:  # a quicker look (the tests use it): every part trains about that many steps
        plan = DemoPlan(pix2pix_steps=args.steps, hd_steps=args.steps, segmenter_steps=args.steps)
    run_demo(output_folder(args.output), num=args.num, size=args.image_size, seed=args.seed, plan=plan,
             progress=show_progress(args))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthesise data, train a small model on CPU, evaluate, write a report")
    add_output(p, "output folder (default demo/)", default="demo", old=("--out",))
    p.add_argument("--num", type=int, default=240, help="synthetic scenes to generate")
    p.add_argument("--image-size", type=int, default=128, help="scene size in pixels")
    p.add_argument("--size", dest="image_size", type=int, action=Deprecated, new="--image-size", help=argparse.SUPPRESS)
    add_progress(p)
    p.add_argument("--steps", type=int, help="train each model (and the segmenter) this many steps (default: the "
                                             "demo's plan, a few minutes on a 2-core CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
