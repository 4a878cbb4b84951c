"""A small HTTP/1.1 app layer on the standard library, shared by the study server and the editor.

Both apps have a handful of JSON routes and a static page, and are meant for loopback or a trusted
network. What a framework would give is here: routing with path parameters, bounded bodies, JSON
errors, static files without path traversal, a loopback default bind. The request line and headers
are parsed by the standard library (`http.server`, with a byte budget); the rest is hardened here
against hostile clients and hostile pages (docs/study.md, "Why this HTTP server", says why this
rather than uvicorn + starlette):

- **Host** is checked on every request and **Origin** / `Sec-Fetch-Site` on every state-changing
  one, against the names the server was bound to (127.0.0.1, localhost, [::1] with the bound port,
  plus `allow_hosts`): a cross-site page or a DNS-rebinding name gets 403 / 421. A state-changing
  request must also be `Content-Type: application/json`, which a page can only send cross-origin
  after a CORS preflight, and preflights (OPTIONS) are not answered.
- **Framing**: `Transfer-Encoding` is refused (501, connection closed), the body is exactly one
  Content-Length of digits, and a body over the app's limit gets its 413 from the header alone.
  Whenever a body is left unread the connection is closed (after a short bounded "lingering"
  read so the client sees the answer), so bytes of one request can never become another.
- **Time and connections**: a deadline for the request head (also a keep-alive connection's idle
  time), one for the body and one for the response, enforced by the accept loop, which shuts the
  socket of a late connection. One worker thread per open connection, at most `max_connections`;
  at the cap a new connection displaces the connection that has waited longest for its request
  (a half-open or trickling client; a slow reader of a response only when there is none; never a
  request being processed), and when every worker is busy in the app it gets a 503 at once.
- **Errors**: a client that goes away is not an error (no traceback); a bug answers a generic 500
  and prints its traceback on the server's stderr only; JSON with NaN, Infinity, huge numbers or
  deep nesting is a 400 with a generic message.
"""

from __future__ import annotations

import http.client
import json
import math
import mimetypes
import queue
import re
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_HOST = "127.0.0.1"
MAX_BODY_BYTES = 1 << 20  # per app; the editor raises it for image uploads
MAX_HEAD_BYTES = 16 << 10  # request line + headers (browsers send 1-2 KiB)
MAX_JSON_DEPTH = 32
MAX_JSON_NUMBER_CHARS = 40  # a 5000-digit integer costs quadratic time to convert; no field needs more
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,15}$")
BAD_JSON = "request body is not valid JSON (NaN, Infinity, numbers over 40 characters and nesting deeper " \
           f"than {MAX_JSON_DEPTH} are refused)"


@dataclass(frozen=True)
class Limits:
    """What one connection may cost. Deadlines are in seconds from entering each phase."""

    max_connections: int = 64  # worker threads, one per open connection
    head_timeout: float = 10.0  # request line + headers; also how long a keep-alive connection may idle
    body_timeout: float = 30.0  # the body, once the head is in
    write_timeout: float = 30.0  # sending the response to a client that reads slowly
    linger: float = 1.0  # reading and dropping an unread body before closing, so the client sees the answer
    poll: float = 0.1  # how often the accept loop checks deadlines


class HTTPError(Exception):
    """Raised by a handler to answer with `status` and a JSON {"error": message} body."""

    def __init__(self, status: int, message: str, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close  # the connection cannot carry another request (e.g. an unread body)


def _reject_constant(name: str):
    raise ValueError(name)


def _parse_number(text: str, convert):
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise ValueError("number too long")
    value = convert(text)
    if isinstance(value, float) and not math.isfinite(value):  # 1e999
        raise ValueError("number out of range")
    return value


def _depth_ok(value, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def parse_json(body: bytes):
    """Strict JSON: a 400 with a generic message for anything the standard parser would turn into a
    surprise (NaN, Infinity, 1e999, a 5000-digit integer) or an exception (deep nesting)."""
    try:
        value = json.loads(body.decode("utf-8") or "null", parse_constant=_reject_constant,
                           parse_int=lambda s: _parse_number(s, int), parse_float=lambda s: _parse_number(s, float))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HTTPError(400, BAD_JSON) from None
    if not _depth_ok(value):
        raise HTTPError(400, BAD_JSON)
    return value


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    client: str = ""

    def json(self) -> dict:
        """The body as a JSON object, or a 400."""
        value = parse_json(self.body)
        if not isinstance(value, dict):
            raise HTTPError(400, "request body must be a JSON object")
        return value


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(value, status: int = 200) -> Response:
    return Response(json.dumps(value).encode("utf-8"), status, "application/json")


def text_response(text: str, content_type: str = "text/plain; charset=utf-8", status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(text.encode("utf-8"), status, content_type, dict(headers or {}))


Handler = Callable[[Request], Response]
_PARAM = re.compile(r"\{(\w+)\}")


def _compile_pattern(pattern: str) -> re.Pattern:
    """"/a/{x}/b" -> a regex with the named group x matching one path segment."""
    parts, pos = [], 0
    for match in _PARAM.finditer(pattern):
        parts += [re.escape(pattern[pos:match.start()]), f"(?P<{match.group(1)}>[^/]+)"]
        pos = match.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(parts) + "$")


class App:
    """Routes `(method, "/path/{param}")` to handlers; serves a static folder under a prefix."""

    def __init__(self, name: str, max_body: int = MAX_BODY_BYTES, limits: Limits | None = None):
        self.name = name
        self.max_body = max_body
        self.limits = limits or Limits()
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._static: list[tuple[str, Path]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = _compile_pattern(pattern)

        def decorate(handler: Handler) -> Handler:
            self._routes.append((method.upper(), regex, handler))
            return handler

        return decorate

    def static(self, prefix: str, folder: str | Path) -> None:
        """Serve files under `folder` at `prefix` ("/" maps to index.html); nothing outside it."""
        self._static.append((prefix.rstrip("/") + "/", Path(folder).resolve()))

    def handle(self, request: Request) -> Response:
        allowed = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match:
                if method != request.method:
                    allowed = True
                    continue
                request.params = {k: unquote(v) for k, v in match.groupdict().items()}
                return handler(request)
        if request.method in ("GET", "HEAD") and not allowed:
            for prefix, folder in self._static:
                if request.path.startswith(prefix) or request.path + "/" == prefix:
                    return _static_file(folder, request.path[len(prefix):])
        raise HTTPError(405 if allowed else 404, f"{request.method} {request.path}: "
                        + ("method not allowed" if allowed else "not found"))


def _static_file(folder: Path, relative: str) -> Response:
    relative = unquote(relative) or "index.html"
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        raise HTTPError(404, f"{relative}: not found")
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        kind += "; charset=utf-8"
    return Response(target.read_bytes(), 200, kind, {"Cache-Control": "no-cache"})


# ----------------------------------------------------------------------------- hosts and origins


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host header values this server answers: loopback names and the bound address with the
    port (also without it on port 80), and each extra NAME (with or without the port) or NAME:PORT."""
    names = set(LOOPBACK_NAMES)
    if host not in ("", "0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host else host)
    out = set()
    for name in names:
        out.add(f"{name}:{port}".lower())
        if port == 80:
            out.add(name.lower())
    for item in extra:
        item = item.strip().lower()
        if not item:
            continue
        if re.search(r":\d+$", item) and not item.endswith("]"):
            out.add(item)
        else:
            out.update((item, f"{item}:{port}"))
    return frozenset(out)


def _origin_host(origin: str) -> str | None:
    """'http://127.0.0.1:8000' -> '127.0.0.1:8000'; None for 'null', other schemes or anything with a path."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.username is not None:
        return None
    return parts.netloc.lower()


# ----------------------------------------------------------------------------- connections


_EVICTABLE = frozenset({"head", "body", "write", "linger"})


class _Conn:
    """One open connection: its phase, when it entered it and its deadline, for the accept loop's checks."""

    __slots__ = ("sock", "state", "since", "deadline", "closed")

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.closed = False
        self.enter("head", timeout)

    def enter(self, state: str, timeout: float | None) -> None:
        now = time.monotonic()
        self.state, self.since = state, now
        self.deadline = None if timeout is None else now + timeout

    def kill(self) -> None:
        """Wake a worker blocked on this socket (its read returns end-of-file). Call under the server lock."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _busy_response() -> bytes:
    body = b'{"error": "the server is busy: try again in a moment"}'
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)




class _HeadReader:
    """The request line and headers are read through this: one byte budget for all of them."""

    def __init__(self, raw, budget: int):
        self.raw, self.budget = raw, budget

    def readline(self, limit: int = -1) -> bytes:
        if self.budget <= 0:
            raise http.client.LineTooLong("request head")
        line = self.raw.readline(self.budget + 1 if limit < 0 else min(limit, self.budget + 1))
        self.budget -= len(line)
        if self.budget < 0:
            raise http.client.LineTooLong("request head")
        return line

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)

    def close(self) -> None:
        self.raw.close()


def _make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    limits = app.limits

    class _Handler(BaseHTTPRequestHandler):
        server_version = f"pix2pix-{app.name}"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        timeout = max(limits.head_timeout, limits.body_timeout, limits.write_timeout) + 1.0  # a backstop per read
        server: Server

        def __init__(self, request, client_address, server, conn: _Conn):
            self.conn = conn
            super().__init__(request, client_address, server)

        def log_message(self, format, *args):  # quiet: the apps report what matters themselves
            pass

        def handle_one_request(self) -> None:
            self.conn.enter("head", limits.head_timeout)
            raw = self.rfile if not isinstance(self.rfile, _HeadReader) else self.rfile.raw
            self.rfile = _HeadReader(raw, MAX_HEAD_BYTES)
            self.body_pending = False
            self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""
            try:
                super().handle_one_request()
            except http.client.LineTooLong:  # the request line alone was over the budget
                self.close_connection = True
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

        def handle_expect_100(self) -> bool:
            return True  # "100 Continue" is sent by _read_request, only once the body is known to be wanted

        def send_error(self, code, message=None, explain=None) -> None:
            """The standard library's own refusals (bad request line, too many headers, unknown method), as JSON."""
            self.close_connection = True
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "error"
            self._send(json_response({"error": f"{code} {phrase}"}, code))

        def _send(self, response: Response) -> None:
            self.conn.enter("write", limits.write_timeout)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Referrer-Policy", "no-referrer")
            for key, value in response.headers.items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def _dispatch(self) -> None:
            try:
                request = self._read_request()
                self.conn.enter("app", None)
                response = app.handle(request)
            except HTTPError as exc:
                if exc.close:
                    self.close_connection = True
                response = json_response({"error": exc.message}, exc.status)
            except Exception:  # a bug: the client learns nothing of it, the server's console everything
                print(f"{app.name}: internal error answering {self.command} {urlsplit(self.path).path}:",
                      file=sys.stderr)
                traceback.print_exc()
                response = json_response({"error": "internal error"}, 500)
            if self.body_pending:
                self.close_connection = True
            self._send(response)
            if self.body_pending:
                self._linger()

        def _linger(self) -> None:
            """Read and drop what the client still sends, for a bounded time, so closing does not reset the
            connection before the client has read the answer."""
            try:
                self.connection.shutdown(socket.SHUT_WR)
                self.conn.enter("linger", limits.linger)
                while self.connection.recv(1 << 16):
                    if self.conn.closed or time.monotonic() > (self.conn.deadline or 0):
                        break
            except OSError:
                pass

        def _read_request(self) -> Request:
            headers = self.headers
            self.body_pending = bool(headers.get("Content-Length") or headers.get("Transfer-Encoding"))
            hosts = headers.get_all("Host") or []
            if len(hosts) != 1 or hosts[0].strip().lower() not in self.server.allowed_hosts:
                raise HTTPError(421, "this server does not answer to that Host name (it answers to the address it "
                                     "was started on; for another name start it with --allow-host NAME)")
            if headers.get("Transfer-Encoding") is not None:
                raise HTTPError(501, "Transfer-Encoding is not supported: send the body with a Content-Length",
                                close=True)
            lengths = headers.get_all("Content-Length") or []
            if len(lengths) > 1 or (lengths and not _CONTENT_LENGTH.match(lengths[0].strip())):
                raise HTTPError(400, "one Content-Length of decimal digits is required", close=True)
            length = int(lengths[0]) if lengths else 0
            if not self.path.startswith("/"):
                raise HTTPError(400, "request target must be a path", close=True)
            url = urlsplit(self.path)
            if ".." in unquote(url.path).split("/"):
                raise HTTPError(400, "path traversal refused")
            if self.command in STATE_CHANGING:
                self._check_origin()
            if length > app.max_body:
                raise HTTPError(413, f"request body of {length} bytes exceeds the limit of {app.max_body}",
                                close=True)
            body = b""
            if length:
                if (headers.get("Expect") or "").lower() == "100-continue":
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.conn.enter("body", limits.body_timeout)
                body = self.rfile.read(length)
                if len(body) != length:
                    raise HTTPError(400, "request body ended before its Content-Length", close=True)
            self.body_pending = False
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            return Request(self.command, url.path, query, {k.lower(): v for k, v in headers.items()},
                           body, client=self.client_address[0])

        def _check_origin(self) -> None:
            origin = self.headers.get("Origin")
            if origin is not None and _origin_host(origin) not in self.server.allowed_hosts:
                raise HTTPError(403, "cross-origin request refused", close=self.body_pending)
            site = (self.headers.get("Sec-Fetch-Site") or "same-origin").lower()
            if site not in ("same-origin", "none"):
                raise HTTPError(403, "cross-site request refused", close=self.body_pending)
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise HTTPError(415, "send the request body as Content-Type: application/json",
                                close=self.body_pending)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _dispatch

    return _Handler


class Server(socketserver.TCPServer):
    """A TCP server with a bounded pool of daemon worker threads and per-connection deadlines."""

    allow_reuse_address = True
    request_queue_size = 256  # bursts of many clients on loopback

    def __init__(self, app: App, host: str = DEFAULT_HOST, port: int = 0, allow_hosts: Iterable[str] = ()):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self.limits = app.limits
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = 0
        self._idle = 0
        self.refused = 0  # connections answered 503 (full of requests being processed)
        self.evicted = 0  # connections displaced at the cap
        self.timed_out = 0  # connections cut at a deadline
        super().__init__((host, port), _make_handler(app))
        self.port = self.server_address[1]
        self.allowed_hosts = allowed_hosts(host, self.port, allow_hosts)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"

    # -- accepting ------------------------------------------------------------------------------------
    def serve_forever(self, poll_interval: float | None = None) -> None:
        super().serve_forever(self.limits.poll if poll_interval is None else poll_interval)

    def process_request(self, request: socket.socket, client_address) -> None:
        """In the accept loop: hand the connection to a worker, displacing the longest-waiting one at the cap."""
        cap = self.limits.max_connections
        with self._lock:
            live = [c for c in self._conns.values() if not c.closed]
            if len(live) >= cap:
                victims = [c for c in live if c.state in _EVICTABLE]
                if not victims or len(self._conns) >= 2 * cap:
                    self.refused += 1
                    victim = None
                else:
                    victim = min(victims, key=lambda c: (c.state == "write", c.since))  # a response last
                    victim.kill()
                    self.evicted += 1
                if victim is None:
                    self._refuse(request)
                    return
            conn = _Conn(request, self.limits.head_timeout)
            self._conns[id(conn)] = conn
            if self._idle > 0:
                self._idle -= 1  # an idle worker takes this job
            elif self._workers < cap:
                self._workers += 1
                threading.Thread(target=self._work, name=f"{self.app.name}-worker", daemon=True).start()
            # else: every worker is on a connection being cut above; the job waits for that worker
        self._jobs.put((request, client_address, conn))

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(_busy_response())
        except OSError:
            pass
        self.shutdown_request(request)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            request, client_address, conn = job
            try:
                self.RequestHandlerClass(request, client_address, self, conn)
            except OSError:  # the client went away, or was cut at a deadline: not an error
                pass
            except Exception:
                print(f"{self.app.name}: error on a connection:", file=sys.stderr)
                traceback.print_exc()
            finally:
                with self._lock:
                    conn.closed = True
                    self._conns.pop(id(conn), None)
                    self._idle += 1
                self.shutdown_request(request)

    def service_actions(self) -> None:
        """Between accepts: cut connections past their phase's deadline."""
        now = time.monotonic()
        with self._lock:
            for conn in self._conns.values():
                if conn.deadline is not None and now > conn.deadline and not conn.closed:
                    conn.kill()
                    self.timed_out += 1

    # -- stopping -------------------------------------------------------------------------------------
    def open_connections(self) -> int:
        with self._lock:
            return sum(not c.closed for c in self._conns.values())

    def shutdown(self) -> None:
        """Stop accepting, cut every open connection, close the socket and let the workers end."""
        super().shutdown()
        with self._lock:
            for conn in self._conns.values():
                conn.kill()
            workers, self._workers, self._idle = self._workers, 0, 0
        for _ in range(workers):
            self._jobs.put(None)
        self.server_close()


def make_server(app: App, host: str = DEFAULT_HOST, port: int = 0, allow_hosts: Iterable[str] = ()) -> Server:
    """Bind (port 0 picks a free one); `server.url` is where it listens."""
    return Server(app, host, port, allow_hosts)


def serve_in_thread(app: App, host: str = DEFAULT_HOST, port: int = 0, allow_hosts: Iterable[str] = ()) -> Server:
    """Start serving in a daemon thread (tests, notebooks); stop with `server.shutdown()`."""
    server = make_server(app, host, port, allow_hosts)
    threading.Thread(target=server.serve_forever, name=f"{app.name}-server", daemon=True).start()
    return server


def serve_forever(app: App, host: str = DEFAULT_HOST, port: int = 8000, allow_hosts: Iterable[str] = ()) -> None:
    """Serve until Ctrl-C, printing the address."""
    server = make_server(app, host, port, allow_hosts)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}, reachable from other machines")
    print(f"{app.name}: {server.url}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
