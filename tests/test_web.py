"""The shared HTTP layer: routing, methods, traversal, body limits, a page in the real browser."""

import json
import urllib.error
import urllib.request

import pytest

from pix2pix.web import App, json_response, serve_in_thread


def _status(url: str, data: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"} if data else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                                             headers=headers)).status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def server(tmp_path):
    (tmp_path / "index.html").write_text("<h1 id=t>hi</h1>")
    app = App("t", max_body=100)

    @app.route("POST", "/api/x/{id}")
    def x(req):
        return json_response({"id": req.params["id"], "body": req.json()})

    app.static("/", tmp_path)
    s = serve_in_thread(app)
    yield s
    s.shutdown()


def test_routes_parameters_and_errors(server):
    r = urllib.request.urlopen(urllib.request.Request(server.url + "/api/x/a%20b", data=b'{"k":1}', method="POST",
                                                      headers={"Content-Type": "application/json"}))
    assert json.loads(r.read()) == {"id": "a b", "body": {"k": 1}}
    assert _status(server.url + "/api/x/a") == 405
    assert _status(server.url + "/nope") == 404
    assert _status(server.url + "/../etc/passwd") == 400
    assert _status(server.url + "/%2e%2e/etc/passwd") == 400
    assert _status(server.url + "/api/x/a", b"x" * 200) == 413
    assert _status(server.url + "/api/x/a", b"[1, 2]") == 400


def test_static_page_in_the_browser(server, page):
    page.goto(server.url + "/")
    assert page.text_content("#t") == "hi"
