"""Study creation and per-participant trial lists.

A study is a folder `<studies>/<id>/` holding `study.json` (written last and atomically, so a
half-created study is never served), `secret.key` (the study's HMAC key, mode 0600, never sent to
a client), `images/` and, once people take part, `answers.sqlite`.

Images are re-encoded at creation, so the files carry no hint of which image is which: every image
(real, generated, ruined) becomes an RGB PNG of the study's one size (`--size`, default the most
common input size), with no metadata (EXIF, ICC profile, text chunks) and without compression, so
its byte size is a function of the study's size alone: every file of a study has the same length.
A compressed format would leak through the size, since photographs and generated images compress
differently (docs/study.md has the measurement). EXIF orientation is applied and an ICC profile is
converted to sRGB first, so what is shown looks as the input did.

Modes:
  real-vs-fake  the pix2pix AMT test: a generated image (--a, and --b if given, each tested on its own)
                beside the real one (--real) for the same input; "which image is real?". The metric is
                the fooling rate, the share of trials where the generated image was picked.
  a-vs-b        the pix2pixHD preference test: the outputs of two methods (--a, --b) for the same input;
                "which image looks more realistic?". The metric is the preference rate for --a.

Trial lists are generated on demand from a per-participant seed (study seed + participant id), so
the server stores nothing per participant but its session and answers, and a reload gets the same
list back. Each participant sees every test stem once. Its condition (method x exposure) rotates
through the conditions from a random offset, so conditions are balanced within a participant and
every stem meets every condition across participants. Left/right is a coin flip per trial.

Sentinels are trials with an obvious answer: an intact image beside a ruined copy of it (downscaled
to 6 pixels across and blown back up: flat colour blocks). Their stems are kept out of the test
trials (as practice stems are), so the intact image is one the participant has never seen: a
script cannot pass the check by recognising an image from an earlier pair. Each participant gets
every sentinel, at a random place among the test trials and at the study's longest exposure. A
participant who misses any sentinel is flagged careless.

Participants never see an image index: the server names each image by an opaque token derived
from the study's secret, the participant and the index (`Study.image_token`), different for every
participant, and serves only the images of the participant's current pair. The completion code
(`Study.completion_code`) is an HMAC of the participant id under the same secret, so the
experimenter can check it (`study results --codes`) and a participant cannot make one up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..data.images import convert_channels, list_images, open_image
from ..errors import ConfigError, DataError
from ..io.atomic import fsync_directory, write_json

FORMAT_VERSION = 2  # 2: re-encoded images, secret.key, sentinel stems kept out of the test trials
SECRET_FILE = "secret.key"
MAX_SIDE = 4096  # --size and the inputs: at most this many pixels a side
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

    def public(self, token: Callable[[int], str]) -> dict:
        """What the participant's page gets: the images' tokens (`token(index)`) and the exposure, never
        the roles or indices (but the answer of a practice trial, which the page shows as feedback)."""
        out = {"index": self.index, "left": token(self.left), "right": token(self.right), "exposure": self.exposure,
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

    # -- tokens and codes: HMAC-SHA256 under the study's secret -------------------------------------
    @cached_property
    def secret(self) -> bytes:
        path = self.folder / SECRET_FILE
        try:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            raise DataError(f"{path} is missing: the study's key is gone, so its sessions and completion codes "
                            "cannot be checked; re-create the study (`pix2pix study create`).") from None
        except ValueError:
            raise DataError(f"{path} is not a study key (64 hex digits): re-create the study.") from None
        if len(key) < 16:
            raise DataError(f"{path} holds a key of {len(key)} bytes; a study key has 32: re-create the study.")
        return key

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self.secret, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def participant_tag(self, participant: str) -> str:
        """12 characters naming the participant inside its image tokens (unguessable without the secret)."""
        return _b64(self._mac("tag", participant)[:9])

    def image_token(self, participant: str, index: int) -> str:
        """The name under which `participant` gets image `index`: 32 URL-safe characters, unrelated across
        participants and images."""
        return self.participant_tag(participant) + _b64(self._mac("image", participant, str(index))[:15])

    def session_token(self, participant: str, nonce: str) -> str:
        """The session the server issues for `participant` asking with `nonce` (the page's random value, so
        that a retried request gets the same session and nobody without the nonce can)."""
        return _b64(self._mac("session", participant, nonce)[:24])

    def completion_code(self, participant: str) -> str:
        """XXXX-XXXX-XXXX-XXXX (base32): what a participant who answered every trial is shown."""
        text = base64.b32encode(self._mac("code", participant)[:10]).decode("ascii")
        return "-".join(text[i:i + 4] for i in range(0, 16, 4))

    def check_codes(self, codes: list[str], participants: list[str]) -> dict[str, str | None]:
        """Each submitted code -> the participant it belongs to, or None for a code this study never issued."""
        issued = {normalise_code(self.completion_code(p)): p for p in participants}
        return {code: issued.get(normalise_code(code)) for code in codes}

    def trials_for(self, participant: str) -> tuple[Trial, ...]:
        """This participant's trials in order (deterministic: the same list on every call)."""
        if self._frozen is None:
            self._frozen = _freeze(self.spec)
        return _trials_cached(self.spec["seed"], participant, self._frozen)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def normalise_code(code: str) -> str:
    """A completion code as typed: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", str(code)).upper()


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
        content.insert(rng.randint(1, len(content)), row)  # never first: the first pair is a real one

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
    if not isinstance(spec, dict) or spec.get("format") != FORMAT_VERSION or spec.get("mode") not in MODES:
        found = spec.get("format") if isinstance(spec, dict) else None
        raise DataError(f"{path}: not a study file of format {FORMAT_VERSION} (format={found!r}); a study made by "
                        "an earlier version serves its images as they came and has no key: re-create it with "
                        "`pix2pix study create`.")
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


def parse_size(text: str) -> tuple[int, int]:
    """"256x192" -> (256, 192)."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", str(text))
    if not match:
        raise ConfigError(f"--size {text!r}: give WIDTHxHEIGHT in pixels, e.g. 256x256.")
    w, h = int(match.group(1)), int(match.group(2))
    if not (8 <= w <= MAX_SIDE and 8 <= h <= MAX_SIDE):
        raise ConfigError(f"--size {text}: each side must be 8..{MAX_SIDE} pixels.")
    return w, h


def _viewable(img: Image.Image, path: Path, warnings: list[str]) -> Image.Image:
    """The image as a browser would have shown the input: EXIF orientation applied, colours in sRGB, RGB."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: show the pixels as stored
        warnings.append(f"{path}: its EXIF orientation could not be read; shown as stored.")
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            img = ImageCms.profileToProfile(convert_channels(img, 3), source, ImageCms.createProfile("sRGB"),
                                            outputMode="RGB")
        except Exception:  # no littlecms, or a broken profile
            warnings.append(f"{path}: its ICC colour profile could not be applied; its colours are used as sRGB.")
    return convert_channels(img, 3)


def encode_image(img: Image.Image, size: tuple[int, int]) -> bytes:
    """The served form of every study image: RGB, `size`, no metadata, PNG without compression (so the
    byte length depends on the size alone)."""
    if img.size != size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    clean = Image.fromarray(np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8)), "RGB")
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _write_secret(folder: Path) -> None:
    """32 random bytes as hex, readable by the owner only, in place before study.json names the study."""
    tmp = folder / f".{SECRET_FILE}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, folder / SECRET_FILE)
    fsync_directory(folder)


def create_study(studies_dir: str | Path, mode: str, a: str | Path, b: str | Path | None = None,
                 real: str | Path | None = None, timings: list[float | None] | None = None, *,
                 study_id: str | None = None, seed: int | None = None, sentinels: int = 2, practice: int = 0,
                 trials: int | None = None, a_name: str | None = None, b_name: str | None = None,
                 question: str | None = None, instructions: str | None = None,
                 size: tuple[int, int] | None = None) -> tuple[Study, list[str]]:
    """Create `<studies_dir>/<study_id>/` from image folders paired by file stem; returns (study, warnings)."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode == "real-vs-fake" and real is None:
        raise ConfigError("--mode real-vs-fake needs --real DIR, the real images the generated ones are shown beside.")
    if mode == "a-vs-b" and b is None:
        raise ConfigError("--mode a-vs-b needs --b DIR, the second method's outputs.")
    timings = list(timings) if timings else [None]
    for value, flag in ((sentinels, "--sentinels"), (practice, "--practice")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{flag} {value!r}: use a whole number of trials, 0 or more.")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials {trials}: use at least 1 trial per participant (or leave it out for all).")
    if size is not None:
        size = parse_size(f"{size[0]}x{size[1]}")
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
    if practice + sentinels >= len(stems):
        raise ConfigError(f"--practice {practice} and --sentinels {sentinels} leave no test trials from "
                          f"{len(stems)} images (sentinel and practice images are not tested): use fewer.")

    folder = Path(studies_dir) / study_id
    if (folder / "study.json").exists():
        raise ConfigError(f"study {study_id!r} already exists at {folder}: choose another --id, or delete the folder "
                          "(and its answers) first.")
    rng = random.Random(seed)
    warnings: list[str] = []
    sizes: dict[tuple[str, str], tuple[int, int]] = {}
    for stem in stems:
        for role, by_stem in folders.items():
            sizes[(role, stem)] = _viewable(open_image(by_stem[stem]), by_stem[stem], []).size  # all must decode
    if size is None:  # the most common size, the larger on a tie
        size = max(Counter(sizes.values()).items(), key=lambda kv: (kv[1], kv[0][0] * kv[0][1]))[0]
        if max(size) > MAX_SIDE:
            raise ConfigError(f"the images are {size[0]}x{size[1]}; give --size WxH of at most {MAX_SIDE} a side.")
    def stretched(shapes) -> str:
        return " (aspect ratios differ: some are stretched)" if len({round(w / h, 2) for w, h in shapes}) > 1 else ""

    resized: dict[tuple[int, int], list[str]] = {}  # stems whose images share one size that is not the study's
    for stem in stems:
        own = {role: sizes[(role, stem)] for role in folders}
        if len(set(own.values())) > 1:
            listed = ", ".join(f"{r} {w}x{h}" for r, (w, h) in own.items())
            warnings.append(f"{stem}: sizes differ ({listed}); every image is shown at {size[0]}x{size[1]}"
                            f"{stretched([*own.values(), size])}.")
        elif size not in own.values():
            resized.setdefault(next(iter(own.values())), []).append(stem)
    for (w, h), group in resized.items():
        named = ", ".join(group[:5]) + (", ..." if len(group) > 5 else "")
        warnings.append(f"{len(group)} image {'set is' if len(group) == 1 else 'sets are'} {w}x{h} ({named}); "
                        f"shown at {size[0]}x{size[1]}{stretched([(w, h), size])}.")

    pool = list(stems)
    rng.shuffle(pool)
    practice_stems, sentinel_stems = set(pool[:practice]), sorted(pool[practice:practice + sentinels])
    good_role = "real" if "real" in folders else "a"
    sources: list[tuple[str, str]] = [(role, stem) for stem in stems for role in folders]
    sources += [("ruined", stem) for stem in sentinel_stems]

    order = list(range(len(sources)))
    rng.shuffle(order)  # indices carry no hint of the role (and are never shown to participants)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict] = [{}] * len(sources)
    index_of: dict[tuple[str, str], int] = {}
    lengths = set()
    for index, k in enumerate(order):
        role, stem = sources[k]
        src = folders[good_role if role == "ruined" else role][stem]
        img = _viewable(open_image(src), src, warnings)
        if role == "ruined":
            img = _ruin(img.resize(size, Image.Resampling.LANCZOS) if img.size != size else img)
        data = encode_image(img, size)
        lengths.add(len(data))
        name = f"images/{index:04d}.png"
        (folder / name).write_bytes(data)
        images[index] = {"file": name, "role": role, "stem": stem,
                         "source": None if role == "ruined" else str(Path(src).resolve())}
        index_of[(role, stem)] = index
    assert len(lengths) == 1, "every image of a study must have the same byte length"

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
        "size": list(size), "image_bytes": lengths.pop(),
        "images": images,
        "items": [item(s) for s in stems if s not in practice_stems and s not in sentinel_stems],
        "practice_items": [item(s) for s in stems if s in practice_stems],
        "sentinels": [{"stem": s, "good": index_of[(good_role, s)], "good_role": good_role,
                       "ruined": index_of[("ruined", s)]} for s in sentinel_stems],
    }
    _write_secret(folder)
    write_json(folder / "study.json", spec)
    return Study(folder, spec), warnings
