"""The editor's HTTP API and page, on the shared stdlib app layer (`pix2pix.web`).

The server keeps the authoritative maps of every open document (an `EditDocument` per session)
and applies the operations the page sends; each answer carries the new label-map view, the new
photo and the generation time, so the page holds no state of its own beyond the session id.

    GET  /api/info                          model, classes (names, colours, thing or not, clusters), limits
    GET  /api/dataset                       {"items": [{"split", "name", "instance"}]} of --data
    POST /api/sessions                      {"source": "blank", "width", "height", "fill"?}
                                            {"source": "dataset", "split", "name"}
                                            {"source": "upload", "label": base64, "instance"?: base64}
    POST /api/sessions/{sid}/edit           {"op": "stroke", "points": [[x, y], ...], "radius", "class", "grow"?}
                                            {"op": "erase", "points", "radius"}  {"op": "fill", "x", "y", "class"}
                                            {"op": "select", "x", "y"}  {"op": "deselect"}
                                            {"op": "relabel", "class"} (the selected object)
                                            {"op": "style", "cluster": k | null}  {"op": "randomize", "all"?: bool}
                                            {"op": "undo"}  {"op": "redo"}
    GET  /api/sessions/{sid}/swatches       the selected object under each cluster of its class
    GET  /api/sessions/{sid}/download/{what}   label.png (ids), instance.png (16-bit ids), result.png

Limits: request bodies of at most 16 MiB, images of at most 4096 x 4096 pixels, ids inside
the model's classes; dataset files are opened only by a name from the listing. Memory: at most
`max_sessions` documents and `total_pixels` pixels of open documents (the least recently used
is closed beyond either), undo history of at most `history_bytes` per document and
`total_history_bytes` over all of them (the oldest steps anywhere are dropped first; each answer's
"history" says how many steps of this document were dropped since the last answer, and the page
shows it). Work: a stroke is refused (413) when its cost estimate (segments x brush area) is over
`max_stroke_work`, and styles when objects x pixels is over `MAX_STYLE_WORK`. Errors answer
{"error": message} with 400 (bad input), 404 (unknown session or name), 409 or 413.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import open_map
from ..errors import DataError, Pix2PixError
from ..web import App, HTTPError, Limits, Request, Response, json_response
from .ops import HISTORY_BYTES, MAX_STROKE_WORK, EditDocument, Selection, WorkLimitError
from .session import MAX_SIDE, MIN_SIDE, DatasetFolders, EditorModel, decode_image, encode_png, render_view

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 16 << 20  # 16 MiB: two 4096x4096 label maps as base64 PNGs fit comfortably
MAX_SESSIONS = 32  # the least recently used document is dropped beyond this
TOTAL_PIXELS = 4 * MAX_SIDE * MAX_SIDE  # open documents together (about 11 bytes a pixel: maps, photo, view)
TOTAL_HISTORY_BYTES = 1 << 30  # undo + redo of every document together
MAX_STYLE_WORK = 1 << 28  # styled objects x pixels: generation finds each styled object's class with a pass

__all__ = ["MAX_BODY", "EditorServer", "create_app"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Session:
    def __init__(self, sid: str, doc: EditDocument, name: str) -> None:
        self.sid = sid
        self.doc = doc
        self.name = name
        self.lock = threading.Lock()
        self.point: tuple[float, float] | None = None  # the selection is the object under this point
        self.selection: Selection | None = None
        self.result: np.ndarray | None = None
        self.result_version = -1
        self.gen_seconds = 0.0
        self.swatches: tuple[int, int, list[dict[str, Any]]] | None = None  # (version, instance, swatches)
        self.rng = np.random.default_rng(secrets.randbits(63))
        self.reported_dropped = 0  # history steps dropped that earlier answers told the page about

    @property
    def pixels(self) -> int:
        return int(self.doc.shape[0] * self.doc.shape[1])


class EditorServer:
    """The sessions and the route handlers of one editor app."""

    def __init__(self, model: EditorModel, data: str | Path | None = None, max_sessions: int = MAX_SESSIONS, *,
                 total_pixels: int = TOTAL_PIXELS, history_bytes: int = HISTORY_BYTES,
                 total_history_bytes: int = TOTAL_HISTORY_BYTES, max_stroke_work: int = MAX_STROKE_WORK) -> None:
        self.model = model
        self.dataset = DatasetFolders(data) if data is not None else None
        self.max_sessions = max_sessions
        self.total_pixels = total_pixels
        self.total_history_bytes = total_history_bytes
        self.doc_options = {"history_bytes": history_bytes, "max_stroke_work": max_stroke_work}
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    # -- sessions -----------------------------------------------------------------------------------
    def _session(self, sid: str) -> _Session:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise HTTPError(404, f"no editing session {sid!r} (the server restarted or it expired): open a "
                                     "label map again.")
            self._sessions.move_to_end(sid)
            return session

    def _add(self, doc: EditDocument, name: str) -> _Session:
        session = _Session(secrets.token_urlsafe(16), doc, name)
        with self._lock:
            self._sessions[session.sid] = session
            pixels = sum(s.pixels for s in self._sessions.values())
            while len(self._sessions) > 1 and (len(self._sessions) > self.max_sessions or pixels > self.total_pixels):
                _, closed = self._sessions.popitem(last=False)  # the least recently used
                pixels -= closed.pixels
        return session

    def _trim_history(self, current: _Session) -> None:
        """Drop the oldest history steps over all documents until they fit `total_history_bytes`.

        Called with `current.lock` held; other documents are trimmed only when their lock is free at once
        (never waiting for a second lock, so two trimming requests cannot deadlock)."""
        with self._lock:
            sessions = list(self._sessions.values())
        total = sum(s.doc.history_nbytes for s in sessions)
        if total <= self.total_history_bytes:
            return
        held: list[_Session] = []
        for s in sessions:
            if s is not current and s.lock.acquire(blocking=False):
                held.append(s)
        try:
            usable = [current, *held]
            while total > self.total_history_bytes:
                candidates = [s for s in usable if s.doc.oldest_step is not None]
                if not candidates:
                    break
                freed = min(candidates, key=lambda s: s.doc.oldest_step).doc.drop_oldest_step()
                total -= freed
        finally:
            for s in held:
                s.lock.release()

    def _state(self, s: _Session, *, result: bool = True) -> dict[str, Any]:
        """The answer to every edit: maps view, photo (regenerated when the maps changed), selection, history."""
        doc = s.doc
        if s.point is not None:
            try:
                s.selection = doc.select(*s.point)
            except DataError:
                s.selection, s.point = None, None
        regenerated = False
        if s.result is None or s.result_version != doc.version:
            s.result, s.gen_seconds = self.model.generate(doc.label, doc.instance, doc.styles)
            s.result_version = doc.version
            regenerated = True
        view = render_view(doc.label, doc.instance, self.model.palette,
                           s.selection.mask if s.selection is not None else None)
        sel = None
        if s.selection is not None:
            x0, y0, x1, y1 = s.selection.bbox()
            cls = self.model.object_class(doc.label, doc.instance, s.selection.instance_id)
            sel = {"instance": s.selection.instance_id, "class": s.selection.class_id, "style_class": cls,
                   "style": s.selection.style, "clusters": self.model.num_clusters(cls),
                   "pixels": s.selection.pixels, "bbox": [x0, y0, x1, y1], "point": list(s.point or ())}
        dropped, s.reported_dropped = doc.dropped_steps - s.reported_dropped, doc.dropped_steps
        state = {"session": s.sid, "name": s.name, "width": doc.shape[1], "height": doc.shape[0],
                 "version": doc.version, "can_undo": doc.can_undo, "can_redo": doc.can_redo,
                 "history": {"undo": doc.undo_steps, "redo": doc.redo_steps, "bytes": doc.history_nbytes,
                             "dropped": dropped},
                 "selection": sel, "gen_ms": round(s.gen_seconds * 1000, 1), "regenerated": regenerated,
                 "view": _b64(encode_png(view))}
        if result or regenerated:
            state["result"] = _b64(encode_png(s.result))
        return state

    # -- handlers -----------------------------------------------------------------------------------
    def info(self, request: Request) -> Response:
        info = self.model.info()
        info["dataset"] = str(self.dataset.root) if self.dataset is not None else None
        info["max_body"] = MAX_BODY
        return json_response(info)

    def dataset_listing(self, request: Request) -> Response:
        return json_response({"items": self.dataset.listing() if self.dataset is not None else []})

    def open(self, request: Request) -> Response:
        body = request.json()
        source = body.get("source")
        if source == "blank":
            width, height = _int(body, "width"), _int(body, "height")
            if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
                raise DataError(f"a blank canvas of {width}x{height}: each side must be {MIN_SIDE}..{MAX_SIDE} pixels.")
            fill = body.get("fill")
            doc = EditDocument.blank(width, height, self.model.space, None if fill is None else _int(body, "fill"),
                                     **self.doc_options)
            name = f"blank {width}x{height}"
        elif source == "dataset":
            if self.dataset is None:
                raise HTTPError(404, "the server was started without --data DIR: there is no dataset to open.")
            try:
                label_path, inst_path = self.dataset.paths(body.get("split"), body.get("name"))
            except KeyError as exc:
                raise HTTPError(404, str(exc.args[0])) from None
            label, instance = self.model.read_maps(open_map(label_path),
                                                   open_map(inst_path) if inst_path is not None else None,
                                                   source=label_path.name)
            doc = EditDocument(label, instance, self.model.space, **self.doc_options)
            name = f"{body['split']}/{body['name']}"
        elif source == "upload":
            if not body.get("label"):
                raise DataError("an upload needs a label map: {\"label\": base64 PNG, \"instance\": optional}.")
            label_img = decode_image(body["label"], "uploaded label map")
            inst_img = decode_image(body["instance"], "uploaded instance map") if body.get("instance") else None
            label, instance = self.model.read_maps(label_img, inst_img, source="uploaded")
            doc = EditDocument(label, instance, self.model.space, **self.doc_options)
            name = str(body.get("filename") or "upload")[:100]
        else:
            raise DataError(f"source {source!r}: use 'blank', 'dataset' or 'upload'.")
        session = self._add(doc, name)
        with session.lock:
            return json_response(self._state(session))

    def edit(self, request: Request) -> Response:
        s = self._session(request.params["sid"])
        body = request.json()
        op = body.get("op")
        with s.lock:
            doc = s.doc
            result = True
            if op == "stroke":
                grow = body.get("grow")
                doc.stroke(_points(body), _number(body, "radius"), _int(body, "class"),
                           grow=None if grow is None else _int(body, "grow"))
            elif op == "erase":
                doc.erase(_points(body), _number(body, "radius"))
            elif op == "fill":
                doc.fill(_number(body, "x"), _number(body, "y"), _int(body, "class"))
            elif op == "select":
                s.point = (_number(body, "x"), _number(body, "y"))
                s.selection = doc.select(*s.point)
                result = False
            elif op == "deselect":
                s.point, s.selection = None, None
                result = False
            elif op == "relabel":
                self._selected(s)
                doc.relabel(*s.point, _int(body, "class"))  # type: ignore[misc]
            elif op == "style":
                sel = self._selected(s)
                cluster = body.get("cluster")
                if cluster is not None:
                    cluster = _int(body, "cluster")
                    n = self.model.num_clusters(self.model.object_class(doc.label, doc.instance, sel.instance_id))
                    if not 0 <= cluster < n:
                        raise DataError(f"object {sel.instance_id} has styles 0..{n - 1}; style {cluster} does not "
                                        "exist." if n else f"object {sel.instance_id} has no styles: "
                                        f"{self.model.styles_note()}")
                    self._check_style_work(doc, {**doc.styles, sel.instance_id: cluster})
                doc.set_style(sel.instance_id, cluster)
            elif op == "randomize":
                if body.get("all"):
                    ids, classes = _object_classes(doc.label, doc.instance, self.model.space.label_nc)
                else:
                    ids = [self._selected(s).instance_id]
                    classes = [self.model.object_class(doc.label, doc.instance, ids[0])]
                choices = {}
                for i, c in zip(ids, classes, strict=True):
                    n = self.model.num_clusters(c)
                    if n > 1:  # a new draw that differs from the current style
                        current = doc.styles.get(i, 0)
                        choices[i] = int((current + 1 + s.rng.integers(n - 1)) % n)
                if not choices and not body.get("all"):
                    raise DataError(f"this object has fewer than two styles to choose from. {self.model.styles_note()}")
                self._check_style_work(doc, {**doc.styles, **choices})
                doc.set_styles(choices)
            elif op == "undo":
                doc.undo()
            elif op == "redo":
                doc.redo()
            else:
                raise DataError(f"unknown edit {op!r}: use stroke, erase, fill, select, deselect, relabel, style, "
                                "randomize, undo or redo.")
            self._trim_history(s)
            return json_response(self._state(s, result=result))

    def swatches(self, request: Request) -> Response:
        s = self._session(request.params["sid"])
        with s.lock:
            sel = self._selected(s)
            doc = s.doc
            key = (doc.version, sel.instance_id)
            if s.swatches is None or s.swatches[:2] != key:
                previews = self.model.style_previews(doc.label, doc.instance, doc.styles, sel.instance_id)
                s.swatches = (*key, [{"index": p.index, "count": p.count, "color": list(p.color),
                                      "thumbnail": _b64(encode_png(p.thumbnail))} for p in previews])
            return json_response({"instance": sel.instance_id, "style": doc.styles.get(sel.instance_id),
                                  "swatches": s.swatches[2], "note": self.model.styles_note()})

    def download(self, request: Request) -> Response:
        s = self._session(request.params["sid"])
        what = request.params["what"]
        with s.lock:
            doc = s.doc
            if what == "label.png":
                ids = doc.label.astype(np.uint8 if self.model.space.label_nc <= 256 else np.uint16)
                data = encode_png(ids)
            elif what == "instance.png":
                if doc.instance.max() > 65535:
                    raise HTTPError(409, "instance ids above 65535 do not fit a 16-bit PNG.")
                data = encode_png(doc.instance.astype(np.uint16))
            elif what == "result.png":
                if s.result is None or s.result_version != doc.version:
                    s.result, s.gen_seconds = self.model.generate(doc.label, doc.instance, doc.styles)
                    s.result_version = doc.version
                data = encode_png(s.result)
            else:
                raise HTTPError(404, f"{what}: download label.png, instance.png or result.png.")
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s.name)[:60] or "edit"
        return Response(data, 200, "image/png",
                        {"Content-Disposition": f'attachment; filename="{stem}_{what}"', "Cache-Control": "no-store"})

    @staticmethod
    def _check_style_work(doc: EditDocument, styles: dict[int, int]) -> None:
        work = len(styles) * doc.shape[0] * doc.shape[1]
        if work > MAX_STYLE_WORK:
            most = max(1, MAX_STYLE_WORK // (doc.shape[0] * doc.shape[1]))
            raise WorkLimitError(f"{len(styles)} objects with a chosen style on a {doc.shape[1]}x{doc.shape[0]} map "
                                 f"would make every photo cost {work:,} pixel passes; at this size at most {most} "
                                 "objects can have a style: set some back to the default, or edit a smaller map.")

    @staticmethod
    def _selected(s: _Session) -> Selection:
        if s.selection is None or s.point is None:
            raise DataError("no object is selected: select one first (the select tool, or {\"op\": \"select\"}).")
        return s.selection


def _object_classes(label: np.ndarray, instance: np.ndarray, label_nc: int) -> tuple[list[int], list[int]]:
    """Every instance id and its majority label, in one pass (not a pass per object)."""
    ids, inverse = np.unique(instance, return_inverse=True)
    if len(ids) * label_nc > 1 << 26:
        raise WorkLimitError(f"the map has {len(ids)} objects; randomising all of them is limited to "
                             f"{(1 << 26) // label_nc}: randomise objects one at a time.")
    votes = np.bincount(inverse.reshape(-1) * label_nc + label.reshape(-1), minlength=len(ids) * label_nc)
    return [int(i) for i in ids], [int(c) for c in votes.reshape(len(ids), label_nc).argmax(1)]


def _int(body: dict, key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise DataError(f"{key!r} must be an integer, got {value!r}.")
    return int(value)


def _number(body: dict, key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DataError(f"{key!r} must be a number, got {value!r}.")
    return float(value)


def _points(body: dict) -> list[list[float]]:
    points = body.get("points")
    if not isinstance(points, list) or not points or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in p) for p in points):
        raise DataError("'points' must be a non-empty list of [x, y] numbers.")
    return points


def create_app(model: EditorModel, data: str | Path | None = None, *, max_sessions: int = MAX_SESSIONS,
               total_pixels: int = TOTAL_PIXELS, history_bytes: int = HISTORY_BYTES,
               total_history_bytes: int = TOTAL_HISTORY_BYTES, max_stroke_work: int = MAX_STROKE_WORK,
               limits: Limits | None = None) -> App:
    """The editor as an `App` (serve it with `pix2pix.web.serve_forever` or `serve_in_thread`)."""
    server = EditorServer(model, data, max_sessions, total_pixels=total_pixels, history_bytes=history_bytes,
                          total_history_bytes=total_history_bytes, max_stroke_work=max_stroke_work)
    app = App("pix2pix-editor", max_body=MAX_BODY, limits=limits)

    def guarded(handler):
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except WorkLimitError as exc:  # too much work for one request: what to do instead
                raise HTTPError(413, str(exc)) from None
            except Pix2PixError as exc:  # the user's input: a 400 that says what to fix
                raise HTTPError(400, str(exc)) from None
        return run

    app.route("GET", "/api/info")(guarded(server.info))
    app.route("GET", "/api/dataset")(guarded(server.dataset_listing))
    app.route("POST", "/api/sessions")(guarded(server.open))
    app.route("POST", "/api/sessions/{sid}/edit")(guarded(server.edit))
    app.route("GET", "/api/sessions/{sid}/swatches")(guarded(server.swatches))
    app.route("GET", "/api/sessions/{sid}/download/{what}")(guarded(server.download))
    app.static("/", STATIC)
    app.editor = server  # type: ignore[attr-defined]  # tests and benchmarks reach the sessions through it
    return app


def timed_post(url: str, body: dict, timeout: float = 120.0) -> tuple[dict, float]:
    """POST JSON and return (answer, seconds): the benchmark's and the tests' client."""
    import json
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    return answer, time.perf_counter() - start
