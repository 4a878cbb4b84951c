"""`pix2pix study create | serve | results`: human perceptual studies (pix2pix AMT, pix2pixHD A/B).

    pix2pix study create --mode real-vs-fake --a fake/ --real real/ --timing 1 --id facades-l1
    pix2pix study create --mode a-vs-b --a hd/ --b pix2pix/ --timing unlimited,0.125,0.25,...,8
    pix2pix study serve --studies studies/            # participants open /study/<id>/
    pix2pix study results studies/facades-l1 --csv answers.csv --codes handed_in.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from .options import Deprecated


def _cmd_create(args: argparse.Namespace) -> int:
    from ..study.design import create_study, exposure_label, parse_size, parse_timing

    study, warnings = create_study(
        args.studies, args.mode, args.a, args.b, args.real, parse_timing(args.timing), study_id=args.id,
        seed=args.seed, sentinels=args.sentinels, practice=args.practice, trials=args.trials,
        a_name=args.a_name, b_name=args.b_name, question=args.question, instructions=args.instructions,
        size=parse_size(args.image_size) if args.image_size else None)
    for warning in warnings:
        print(f"warning: {warning}")
    spec = study.spec
    per = len(study.trials_for("example"))
    print(f"created study {study.id} ({study.mode}) in {study.folder}\n"
          f"  {len(spec['items'])} image pairs, {len(spec['practice_items'])} practice, {len(spec['sentinels'])} "
          f"sentinels: {per} trials per participant\n"
          f"  exposures: {', '.join(exposure_label(t) for t in study.timings)}\n"
          f"  images: {len(spec['images'])} PNGs of {spec['size'][0]}x{spec['size'][1]}, "
          f"{spec['image_bytes']} bytes each\n"
          f"serve it:   pix2pix study serve --studies {args.studies}   (participants open /study/{study.id}/)\n"
          f"results:    pix2pix study results {study.folder}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..study.server import build_app
    from ..web import serve_forever

    folder = Path(args.studies)
    if not folder.is_dir():
        raise ConfigError(f"--studies {folder} is not a folder: create a study first (`pix2pix study create`).")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: use 0..65535 (0 picks a free port).")
    app = build_app(folder)
    ids = app.studies.ids()
    pages = "".join(f"\n  /study/{i}/" for i in ids)
    print(f"{len(ids)} {'study' if len(ids) == 1 else 'studies'} in {folder}{pages}", flush=True)
    try:
        serve_forever(app, args.host, args.port, args.allow_host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): pick another --port "
                          "(0: any free one).") from None
    finally:
        app.studies.close()
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from ..io.atomic import write_json
    from ..study.design import load_study
    from ..study.results import markdown, summarise, write_csv
    from ..study.store import read_answers

    if not 0.5 <= args.confidence < 1.0:
        raise ConfigError(f"--confidence {args.confidence}: use a level such as 0.95.")
    study = load_study(args.study)
    answers = read_answers(study.folder)
    codes = _read_codes(Path(args.codes)) if args.codes else None
    summary = summarise(study, answers, include_careless=args.include_careless, confidence=args.confidence,
                        ci=args.ci, codes=codes)
    print(markdown(summary), end="")
    json_path = Path(args.json) if args.json else study.folder / "results.json"
    write_json(json_path, summary)
    print(f"\nsummary: {json_path}")
    if args.csv:
        write_csv(args.csv, study, answers)
        print(f"answers: {args.csv} ({len(answers)} rows)")
    return 0


def _read_codes(path: Path) -> list[str]:
    """One handed-in completion code per line; blank lines and '#' comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"--codes {path}: cannot read it ({exc.strerror or exc}); give a text file with one "
                          "completion code per line.") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def register(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="human perceptual studies: real-vs-fake and A/B preference, timed or not")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="STUDY_COMMAND")

    p = commands.add_parser("create", help="make a study folder from image folders paired by file name")
    p.add_argument("--mode", required=True, choices=["real-vs-fake", "a-vs-b"],
                   help="real-vs-fake: pick the real image (fooling rate of --a, and of --b if given); "
                        "a-vs-b: pick the more realistic of --a and --b (preference for --a)")
    p.add_argument("--a", required=True, metavar="DIR", help="generated images of method A")
    p.add_argument("--b", metavar="DIR", help="generated images of method B (required for a-vs-b)")
    p.add_argument("--real", metavar="DIR",
                   help="real images (required for real-vs-fake; in a-vs-b they make the sentinels)")
    p.add_argument("--timing", default="unlimited",
                   help="exposures: 'unlimited', seconds such as '1', or a list such as 'unlimited,0.125,0.25,...,8' "
                        "(default unlimited)")
    p.add_argument("--studies", default="studies", help="folder of studies (default studies/)")
    p.add_argument("--id", help="study id, letters/digits/-/_ (default: MODE-DATE-TIME)")
    p.add_argument("--a-name", help="display name of method A in the results (default: the folder name)")
    p.add_argument("--b-name", help="display name of method B")
    p.add_argument("--sentinels", type=int, default=2,
                   help="obvious trials (an image beside a ruined copy) per participant (default 2)")
    p.add_argument("--practice", type=int, default=0,
                   help="practice pairs shown first with feedback and not counted (default 0)")
    p.add_argument("--trials", type=int, help="at most this many test pairs per participant (default: all)")
    p.add_argument("--image-size", metavar="WxH",
                   help="the one size every image is shown at (default: the most common size of the inputs)")
    p.add_argument("--size", dest="image_size", action=Deprecated, new="--image-size", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help="design seed (default: random, recorded in study.json)")
    p.add_argument("--question", help="the question shown with every pair")
    p.add_argument("--instructions", help="extra text on the instructions screen")
    p.set_defaults(func=_cmd_create)

    p = commands.add_parser("serve", help="serve every study in a folder to participants' browsers")
    p.add_argument("--studies", default="studies", help="folder of studies (default studies/)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; use 0.0.0.0 only behind a trusted network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="another name participants reach the server by (a reverse proxy's host name, this "
                        "machine's LAN name); requests naming any other host are refused. Repeatable")
    p.set_defaults(func=_cmd_serve)

    p = commands.add_parser("results", help="rates per condition with binomial confidence intervals")
    p.add_argument("study", metavar="DIR", help="the study folder, e.g. studies/facades-l1")
    p.add_argument("--csv", metavar="FILE", help="also write every answer as CSV")
    p.add_argument("--codes", metavar="FILE",
                   help="completion codes participants handed in, one per line: each is checked, and only "
                        "participants with a valid code are counted")
    p.add_argument("--json", metavar="FILE", help="where to write the summary (default DIR/results.json)")
    p.add_argument("--include-careless", action="store_true",
                   help="keep participants who missed a sentinel (excluded by default)")
    p.add_argument("--ci", choices=["wilson", "clopper-pearson"], default="wilson",
                   help="interval: Wilson score (default) or Clopper-Pearson exact")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    p.set_defaults(func=_cmd_results)
