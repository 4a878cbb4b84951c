"""Many concurrent participants on loopback: every acknowledged answer is stored exactly once,
also when the server process is killed (SIGKILL) in the middle of the traffic."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix.study.design import create_study
from pix2pix.study.server import build_app
from pix2pix.study.store import ANSWERS_FILE
from pix2pix.web import serve_in_thread

CLIENTS, ANSWERS = 50, 20


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        for i in range(ANSWERS - 2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / name / f"s{i:02d}.png")
    made, _ = create_study(tmp_path / "studies", "real-vs-fake", tmp_path / "fake", real=tmp_path / "real",
                           timings=[None, 1.0], study_id="load", seed=0, sentinels=2)
    assert len(made.trials_for("x")) == ANSWERS
    return made


def _post(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict]:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def _participant(url: str, name: str, acked: dict, duplicates: list, stop: threading.Event | None = None) -> None:
    """Answer every trial like the page does: POST, and on a connection failure retry the same answer."""
    host, port = url.removeprefix("http://").split(":")
    rng = random.Random(name)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    path = "/api/study/load"
    for attempt in range(20):
        try:
            assert _post(conn, path + "/session", {"participant": name})[0] == 200
            break
        except (ConnectionError, http.client.HTTPException, OSError):
            if stop is not None and stop.is_set():
                return
            conn.close()
            time.sleep(0.05 * (attempt + 1))
    for trial in range(ANSWERS):
        answer = {"participant": name, "trial": trial, "choice": rng.choice(["left", "right"]), "rt_ms": 100 + trial}
        for attempt in range(20):
            if stop is not None and stop.is_set():
                return
            try:
                status, body = _post(conn, path + "/answer", answer)
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()  # a fresh connection, then the same answer again
                time.sleep(0.05 * (attempt + 1))
                continue
            assert status == 200, body
            acked[(name, trial)] = answer["choice"]
            if trial % 7 == 3:  # a client that did not see the response sends it again
                status, body = _post(conn, path + "/answer", answer)
                assert status == 200 and body["duplicate"] is True
                duplicates.append((name, trial))
            break
    conn.close()


def _stored(study) -> dict:
    with sqlite3.connect(study.folder / ANSWERS_FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT participant, trial, choice FROM answers").fetchall()
    stored = {(p, t): c for p, t, c in rows}
    assert len(stored) == len(rows)  # (participant, trial) is never stored twice
    return stored


def test_concurrent_clients_lose_nothing(study):
    app = build_app(study.folder.parent)
    server = serve_in_thread(app)
    acked: dict = {}
    duplicates: list = []
    threads = [threading.Thread(target=_participant, args=(server.url, f"c{i:02d}", acked, duplicates))
               for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - start
    server.shutdown()
    app.studies.close()
    assert not any(t.is_alive() for t in threads)
    assert len(acked) == CLIENTS * ANSWERS and len(duplicates) == CLIENTS * 3
    assert _stored(study) == acked
    print(f"{CLIENTS * ANSWERS} answers from {CLIENTS} clients in {elapsed:.1f} s")


def test_killed_server_keeps_every_acknowledged_answer(study):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pix2pix.cli.main", "study", "serve", "--studies",
                             str(study.folder.parent), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = None
        for line in proc.stdout:
            if line.startswith("study: http://127.0.0.1:"):
                url = line.split()[1].rstrip("/")
                break
        assert url, "the server did not print its address"
        acked: dict = {}
        stop = threading.Event()
        threads = [threading.Thread(target=_participant, args=(url, f"k{i:02d}", acked, [], stop), daemon=True)
                   for i in range(20)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # mid-traffic: no shutdown, no checkpoint, no flush
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 150
    assert (Path(study.folder) / (ANSWERS_FILE + "-wal")).exists()  # the WAL was not checkpointed away
    stored = _stored(study)
    assert {k: stored.get(k) for k in acked} == acked  # everything acknowledged is there
    assert len(stored) < 20 * ANSWERS  # killed before the end
