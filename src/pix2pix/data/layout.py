"""Dataset layouts on disk and pairing of files by stem.

Supported layouts (`layout` in the data config):
- ``aligned``: ``root/{train,val,test}/*`` where each image is A and B side by side (A|B).
- ``folders``: ``root/{phase}/A`` and ``root/{phase}/B`` (or ``root/A`` and ``root/B``),
  paired by file stem, never by sort order.
- ``colorization``: ``root/{phase}/*`` single colour images; A is derived (gray or Lab L).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from .images import list_images

LAYOUTS = ("auto", "aligned", "folders", "colorization")


def pair_by_stem(
    a_files: Sequence[Path], b_files: Sequence[Path]
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Match files by stem. Returns (pairs, A files without a B partner, B files without an A partner)."""
    b_by_stem: dict[str, Path] = {}
    for b in b_files:
        if b.stem in b_by_stem:
            raise DataError(f"{b} and {b_by_stem[b.stem]} share the stem '{b.stem}': rename one of them.")
        b_by_stem[b.stem] = b
    pairs, only_a = [], []
    for a in a_files:
        b = b_by_stem.pop(a.stem, None)
        if b is None:
            only_a.append(a)
        else:
            pairs.append((a, b))
    return pairs, only_a, sorted(b_by_stem.values())


def find_pairs(a_dir: Path, b_dir: Path) -> list[tuple[Path, Path]]:
    """Pairs of (A, B) files matched by stem; any file without a partner is an error naming it."""
    pairs, only_a, only_b = pair_by_stem(list_images(a_dir), list_images(b_dir))
    if only_a or only_b:
        lines = [f"  {p} has no partner in {b_dir}" for p in only_a]
        lines += [f"  {p} has no partner in {a_dir}" for p in only_b]
        raise DataError(
            f"unpaired files ({len(only_a) + len(only_b)}):\n" + "\n".join(lines[:20])
            + ("\n  ..." if len(lines) > 20 else "")
            + "\nEvery A file needs a B file with the same name (extension may differ): add or remove files."
        )
    return pairs


def phase_dir(root: Path, phase: str) -> Path:
    return root / phase


def detect_layout(root: str | Path, phase: str = "train") -> str:
    """Guess the layout of `root` for `phase`: folders when A/ and B/ exist, else aligned."""
    root = Path(root)
    if (root / phase / "A").is_dir() and (root / phase / "B").is_dir():
        return "folders"
    if (root / "A").is_dir() and (root / "B").is_dir():
        return "folders"
    if (root / "dataset.json").is_file():
        import json

        return json.loads((root / "dataset.json").read_text()).get("layout", "aligned")
    return "aligned"


def folder_pair_dirs(root: Path, phase: str) -> tuple[Path, Path]:
    """The A and B folders for `phase` in the folders layout."""
    if (root / phase / "A").is_dir():
        return root / phase / "A", root / phase / "B"
    return root / "A", root / "B"
