"""Study creation and per-participant trial lists.

A study is a folder `<studies>/<id>/` holding `study.json` (written last and atomically, so a
half-created study is never served), `images/` (copies of the inputs under shuffled numeric names,
so neither a file name nor an index tells a participant which image is real) and, once people take
part, `answers.sqlite`.

Modes:
  real-vs-fake  the pix2pix AMT test: a generated image (--a, and --b if given, each tested on its own)
                beside the real one (--real) for the same input; "which image is real?". The metric is
                the fooling rate, the share of trials where the generated image was picked.
  a-vs-b        the pix2pixHD preference test: the outputs of two methods (--a, --b) for the same input;
                "which image looks more realistic?". The metric is the preference rate for --a.

Trial lists are generated on demand from a per-participant seed (study seed + participant id), so
the server stores nothing per participant but its answers, and a reload gets the same list back.
Each participant sees every stem once. Its condition (method x exposure) rotates through the
conditions from a random offset, so conditions are balanced within a participant and every stem
meets every condition across participants. Left/right is a coin flip per trial.

Sentinels are trials with an obvious answer: an intact image beside a ruined copy of it (downscaled
to 6 pixels across and blown back up: flat colour blocks). Each participant gets every sentinel,
placed after the trial that shows the same stem so the sentinel cannot help with that trial, and
shown at the study's longest exposure. A participant who misses any sentinel is flagged careless.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image

from ..data.images import convert_channels, list_images, open_image
from ..errors import ConfigError, DataError
from ..io.atomic import write_json

FORMAT_VERSION = 1
MODES = ("real-vs-fake", "a-vs-b")
STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_TIMINGS = 16
MAX_EXPOSURE_S = 60.0
SENTINEL_PIXELS = 6  # width of the ruined copy before it is blown back up

QUESTIONS = {"real-vs-fake": "Which image is the real photograph?",
             "a-vs-b": "Which image looks more realistic?"}
CARELESS_RULE = "missed at least one sentinel"


def check_study_id(study_id: str) -> str:
    if not isinstance(study_id, str) or not STUDY_ID.match(study_id):
        raise ConfigError(f"study id {study_id!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
                          "starting with a letter or digit.")
    return study_id


def parse_timing(spec: str) -> list[float | None]:
    """"unlimited" / "1" / "unlimited,1" / "0.125,0.25,...,8" (a geometric run) -> exposures in s (None = unlimited)."""
    hint = "use 'unlimited', seconds such as '0.5,1', or a doubling run such as '0.125,0.25,...,8'"
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--timing is empty: {hint}.")
    values: list[float | None] = []
    for part in parts:
        if part in ("...", "\u2026"):
            values.append(...)  # type: ignore[arg-type]  # a marker, expanded below
        elif part.lower() in ("unlimited", "inf", "none"):
            values.append(None)
        else:
            try:
                value = float(part)
            except ValueError:
                raise ConfigError(f"--timing {spec!r}: {part!r} is not a number of seconds; {hint}.") from None
            if not 0.0 < value <= MAX_EXPOSURE_S:
                raise ConfigError(f"--timing {spec!r}: {part} s must be above 0 and at most {MAX_EXPOSURE_S:g} s.")
            values.append(value)
    if ... in values:
        i = values.index(...)
        before, last = values[i - 2:i], values[i + 1:]
        if i < 2 or len(last) != 1 or None in before + last or values.count(...) > 1:
            raise ConfigError(f"--timing {spec!r}: '...' needs two exposures before it and one after, "
                              "e.g. 0.125,0.25,...,8.")
        ratio, end = before[1] / before[0], last[0]
        if ratio <= 1.0:
            raise ConfigError(f"--timing {spec!r}: a '...' run must grow, e.g. 0.125,0.25,...,8.")
        run, current = [], before[1] * ratio
        while current < end * (1 - 1e-9) and len(run) <= MAX_TIMINGS:
            run.append(round(current, 6))
            current *= ratio
        if abs(current - end) > 1e-6 * end:
            raise ConfigError(f"--timing {spec!r}: {end:g} is not reached from {before[0]:g}, {before[1]:g} by "
                              f"the factor {ratio:g}; list the exposures instead.")
        values[i:i + 1] = run
    if len(set(values)) != len(values):
        raise ConfigError(f"--timing {spec!r} lists an exposure twice.")
    if len(values) > MAX_TIMINGS:
        raise ConfigError(f"--timing {spec!r}: {len(values)} exposures; use at most {MAX_TIMINGS}.")
    return values


def exposure_label(exposure: float | None) -> str:
    return "unlimited" if exposure is None else f"{exposure:g} s"


@dataclass(frozen=True)
class Trial:
    """One trial of one participant. Roles: 'real', 'a', 'b' (images of a method) or 'ruined' (sentinel)."""

    index: int
    kind: str  # "trial", "sentinel" or "practice"
    stem: str
    method: str | None  # real-vs-fake: the generated image's method ('a' or 'b'); a-vs-b: None
    exposure: float | None
    left: int
    right: int
    left_role: str
    right_role: str

    def role(self, side: str) -> str:
        return self.left_role if side == "left" else self.right_role

    def public(self) -> dict:
        """What the participant's page gets: image indices and exposure, never the roles (but the
        answer of a practice trial, which the page shows as feedback)."""
        out = {"index": self.index, "left": self.left, "right": self.right, "exposure": self.exposure,
               "practice": self.kind == "practice"}
        if self.kind == "practice":
            good = ("real",) if self.method is not None else ()
            out["correct"] = "left" if self.left_role in good else "right" if self.right_role in good else None
        return out


@dataclass
class Study:
    folder: Path
    spec: dict = field(repr=False)
    _frozen: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.spec["id"]

    @property
    def mode(self) -> str:
        return self.spec["mode"]

    @property
    def timings(self) -> list[float | None]:
        return list(self.spec["timings"])

    def method_name(self, method: str | None) -> str:
        return self.spec["methods"][method]["name"] if method else ""

    def image_path(self, index: int) -> Path:
        """The file of image `index` (an IndexError when out of range), checked to lie inside the study."""
        if not 0 <= index < len(self.spec["images"]):
            raise IndexError(index)
        path = (self.folder / self.spec["images"][index]["file"]).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise DataError(f"{self.folder / 'study.json'}: image {index} points outside the study folder.")
        return path

    def public(self) -> dict:
        return {"id": self.id, "mode": self.mode, "question": self.spec["question"],
                "instructions": self.spec.get("instructions", "")}

    def trials_for(self, participant: str) -> tuple[Trial, ...]:
        """This participant's trials in order (deterministic: the same list on every call)."""
        if self._frozen is None:
            self._frozen = _freeze(self.spec)
        return _trials_cached(self.spec["seed"], participant, self._frozen)


def _freeze(spec: dict) -> tuple:
    """The parts of a spec the trial list depends on, hashable for the cache."""
    items = tuple((it["stem"], it.get("real"), it.get("a"), it.get("b")) for it in spec["items"])
    practice = tuple((it["stem"], it.get("real"), it.get("a"), it.get("b")) for it in spec.get("practice_items", []))
    sentinels = tuple((s["stem"], s["good"], s["good_role"], s["ruined"]) for s in spec["sentinels"])
    return (spec["mode"], tuple(spec["timings"]), tuple(spec["methods"]), items, practice, sentinels,
            spec.get("trials_per_participant"))


def participant_rng(seed: int, participant: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{participant}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@lru_cache(maxsize=4096)
def _trials_cached(seed: int, participant: str, frozen: tuple) -> tuple[Trial, ...]:
    mode, timings, methods, items, practice_items, sentinels, cap = frozen
    rng = participant_rng(seed, participant)
    cells = [(m, t) for m in (methods if mode == "real-vs-fake" else (None,)) for t in timings]

    def pair(stem_item: tuple, cell: tuple) -> tuple:
        stem, real, a, b = stem_item
        method, exposure = cell
        if mode == "real-vs-fake":
            images = [(real, "real"), ({"a": a, "b": b}[method], method)]
        else:
            images = [(a, "a"), (b, "b")]
        if rng.random() < 0.5:
            images.reverse()
        (left, left_role), (right, right_role) = images
        return stem, method, exposure, left, right, left_role, right_role

    order = list(items)
    rng.shuffle(order)
    if cap:
        order = order[:cap]
    offset = rng.randrange(len(cells))
    content = [("trial",) + pair(item, cells[(offset + j) % len(cells)]) for j, item in enumerate(order)]

    sentinel_exposure = None if None in timings else max(timings)
    for stem, good, good_role, ruined in sentinels:
        images = [(good, good_role), (ruined, "ruined")]
        if rng.random() < 0.5:
            images.reverse()
        (left, left_role), (right, right_role) = images
        row = ("sentinel", stem, None, sentinel_exposure, left, right, left_role, right_role)
        after = next((i for i, t in enumerate(content) if t[1] == stem), 0)  # after its stem's trial (or the first)
        content.insert(rng.randint(after + 1, len(content)), row)

    practice = list(practice_items)
    rng.shuffle(practice)
    rows = [("practice",) + pair(item, cells[j % len(cells)]) for j, item in enumerate(practice)] + content
    return tuple(Trial(i, *row) for i, row in enumerate(rows))  # shared by the cache: immutable


def load_study(folder: str | Path) -> Study:
    folder = Path(folder)
    path = folder / "study.json"
    if not path.is_file():
        raise DataError(f"{folder} is not a study: it has no study.json (create one with `pix2pix study create`).")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}).") from None
    if spec.get("format") != FORMAT_VERSION or spec.get("mode") not in MODES:
        raise DataError(f"{path}: not a study file of format {FORMAT_VERSION} (format={spec.get('format')!r}, "
                        f"mode={spec.get('mode')!r}).")
    return Study(folder, spec)


def _by_stem(folder: str | Path, flag: str) -> dict[str, Path]:
    files = list_images(folder)
    if not files:
        raise DataError(f"{flag} {folder} holds no images.")
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise DataError(f"{flag} {folder}: {out[f.stem].name} and {f.name} share the stem {f.stem!r}; "
                            "images are paired by file name without extension, so keep one.")
        out[f.stem] = f
    return out


def _check_partners(base: dict[str, Path], base_flag: str, other: dict[str, Path], other_flag: str) -> None:
    for stem, path in base.items():
        if stem not in other:
            raise DataError(f"{path} ({base_flag}) has no partner named {stem}.* in {other_flag}: add it or "
                            "remove this file.")
    for stem, path in other.items():
        if stem not in base:
            raise DataError(f"{path} ({other_flag}) has no partner named {stem}.* in {base_flag}: add it or "
                            "remove this file.")


def _ruin(image: Image.Image) -> Image.Image:
    """A copy no one would take for a photograph: flat colour blocks, same size."""
    rgb = convert_channels(image, 3)
    w, h = rgb.size
    small = rgb.resize((SENTINEL_PIXELS, max(1, round(SENTINEL_PIXELS * h / w))), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.NEAREST)


def create_study(studies_dir: str | Path, mode: str, a: str | Path, b: str | Path | None = None,
                 real: str | Path | None = None, timings: list[float | None] | None = None, *,
                 study_id: str | None = None, seed: int | None = None, sentinels: int = 2, practice: int = 0,
                 trials: int | None = None, a_name: str | None = None, b_name: str | None = None,
                 question: str | None = None, instructions: str | None = None) -> tuple[Study, list[str]]:
    """Create `<studies_dir>/<study_id>/` from image folders paired by file stem; returns (study, warnings)."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode == "real-vs-fake" and real is None:
        raise ConfigError("--mode real-vs-fake needs --real DIR, the real images the generated ones are shown beside.")
    if mode == "a-vs-b" and b is None:
        raise ConfigError("--mode a-vs-b needs --b DIR, the second method's outputs.")
    timings = list(timings) if timings else [None]
    for value, flag in ((sentinels, "--sentinels"), (practice, "--practice")):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{flag} {value!r}: use a whole number of trials, 0 or more.")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials {trials}: use at least 1 trial per participant (or leave it out for all).")
    study_id = check_study_id(study_id or f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}")
    seed = secrets.randbits(31) if seed is None else int(seed)

    folders = {"a": _by_stem(a, "--a")}
    if b is not None:
        folders["b"] = _by_stem(b, "--b")
        _check_partners(folders["a"], "--a", folders["b"], "--b")
    if real is not None:
        folders["real"] = _by_stem(real, "--real")
        _check_partners(folders["a"], "--a", folders["real"], "--real")
    stems = sorted(folders["a"])
    if practice >= len(stems):
        raise ConfigError(f"--practice {practice} leaves no test trials from {len(stems)} images: use fewer.")
    if sentinels > len(stems):
        raise ConfigError(f"--sentinels {sentinels}: at most one per image ({len(stems)}).")

    folder = Path(studies_dir) / study_id
    if (folder / "study.json").exists():
        raise ConfigError(f"study {study_id!r} already exists at {folder}: choose another --id, or delete the folder "
                          "(and its answers) first.")
    rng = random.Random(seed)
    warnings: list[str] = []
    sources: list[tuple[str, str, Path | Image.Image]] = []  # (role, stem, file or ruined image)
    for stem in stems:
        sizes = {}
        for role, by_stem in folders.items():
            img = open_image(by_stem[stem])  # every image must decode before the study exists
            sizes[role] = img.size
            sources.append((role, stem, by_stem[stem]))
        if len(set(sizes.values())) > 1:
            warnings.append(f"{stem}: sizes differ ({', '.join(f'{r} {w}x{h}' for r, (w, h) in sizes.items())}); "
                            "a size difference can give the answer away.")
    pool = list(stems)
    rng.shuffle(pool)
    practice_stems, pool = set(pool[:practice]), pool[practice:]
    sentinel_stems = sorted(pool[:sentinels])
    good_role = "real" if "real" in folders else "a"
    for stem in sentinel_stems:
        sources.append(("ruined", stem, _ruin(open_image(folders[good_role][stem]))))

    order = list(range(len(sources)))
    rng.shuffle(order)  # image indices carry no hint of their role
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict] = [{}] * len(sources)
    index_of: dict[tuple[str, str], int] = {}
    for index, k in enumerate(order):
        role, stem, src = sources[k]
        if isinstance(src, Image.Image):
            name = f"images/{index:04d}.png"
            src.save(folder / name)
            entry = {"file": name, "role": role, "stem": stem, "source": None}
        else:
            name = f"images/{index:04d}{src.suffix.lower()}"
            shutil.copyfile(src, folder / name)
            entry = {"file": name, "role": role, "stem": stem, "source": str(Path(src).resolve())}
        images[index] = entry
        index_of[(role, stem)] = index

    def item(stem: str) -> dict:
        return {"stem": stem, **{role: index_of[(role, stem)] for role in folders}}

    methods = {"a": {"name": a_name or Path(a).resolve().name, "source": str(Path(a).resolve())}}
    if b is not None:
        methods["b"] = {"name": b_name or Path(b).resolve().name, "source": str(Path(b).resolve())}
        if methods["a"]["name"] == methods["b"]["name"]:
            methods["b"]["name"] += " (b)"
    spec = {
        "format": FORMAT_VERSION, "id": study_id, "mode": mode, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed, "timings": timings, "methods": methods,
        "real": str(Path(real).resolve()) if real is not None else None,
        "question": question or QUESTIONS[mode], "instructions": instructions or "",
        "trials_per_participant": trials, "careless_rule": CARELESS_RULE,
        "images": images,
        "items": [item(s) for s in stems if s not in practice_stems],
        "practice_items": [item(s) for s in stems if s in practice_stems],
        "sentinels": [{"stem": s, "good": index_of[(good_role, s)], "good_role": good_role,
                       "ruined": index_of[("ruined", s)]} for s in sentinel_stems],
    }
    write_json(folder / "study.json", spec)
    return Study(folder, spec), warnings
