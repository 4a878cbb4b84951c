"""The editor's HTTP API on tiny models: sessions, edits, styles, downloads, limits and refusals."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.clusters import Clusters
from pix2pix.data.label_sets import get_label_set
from pix2pix.editor import EditorModel, create_app
from pix2pix.editor.server import timed_post
from pix2pix.errors import CheckpointError, ConfigError
from pix2pix.io.model_card import LabelSpec, ModelCard
from pix2pix.io.pretrained import save_model, save_pretrained
from pix2pix.registry import create_generator
from pix2pix.web import serve_in_thread

CAR_CLUSTERS = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [1.0, -1.0, 1.0]])


def make_hd_model(directory: Path, *, features: bool = True, clusters: bool = True, ngf: int = 8,
                  norm: str = "instance") -> Path:
    """A pix2pixHD model for the synthetic world (10 classes + boundaries [+ 3 features]), untrained.

    PyTorch's default initialisation (not N(0, 0.02)) so the output visibly depends on the input.
    Clusters: three far-apart car styles and two person styles. `norm="batch"` (running statistics
    in eval mode) makes the output depend on the input only within the receptive field; instance
    norm, pix2pixHD's, also spreads a small change over the whole image.
    """
    torch.manual_seed(0)
    label_set = get_label_set("synthetic")
    card = ModelCard(family="pix2pixhd", labels=LabelSpec(label_nc=10, label_set=label_set.to_classes_json()))
    g = create_generator("global", 11 + (3 if features else 0), 3, ngf=ngf, n_downsample=2, n_blocks=1, norm=norm,
                         init=None)
    if norm == "batch":  # running statistics of a real scene, so eval mode neither fades nor saturates
        from pix2pix.data.label_inputs import LabelInputs
        from pix2pix.data.synthetic import render_scene

        scene = render_scene(np.random.default_rng(0), 96, 96)
        cond = LabelInputs(10, True).encode(torch.from_numpy(scene.label.astype(np.int64))[None, None],
                                            torch.from_numpy(scene.instance.astype(np.int64))[None, None])
        if features:
            cond = torch.cat([cond, torch.rand(1, 3, 96, 96) * 2 - 1], 1)
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a cumulative average: one pass sets the statistics
        with torch.no_grad():
            g.train()(cond)
        g.eval()
    networks = {"generator": g}
    if features:
        networks["encoder"] = create_generator("encoder", 3, 3, ngf=4, n_downsample=2)
    save_model(directory, card, networks)
    if features:
        if clusters:
            person = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
            Clusters(feat_num=3, centres={7: CAR_CLUSTERS, 8: person}, counts={7: [5, 3, 2], 8: [4, 1]},
                     meta={"class_names": {"7": "car", "8": "person"}}).save(directory)
    return directory


def make_synthetic_data(directory: Path, size: int = 64, num: int = 3) -> Path:
    from pix2pix.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(directory, num=num, size=size)
    return directory


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text.startswith(b"{") else {"error": text.decode()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("editor")
    return {"root": root, "model": make_hd_model(root / "model"), "data": make_synthetic_data(root / "data")}


@pytest.fixture(scope="module")
def server(world):
    torch.set_num_threads(2)
    model = EditorModel.load(world["model"], data=world["data"], device="cpu")
    srv = serve_in_thread(create_app(model, world["data"]))
    yield srv
    srv.shutdown()


def open_item(server, split: str = "test", name: str = "world_00002.png") -> dict:
    status, state = post(server.url + "/api/sessions", {"source": "dataset", "split": split, "name": name})
    assert status == 200, state
    return state


def maps(server, sid: str) -> tuple[np.ndarray, np.ndarray]:
    _, label = get(f"{server.url}/api/sessions/{sid}/download/label.png")
    _, inst = get(f"{server.url}/api/sessions/{sid}/download/instance.png")
    return np.asarray(Image.open(io.BytesIO(label))), np.asarray(Image.open(io.BytesIO(inst))).astype(np.int64)


def largest_object(inst: np.ndarray, class_id: int) -> tuple[int, float, float]:
    ids = [int(i) for i in np.unique(inst) if i // 1000 == class_id and i >= 1000]
    best = max(ids, key=lambda i: int((inst == i).sum()))
    ys, xs = np.nonzero(inst == best)
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # an object pixel near its centre
    return best, float(xs[k]) + 0.5, float(ys[k]) + 0.5


# ----------------------------------------------------------------------------- info, opening, downloads


def test_info_and_listing(server):
    status, body = get(server.url + "/api/info")
    info = json.loads(body)
    assert status == 200 and info["family"] == "pix2pixhd" and info["label_nc"] == 10 and info["styles"]
    car = info["classes"][7]
    assert car == {"id": 7, "name": "car", "color": [0, 0, 142], "thing": True, "clusters": 3}
    assert info["classes"][1]["thing"] is False and info["erase_class"] == 0
    items = json.loads(get(server.url + "/api/dataset")[1])["items"]
    assert {(i["split"], i["name"]) for i in items} == {("train", "world_00000.png"), ("train", "world_00001.png"),
                                                        ("test", "world_00002.png")}
    status, page = get(server.url + "/")
    assert status == 200 and b"editor.js" in page
    assert get(server.url + "/editor.js")[0] == 200


def test_open_a_dataset_item_and_download_its_maps_exactly(server, world):
    state = open_item(server)
    assert (state["width"], state["height"]) == (64, 64) and state["version"] == 0
    assert not state["can_undo"] and state["gen_ms"] > 0
    assert decode(state["result"]).shape == (64, 64, 3) and decode(state["view"]).shape == (64, 64, 3)
    label, inst = maps(server, state["session"])
    data = world["data"]
    assert np.array_equal(label, np.asarray(Image.open(data / "test_label" / "world_00002.png")))
    assert np.array_equal(inst, np.asarray(Image.open(data / "test_inst" / "world_00002.png")).astype(np.int64))
    status, result = get(f"{server.url}/api/sessions/{state['session']}/download/result.png")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(result))), decode(state["result"]))
    assert get(f"{server.url}/api/sessions/{state['session']}/download/secret.txt")[0] == 404
    assert get(f"{server.url}/api/sessions/nope/download/label.png")[0] == 404


@pytest.mark.parametrize("split, name", [("test", "../test_label/world_00002.png"), ("test", "..%2fx"),
                                         ("test", "a/b.png"), ("test", "..\\x.png"), ("../data", "world_00002.png"),
                                         ("test", ".."), ("test", ""), ("test", 7)])
def test_dataset_names_outside_the_listing_are_refused(server, split, name):
    status, body = post(server.url + "/api/sessions", {"source": "dataset", "split": split, "name": name})
    assert status == 400 and ("refused" in body["error"] or "file name from the dataset listing" in body["error"])


def test_unknown_dataset_names_are_not_found(server):
    status, body = post(server.url + "/api/sessions", {"source": "dataset", "split": "test", "name": "world_9.png"})
    assert status == 404 and "not in the dataset listing" in body["error"]
    assert get(server.url + "/%2e%2e/%2e%2e/etc/passwd")[0] == 400


def test_blank_canvas_and_its_limits(server):
    status, state = post(server.url + "/api/sessions", {"source": "blank", "width": 40, "height": 24, "fill": 4})
    assert status == 200 and (state["width"], state["height"]) == (40, 24)
    label, inst = maps(server, state["session"])
    assert (label == 4).all() and (inst == 4).all()
    for bad in ({"width": 5000, "height": 64}, {"width": 2, "height": 64}, {"width": "64", "height": 64},
                {"width": 64, "height": 64, "fill": 10}):
        status, body = post(server.url + "/api/sessions", {"source": "blank", **bad})
        assert status == 400, bad
    status, body = post(server.url + "/api/sessions", {"source": "camera"})
    assert status == 400 and "use 'blank', 'dataset' or 'upload'" in body["error"]


# ----------------------------------------------------------------------------- uploads


def _upload(server, label: bytes | str, instance: bytes | None = None) -> tuple[int, dict]:
    body = {"source": "upload", "label": label if isinstance(label, str) else base64.b64encode(label).decode()}
    if instance is not None:
        body["instance"] = "data:image/png;base64," + base64.b64encode(instance).decode()
    return post(server.url + "/api/sessions", body)


def test_upload_round_trips_ids_and_derives_missing_instances(server):
    label = np.full((32, 48), 4, dtype=np.uint8)
    label[4:10, 4:12] = 7
    label[20:28, 30:40] = 7
    inst = label.astype(np.uint16)
    inst[4:10, 4:12] = 7003
    inst[20:28, 30:40] = 7010
    status, state = _upload(server, png(label), png(inst))
    assert status == 200, state
    got_label, got_inst = maps(server, state["session"])
    assert np.array_equal(got_label, label) and np.array_equal(got_inst, inst)
    status, state = _upload(server, png(label))  # no instance map: each car blob becomes an object
    _, got_inst = maps(server, state["session"])
    assert got_inst[5, 5] == 7000 and got_inst[21, 31] == 7001 and got_inst[0, 0] == 4
    # a label map painted in the palette's colours reads as ids
    colour = np.array(get_label_set("synthetic").palette, dtype=np.uint8)[label]
    status, state = _upload(server, png(colour))
    assert status == 200 and np.array_equal(maps(server, state["session"])[0], label)


def test_uploads_that_are_not_label_maps_are_refused(server):
    status, body = _upload(server, b"this is not an image, just text")
    assert status == 400 and "not an image" in body["error"]
    status, body = _upload(server, "@@@not base64@@@")
    assert status == 400 and "base64" in body["error"]
    status, body = _upload(server, png(np.full((16, 16), 12, np.uint8)))
    assert status == 400 and "[12]" in body["error"] and "0..9" in body["error"]
    photo = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    status, body = _upload(server, png(photo))
    assert status == 400 and "palette" in body["error"]
    status, body = _upload(server, png(np.zeros((16, 16), np.uint8)), png(np.zeros((16, 20), np.uint16)))
    assert status == 400 and "same size" in body["error"]
    status, body = _upload(server, png(np.zeros((16, 16), np.uint8)), png(np.full((16, 16, 3), [1, 2, 3], np.uint8)))
    assert status == 400 and "colour image" in body["error"]
    # more than 4096 pixels a side: refused from the header, before decoding
    huge = io.BytesIO()
    Image.new("L", (4100, 8)).save(huge, format="PNG")
    status, body = _upload(server, huge.getvalue())
    assert status == 400 and "4096x4096" in body["error"]
    # a body over 16 MiB is cut off before it is read
    status, body = post(server.url + "/api/sessions", b"{" + b" " * (17 << 20) + b"}")
    assert status == 413 and "exceeds the limit" in body["error"]


# ----------------------------------------------------------------------------- edits


def _change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(-1)


def test_stroke_undo_redo_through_the_api(server):
    state = open_item(server)
    sid, r0 = state["session"], decode(state["result"])
    label0, _ = maps(server, sid)
    state, _ = timed_post(f"{server.url}/api/sessions/{sid}/edit",
                          {"op": "stroke", "points": [[4, 6], [20, 6]], "radius": 3, "class": 2})
    assert state["version"] == 1 and state["can_undo"] and state["regenerated"]
    label1, _ = maps(server, sid)
    changed = label1 != label0
    assert changed.any() and (label1[changed] == 2).all() and not changed[20:, :].any()
    r1 = decode(state["result"])
    assert _change(r0, r1)[changed].mean() > 0
    status, undone = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "undo"})
    assert status == 200 and not undone["can_undo"] and undone["can_redo"]
    assert np.array_equal(maps(server, sid)[0], label0)
    assert np.array_equal(decode(undone["result"]), r0)  # generation is deterministic
    _, redone = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "redo"})
    assert np.array_equal(maps(server, sid)[0], label1) and np.array_equal(decode(redone["result"]), r1)
    _, filled = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "fill", "x": 1, "y": 1, "class": 3})
    assert filled["version"] == 4  # stroke, undo, redo, fill
    _, erased = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "erase", "points": [[60, 60]], "radius": 2})
    assert maps(server, sid)[0][60, 60] == 0
    for bad in ({"op": "stroke", "points": [[1, 1]], "radius": 2, "class": 99}, {"op": "stroke", "points": "x"},
                {"op": "fill", "x": 500, "y": 1, "class": 1}, {"op": "teleport"}, {"op": "style", "cluster": 0}):
        status, body = post(f"{server.url}/api/sessions/{sid}/edit", bad)
        assert status == 400 and body["error"], bad
    assert post(f"{server.url}/api/sessions/unknown/edit", {"op": "undo"})[0] == 404


def test_select_relabel_and_styles_through_the_api(server):
    state = open_item(server)
    sid = state["session"]
    _, inst = maps(server, sid)
    car, x, y = largest_object(inst, 7)
    _, sel = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "select", "x": x, "y": y})
    assert sel["selection"]["instance"] == car and sel["selection"]["clusters"] == 3
    assert sel["selection"]["style"] is None and "result" not in sel  # selecting does not regenerate
    assert sel["selection"]["pixels"] == int((inst == car).sum())
    status, body = get(f"{server.url}/api/sessions/{sid}/swatches")
    swatches = json.loads(body)
    assert status == 200 and [s["index"] for s in swatches["swatches"]] == [0, 1, 2]
    assert [s["count"] for s in swatches["swatches"]] == [5, 3, 2]
    previews = [decode(s["thumbnail"]) for s in swatches["swatches"]]
    assert all(p.ndim == 3 and max(p.shape[:2]) == 72 for p in previews)
    assert not np.array_equal(previews[0], previews[1])  # each style looks different
    r0 = decode(state["result"])
    _, styled = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "style", "cluster": 1})
    assert styled["selection"]["style"] == 1
    change = _change(r0, decode(styled["result"]))
    assert change[inst == car].mean() > 3 * change[inst != car].mean()
    status, body = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "style", "cluster": 3})
    assert status == 400 and "styles 0..2" in body["error"]
    _, rnd = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "randomize"})
    assert rnd["selection"]["style"] in (0, 2)  # a random style other than the current one
    _, every = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "randomize", "all": True})
    assert every["version"] == rnd["version"] + 1
    _, relabelled = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "relabel", "class": 8})
    sel = relabelled["selection"]
    assert sel["class"] == 8 and sel["instance"] // 1000 == 8 and sel["style"] is None and sel["clusters"] == 2
    label, inst2 = maps(server, sid)
    assert (label[inst == car] == 8).all() and (inst2[inst == car] == sel["instance"]).all()
    _, desel = post(f"{server.url}/api/sessions/{sid}/edit", {"op": "deselect"})
    assert desel["selection"] is None
    assert get(f"{server.url}/api/sessions/{sid}/swatches")[0] == 400


# ----------------------------------------------------------------------------- models and clusters


def test_clusters_that_do_not_fit_the_model_are_refused(world, tmp_path, capsys):
    from pix2pix.cli.main import main

    wide = tmp_path / "wide"
    Clusters(feat_num=4, centres={7: torch.zeros(2, 4)}, counts={7: [1, 1]}).save(wide)
    with pytest.raises(CheckpointError, match="feat_num"):
        EditorModel.load(world["model"], clusters=wide, device="cpu")
    assert main(["edit", "--model", str(world["model"]), "--clusters", str(wide / "clusters.safetensors"),
                 "--port", "0"]) == 2
    assert "feat_num" in capsys.readouterr().err
    outside = tmp_path / "outside"
    Clusters(feat_num=3, centres={26: torch.zeros(2, 3)}, counts={26: [1, 1]}).save(outside)
    with pytest.raises(CheckpointError, match="class ids \\[26\\]"):
        EditorModel.load(world["model"], clusters=outside, device="cpu")
    renamed = tmp_path / "renamed"
    Clusters(feat_num=3, centres={7: torch.zeros(2, 3)}, counts={7: [1, 1]},
             meta={"class_names": {"7": "bus"}}).save(renamed)
    with pytest.raises(CheckpointError, match="'bus'"):
        EditorModel.load(world["model"], clusters=renamed, device="cpu")
    plain = make_hd_model(tmp_path / "plain", features=False)
    with pytest.raises(ConfigError, match="without the encoder"):
        EditorModel.load(plain, clusters=world["model"], device="cpu")
    good = EditorModel.load(world["model"], clusters=world["model"] / "clusters.safetensors", device="cpu")
    assert good.num_clusters(7) == 3


def test_models_without_styles(world, tmp_path):
    plain = EditorModel.load(make_hd_model(tmp_path / "plain", features=False), device="cpu")
    assert not plain.has_styles and "without the feature encoder" in plain.styles_note()
    no_clusters = EditorModel.load(make_hd_model(tmp_path / "nocl", clusters=False), device="cpu")
    assert not no_clusters.has_styles and "pix2pix features" in no_clusters.styles_note()
    label = np.full((24, 24), 4, np.int32)
    label[5:15, 5:15] = 7
    inst = np.where(label == 7, 7000, label)
    for model in (plain, no_clusters):
        photo, seconds = model.generate(label, inst, {7000: 1})
        assert photo.shape == (24, 24, 3) and photo.dtype == np.uint8 and seconds > 0
        assert model.style_previews(label, inst, {}, 7000) == []


def test_pix2pix_models_take_the_colour_label_map(world, tmp_path):
    from pix2pix.inference import Translator

    p2p = tmp_path / "p2p"
    torch.manual_seed(0)
    save_pretrained(create_generator("unet", 3, 3, ngf=8, num_downs=5, init=None), p2p)
    with pytest.raises(ConfigError, match="--label-set"):
        EditorModel.load(p2p, device="cpu")
    with pytest.raises(ConfigError, match="pix2pix model"):
        EditorModel.load(p2p, labels="synthetic", clusters=world["model"], device="cpu")
    model = EditorModel.load(p2p, data=world["data"], device="cpu")  # classes.json of the dataset
    assert model.family == "pix2pix" and model.label_set.class_names[7] == "car" and not model.has_styles
    label = np.asarray(Image.open(world["data"] / "test_label" / "world_00002.png")).astype(np.int32)
    photo, _ = model.generate(label, label, {})
    palette = np.array(get_label_set("synthetic").palette, dtype=np.uint8)
    expected = Translator.from_pretrained(p2p, device="cpu")(Image.fromarray(palette[label]))
    assert np.array_equal(photo, np.asarray(expected))
    srv = serve_in_thread(create_app(model, world["data"]))
    try:
        state = open_item(srv)
        _, inst = maps(srv, state["session"])
        car, x, y = largest_object(inst, 7)
        _, sel = post(f"{srv.url}/api/sessions/{state['session']}/edit", {"op": "select", "x": x, "y": y})
        assert sel["selection"]["instance"] == car and sel["selection"]["clusters"] == 0
        status, body = post(f"{srv.url}/api/sessions/{state['session']}/edit", {"op": "style", "cluster": 0})
        assert status == 400 and "no styles" in body["error"]
        assert json.loads(get(srv.url + "/api/info")[1])["styles"] is False
    finally:
        srv.shutdown()


# ----------------------------------------------------------------------------- attacks and resource bounds


def _raw_status(srv, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_cross_origin_and_foreign_host_requests_are_refused(server):
    count = len(server.app.editor._sessions)
    blank = json.dumps({"source": "blank", "width": 16, "height": 16}).encode()
    # a page elsewhere posting text/plain (no preflight needed) or JSON with its Origin
    assert _raw_status(server, "POST", "/api/sessions", blank,
                       {"Content-Type": "text/plain", "Origin": "http://evil.example"}) == 403
    assert _raw_status(server, "POST", "/api/sessions", blank, {"Content-Type": "text/plain"}) == 415
    assert _raw_status(server, "POST", "/api/sessions", blank,
                       {"Content-Type": "application/json", "Origin": "http://evil.example"}) == 403
    # DNS rebinding: our address under a foreign name, for reads and writes
    assert _raw_status(server, "GET", "/api/info", headers={"Host": "evil.example"}) == 421
    assert _raw_status(server, "POST", "/api/sessions", blank,
                       {"Content-Type": "application/json", "Host": f"evil.example:{server.port}"}) == 421
    sid = open_item(server)["session"]
    assert _raw_status(server, "GET", f"/api/sessions/{sid}/download/label.png", headers={"Host": "evil.example"}) \
        == 421
    assert len(server.app.editor._sessions) == count + 1  # only the legitimate open made a session
    origin = f"http://127.0.0.1:{server.port}"
    assert _raw_status(server, "POST", "/api/sessions", blank,
                       {"Content-Type": "application/json", "Origin": origin}) == 200


def test_history_is_bounded_in_bytes_per_document_and_in_total(world):
    model = EditorModel.load(world["model"], device="cpu")
    step = 64 * 64 * 8  # a full-canvas fill of a 64x64 map keeps one label and one instance box (int32)
    srv = serve_in_thread(create_app(model, history_bytes=3 * step + 4096, total_history_bytes=5 * step + 8192))
    try:
        def fills(sid: str, n: int) -> list[dict]:
            out = []
            for k in range(n):
                status, state = post(f"{srv.url}/api/sessions/{sid}/edit",
                                     {"op": "fill", "x": 1, "y": 1, "class": 1 + k % 2})
                assert status == 200, state
                out.append(state)
            return out

        first = post(srv.url + "/api/sessions", {"source": "blank", "width": 64, "height": 64, "fill": 3})[1]
        states = fills(first["session"], 6)
        assert [s["history"]["undo"] for s in states] == [1, 2, 3, 3, 3, 3]  # three fit, the oldest go
        assert [s["history"]["dropped"] for s in states] == [0, 0, 0, 1, 1, 1]  # and the page is told each time
        assert states[-1]["history"]["bytes"] <= 3 * step + 4096
        second = post(srv.url + "/api/sessions", {"source": "blank", "width": 64, "height": 64, "fill": 3})[1]
        fills(second["session"], 3)
        docs = [d.doc for d in srv.app.editor._sessions.values()]
        assert sum(d.history_nbytes for d in docs) <= 5 * step + 8192  # the total bound holds
        # the oldest steps anywhere went first: the first document's, which it hears about on its next answer
        status, undone = post(f"{srv.url}/api/sessions/{first['session']}/edit", {"op": "undo"})
        assert undone["history"]["dropped"] == 1 and undone["history"]["undo"] == 1
        label, _ = maps(srv, first["session"])
        assert (label == 1).all()  # undo still restores exactly: the fills alternate classes 1 and 2
    finally:
        srv.shutdown()


def test_a_huge_stroke_is_refused_before_any_work(server):
    state = post(server.url + "/api/sessions", {"source": "blank", "width": 256, "height": 256, "fill": 3})[1]
    sid = state["session"]
    points = [[(i * 0.05) % 256, (i * 0.037) % 256] for i in range(20_000)]
    start = time.perf_counter()
    status, body = post(f"{server.url}/api/sessions/{sid}/edit",
                        {"op": "stroke", "points": points, "radius": 512, "class": 1})
    seconds = time.perf_counter() - start
    assert status == 413 and "pixel evaluations" in body["error"] and "smaller brush" in body["error"]
    assert seconds < 2.0, seconds  # refused from the estimate (it used to take about two minutes)
    assert (maps(server, sid)[0] == 3).all()  # nothing was painted
    status, state = post(f"{server.url}/api/sessions/{sid}/edit",  # an ordinary long stroke still works
                         {"op": "stroke", "points": [[i, 100 + (i % 7)] for i in range(0, 256, 2)], "radius": 32,
                          "class": 1})
    assert status == 200 and state["version"] == 1
