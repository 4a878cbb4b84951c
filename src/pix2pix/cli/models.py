"""`pix2pix download` (published checkpoints by name) and `pix2pix push` (a model to the Hugging Face Hub).

    pix2pix download --list
    pix2pix download facades_label2photo                       # cached under PIX2PIX_HOME
    pix2pix download label2city_1024p --file latest_net_G.pth  # a file you downloaded yourself
    pix2pix push runs/00003-facades org/facades-pix2pix --private

See `pix2pix.io.zoo` and `pix2pix.io.hub`.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import Pix2PixError


def _cmd_download(args: argparse.Namespace) -> int:
    from ..io import zoo

    if args.list:
        if args.name or args.file:
            raise Pix2PixError("--list takes no NAME or --file.")
        rows = zoo.listing()
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['translates']}\n{'':<{width}}  input: {r['input']}; generator: "
                  f"{r['generator']}; {r['state']}")
        print(f"cache: {zoo.home() / 'models'} (set {zoo.HOME_ENV} to move it)")
        return 0
    if not args.name:
        raise Pix2PixError("name a published model (see `pix2pix download --list`), or pass --list.")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    directory = zoo.download(args.name, file=args.file, progress=progress, force=args.force)
    print(f"{args.name}: {directory}\nuse it with --model {args.name} (or --model {directory})")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from ..io import hub
    from ..io.model_dir import resolve_model_dir

    url = hub.push(resolve_model_dir(args.model_dir), args.repo_id, private=args.private, revision=args.revision,
                   token=args.token, message=args.message)
    print(f"pushed {args.model_dir} to {args.repo_id}: {url}\nuse it with --model hf://{args.repo_id}"
          + (f"@{args.revision}" if args.revision and args.revision != "main" else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a published checkpoint (the reference's pix2pix models, "
                                        "pix2pixHD's label2city_1024p) and convert it into the cache")
    p.add_argument("name", nargs="?", metavar="NAME", help="a published model (see --list)")
    p.add_argument("--list", action="store_true", help="the published models, what they translate, and which "
                                                       "are cached")
    p.add_argument("--file", metavar="FILE", help="convert this checkpoint (downloaded by hand) instead of "
                                                  "downloading; the only way for label2city_1024p")
    p.add_argument("--force", action="store_true", help="download and convert again even when cached")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("push", help="upload a model directory to the Hugging Face Hub, with a README from its card "
                                    "(needs the [hub] extra)")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory or a training run directory")
    p.add_argument("repo_id", metavar="ORG/NAME", help="the Hub repository (created if it does not exist)")
    p.add_argument("--private", action="store_true", help="create the repository private (an existing one keeps "
                                                          "its visibility)")
    p.add_argument("--revision", "--branch", dest="revision", metavar="BRANCH",
                   help="commit to this branch (created from main if needed); default main")
    p.add_argument("--token", help="a Hub token with write access (default: HF_TOKEN or the `hf auth login` token; "
                                   "prefer those, a token on the command line is visible to other users)")
    p.add_argument("--message", help="the commit message")
    p.set_defaults(func=_cmd_push)
