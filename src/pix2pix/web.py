"""A small HTTP app layer on the standard library, shared by the study server and the editor.

Why not a framework: both apps have a handful of JSON routes and a static page, and the standard
library's threading server handles the tens of concurrent clients they see, with no dependency to
install. What a framework would otherwise give is here: routing with path parameters, bounded
bodies, JSON errors, static files without path traversal, and a loopback default bind.
"""

from __future__ import annotations

import json
import mimetypes
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_HOST = "127.0.0.1"
MAX_BODY_BYTES = 1 << 20  # per app; the editor raises it for image uploads
DRAIN_BYTES = 64 << 20  # an oversized body up to this size is read and dropped so the client gets the 413


class HTTPError(Exception):
    """Raised by a handler to answer with `status` and a JSON {"error": message} body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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
        """The body as a JSON object, or a 400 naming the problem."""
        try:
            value = json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
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

    def __init__(self, name: str, max_body: int = MAX_BODY_BYTES):
        self.name = name
        self.max_body = max_body
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


def _make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        server_version = f"pix2pix-{app.name}"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet: the apps report what matters themselves
            pass

        def _dispatch(self) -> None:
            try:
                response = app.handle(self._read_request())
            except HTTPError as exc:
                response = json_response({"error": exc.message}, exc.status)
            except Exception as exc:  # a bug must not kill the server thread silently
                response = json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def _read_request(self) -> Request:
            url = urlsplit(self.path)
            if ".." in unquote(url.path).split("/"):
                raise HTTPError(400, "path traversal refused")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise HTTPError(400, "bad Content-Length") from None
            if length > app.max_body:
                self.close_connection = True  # the unread body makes the connection unusable
                # Read (and drop) a bounded amount first: closing with unread data resets the connection, and
                # the client would see a broken pipe instead of this message.
                remaining = min(length, DRAIN_BYTES)
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                    remaining -= len(chunk)
                raise HTTPError(413, f"request body of {length} bytes exceeds the limit of {app.max_body}")
            body = self.rfile.read(length) if length > 0 else b""
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            return Request(self.command, url.path, query, {k.lower(): v for k, v in self.headers.items()},
                           body, client=self.client_address[0])

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    return _Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts of many clients on loopback


def make_server(app: App, host: str = DEFAULT_HOST, port: int = 0) -> Server:
    """Bind (port 0 picks a free one); `server.url` is where it listens."""
    server = Server((host, port), _make_handler(app))
    server.url = f"http://{host}:{server.server_address[1]}"
    return server


def serve_in_thread(app: App, host: str = DEFAULT_HOST, port: int = 0) -> Server:
    """Start serving in a daemon thread (tests, notebooks); stop with `server.shutdown()`."""
    server = make_server(app, host, port)
    threading.Thread(target=server.serve_forever, name=f"{app.name}-server", daemon=True).start()
    return server


def serve_forever(app: App, host: str = DEFAULT_HOST, port: int = 8000) -> None:
    """Serve until Ctrl-C, printing the address."""
    server = make_server(app, host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}, reachable from other machines")
    print(f"{app.name}: {server.url}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
