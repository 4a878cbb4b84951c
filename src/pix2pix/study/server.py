"""The participant-facing server: every study under one folder, on the shared `pix2pix.web` layer.

Routes (STUDY is a validated id; unknown ids get 404):
  GET  /study/STUDY/                    the participant page (static/index.html; app.js does the rest)
  GET  /api/study/STUDY                 question and instructions
  POST /api/study/STUDY/session         {"participant"} -> this participant's trial list and earlier answers
  POST /api/study/STUDY/answer          {"participant", "trial", "choice": "left"|"right", "rt_ms", "shown_ms"}
  GET  /api/study/STUDY/image/INDEX     an image of the study, by index into study.json's list only

The client sends image indices and sides, never roles or paths: the server recomputes the trial from
the participant's seed and stores what the chosen side was. Bodies are capped at 4 KiB.
"""

from __future__ import annotations

import math
import mimetypes
import re
import threading
from pathlib import Path

from ..web import App, HTTPError, Request, Response, json_response
from .design import PARTICIPANT_ID, STUDY_ID, Study, load_study
from .store import ANSWERS_FILE, AnswerStore

STATIC = Path(__file__).parent / "static"
MAX_BODY = 4096
MAX_MS = 24 * 3600 * 1000.0
_INDEX = re.compile(r"^\d{1,7}$")


class Studies:
    """Studies found under a folder, loaded on first use (a study created while serving is found too)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Study, AnswerStore]] = {}

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir()
                      if STUDY_ID.match(p.name) and (p / "study.json").is_file()) if self.folder.is_dir() else []

    def get(self, study_id: str) -> tuple[Study, AnswerStore]:
        if not STUDY_ID.match(study_id):
            raise HTTPError(404, "no such study")
        with self._lock:
            if study_id not in self._open:
                folder = self.folder / study_id
                if not (folder / "study.json").is_file():
                    raise HTTPError(404, f"no study {study_id!r}")
                study = load_study(folder)
                self._open[study_id] = (study, AnswerStore(folder / ANSWERS_FILE))
            return self._open[study_id]

    def close(self) -> None:
        with self._lock:
            for _, store in self._open.values():
                store.close()
            self._open.clear()


def _participant(body: dict) -> str:
    value = body.get("participant")
    if not isinstance(value, str) or not PARTICIPANT_ID.match(value):
        raise HTTPError(400, "participant must be 1-64 letters, digits, '-' or '_', starting with a letter or digit")
    return value


def _milliseconds(body: dict, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= MAX_MS:
        raise HTTPError(400, f"{key} must be a number of milliseconds between 0 and {MAX_MS:.0f}")
    return float(value)


def build_app(studies_dir: str | Path) -> App:
    studies = Studies(studies_dir)
    app = App("study", max_body=MAX_BODY)
    app.studies = studies  # for the CLI and tests

    @app.route("GET", "/")
    def root(req: Request) -> Response:
        # No listing: participants get a link to their study, not to the others.
        return json_response({"server": "pix2pix study", "participant_pages": "/study/<id>/"})

    @app.route("GET", "/study/{study}")
    def page_redirect(req: Request) -> Response:
        studies.get(req.params["study"])
        return Response(b"", 301, "text/plain", {"Location": f"/study/{req.params['study']}/"})

    @app.route("GET", "/study/{study}/")
    def page(req: Request) -> Response:
        studies.get(req.params["study"])
        return Response((STATIC / "index.html").read_bytes(), 200, "text/html; charset=utf-8",
                        {"Cache-Control": "no-cache"})

    @app.route("GET", "/api/study/{study}")
    def info(req: Request) -> Response:
        study, _ = studies.get(req.params["study"])
        return json_response(study.public())

    @app.route("POST", "/api/study/{study}/session")
    def session(req: Request) -> Response:
        study, store = studies.get(req.params["study"])
        participant = _participant(req.json())
        store.start_participant(participant, req.headers.get("user-agent", ""))
        trials = study.trials_for(participant)
        answered = store.answered(participant)
        return json_response({"study": study.public(), "participant": participant,
                              "trials": [t.public() for t in trials],
                              "answered": {str(k): v for k, v in sorted(answered.items())}})

    @app.route("POST", "/api/study/{study}/answer")
    def answer(req: Request) -> Response:
        study, store = studies.get(req.params["study"])
        body = req.json()
        participant = _participant(body)
        trials = study.trials_for(participant)
        index = body.get("trial")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(trials):
            raise HTTPError(400, f"trial must be an integer from 0 to {len(trials) - 1}")
        choice = body.get("choice")
        if choice not in ("left", "right"):
            raise HTTPError(400, "choice must be 'left' or 'right'")
        trial = trials[index]
        inserted, stored = store.record({
            "participant": participant, "trial": index, "kind": trial.kind, "stem": trial.stem,
            "method": trial.method, "exposure": trial.exposure, "left_image": trial.left,
            "right_image": trial.right, "left_role": trial.left_role, "right_role": trial.right_role,
            "choice": choice, "chosen_role": trial.role(choice),
            "rt_ms": _milliseconds(body, "rt_ms"), "shown_ms": _milliseconds(body, "shown_ms")})
        if not inserted and stored != choice:
            raise HTTPError(409, f"trial {index} was already answered '{stored}'; answers cannot be changed")
        return json_response({"ok": True, "trial": index, "duplicate": not inserted})

    @app.route("GET", "/api/study/{study}/image/{index}")
    def image(req: Request) -> Response:
        study, _ = studies.get(req.params["study"])
        text = req.params["index"]
        if not _INDEX.match(text):
            raise HTTPError(400, "image index must be a non-negative integer")
        try:
            path = study.image_path(int(text))
        except IndexError:
            raise HTTPError(404, f"no image {text} in this study") from None
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), 200, kind, {"Cache-Control": "private, max-age=3600"})

    app.static("/static", STATIC)
    return app
