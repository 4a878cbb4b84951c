"""Many concurrent participants on loopback: every acknowledged answer is stored exactly once,
also when the server process is killed (SIGKILL) in the middle of the traffic, and a participant
finishes while 200 slow or half-open clients hold connections."""

from __future__ import annotations

import http.client
import json
import os
import random
import select
import signal
import socket
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
        for i in range(ANSWERS):  # two of them are the sentinels
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / name / f"s{i:02d}.png")
    made, _ = create_study(tmp_path / "studies", "real-vs-fake", tmp_path / "fake", real=tmp_path / "real",
                           timings=[None, 1.0], study_id="load", seed=0, sentinels=2)
    assert len(made.trials_for("x")) == ANSWERS
    return made


def _post(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict]:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def _participant(url: str, name: str, acked: dict, duplicates: list, stop: threading.Event | None = None,
                 last: dict | None = None) -> None:
    """Answer every trial like the page does: POST, and on a connection failure retry the same request on a
    fresh connection (the page's retries; the nonce makes a retried /session get the same session)."""
    host, port = url.removeprefix("http://").split(":")
    rng = random.Random(name)
    conn = [http.client.HTTPConnection(host, int(port), timeout=30)]
    path = "/api/study/load"

    def post(route: str, body: dict) -> tuple[int, dict] | None:
        for attempt in range(20):
            if stop is not None and stop.is_set():
                return None
            try:
                return _post(conn[0], path + route, body)
            except (ConnectionError, http.client.HTTPException, OSError):
                conn[0].close()
                conn[0] = http.client.HTTPConnection(host, int(port), timeout=30)
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError(f"{name}: {route} failed 20 times")

    reply = post("/session", {"participant": name, "nonce": f"nonce-of-{name}-0123"})
    if reply is None:
        return
    assert reply[0] == 200, reply
    token = reply[1]["session"]
    for trial in range(ANSWERS):
        answer = {"session": token, "trial": trial, "choice": rng.choice(["left", "right"]), "rt_ms": 100 + trial}
        reply = post("/answer", answer)
        if reply is None:
            return
        assert reply[0] == 200, reply
        acked[(name, trial)] = answer["choice"]
        if last is not None:
            last.update(reply[1])
        if trial % 7 == 3:  # a client that did not see the response sends it again
            reply = post("/answer", answer)
            if reply is None:
                return
            assert reply[0] == 200 and reply[1]["duplicate"] is True
            duplicates.append((name, trial))
    conn[0].close()


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


class _SlowClients:
    """`count` connections that hold a server connection and never finish a request: half say nothing
    (half-open), half trickle a request head a byte at a time (slowloris). One that the server cuts
    connects again at once, for as long as the attack runs."""

    def __init__(self, url: str, count: int):
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.head = f"POST /api/study/load/answer HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode()
        self.socks: list[socket.socket | None] = [None] * count
        self.sent = [0] * count
        self.reconnects = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self, i: int) -> None:
        try:
            self.socks[i] = socket.create_connection(self.address, timeout=2)
            self.socks[i].setblocking(False)
            self.sent[i] = 0
        except OSError:
            self.socks[i] = None

    def _run(self) -> None:
        for i in range(len(self.socks)):
            self._connect(i)
        while not self.stop.is_set():
            live = [s for s in self.socks if s is not None]
            readable = select.select(live, [], [], 0)[0] if live else []
            for i, sock in enumerate(self.socks):
                if sock is None or sock in readable:  # cut by the server (or never connected): come back
                    if sock is not None:
                        sock.close()
                        self.reconnects += 1
                    self._connect(i)
                elif i % 2:
                    try:
                        sock.send(self.head[self.sent[i]:self.sent[i] + 1] or b"a")
                        self.sent[i] += 1
                    except OSError:
                        sock.close()
                        self.socks[i] = None
            self.stop.wait(0.05)
        for sock in self.socks:
            if sock is not None:
                sock.close()


@pytest.mark.slow
def test_slow_and_half_open_clients_do_not_stop_a_participant(study):
    app = build_app(study.folder.parent)  # the default limits: 64 connections, 10 s for a request head
    server = serve_in_thread(app)
    attack = _SlowClients(server.url, 200)
    attack.thread.start()
    done = threading.Event()
    try:
        deadline = time.monotonic() + 5
        while server.open_connections() < app.limits.max_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.open_connections() == app.limits.max_connections  # the slow clients fill every slot
        acked: dict = {}
        last: dict = {}
        workers = []

        def count_workers() -> None:
            while not done.is_set():
                workers.append(sum(t.name == "study-worker" for t in threading.enumerate()))
                time.sleep(0.05)

        counter = threading.Thread(target=count_workers, daemon=True)
        counter.start()
        start = time.perf_counter()
        _participant(server.url, "honest", acked, [], last=last)
        elapsed = time.perf_counter() - start
    finally:
        done.set()
        attack.stop.set()
        attack.thread.join(10)
        server.shutdown()
        app.studies.close()
    assert len(acked) == ANSWERS and _stored(study) == acked  # every answer stored, exactly once
    assert last["code"] == study.completion_code("honest") and last["next"] is None
    assert max(workers) <= app.limits.max_connections  # 200 clients never made more threads than the cap
    assert server.evicted > 0 and attack.reconnects > 0  # the attack was on the whole time
    assert elapsed < 10, elapsed
    print(f"{ANSWERS} answers in {elapsed:.2f} s beside 200 slow clients ({server.evicted} connections displaced, "
          f"at most {max(workers)} worker threads)")
