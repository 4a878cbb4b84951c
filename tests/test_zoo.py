"""Published checkpoints by name, against a loopback HTTP server serving checkpoints the tests make.

The zoo's entries are the reference's full-size architectures; the download tests swap in the
same entries with ngf 2 (monkeypatched into `zoo.PUBLISHED`), so the files are a few hundred KB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli.main import main
from pix2pix.errors import CheckpointError, Pix2PixError
from pix2pix.io import download as dl
from pix2pix.io import zoo
from pix2pix.io.model_card import ModelCard
from pix2pix.io.model_dir import resolve_model_dir
from pix2pix.io.pretrained import from_pretrained
from pix2pix.models import create_generator, run_padded

TINY_UNET = {"ngf": 2, "norm": "batch", "dropout": True}
TINY_LOCAL = {"ngf": 2, "n_downsample_global": 2, "n_blocks_global": 1, "n_local_enhancers": 1,
              "n_blocks_local": 1, "norm": "instance"}


class Server:
    """Files by URL path, with per-path behaviour: normal (Range honoured), cut_once (the first response stops
    halfway), no_range (Range ignored, 200 every time), no_length (no Content-Length), truncate (Content-Length
    of the whole file, only its first half is ever sent), or an HTTP status. Requests (path, Range) are recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str | int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.served: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                path, rng = self.path, self.headers.get("Range")
                server.requests.append((path, rng))
                mode = server.mode.get(path, "normal")
                if isinstance(mode, int):
                    self.send_error(mode)
                    return
                if path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[path]
                start = int(rng.split("=")[1].split("-")[0]) if rng and mode != "no_range" else 0
                if start >= len(body) and rng and mode != "no_range":
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if mode != "no_length":
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                end = len(body)
                first = server.served.get(path, 0) == 0
                if mode == "truncate" or (mode == "cut_once" and first):
                    end = max(start, len(body) // 2)
                server.served[path] = server.served.get(path, 0) + 1
                self.wfile.write(body[start:end])
                self.wfile.flush()
                if end < len(body):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """PIX2PIX_HOME in tmp, PIX2PIX_ZOO_URL at the loopback server, the published entries at ngf 2."""
    home = tmp_path / "home"
    monkeypatch.setenv("PIX2PIX_HOME", str(home))
    monkeypatch.setenv("PIX2PIX_ZOO_URL", server.url)
    for name, entry in list(zoo.PUBLISHED.items()):
        tiny = TINY_LOCAL if entry.arch == "local" else TINY_UNET
        monkeypatch.setitem(zoo.PUBLISHED, name, dataclasses.replace(entry, arch_kwargs=tiny))
    return home


def reference_checkpoint(seed: int = 0, arch: str = "unet_256", in_channels: int = 3, **kwargs) -> tuple[bytes, dict]:
    """A reference-style latest_net_G.pth: a plain state_dict, batch-norm counters absent as in old files."""
    torch.manual_seed(seed)
    net = create_generator(arch, in_channels, 3, init_gain=0.5, **(kwargs or TINY_UNET))  # outputs far from 0
    for m in net.modules():  # non-trivial running statistics, so a mix-up would show in the outputs
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue(), state


def serve(server: Server, name: str, data: bytes, mode: str | int = "normal") -> str:
    path = f"/models/{name}.pth"
    server.files[path] = data
    server.mode[path] = mode
    return path


def leftovers(home: Path) -> list[str]:
    """Everything in the models folder, and stray temporary files anywhere under home."""
    found = [p.name for p in (home / "models").iterdir()] if (home / "models").is_dir() else []
    return found + [p.name for p in home.rglob("*.tmp")]


# -- the table --------------------------------------------------------------------------------------

def test_published_names_are_the_reference_scripts_and_pix2pixhd():
    assert zoo.names() == ["facades_label2photo", "sat2map", "map2sat", "edges2shoes", "day2night",
                           "label2city_1024p"]
    directions = {n: zoo.get(n).direction for n in zoo.names()}
    assert directions == {"facades_label2photo": "BtoA", "sat2map": "AtoB", "map2sat": "BtoA",
                          "edges2shoes": "AtoB", "day2night": "BtoA", "label2city_1024p": "AtoB"}


def test_published_architectures_have_the_reference_parameter_counts():
    """REFERENCE.md: unet_256 with batch norm 54,413,955; pix2pixHD local ngf 32 on 36 channels 182,857,059."""
    for name in zoo.names():
        entry = zoo.get(name)
        with torch.device("meta"):
            net = create_generator(entry.arch, entry.in_channels, entry.out_channels, init=None,
                                   **entry.arch_kwargs)
        count = sum(p.numel() for p in net.parameters())
        assert count == (182_857_059 if name == "label2city_1024p" else 54_413_955), name


def test_cards_record_direction_preprocessing_and_labels():
    card = zoo.get("facades_label2photo").card("http://x/f.pth", "ab" * 32)
    assert (card.data.direction, card.data.preprocess, card.data.load_size, card.data.crop_size) == \
        ("BtoA", "resize_and_crop", 256, 256)
    hd = zoo.get("label2city_1024p").card("file", "cd" * 32)
    assert hd.family == "pix2pixhd" and hd.data.preprocess == "none"
    assert (hd.labels.label_nc, hd.labels.use_instance, hd.labels.label_set["name"]) == (35, True, "cityscapes")
    assert hd.labels.channels == zoo.get("label2city_1024p").in_channels == 36


def test_unknown_name_lists_the_models_and_the_closest(env, server, capsys):
    with pytest.raises(CheckpointError) as err:
        zoo.model_dir("facade_label2photo")
    msg = str(err.value)
    assert "\n" not in msg and "Did you mean 'facades_label2photo'?" in msg and "day2night" in msg
    assert main(["download", "edge2shoes"]) == 2
    assert "Did you mean 'edges2shoes'?" in capsys.readouterr().err
    assert server.requests == []


def test_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("PIX2PIX_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.home() == tmp_path / "xdg" / "pix2pix"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert zoo.home() == tmp_path / "me" / ".cache" / "pix2pix"
    monkeypatch.setenv("PIX2PIX_HOME", str(tmp_path / "elsewhere"))
    assert zoo.cached_dir("sat2map") == tmp_path / "elsewhere" / "models" / "sat2map"


# -- download, convert, load, translate ---------------------------------------------------------------

def test_download_converts_and_translates_like_the_reference_network(env, server):
    data, state = reference_checkpoint(seed=1)
    serve(server, "facades_label2photo", data)
    from pix2pix.inference import Translator

    translator = Translator.from_pretrained("facades_label2photo", device="cpu")
    directory = zoo.cached_dir("facades_label2photo")
    assert directory.parent.parent == env  # under PIX2PIX_HOME
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "generator.safetensors"]
    card = ModelCard.read(directory)
    assert card.provenance.source == f"{server.url}/facades_label2photo.pth"
    assert card.provenance.sha256 == hashlib.sha256(data).hexdigest()
    assert card.data.direction == "BtoA" and card.generator.name == "unet_256"
    assert card.generator.kwargs == TINY_UNET
    assert json.loads((directory / "config.json").read_text())["format_version"] == 2

    # the same weights in a network built by hand give the same output
    ref = create_generator("unet_256", 3, 3, init=None, **TINY_UNET)
    ref.load_state_dict(state, strict=False)  # num_batches_tracked absent, as in the reference file
    ref.eval()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    out = np.asarray(translator(img)).astype(np.float32)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 127.5 - 1
    with torch.no_grad():
        expected = ((run_padded(ref, x)[0].permute(1, 2, 0).numpy() + 1) * 127.5)
    assert np.abs(out - expected).max() <= 1.0  # uint8 rounding
    assert out.std() > 10.0  # not a constant image
    assert not (env / "downloads" / "facades_label2photo.pth").exists()  # the raw file is not kept


def test_translate_cli_downloads_on_first_use(env, server, tmp_path, capsys):
    """The issue's first command: `pix2pix translate --model facades_label2photo photo_labels.png -o out/`."""
    serve(server, "facades_label2photo", reference_checkpoint(seed=10)[0])
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "photo_labels.png")
    assert main(["translate", "--model", "facades_label2photo", str(tmp_path / "photo_labels.png"),
                 "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    from pix2pix.inference import Translator

    expected = Translator.from_pretrained(zoo.cached_dir("facades_label2photo"), device="cpu")(
        Image.open(tmp_path / "photo_labels.png"))
    written = Image.open(tmp_path / "out" / "photo_labels.png")
    assert written.size == (96, 64) and np.array_equal(np.asarray(written), np.asarray(expected))
    assert len(server.requests) == 1


def test_cache_hit_makes_no_request(env, server):
    serve(server, "sat2map", reference_checkpoint()[0])
    first = zoo.model_dir("sat2map")
    assert len(server.requests) == 1
    assert resolve_model_dir("sat2map") == first
    assert zoo.model_dir("sat2map") == first
    assert len(server.requests) == 1
    assert from_pretrained(first).card.data.direction == "AtoB"


def test_resume_after_the_connection_is_cut(env, server):
    data, _ = reference_checkpoint(seed=2)
    path = serve(server, "map2sat", data, "cut_once")
    directory = zoo.download("map2sat")
    assert [r for _, r in server.requests] == [None, f"bytes={len(data) // 2}-"]
    assert ModelCard.read(directory).provenance.sha256 == hashlib.sha256(data).hexdigest()
    assert server.served[path] == 2


def test_a_partial_file_from_an_earlier_run_is_resumed(env, server):
    data, _ = reference_checkpoint(seed=3)
    serve(server, "day2night", data)
    part = env / "downloads" / "day2night.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    assert "partly downloaded" in {r["name"]: r for r in zoo.listing()}["day2night"]["state"]
    directory = zoo.download("day2night")
    assert server.requests == [("/models/day2night.pth", "bytes=1000-")]
    assert ModelCard.read(directory).provenance.sha256 == hashlib.sha256(data).hexdigest()
    assert not part.exists()


def test_a_server_that_ignores_range_is_read_from_the_start(env, server):
    data, _ = reference_checkpoint(seed=4)
    serve(server, "edges2shoes", data, "no_range")
    part = env / "downloads" / "edges2shoes.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that must not stay in front of the file")
    directory = zoo.download("edges2shoes")
    assert server.requests[0][1] is not None  # we asked for a range; the server sent the whole file (200)
    assert ModelCard.read(directory).provenance.sha256 == hashlib.sha256(data).hexdigest()


def test_a_complete_part_file_is_finished_without_a_body(env, server):
    data, _ = reference_checkpoint(seed=5)
    serve(server, "sat2map", data)
    part = env / "downloads" / "sat2map.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)  # interrupted after the last byte, before the rename
    directory = zoo.download("sat2map")
    assert server.requests == [("/models/sat2map.pth", f"bytes={len(data)}-")]  # answered 416 */len
    assert ModelCard.read(directory).provenance.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("status", [404, 500])
def test_server_errors_name_the_status_and_leave_nothing(env, server, status):
    serve(server, "facades_label2photo", b"x", status)
    with pytest.raises(Pix2PixError) as err:
        zoo.model_dir("facades_label2photo")
    msg = str(err.value)
    assert f"HTTP {status}" in msg and "--file facades_label2photo.pth" in msg and "\n" not in msg
    assert leftovers(env) == []


def test_a_truncated_download_is_an_error_and_resumes_later(env, server, capsys):
    data, _ = reference_checkpoint(seed=6)
    path = serve(server, "map2sat", data, "truncate")
    assert main(["download", "map2sat"]) == 2
    msg = capsys.readouterr().err
    assert f"{len(data) // 2:,} of {len(data):,} bytes" in msg and "running the same command again resumes" in msg
    assert msg.count("\n") == 1
    part = env / "downloads" / "map2sat.pth.part"
    assert part.stat().st_size == len(data) // 2 and leftovers(env) == []
    server.mode[path] = "normal"  # the server recovers: the next run asks for the rest only
    before = len(server.requests)
    assert main(["download", "map2sat"]) == 0
    assert server.requests[before:] == [(path, f"bytes={len(data) // 2}-")]
    assert ModelCard.read(zoo.cached_dir("map2sat")).provenance.sha256 == hashlib.sha256(data).hexdigest()


def test_a_file_that_is_not_a_checkpoint_is_refused_and_discarded(env, server):
    serve(server, "sat2map", b"<html><body>Moved</body></html>")
    with pytest.raises(CheckpointError) as err:
        zoo.model_dir("sat2map")
    msg = str(err.value)
    assert "is not a PyTorch checkpoint" in msg and "\n" not in msg
    assert leftovers(env) == [] and list((env / "downloads").glob("sat2map.pth*")) == []


def test_wrong_keys_list_the_mismatches_and_leave_no_model(env, server):
    data, _ = reference_checkpoint(arch="resnet_6blocks", ngf=2)  # a ResNet where a U-Net is published
    serve(server, "facades_label2photo", data)
    with pytest.raises(CheckpointError) as err:
        zoo.download("facades_label2photo")
    msg = str(err.value)
    assert "is not the published facades_label2photo generator" in msg and "unet_256" in msg
    assert "missing keys" in msg and "unexpected keys" in msg
    assert leftovers(env) == [] and not zoo.is_cached("facades_label2photo")


def test_a_failed_replacement_keeps_the_cached_model(env, server):
    good, _ = reference_checkpoint(seed=7)
    path = serve(server, "sat2map", good)
    directory = zoo.download("sat2map")
    before = (directory / "generator.safetensors").read_bytes()
    server.files[path] = b"not a checkpoint"
    with pytest.raises(CheckpointError):
        zoo.download("sat2map", force=True)
    assert (directory / "generator.safetensors").read_bytes() == before
    assert sorted(leftovers(env)) == ["sat2map"]


def test_a_crash_while_writing_the_model_leaves_no_directory(env, server, monkeypatch):
    serve(server, "edges2shoes", reference_checkpoint()[0])

    def half_written(directory, card, networks):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "generator.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zoo, "save_model", half_written)  # what the zoo writes the model directory with
    with pytest.raises(OSError, match="No space left"):
        zoo.model_dir("edges2shoes")
    assert leftovers(env) == [] and not zoo.is_cached("edges2shoes")
    assert not (env / "models").exists() or list((env / "models").iterdir()) == []


def test_a_pinned_sha256_must_match(env, server, monkeypatch):
    data, _ = reference_checkpoint()
    serve(server, "day2night", data)
    monkeypatch.setitem(zoo.PUBLISHED, "day2night", dataclasses.replace(zoo.PUBLISHED["day2night"], sha256="0" * 64))
    with pytest.raises(CheckpointError, match="not the published day2night's"):
        zoo.download("day2night")
    monkeypatch.setitem(zoo.PUBLISHED, "day2night", dataclasses.replace(
        zoo.PUBLISHED["day2night"], sha256=hashlib.sha256(data).hexdigest()))
    assert zoo.is_cached("day2night") is False
    zoo.download("day2night")
    assert zoo.is_cached("day2night")


def test_no_network_says_how_to_do_it_by_hand(env, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIX2PIX_ZOO_URL", f"http://127.0.0.1:{port}/pix2pix")
    with pytest.raises(Pix2PixError) as err:
        zoo.model_dir("edges2shoes")
    msg = str(err.value)
    assert "cannot connect" in msg and "\n" not in msg
    assert f"download http://127.0.0.1:{port}/pix2pix/edges2shoes.pth" in msg
    assert "pix2pix download edges2shoes --file edges2shoes.pth" in msg and "import-reference" in msg
    assert leftovers(env) == []


def test_oversized_announcements_are_refused(env, server, tmp_path):
    serve(server, "sat2map", b"0123456789" * 100)
    with pytest.raises(Pix2PixError, match="announces 1,000 bytes, more than the 100 a model file may have"):
        dl.fetch(f"{server.url}/sat2map.pth", tmp_path / "f.pth", max_bytes=100)
    serve(server, "map2sat", b"0123456789" * 100, "no_length")  # unannounced: counted as it arrives
    with pytest.raises(Pix2PixError, match="sent more than the 100 bytes a model file may have"):
        dl.fetch(f"{server.url}/map2sat.pth", tmp_path / "g.pth", max_bytes=100)
    assert list(tmp_path.iterdir()) == []  # no file, no .part


def test_without_content_length_the_end_of_the_stream_ends_the_file(env, server):
    data, _ = reference_checkpoint(seed=9)
    serve(server, "sat2map", data, "no_length")
    directory = zoo.download("sat2map")
    assert ModelCard.read(directory).provenance.sha256 == hashlib.sha256(data).hexdigest()


# -- --file, the CLI, pix2pixHD ------------------------------------------------------------------------

def test_download_file_converts_a_local_checkpoint_without_network(env, server, tmp_path, capsys):
    data, _ = reference_checkpoint(seed=8)
    f = tmp_path / "latest_net_G.pth"
    f.write_bytes(data)
    assert main(["download", "facades_label2photo", "--file", str(f)]) == 0
    assert server.requests == [] and f.read_bytes() == data  # the user's file is left as it was
    card = ModelCard.read(zoo.cached_dir("facades_label2photo"))
    assert card.provenance.source == str(f.resolve())
    assert card.provenance.sha256 == hashlib.sha256(data).hexdigest()
    assert "--model facades_label2photo" in capsys.readouterr().out
    assert main(["download", "--list"]) == 0
    assert "cached in" in capsys.readouterr().out


def test_label2city_needs_a_file_and_converts_it_with_labels(env, server, tmp_path):
    with pytest.raises(Pix2PixError) as err:
        zoo.model_dir("label2city_1024p")
    assert "Google Drive" in str(err.value) and "--file latest_net_G.pth" in str(err.value)
    assert server.requests == []
    data, state = reference_checkpoint(arch="local", in_channels=36, **TINY_LOCAL)
    f = tmp_path / "latest_net_G.pth"
    f.write_bytes(data)
    directory = zoo.download("label2city_1024p", file=f)
    card = ModelCard.read(directory)
    assert card.family == "pix2pixhd" and card.generator.name == "local" and card.generator.in_channels == 36
    assert card.label_set().name == "cityscapes" and card.labels.use_instance and not card.use_features
    net = from_pretrained(directory)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    from pix2pix.inference import load_translator

    translator = load_translator("label2city_1024p", device="cpu")
    assert type(translator).__name__ == "LabelTranslator"


def test_download_requires_a_name_or_list(env, capsys):
    assert main(["download"]) == 2
    assert "--list" in capsys.readouterr().err
    assert main(["download", "sat2map", "--list"]) == 2
