"""Hugging Face Hub models, offline: loading from a cache laid out as huggingface_hub lays it out, and pushing
to a loopback server that answers the Hub endpoints `create_commit` uses.

The stand-in Hub implements, for model repositories: POST /api/repos/create, POST
/api/models/{repo}/branch/{branch}, POST /api/validate-yaml (the README's front matter, checked with
PyYAML), POST /api/models/{repo}/preupload/{rev} (every file "regular", so contents travel base64 in
the commit; the real Hub sends large files through LFS/Xet, which is huggingface_hub's business, not
ours) and POST /api/models/{repo}/commit/{rev} (the NDJSON commit). It records each request.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli.main import main
from pix2pix.errors import CheckpointError, Pix2PixError
from pix2pix.io import hub
from pix2pix.io.model_card import DataGeometry, ModelCard, Provenance
from pix2pix.io.model_dir import resolve_model_dir
from pix2pix.io.pretrained import save_model
from pix2pix.models import create_generator

hf_constants = pytest.importorskip("huggingface_hub.constants")
yaml = pytest.importorskip("yaml")

COMMIT_MAIN = "a" * 40
COMMIT_V1 = "b" * 40
TOKEN = "hf_loopback_test_token"


def make_model(directory: Path, seed: int = 0, **provenance) -> Path:
    torch.manual_seed(seed)
    net = create_generator("unet_256", 3, 3, ngf=2, init_gain=0.5)
    card = ModelCard(data=DataGeometry(direction="BtoA", preprocess="resize_and_crop", load_size=286, crop_size=256),
                     provenance=Provenance(**provenance))
    return save_model(directory, card, {"generator": net})


def lay_out_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str, ref: str | None = "main") -> Path:
    """models--org--name/{blobs/<hash>, snapshots/<commit>/<file> -> ../../blobs/<hash>, refs/<ref>}."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return root / "snapshots" / commit


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    go_offline(monkeypatch, cache)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no saved token of the machine's user is read
    return cache


def go_offline(monkeypatch, cache: Path) -> None:
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE; huggingface_hub reads both once, at import, so its constant follows."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def translate(model, seed: int = 0) -> np.ndarray:
    from pix2pix.inference import load_translator

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return np.asarray(load_translator(model, device="cpu")(img))


# -- hf:// specs -------------------------------------------------------------------------------------

def test_parse_specs():
    assert hub.parse("hf://org/name") == ("org/name", None)
    assert hub.parse("hf://org/name@v1.2") == ("org/name", "v1.2")
    assert hub.parse("hf://my-org/facades.pix2pix@refs/pr/3") == ("my-org/facades.pix2pix", "refs/pr/3")
    for bad in ("hf://name", "hf://a/b/c", "hf://org/name@", "hf://../x", "hf://org/na me"):
        with pytest.raises(CheckpointError, match="expected hf://org/name"):
            hub.parse(bad)


# -- loading from the cache (HF_HUB_OFFLINE=1) ------------------------------------------------------------

def test_load_from_the_hf_cache_offline(offline, tmp_path):
    local = make_model(tmp_path / "m0", seed=0)
    other = make_model(tmp_path / "m1", seed=1)
    snap = lay_out_cache(offline, "org/facades", files_of(local), COMMIT_MAIN)
    lay_out_cache(offline, "org/facades", files_of(other), COMMIT_V1, ref="v1")
    assert resolve_model_dir("hf://org/facades") == snap
    assert (snap / "generator.safetensors").is_symlink()
    expected, expected_other = translate(local), translate(other)
    assert not np.array_equal(expected, expected_other)
    assert np.array_equal(translate("hf://org/facades"), expected)
    assert np.array_equal(translate("hf://org/facades@v1"), expected_other)  # a branch, through refs/v1
    assert np.array_equal(translate(f"hf://org/facades@{COMMIT_V1}"), expected_other)  # a commit
    assert ModelCard.read(resolve_model_dir("hf://org/facades")).data.direction == "BtoA"


def test_offline_and_not_cached_is_one_line(offline):
    with pytest.raises(CheckpointError) as err:
        hub.model_dir("hf://org/missing")
    assert "HF_HUB_OFFLINE" in str(err.value) and str(offline) in str(err.value) and "\n" not in str(err.value)


def test_a_repository_without_a_card_is_not_a_model(offline):
    lay_out_cache(offline, "org/other", {"README.md": b"# not a model"}, COMMIT_MAIN)
    with pytest.raises(CheckpointError, match="no config.json, so it is not a pix2pix model"):
        hub.model_dir("hf://org/other")


def test_without_the_extra_the_error_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    for call in (lambda: resolve_model_dir("hf://org/name"),
                 lambda: hub.push(make_model(tmp_path / "m"), "org/name")):
        with pytest.raises(Pix2PixError, match=r'pip install "pix2pix\[hub\]"'):
            call()


# -- pushing ----------------------------------------------------------------------------------------------

class FakeHub:
    """The Hub endpoints create_repo / create_branch / create_commit use (see the module docstring)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, JSON body or {"ndjson": [...]})
        self.auth: set[str] = set()
        self.repos: dict[str, dict] = {}  # repo -> {"private": bool, "branches": {name: {path: bytes}}}
        hub_ = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                hub_.requests.append(("GET", self.path, {}))
                self.reply(404, {"error": "not implemented by the stand-in Hub"})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                ndjson = self.headers.get("Content-Type", "").startswith("application/x-ndjson")
                lines = [json.loads(line) for line in raw.splitlines()] if ndjson else []
                body = {"ndjson": lines} if ndjson else json.loads(raw or b"{}")
                hub_.requests.append(("POST", path, body))
                hub_.auth.add(self.headers.get("Authorization", ""))
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.reply(401, {"error": "Invalid credentials in Authorization header"})
                    return
                if path == "/api/repos/create":
                    repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
                    if repo in hub_.repos:
                        self.reply(409, {"error": "You already created this model repo", "url": f"/{repo}"})
                        return
                    hub_.repos[repo] = {"private": body.get("visibility") == "private" or body.get("private"),
                                        "branches": {"main": {}}}
                    self.reply(200, {"url": f"{hub_.url}/{repo}", "name": repo, "id": repo})
                elif path == "/api/validate-yaml":
                    text = body["content"]
                    assert text.startswith("---\n")
                    yaml.safe_load(text.split("---\n")[1])  # a YAML error fails the push, as the Hub's would
                    self.reply(200, {"errors": [], "warnings": []})
                elif "/preupload/" in path:
                    self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                               for f in body["files"]]})
                elif "/branch/" in path:
                    repo, branch = path[len("/api/models/"):].split("/branch/")
                    hub_.repos[repo]["branches"].setdefault(branch, dict(hub_.repos[repo]["branches"]["main"]))
                    self.reply(200, {})
                elif "/commit/" in path:
                    repo, revision = path[len("/api/models/"):].split("/commit/")
                    files = hub_.repos[repo]["branches"].setdefault(revision, {})
                    for item in body["ndjson"][1:]:
                        assert item["key"] == "file" and item["value"]["encoding"] == "base64"
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    self.reply(200, {"commitUrl": f"{hub_.url}/{repo}/commit/{COMMIT_MAIN}",
                                     "commitOid": COMMIT_MAIN})
                else:
                    self.reply(404, {"error": f"no endpoint {path}"})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    yield server
    server.close()


RECIPE = {"model": {"generator": "unet_256", "ngf": 2, "norm": "batch"}, "loss": {"lambda_l1": 100.0},
          "optim": {"lr": 0.0002, "n_epochs": 100}, "train": {"batch_size": 1}, "data": {"direction": "BtoA"}}


def test_push_uploads_the_model_files_and_a_readme_from_the_card(fake_hub, tmp_path, monkeypatch, capsys):
    model = make_model(tmp_path / "model", step=1200, preset="facades", recipe=RECIPE,
                       metrics={"test": {"PSNR": 21.123456, "FID": 80.5}})
    (model / "clusters.json").write_text("{}")  # uploaded when present
    (model / "notes.txt").write_text("private notes")  # not a model file: stays local
    assert main(["push", str(model), "org/facades-test", "--private", "--token", TOKEN]) == 0
    assert "hf://org/facades-test" in capsys.readouterr().out
    assert fake_hub.auth == {f"Bearer {TOKEN}"}
    assert fake_hub.repos["org/facades-test"]["private"]
    pushed = fake_hub.repos["org/facades-test"]["branches"]["main"]
    assert sorted(pushed) == ["README.md", "clusters.json", "config.json", "generator.safetensors"]
    for name in ("config.json", "generator.safetensors", "clusters.json"):
        assert pushed[name] == (model / name).read_bytes()
    commits = [b for m, p, b in fake_hub.requests if "/commit/" in p]
    assert len(commits) == 1 and commits[0]["ndjson"][0]["value"]["summary"].startswith("Upload pix2pix model")

    readme = pushed["README.md"].decode()
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["library_name"] == "pix2pix" and meta["pipeline_tag"] == "image-to-image"
    assert {"pix2pix", "image-to-image"} <= set(meta["tags"])
    assert "the input is the B side of the A|B training pairs" in readme
    assert "Preset `facades`, 1,200 training steps." in readme
    assert "| `loss.lambda_l1` | 100.0 |" in readme and "| `optim.lr` | 0.0002 |" in readme
    assert "| test | PSNR | 21.1235 |" in readme and "| test | FID | 80.5 |" in readme
    assert "pix2pix translate --model hf://org/facades-test input.png -o out/" in readme
    assert "| generator | `unet_256` | 3 -> 3 |" in readme

    # what was pushed loads back through the Hub's cache layout, and translates as the local model does
    go_offline(monkeypatch, tmp_path / "hf_cache")
    lay_out_cache(tmp_path / "hf_cache", "org/facades-test", pushed, COMMIT_MAIN)
    assert np.array_equal(translate("hf://org/facades-test"), translate(model))


def test_push_to_a_branch_creates_it(fake_hub, tmp_path):
    model = make_model(tmp_path / "model")
    url = hub.push(model, "org/branchy", revision="v2", token=TOKEN, message="second version")
    assert url.endswith(f"/commit/{COMMIT_MAIN}")
    paths = [p for m, p, b in fake_hub.requests if m == "POST"]
    assert "/api/models/org/branchy/branch/v2" in paths and "/api/models/org/branchy/commit/v2" in paths
    assert sorted(fake_hub.repos["org/branchy"]["branches"]["v2"]) == ["README.md", "config.json",
                                                                       "generator.safetensors"]
    assert "--model hf://org/branchy@v2" in fake_hub.repos["org/branchy"]["branches"]["v2"]["README.md"].decode()
    # pushing again to an existing repository adds a commit (create_repo answers 409, which is fine)
    hub.push(model, "org/branchy", token=TOKEN)
    assert sum("/commit/" in p for p in paths) == 1 and sum("/commit/" in p for m, p, b in fake_hub.requests) == 2


def test_push_with_a_bad_token_is_one_line(fake_hub, tmp_path, capsys):
    model = make_model(tmp_path / "model")
    assert main(["push", str(model), "org/x", "--token", "hf_wrong"]) == 2
    err = capsys.readouterr().err
    assert "refused the token (HTTP 401)" in err and err.count("\n") == 1
    assert "org/x" not in fake_hub.repos


def test_push_refuses_an_incomplete_model_directory(fake_hub, tmp_path):
    model = make_model(tmp_path / "model")
    (model / "generator.safetensors").unlink()
    with pytest.raises(CheckpointError, match="generator.safetensors is missing"):
        hub.push(model, "org/x", token=TOKEN)
    assert fake_hub.requests == []


def test_readme_of_a_pix2pixhd_card_lists_the_labels(tmp_path):
    from pix2pix.data.label_sets import get_label_set
    from pix2pix.io.model_card import LabelSpec, NetworkSpec

    card = ModelCard(family="pix2pixhd", generator=NetworkSpec("local", 36, 3, {"ngf": 32}),
                     labels=LabelSpec(label_nc=35, label_set=get_label_set("cityscapes").to_classes_json()),
                     provenance=Provenance(source="http://example/latest_net_G.pth", sha256="ab" * 32))
    readme = hub.readme_for(card, "nvidia/label2city")
    assert "a label map of 35 classes (one-hot encoded) with its instance map" in readme
    assert "Label set `cityscapes`:" in readme and "26 car" in readme
    assert "Converted from a checkpoint of the reference implementation" in readme
    assert "sha256 of that file: `" + "ab" * 32 in readme
    assert "pix2pixhd" in yaml.safe_load(readme.split("---\n")[1])["tags"]
