"""Attacks on the HTTP layer and the study server, each run against a live server on 127.0.0.1 and shown to
fail: leaks through the image files, shared image names, answering or reading as someone else, forged
completion codes, cross-origin and rebinding requests, request smuggling, huge or slow requests, too many
connections, client disconnects and hostile JSON. (The editor's own attacks are in test_editor_server.py.)"""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFilter
from PIL.PngImagePlugin import PngInfo

from pix2pix.cli.main import main
from pix2pix.study.design import create_study
from pix2pix.study.server import build_app
from pix2pix.study.store import read_answers
from pix2pix.web import BAD_JSON, App, Limits, json_response, serve_in_thread

FAST = Limits(max_connections=8, head_timeout=0.5, body_timeout=0.5, write_timeout=2.0, linger=0.3, poll=0.05)


# ----------------------------------------------------------------------------- helpers


def _address(server) -> tuple[str, int]:
    return "127.0.0.1", server.port


def _raw(server, data: bytes, *, wait: float = 3.0, linger_rst: bool = False) -> tuple[bytes, bool, float]:
    """Send bytes as they are; read until the server closes the connection (closed=True) or `wait` passes.
    Returns (everything read, closed, seconds until closed or until the wait ended)."""
    start = time.monotonic()
    with socket.create_connection(_address(server), timeout=wait) as sock:
        sock.sendall(data)
        chunks, closed = [], False
        deadline = start + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks), closed, time.monotonic() - start


def _statuses(reply: bytes) -> list[int]:
    """The status codes of every response in a byte stream (skipping bodies by their Content-Length)."""
    out, rest = [], reply
    while rest.startswith(b"HTTP/1."):
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        out.append(int(lines[0].split()[1]))
        length = next((int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() ==
                       b"content-length"), 0)
        rest = rest[length:]
    return out


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head = data.partition(b"\r\n\r\n")[0]
    length = next(int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])
                  if k.lower() == b"content-length")
    while len(data) < len(head) + 4 + length:
        data += sock.recv(4096)
    return data


def _body(reply: bytes) -> dict:
    return json.loads(reply.partition(b"\r\n\r\n")[2] or b"{}")


def _request(server, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
             host: str | None = None) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn = http.client.HTTPConnection(*_address(server), timeout=10)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{server.port}")
        for k, v in hdrs.items():
            if v is not None:
                conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(data or b"")))
        conn.endheaders(data)
        r = conn.getresponse()
        raw = r.read()
        try:
            value = json.loads(raw)
        except ValueError:
            value = {"raw": raw}
        return r.status, value, dict(r.headers)
    finally:
        conn.close()


def _worker_threads(name: str) -> int:
    return sum(t.name == f"{name}-worker" and t.is_alive() for t in threading.enumerate())


@pytest.fixture
def web():
    """A small app with fast limits: echo, a big response, a slow handler, a bug."""
    app = App("attack", max_body=1000, limits=FAST)
    hits: list[str] = []
    gate = threading.Event()

    @app.route("POST", "/api/echo")
    def echo(req):
        return json_response({"got": req.json()})

    @app.route("GET", "/hit")
    def hit(req):
        hits.append(req.path)
        return json_response({"ok": True})

    @app.route("GET", "/big")
    def big(req):
        return json_response({"data": "x" * (4 << 20)})

    @app.route("GET", "/wait")
    def wait(req):
        gate.wait(10)
        return json_response({"ok": True})

    @app.route("POST", "/bug")
    def bug(req):
        raise RuntimeError("secret detail: /etc/shadow")

    server = serve_in_thread(app)
    yield server, hits, gate
    gate.set()
    server.shutdown()


# ----------------------------------------------------------------------------- Host and Origin


def test_foreign_host_is_refused_on_reads_and_writes(web):
    server, hits, _ = web
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1:1", "localhost.evil.example"):
        status, body, _ = _request(server, "GET", "/hit", host=host)
        assert status == 421 and "Host" in body["error"], host
        status, _, _ = _request(server, "POST", "/api/echo", {"a": 1}, host=host)
        assert status == 421
    assert hits == []
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}",
                 f"LOCALHOST:{server.port}"):
        assert _request(server, "GET", "/hit", host=host)[0] == 200, host
    reply, _, _ = _raw(server, b"GET /hit HTTP/1.1\r\n\r\n", wait=1)  # no Host at all
    assert _statuses(reply) == [421]


def test_allow_host_names_another_host():
    app = App("allow")
    app.route("GET", "/x")(lambda req: json_response({"ok": True}))
    server = serve_in_thread(app, allow_hosts=["study.example.org", "lab-pc:9000"])
    try:
        assert _request(server, "GET", "/x", host="study.example.org")[0] == 200
        assert _request(server, "GET", "/x", host=f"study.example.org:{server.port}")[0] == 200
        assert _request(server, "GET", "/x", host="lab-pc:9000")[0] == 200
        assert _request(server, "GET", "/x", host="lab-pc")[0] == 421
        assert _request(server, "POST", "/x", {}, {"Origin": "https://study.example.org"},
                        host="study.example.org")[0] == 405  # the origin passes; the route has no POST
    finally:
        server.shutdown()


@pytest.mark.parametrize("headers, status", [
    ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),   # the classic CSRF form/fetch
    ({"Content-Type": "text/plain"}, 415),                                     # no Origin: still not JSON
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
    ({"Content-Type": "application/json", "Origin": "null"}, 403),            # sandboxed frames, file:// pages
    ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403),
    ({"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403),  # another local port
])
def test_cross_origin_posts_are_refused(web, headers, status):
    server, _, _ = web
    code, body, _ = _request(server, "POST", "/api/echo", {"a": 1}, headers)
    assert code == status and "got" not in body


def test_same_origin_post_is_served(web):
    server, _, _ = web
    origin = f"http://127.0.0.1:{server.port}"
    code, body, _ = _request(server, "POST", "/api/echo", {"a": 1}, {"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert code == 200 and body == {"got": {"a": 1}}
    assert _request(server, "OPTIONS", "/api/echo")[0] == 501  # no CORS preflight is ever answered


# ----------------------------------------------------------------------------- framing


def test_transfer_encoding_and_content_length_smuggling_gives_one_refusal(web):
    server, hits, _ = web
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    smuggled = b"GET /hit HTTP/1.1\r\n" + host + b"\r\n"
    for framing in (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                    b"Transfer-Encoding: chunked\r\n",
                    b"Transfer-Encoding: gzip, chunked\r\n"):
        payload = b"POST /api/echo HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n" + framing + \
            b"\r\n0\r\n\r\n" + smuggled
        reply, closed, _ = _raw(server, payload, wait=2)
        assert _statuses(reply) == [501] and closed, reply  # one answer, then the connection is closed
    assert hits == []  # the smuggled request never ran
    for lengths in (b"Content-Length: 5\r\nContent-Length: 40\r\n", b"Content-Length: +5\r\n",
                    b"Content-Length: -1\r\n", b"Content-Length: 1_0\r\n", b"Content-Length: 0x10\r\n"):
        reply, closed, _ = _raw(server, b"POST /api/echo HTTP/1.1\r\n" + host + lengths + b"\r\n{}\r\n" + smuggled,
                                wait=2)
        assert _statuses(reply) == [400] and closed, lengths
    assert hits == []


def test_huge_content_length_is_refused_from_the_header(web):
    server, _, _ = web
    head = (f"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 999999999\r\n\r\n").encode()
    start = time.monotonic()
    with socket.create_connection(_address(server), timeout=5) as sock:
        sock.sendall(head + b"{")  # and then nothing more: the server must not wait for (or drain) the body
        reply = _read_response(sock)
        answered = time.monotonic() - start
        assert _statuses(reply) == [413] and "exceeds the limit" in _body(reply)["error"]
        sock.settimeout(3)
        assert sock.recv(4096) == b""  # closed after a short linger, not after draining 999999999 bytes
        closed = time.monotonic() - start
    assert answered < 0.5 and closed < FAST.linger + 0.5, (answered, closed)
    # a client that asks first (Expect: 100-continue) gets the refusal instead of a go-ahead
    reply, closed, _ = _raw(server, head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"), wait=2)
    assert _statuses(reply) == [413] and closed


def test_oversized_head_is_refused(web):
    server, hits, _ = web
    many = b"".join(b"X-%d: %s\r\n" % (i, b"y" * 200) for i in range(100))  # 20 KiB of headers
    reply, closed, _ = _raw(server, b"GET /hit HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n", wait=2)
    assert _statuses(reply) == [431] and closed and hits == []
    reply, closed, _ = _raw(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", wait=2)
    assert _statuses(reply)[0] in (414, 431) and closed


# ----------------------------------------------------------------------------- time and connections


def test_half_open_and_slow_connections_are_cut(web):
    server, _, _ = web
    _, closed, seconds = _raw(server, b"", wait=3)  # connects and says nothing
    assert closed and FAST.head_timeout - 0.1 < seconds < FAST.head_timeout + 0.5, seconds
    _, closed, seconds = _raw(server, b"GET /hit HTTP/1.1\r\nHost: 127.0.0.1\r\n", wait=3)  # a head never finished
    assert closed and seconds < FAST.head_timeout + 0.5

    start = time.monotonic()  # slowloris: a byte every 0.1 s never extends the head's deadline
    with socket.create_connection(_address(server), timeout=3) as sock:
        cut = None
        for byte in b"GET /hit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.send(bytes([byte]))
            except OSError:
                cut = time.monotonic() - start
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    cut = time.monotonic() - start
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
    assert cut is not None and cut < FAST.head_timeout + 0.5, cut

    head = (f"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 900\r\n\r\n{").encode()
    reply, closed, seconds = _raw(server, head, wait=3)  # the body never comes
    assert closed and seconds < FAST.body_timeout + 0.5 and b"200 OK" not in reply
    assert server.open_connections() == 0


def test_connections_are_capped_and_a_normal_request_still_gets_through(web):
    server, hits, gate = web
    before = _worker_threads("attack")
    idle = [socket.create_connection(_address(server)) for _ in range(40)]  # half-open: connect, send nothing
    try:
        time.sleep(0.1)
        assert _worker_threads("attack") <= FAST.max_connections
        assert server.open_connections() <= FAST.max_connections
        status, _, _ = _request(server, "GET", "/hit")  # displaces the longest-waiting half-open connection
        assert status == 200 and hits == ["/hit"]
        # beyond the cap each was displaced, or (a slow accept loop meeting the 2 x cap bound, or the head
        # deadline) refused or cut: none got a thread of its own
        assert server.evicted > 0
        assert server.evicted + server.refused + server.timed_out >= 40 - FAST.max_connections
    finally:
        for sock in idle:
            sock.close()
    # every worker busy running the app: a new connection gets a 503 at once instead of a thread
    busy = [threading.Thread(target=_request, args=(server, "GET", "/wait")) for _ in range(FAST.max_connections)]
    for t in busy:
        t.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sum(c.state == "app" for c in list(server._conns.values())) < len(busy):
        time.sleep(0.02)
    reply, closed, seconds = _raw(server, f"GET /hit HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    assert _statuses(reply) == [503] and closed and seconds < 0.5
    gate.set()
    for t in busy:
        t.join(5)
    assert _worker_threads("attack") <= max(before, FAST.max_connections)
    assert _request(server, "GET", "/hit")[0] == 200


def test_client_disconnects_print_no_traceback(web, capfd):
    server, _, _ = web
    request = f"GET /big HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    for _ in range(10):  # ask for 4 MiB and reset the connection at once
        sock = socket.create_connection(_address(server))
        sock.sendall(request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    for _ in range(5):  # go away in the middle of the head, or of a body
        with socket.create_connection(_address(server)) as sock:
            sock.sendall(b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{")
    time.sleep(0.5)
    assert _request(server, "GET", "/hit")[0] == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


def test_a_bug_answers_a_generic_500(web, capfd):
    server, _, _ = web
    status, body, _ = _request(server, "POST", "/bug", {})
    assert status == 500 and body == {"error": "internal error"}  # nothing of the exception reaches the client
    assert "secret detail" in capfd.readouterr().err  # the server's console has it


# ----------------------------------------------------------------------------- hostile JSON


HOSTILE_JSON = {
    "nested lists": b"[" * 2000 + b"]" * 2000,
    "nested objects": b'{"a":' * 2000 + b"1" + b"}" * 2000,
    "nested past the depth limit": b'{"participant": ' + b"[" * 40 + b"]" * 40 + b"}",
    "NaN": b'{"participant": NaN}',
    "Infinity": b'{"rt_ms": Infinity}',
    "-Infinity": b'{"rt_ms": -Infinity}',
    "1e999": b'{"rt_ms": 1e999}',
    "5000-digit integer": b'{"trial": ' + b"7" * 5000 + b"}",
    "not UTF-8": b'{"participant": "\xff\xfe"}',
    "truncated": b'{"participant": "p',
}


@pytest.fixture(scope="module")
def study_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    rng = np.random.default_rng(0)
    real, fake = root / "real", root / "fake"
    real.mkdir()
    fake.mkdir()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for i in range(8):
        # "photographs": noisy detail, JPEG with camera EXIF and an ICC profile; one at another size
        size = (96, 80) if i == 3 else (48, 40)
        photo = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        exif = Image.Exif()
        exif[0x010F] = "CameraMaker"
        exif[0x0110] = f"real-{i}"
        photo.save(real / f"s{i}.jpg", quality=90, exif=exif.tobytes(), icc_profile=srgb)
        # "generated": smooth, PNG with a text chunk naming the method
        info = PngInfo()
        info.add_text("Software", "pix2pix generated")
        photo.resize((48, 40)).filter(ImageFilter.GaussianBlur(3)).save(fake / f"s{i}.png", pnginfo=info)
    study, _ = create_study(root / "studies", "real-vs-fake", fake, real=real, timings=[None], study_id="atk",
                            seed=1, sentinels=2)
    app = build_app(root / "studies")
    server = serve_in_thread(app)
    yield server, study, root
    server.shutdown()
    app.studies.close()


def _start(server, participant: str) -> dict:
    status, body, _ = _request(server, "POST", "/api/study/atk/session", {"participant": participant})
    assert status == 200, body
    return body


def _walk(server, participant: str, fetch: bool = True) -> tuple[dict, list[tuple[dict, list[tuple[str, bytes]]]]]:
    """Take the whole study as `participant` (always answering left); returns (the last answer, for every
    pair: the trial as the page got it and its two images as (content type, bytes))."""
    session = _start(server, participant)
    trial, seen, last = session["trial"], [], session
    while trial is not None:
        images = []
        if fetch:
            for side in ("left", "right"):
                conn = http.client.HTTPConnection(*_address(server), timeout=10)
                conn.request("GET", f"/api/study/atk/image/{trial[side]}")
                r = conn.getresponse()
                assert r.status == 200
                images.append((r.getheader("Content-Type"), r.read()))
                conn.close()
        seen.append((trial, images))
        status, last, _ = _request(server, "POST", "/api/study/atk/answer",
                                   {"session": session["session"], "trial": trial["index"], "choice": "left"})
        assert status == 200, last
        trial = last["next"]
    return last, seen


def _png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        chunks.append(data[pos + 4:pos + 8].decode("latin-1"))
        pos += 12 + length
    return chunks


@pytest.fixture(scope="module")
def echo_server():
    """An app that takes bodies of 1 MiB, so every hostile body reaches the JSON parser."""
    app = App("echo", max_body=1 << 20)
    app.route("POST", "/echo")(lambda req: json_response({"got": req.json()}))
    server = serve_in_thread(app)
    yield server
    server.shutdown()


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_hostile_json_is_a_generic_400(echo_server, name):
    status, body, _ = _request(echo_server, "POST", "/echo", HOSTILE_JSON[name])
    assert status == 400 and body == {"error": BAD_JSON}, (name, status, body)  # no exception text or position


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_hostile_json_on_the_study_server(study_server, name):
    server, study, _ = study_server
    data = HOSTILE_JSON[name]
    for path in ("/api/study/atk/session", "/api/study/atk/answer"):
        status, body, _ = _request(server, "POST", path, data)
        if len(data) > 4096:  # over the study's body limit: refused from the header, never parsed
            assert status == 413, (name, status, body)
        else:
            assert status == 400 and body == {"error": BAD_JSON}, (name, status, body)
    assert all(a["participant"] != "p" for a in read_answers(study.folder))


def test_a_list_where_an_object_is_expected_is_a_400(study_server):
    server, _, _ = study_server
    for body in (b'[{"participant": "p1"}]', b'"p1"', b"7", b"null"):
        status, answer, _ = _request(server, "POST", "/api/study/atk/session", body)
        assert status == 400 and answer == {"error": "request body must be a JSON object"}, body
    status, answer, _ = _request(server, "POST", "/api/study/atk/session", {"participant": ["p1"]})
    assert status == 400 and "participant must be" in answer["error"]


# ----------------------------------------------------------------------------- the study


def test_images_carry_no_label_in_format_size_or_metadata(study_server):
    server, study, root = study_server
    # the fixture leaks: the larger input file is the real one in every pair (and the formats differ)
    inputs = [((root / "real" / f"s{i}.jpg").stat().st_size, (root / "fake" / f"s{i}.png").stat().st_size)
              for i in range(8)]
    assert sum(real > fake for real, fake in inputs) == 8
    _, seen = _walk(server, "leak1")
    trials = study.trials_for("leak1")
    assert len(seen) == len(trials) == 8  # 6 test pairs and 2 sentinels
    types, lengths, chunks = set(), set(), set()
    for (public, images), trial in zip(seen, trials, strict=True):
        assert public["left"] == study.image_token("leak1", trial.left)
        for kind, data in images:
            types.add(kind)
            lengths.add(len(data))
            chunks.add(tuple(c for c in _png_chunks(data) if c != "IDAT"))
            assert Image.open(io.BytesIO(data)).size == (48, 40)
    assert types == {"image/png"} and chunks == {("IHDR", "IEND")}  # no EXIF, ICC, text or any other chunk
    # one byte length for every image, real, generated and ruined: a size-based classifier has nothing to go on
    assert lengths == {study.spec["image_bytes"]}
    sentinel_lengths = {len(d) for (p, imgs), t in zip(seen, trials, strict=True) if t.kind == "sentinel"
                        for _, d in imgs}
    assert sentinel_lengths == lengths
    # and the pixels are the inputs' (no re-encoding loss to tell them apart either)
    (_, images), trial = next((s, t) for s, t in zip(seen, trials, strict=True) if t.kind == "trial")
    fake_side = 0 if trial.left_role != "real" else 1
    fake_src = np.asarray(Image.open(root / "fake" / f"{trial.stem}.png").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(images[fake_side][1]))), fake_src)


def test_image_names_are_not_shared_across_participants(study_server):
    server, study, _ = study_server
    tokens = {}
    for p in ("share1", "share2", "share3", "share4"):
        _, seen = _walk(server, p, fetch=False)
        tokens[p] = {public[side] for public, _ in seen for side in ("left", "right")}
        assert len(tokens[p]) == 16  # every image a participant sees has its own name
    names = list(tokens.values())
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert not names[i] & names[j]  # intersecting participants' pairs recovers nothing
    assert study.image_token("share1", 0) != study.image_token("share2", 0)


def test_only_the_current_pair_is_served(study_server):
    server, study, _ = study_server
    session = _start(server, "ahead1")
    trials = study.trials_for("ahead1")
    later = study.image_token("ahead1", trials[3].left)  # a correct token, computed with the key
    assert _request(server, "GET", f"/api/study/atk/image/{later}")[0] == 404
    assert _request(server, "GET", f"/api/study/atk/image/{session['trial']['left']}")[0] == 200
    other = study.image_token("someone-never-started", trials[0].left)
    assert _request(server, "GET", f"/api/study/atk/image/{other}")[0] == 404


def test_answering_as_someone_else_fails(study_server):
    server, study, _ = study_server
    victim = _start(server, "victim1")
    answer = {"participant": "victim1", "trial": 0, "choice": "left"}
    status, body, _ = _request(server, "POST", "/api/study/atk/answer", answer)  # the old protocol: no session
    assert status == 403 and "session" in body["error"]
    attacker = _start(server, "attacker1")
    status, _, _ = _request(server, "POST", "/api/study/atk/answer", {**answer, "session": attacker["session"]})
    assert status == 403  # a session of one's own does not answer for another id
    status, _, _ = _request(server, "POST", "/api/study/atk/answer",
                            {**answer, "participant": "never-started", "session": "A" * 43})
    assert status == 403
    assert [a for a in read_answers(study.folder) if a["participant"] == "victim1"] == []
    status, body, _ = _request(server, "POST", "/api/study/atk/answer",  # the victim is unaffected
                               {"session": victim["session"], "trial": 0, "choice": "right"})
    assert status == 200 and not body["duplicate"]


def test_reading_someone_elses_session_fails(study_server):
    server, _, _ = study_server
    victim = _start(server, "victim2")
    _request(server, "POST", "/api/study/atk/answer", {"session": victim["session"], "trial": 0, "choice": "left"})
    for body in ({"participant": "victim2"}, {"participant": "victim2", "nonce": "guessed-nonce-123456"},
                 {"session": "B" * 43}, {"session": "B" * 43, "participant": "victim2"}):
        status, answer, _ = _request(server, "POST", "/api/study/atk/session", body)
        assert status == 403, body
        assert not {"trial", "answered", "session", "code"} & set(answer)  # nothing of the victim's comes back
    status, answer, _ = _request(server, "POST", "/api/study/atk/session", {"session": victim["session"]})
    assert status == 200 and answer["answered"] == 1  # the victim's own token still resumes


def test_a_retried_session_request_gets_the_same_session(study_server):
    server, _, _ = study_server
    first = _request(server, "POST", "/api/study/atk/session", {"participant": "retry1", "nonce": "n" * 24})[1]
    again = _request(server, "POST", "/api/study/atk/session", {"participant": "retry1", "nonce": "n" * 24})[1]
    assert first["session"] == again["session"]


def test_completion_codes_cannot_be_forged(study_server, tmp_path, capsys):
    server, study, root = study_server
    done, _ = _walk(server, "finisher", fetch=False)
    code = done["code"]
    assert code == study.completion_code("finisher") and code != "finisher"
    _start(server, "quitter")  # started, never finished: gets no code
    other, _ = create_study(tmp_path / "other", "real-vs-fake", root / "fake", real=root / "real",
                            timings=[None], study_id="atk", seed=1, sentinels=2)  # same design, another key
    changed = code[:-1] + ("A" if code[-1] != "A" else "B")
    forged = ["finisher", other.completion_code("finisher"), changed, "AAAA-BBBB-CCCC-DDDD",
              study.completion_code("quitter")]
    codes = tmp_path / "codes.txt"
    codes.write_text("\n".join([code.lower().replace("-", " "), *forged]) + "\n")
    assert main(["study", "results", str(study.folder), "--codes", str(codes), "--json",
                 str(tmp_path / "r.json")]) == 0
    checked = json.loads((tmp_path / "r.json").read_text())["codes"]
    assert checked["valid"] == ["finisher"] and checked["invalid"] == forged
    assert "5 invalid" in capsys.readouterr().out


def test_study_refuses_cross_origin_and_foreign_host(study_server):
    server, study, _ = study_server
    before = len(read_answers(study.folder))
    status, _, _ = _request(server, "POST", "/api/study/atk/session", b'{"participant": "csrf1"}',
                            {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert status == 403
    status, _, _ = _request(server, "POST", "/api/study/atk/session", {"participant": "csrf1"},
                            host=f"evil.example:{server.port}")  # DNS rebinding: a foreign name, our address
    assert status == 421
    assert _request(server, "GET", "/api/study/atk", host="evil.example")[0] == 421
    assert _start(server, "csrf1")["answered"] == 0  # neither request created the session
    assert len(read_answers(study.folder)) == before


def test_old_studies_are_refused_with_a_fix(tmp_path):
    from pix2pix.errors import DataError
    from pix2pix.study.design import load_study

    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"format": 1, "mode": "a-vs-b"}))
    with pytest.raises(DataError, match="re-create it"):
        load_study(folder)
    assert Path(folder / "study.json").exists()
