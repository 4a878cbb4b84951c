"""Command-line options that several verbs share, declared once: one spelling and one help per concept.

`--model` (a model or run directory, a published name or hf://), `--device`, `-o/--output`,
`--label-set`, `--progress/--no-progress`. Old spellings (`--out`, `--labels` for a label set,
a positional output folder) keep working for one release and print a deprecation note.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MODEL_HELP = ("a model directory, a training run directory (its model/ is used), a published model name "
              "(see `pix2pix download --list`) or hf://org/name[@revision]")
DEVICE_HELP = "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps (default auto)"


class Deprecated(argparse.Action):
    """Stores like the new option, after a note that says which spelling replaces it."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is deprecated and will be removed in the next release; use {self.new}.",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_model(p: argparse.ArgumentParser, *, required: bool = True, help: str | None = None) -> None:
    p.add_argument("--model", required=required, metavar="MODEL", help=help or MODEL_HELP)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_output(p: argparse.ArgumentParser, help: str, *, required: bool = False, default: str | None = None,
               old: tuple[str, ...] = ()) -> None:
    """-o/--output; `old` lists former spellings (e.g. "--out") that still work, with a note."""
    p.add_argument("-o", "--output", required=required, default=default, metavar="PATH", help=help)
    for spelling in old:
        p.add_argument(spelling, dest="output", action=Deprecated, new="-o/--output", help=argparse.SUPPRESS)


def add_label_set(p: argparse.ArgumentParser, help: str, *, default: str | None = None,
                  old: tuple[str, ...] = ()) -> None:
    p.add_argument("--label-set", default=default, metavar="NAME", help=help)
    for spelling in old:
        p.add_argument(spelling, dest="label_set", action=Deprecated, new="--label-set", help=argparse.SUPPRESS)


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")


def deprecated_positional_output(p: argparse.ArgumentParser, what: str) -> None:
    """A command whose output used to be positional: OUT still works (with a note); -o/--output is the spelling."""
    add_output(p, what)
    p.add_argument("old_output", nargs="?", metavar="OUT", help=argparse.SUPPRESS)


def output_of(args: argparse.Namespace, parser_name: str) -> str:
    """-o/--output, or the deprecated positional OUT (with a note); an error when neither is given."""
    if getattr(args, "old_output", None):
        if args.output:
            raise ConfigError(f"{parser_name}: give the output folder once, as -o/--output.")
        print(f"note: the positional OUT of `pix2pix {parser_name}` is deprecated; use -o/--output OUT.",
              file=sys.stderr)
        return str(args.old_output)
    if not args.output:
        raise ConfigError(f"{parser_name}: say where to write with -o/--output DIR.")
    return str(args.output)


def output_folder(path: str | Path, flag: str = "-o") -> Path:
    """A folder to write into: an existing file there is an error (checked before any work is done)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file: give a folder to write into (it is created if needed).")
    for parent in path.parents:  # a file where a parent folder should be
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; give another path.")
            break
    return path


def show_progress(args: argparse.Namespace) -> bool:
    value = getattr(args, "progress", None)
    return sys.stderr.isatty() if value is None else bool(value)
