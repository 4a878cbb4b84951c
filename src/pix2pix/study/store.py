"""Answers in SQLite: one committed INSERT per answer, so a killed server loses nothing it acknowledged.

WAL journal with synchronous=FULL: a commit is on disk (the WAL fsynced) before the server answers
200, and readers (`study results` while the study runs) never block the writer. UNIQUE(participant,
trial) makes a retried POST harmless: the second copy is recognised, not counted. One connection per
store, shared by the server's request threads under a lock (SQLite serialises writers anyway).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

ANSWERS_FILE = "answers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    participant TEXT PRIMARY KEY,
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

    def start_participant(self, participant: str, user_agent: str = "") -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO participants VALUES (?, ?, ?)",
                             (participant, time.time(), user_agent[:300]))

    def record(self, answer: dict) -> tuple[bool, str]:
        """Insert one answer (committed when this returns). Returns (inserted, stored choice): a
        repeat of (participant, trial) inserts nothing and returns the choice stored first."""
        row = {**answer, "answered_at": answer.get("answered_at") or time.time()}
        values = tuple(row.get(c) for c in ANSWER_COLUMNS)
        with self._lock:
            cursor = self._db.execute(
                f"INSERT INTO answers ({', '.join(ANSWER_COLUMNS)}) VALUES ({', '.join('?' * len(ANSWER_COLUMNS))}) "
                "ON CONFLICT (participant, trial) DO NOTHING", values)
            if cursor.rowcount == 1:
                return True, row["choice"]
            stored = self._db.execute("SELECT choice FROM answers WHERE participant = ? AND trial = ?",
                                      (row["participant"], row["trial"])).fetchone()
        return False, stored["choice"]

    def answered(self, participant: str) -> dict[int, str]:
        with self._lock:
            rows = self._db.execute("SELECT trial, choice FROM answers WHERE participant = ?", (participant,))
            return {r["trial"]: r["choice"] for r in rows}

    def answers(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def participants(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM participants ORDER BY started_at")]


def read_answers(study_folder: str | Path) -> list[dict]:
    """Every stored answer of a study (an empty list before the first), without creating the database."""
    path = Path(study_folder) / ANSWERS_FILE
    if not path.exists():
        return []
    store = AnswerStore(path)
    try:
        return store.answers()
    finally:
        store.close()
