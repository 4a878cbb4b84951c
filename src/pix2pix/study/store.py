"""Sessions and answers in SQLite: one committed INSERT per answer, so a killed server loses nothing it
acknowledged.

WAL journal with synchronous=FULL: a commit is on disk (the WAL fsynced) before the server answers
200, and readers (`study results` while the study runs) never block the writer. UNIQUE(participant,
trial) makes a retried POST harmless: the second copy is recognised, not counted. One connection per
store, shared by the server's request threads under a lock (SQLite serialises writers anyway).

A session is what the server issued when a participant id first started: a random token (only its
SHA-256 is stored, so the database alone does not let anyone answer as a participant) and the
participant's tag, the prefix of its image tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from pathlib import Path

ANSWERS_FILE = "answers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    participant TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    tag TEXT NOT NULL UNIQUE,
    started_at REAL NOT NULL,
    user_agent TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    participant TEXT NOT NULL,
    trial INTEGER NOT NULL,
    kind TEXT NOT NULL,
    stem TEXT NOT NULL,
    method TEXT,
    exposure REAL,
    left_image INTEGER NOT NULL,
    right_image INTEGER NOT NULL,
    left_role TEXT NOT NULL,
    right_role TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    chosen_role TEXT NOT NULL,
    rt_ms REAL,
    shown_ms REAL,
    answered_at REAL NOT NULL,
    UNIQUE (participant, trial)
);
"""

ANSWER_COLUMNS = ("participant", "trial", "kind", "stem", "method", "exposure", "left_image", "right_image",
                  "left_role", "right_role", "choice", "chosen_role", "rt_ms", "shown_ms", "answered_at")


class AnswerStore:
    """The answers of one study (`<study>/answers.sqlite`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def start_session(self, participant: str, tag: str, token: str, user_agent: str = "") -> bool:
        """Record `token` as the session of a participant id not seen before. True when it is now the
        participant's session (new, or the same token again: a retried request); False when the id
        already has another session."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (participant, _sha256(token), tag, time.time(), user_agent[:300]))
            if cursor.rowcount == 1:
                return True
            row = self._db.execute("SELECT token_sha256 FROM sessions WHERE participant = ?",
                                   (participant,)).fetchone()
        return row is not None and secrets.compare_digest(row["token_sha256"], _sha256(token))

    def participant_for_token(self, token: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT participant FROM sessions WHERE token_sha256 = ?",
                                   (_sha256(token),)).fetchone()
        return row["participant"] if row else None

    def participant_for_tag(self, tag: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT participant FROM sessions WHERE tag = ?", (tag,)).fetchone()
        return row["participant"] if row else None

    def session_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]

    def answered_count(self, participant: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers WHERE participant = ?", (participant,)).fetchone()[0]

    def record_in_order(self, answer: dict) -> tuple[str, str | None]:
        """Store the answer to the participant's next trial (committed when this returns).

        Returns ("stored", choice), ("duplicate", the choice stored first) for a trial already answered,
        or ("ahead", None) when earlier trials are unanswered. Trials are answered in order, so the
        answered trials are always 0 .. count-1 and the next one is `count`."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM answers WHERE participant = ?",
                                     (answer["participant"],)).fetchone()[0]
            if answer["trial"] > count:
                return "ahead", None
            if answer["trial"] == count:
                inserted, choice = self._insert(answer)
                if inserted:
                    return "stored", choice
            stored = self._db.execute("SELECT choice FROM answers WHERE participant = ? AND trial = ?",
                                      (answer["participant"], answer["trial"])).fetchone()
            return "duplicate", stored["choice"]

    def record(self, answer: dict) -> tuple[bool, str]:
        """Insert one answer (committed when this returns). Returns (inserted, stored choice): a
        repeat of (participant, trial) inserts nothing and returns the choice stored first."""
        with self._lock:
            inserted, choice = self._insert(answer)
            if inserted:
                return True, choice
            stored = self._db.execute("SELECT choice FROM answers WHERE participant = ? AND trial = ?",
                                      (answer["participant"], answer["trial"])).fetchone()
        return False, stored["choice"]

    def _insert(self, answer: dict) -> tuple[bool, str]:
        row = {**answer, "answered_at": answer.get("answered_at") or time.time()}
        cursor = self._db.execute(
            f"INSERT INTO answers ({', '.join(ANSWER_COLUMNS)}) VALUES ({', '.join('?' * len(ANSWER_COLUMNS))}) "
            "ON CONFLICT (participant, trial) DO NOTHING", tuple(row.get(c) for c in ANSWER_COLUMNS))
        return cursor.rowcount == 1, row["choice"]

    def answered(self, participant: str) -> dict[int, str]:
        with self._lock:
            rows = self._db.execute("SELECT trial, choice FROM answers WHERE participant = ?", (participant,))
            return {r["trial"]: r["choice"] for r in rows}

    def answers(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def participants(self) -> list[dict]:
        """Every participant that started a session: id, start time and browser (never the token)."""
        with self._lock:
            rows = self._db.execute("SELECT participant, started_at, user_agent FROM sessions ORDER BY started_at")
            return [dict(r) for r in rows]


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_answers(study_folder: str | Path) -> list[dict]:
    """Every stored answer of a study (an empty list before the first), without creating the database."""
    return read_study_data(study_folder)[0]


def read_study_data(study_folder: str | Path) -> tuple[list[dict], list[dict]]:
    """(every stored answer, every participant that started) of a study, without creating the database."""
    path = Path(study_folder) / ANSWERS_FILE
    if not path.exists():
        return [], []
    store = AnswerStore(path)
    try:
        return store.answers(), store.participants()
    finally:
        store.close()
