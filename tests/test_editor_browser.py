"""The editor page in real Chromium: paint a stroke, select an object, pick a style; the photo changes locally."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from test_editor_server import largest_object, make_hd_model, make_synthetic_data

from pix2pix.editor import EditorModel, create_app
from pix2pix.web import serve_in_thread

SIZE = 128
MARGIN = 24  # beyond the generator's receptive field (about 20 px for this tiny global generator)


@pytest.fixture
def editor_url(tmp_path):
    torch.set_num_threads(2)
    model_dir = make_hd_model(tmp_path / "model", norm="batch")  # local: a change stays within the receptive field
    data = make_synthetic_data(tmp_path / "data", size=SIZE)
    srv = serve_in_thread(create_app(EditorModel.load(model_dir, device="cpu"), data))
    yield srv.url
    srv.shutdown()


def _download(url: str, sid: str, what: str) -> np.ndarray:
    with urllib.request.urlopen(f"{url}/api/sessions/{sid}/download/{what}.png") as r:
        return np.asarray(Image.open(io.BytesIO(r.read()))).astype(np.float64)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _assert_local(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> None:
    """The photo changed inside the edited region, and far less beyond MARGIN pixels of it."""
    change = np.abs(after - before).mean(-1)
    inside = change[_dilate(region, 2)].mean()
    outside = change[~_dilate(region, MARGIN)].mean()
    assert inside > 5.0, inside
    assert inside > 5 * outside, (inside, outside)


def _wait_version(page, version: int) -> None:
    page.wait_for_function(f"Number(document.body.dataset.version) >= {version} && document.body.dataset.busy === '0'")


def _to_page(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#cursor").bounding_box()
    return box["x"] + x * box["width"] / SIZE, box["y"] + y * box["height"] / SIZE


def test_paint_select_and_style_in_the_browser(editor_url, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(editor_url + "/")
    _wait_version(page, 1)  # the first test image opens by itself
    sid = page.evaluate("document.body.dataset.session")
    assert page.locator("#legend button").count() == 10
    assert "generated in" in page.text_content("#timing")
    label0, inst0 = _download(editor_url, sid, "label"), _download(editor_url, sid, "instance")
    result0 = _download(editor_url, sid, "result")

    # a building stroke across the sky, with the building class picked in the legend
    page.click("#legend button[data-id='2']")
    page.fill("#radius", "4")
    page.dispatch_event("#radius", "input")
    start, end = _to_page(page, 20, 12), _to_page(page, 70, 16)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()
    _wait_version(page, 2)
    label1 = _download(editor_url, sid, "label")
    painted = label1 != label0
    assert painted.sum() > 100 and (label1[painted] == 2).all()
    ys, xs = np.nonzero(painted)
    assert ys.min() >= 12 - 6 and ys.max() <= 16 + 6 and xs.min() >= 20 - 6 and xs.max() <= 70 + 6
    result1 = _download(editor_url, sid, "result")
    _assert_local(result0, result1, painted)
    assert not page.is_disabled("#undo")

    # select the largest car and give it another style
    car, x, y = largest_object(inst0.astype(np.int64), 7)
    page.keyboard.press("s")
    page.mouse.click(*_to_page(page, x, y))
    page.wait_for_selector(f"#swatches[data-instance='{car}'] button")
    assert f"object {car}" in page.text_content("#selection-desc")
    assert page.locator("#swatches button").count() == 3
    assert page.get_attribute("#swatches button.current", "data-index") == "0"
    version = int(page.evaluate("document.body.dataset.version"))
    page.click("#swatches button[data-index='2']")
    _wait_version(page, version + 1)
    page.wait_for_selector("#swatches button.current[data-index='2']")
    result2 = _download(editor_url, sid, "result")
    _assert_local(result1, result2, inst0 == car)
    # what the page shows is what the server made
    shown = page.evaluate("document.getElementById('result').src")
    assert shown.startswith("data:image/png;base64,")
    import base64

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1])))), result2)

    # undo the style from the keyboard: the photo goes back exactly
    page.keyboard.press("Control+z")
    _wait_version(page, version + 2)
    assert np.array_equal(_download(editor_url, sid, "result"), result1)
    assert errors == []


def test_the_page_says_when_old_undo_steps_are_dropped(tmp_path, page):
    torch.set_num_threads(2)
    model = EditorModel.load(make_hd_model(tmp_path / "model"), device="cpu")
    step = SIZE * SIZE * 8
    data = make_synthetic_data(tmp_path / "data", size=SIZE)
    srv = serve_in_thread(create_app(model, data, history_bytes=2 * step + 4096))  # two full-canvas steps
    try:
        page.goto(srv.url + "/")
        _wait_version(page, 1)
        assert page.is_hidden("#history-note")
        page.fill("#blank-width", str(SIZE))
        page.fill("#blank-height", str(SIZE))
        page.click("#new-blank")  # one class everywhere: each fill below changes every pixel
        _wait_version(page, 2)
        page.keyboard.press("f")
        for k in range(3):  # three full-canvas fills: the history holds two
            page.click(f"#legend button[data-id='{2 + k}']")
            page.mouse.click(*_to_page(page, 4, 2))
            _wait_version(page, 3 + k)
        page.wait_for_selector("#history-note", state="visible")
        assert "oldest step was dropped; 2 can be undone" in page.text_content("#history-note")
        assert page.evaluate("document.body.dataset.historyDropped") == "1"
    finally:
        srv.shutdown()
