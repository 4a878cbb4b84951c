"""The participant-facing server: every study under one folder, on the shared `pix2pix.web` layer.

Routes (STUDY is a validated id; unknown ids get 404):
  GET  /study/STUDY/                    the participant page (static/index.html; app.js does the rest)
  GET  /api/study/STUDY                 question and instructions
  POST /api/study/STUDY/session         {"participant", "nonce"?} -> a new session, for an id not seen before
                                        (the same nonce again gets the same session: a retried request)
                                        {"session"} -> the same session again (a reload)
                                        answer: {"session", "participant", "total", "answered", "trial", "code"}
  POST /api/study/STUDY/answer          {"session", "trial", "choice": "left"|"right", "rt_ms", "shown_ms"}
                                        answer: {"ok", "trial", "duplicate", "answered", "total", "next", "code"}
  GET  /api/study/STUDY/image/TOKEN     an image of the session's current pair, by its opaque token

What a participant can and cannot do:
- The session token is issued once per participant id, at its first /session; every later request
  for that participant needs it. So nobody can answer for, or read the trials of, a participant id
  they did not start, and starting a known id a second time is refused (403).
- Only the current pair is revealed ("trial" in /session, "next" in /answer), and only its two
  images are served; trials are answered in order, so a script cannot look ahead.
- Images have per-participant tokens (`Study.image_token`), so nothing in a URL is shared between
  participants, and every file of a study has the same format, size and byte length.
- The completion code is given once every trial is answered and is an HMAC only the server can make.
The client sends sides, never roles or paths: the server recomputes the trial from the participant's
seed and stores what the chosen side was. Bodies are capped at 4 KiB.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import threading
from pathlib import Path

from ..web import App, HTTPError, Limits, Request, Response, json_response
from .design import PARTICIPANT_ID, STUDY_ID, Study, Trial, load_study
from .store import ANSWERS_FILE, AnswerStore

STATIC = Path(__file__).parent / "static"
MAX_BODY = 4096
MAX_MS = 24 * 3600 * 1000.0
MAX_PARTICIPANTS = 100_000  # sessions per study: a flood of made-up ids cannot grow the database without bound
_SESSION = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_IMAGE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
_NO_IMAGE = "no such image (a session gets the images of its current pair only)"


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
                study.secret  # noqa: B018  # a study without its key is refused here, not on the first answer
                self._open[study_id] = (study, AnswerStore(folder / ANSWERS_FILE))
            return self._open[study_id]

    def close(self) -> None:
        with self._lock:
            for _, store in self._open.values():
                store.close()
            self._open.clear()


def _participant_id(body: dict) -> str:
    value = body.get("participant")
    if not isinstance(value, str) or not PARTICIPANT_ID.match(value):
        raise HTTPError(400, "participant must be 1-64 letters, digits, '-' or '_', starting with a letter or digit")
    return value


def _session_participant(store: AnswerStore, body: dict) -> str:
    """The participant a request's session token belongs to; 403 for anything else."""
    token = body.get("session")
    if not isinstance(token, str) or not _SESSION.match(token):
        raise HTTPError(403, "a session token is required: open the study page again")
    participant = store.participant_for_token(token)
    if participant is None:
        raise HTTPError(403, "unknown session: open the study page again from the link you were given")
    if "participant" in body and body["participant"] != participant:
        raise HTTPError(403, "this session belongs to another participant")
    return participant


def _milliseconds(body: dict, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= MAX_MS:
        raise HTTPError(400, f"{key} must be a number of milliseconds between 0 and {MAX_MS:.0f}")
    return float(value)


def _public(study: Study, participant: str, trial: Trial | None) -> dict | None:
    return None if trial is None else trial.public(lambda index: study.image_token(participant, index))


def _progress(study: Study, participant: str, answered: int) -> dict:
    """The participant's position: counts, the current pair (None when done) and, when done, the code."""
    trials = study.trials_for(participant)
    done = answered >= len(trials)
    return {"total": len(trials), "answered": answered,
            "code": study.completion_code(participant) if done else None,
            "current": None if done else _public(study, participant, trials[answered])}


def build_app(studies_dir: str | Path, limits: Limits | None = None) -> App:
    studies = Studies(studies_dir)
    app = App("study", max_body=MAX_BODY, limits=limits)
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
        body = req.json()
        if "session" in body:
            participant, token = _session_participant(store, body), body["session"]
        else:
            participant = _participant_id(body)
            if store.session_count() >= MAX_PARTICIPANTS:
                raise HTTPError(503, "this study takes no more participants")
            nonce = body.get("nonce", secrets.token_urlsafe(24))
            if not isinstance(nonce, str) or not _NONCE.match(nonce):
                raise HTTPError(400, "nonce must be 16-64 letters, digits, '-' or '_' (a random value of the page's)")
            token = study.session_token(participant, nonce)
            if not store.start_session(participant, study.participant_tag(participant), token,
                                       req.headers.get("user-agent", "")):
                raise HTTPError(403, f"participant {participant!r} has already started this study in another "
                                     "browser: continue there (the same link in the same browser resumes)")
        progress = _progress(study, participant, store.answered_count(participant))
        return json_response({"study": study.public(), "session": token, "participant": participant,
                              "total": progress["total"], "answered": progress["answered"],
                              "trial": progress["current"], "code": progress["code"]})

    @app.route("POST", "/api/study/{study}/answer")
    def answer(req: Request) -> Response:
        study, store = studies.get(req.params["study"])
        body = req.json()
        participant = _session_participant(store, body)
        trials = study.trials_for(participant)
        index = body.get("trial")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(trials):
            raise HTTPError(400, f"trial must be an integer from 0 to {len(trials) - 1}")
        choice = body.get("choice")
        if choice not in ("left", "right"):
            raise HTTPError(400, "choice must be 'left' or 'right'")
        trial = trials[index]
        outcome, stored = store.record_in_order({
            "participant": participant, "trial": index, "kind": trial.kind, "stem": trial.stem,
            "method": trial.method, "exposure": trial.exposure, "left_image": trial.left,
            "right_image": trial.right, "left_role": trial.left_role, "right_role": trial.right_role,
            "choice": choice, "chosen_role": trial.role(choice),
            "rt_ms": _milliseconds(body, "rt_ms"), "shown_ms": _milliseconds(body, "shown_ms")})
        if outcome == "ahead":
            raise HTTPError(409, f"trial {index} is not the current one: answer the pairs in order")
        if outcome == "duplicate" and stored != choice:
            raise HTTPError(409, f"trial {index} was already answered '{stored}'; answers cannot be changed")
        progress = _progress(study, participant, store.answered_count(participant))
        return json_response({"ok": True, "trial": index, "duplicate": outcome == "duplicate",
                              "answered": progress["answered"], "total": progress["total"],
                              "next": progress["current"], "code": progress["code"]})

    @app.route("GET", "/api/study/{study}/image/{token}")
    def image(req: Request) -> Response:
        study, store = studies.get(req.params["study"])
        token = req.params["token"]
        if not _IMAGE_TOKEN.match(token):
            raise HTTPError(404, _NO_IMAGE)
        participant = store.participant_for_tag(token[:12])
        if participant is None:
            raise HTTPError(404, _NO_IMAGE)
        trials = study.trials_for(participant)
        answered = store.answered_count(participant)
        if answered >= len(trials):
            raise HTTPError(404, _NO_IMAGE)
        current = trials[answered]
        for index in (current.left, current.right):
            if hmac.compare_digest(token, study.image_token(participant, index)):
                return Response(study.image_path(index).read_bytes(), 200, "image/png",
                                {"Cache-Control": "private, max-age=3600"})
        raise HTTPError(404, _NO_IMAGE)

    app.static("/static", STATIC)
    return app
