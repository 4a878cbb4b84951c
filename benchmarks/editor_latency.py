"""Editor latency: the time from an edit to the new image, through the HTTP API on loopback.

    python benchmarks/editor_latency.py [--edits 40] [--synthetic-model RUN | --train-steps 400]
                                        [--synthetic-num 40] [--synthetic-size 256] [--crop-size 128]
                                        [--screenshot docs/editor.png] [--device cpu] [--hd-size 512x256]

Two models, each served by `pix2pix.editor.create_app` on 127.0.0.1 and edited by a client that
sends one operation at a time and waits for the answer (the new label view and photo as PNGs):

(a) the synthetic world at 256x256: the ``pix2pixhd_synthetic`` preset (global generator, ngf 16,
    feature encoder and k-means clusters). ``--synthetic-model RUN`` uses a trained run; otherwise
    the script writes a synthetic world (``--synthetic-num`` scenes of ``--synthetic-size`` pixels),
    trains the preset for ``--train-steps`` steps on 128x128 crops of it (``--crop-size``, batch 1)
    and clusters its instance features.
(b) pix2pixHD's 512p generator at ``--hd-size`` (default 512x256): global, ngf 64, 4 downsamplings,
    9 residual blocks, Cityscapes' 35 classes + the instance boundary map, untrained (the time does
    not depend on the weights). The label map is a synthetic scene with Cityscapes ids.

Edits cycle through: a brush stroke of a thing class (a new object), a style change of that object
(model b has no styles: a relabel to another class), a fill and an undo. The first few edits warm
up and are not counted. The table gives the round trip (edit sent -> answer with the new photo
parsed) and the model's share (the server's generation time). ``--screenshot PATH`` also saves a
picture of the editor on model (a) after a stroke and a style pick, taken with Playwright and the
system Chromium.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from pix2pix.editor import EditorModel, create_app
from pix2pix.editor.server import timed_post
from pix2pix.io.model_card import ModelCard
from pix2pix.io.model_dir import recorded_data_root, resolve_model_dir
from pix2pix.web import serve_in_thread

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # as tests/conftest.py: a closed network
# synthetic-world class -> Cityscapes labelId: void, sky, building, vegetation, road, sidewalk, pole, car, person, truck
SYNTHETIC_TO_CITYSCAPES = np.array([0, 23, 11, 21, 7, 8, 17, 26, 24, 27])


# ----------------------------------------------------------------------------- models


def synthetic_model(work: Path, steps: int, device: str, num: int = 40, size: int = 256, crop: int = 128) -> Path:
    """Train the pix2pixhd_synthetic preset briefly on a generated world (num scenes, size px); cluster its features."""
    from pix2pix.cli.main import main
    from pix2pix.data.synthetic import write_synthetic_dataset

    data = work / "synthetic"
    write_synthetic_dataset(data, num=num, size=size)
    args = ["train", "--preset", "pix2pixhd_synthetic", "--data", str(data), "--runs-dir", str(work / "runs"),
            "--set", "preprocess=crop", "--set", f"crop_size={crop}", "--set", "batch_size=1",
            "--set", f"max_steps={steps}", "--set", f"device={device}", "--set", "tensorboard=false",
            "--no-progress"]
    if main(args) != 0:
        raise SystemExit("training the synthetic model failed")
    run = max((work / "runs").iterdir())
    if main(["features", str(run), "--device", device, "--min-pixels", "64"]) != 0:
        raise SystemExit("clustering the synthetic model's features failed")
    return run


def cityscapes_model(work: Path) -> Path:
    """pix2pixHD's global generator (ngf 64, 4 downsamplings, 9 blocks) on Cityscapes ids + boundaries, untrained."""
    from pix2pix.data.label_sets import get_label_set
    from pix2pix.io.model_card import LabelSpec, ModelCard
    from pix2pix.io.pretrained import save_pretrained
    from pix2pix.registry import create_generator

    torch.manual_seed(0)
    net = create_generator("global", 36, 3, ngf=64, n_downsample=4, n_blocks=9)
    card = ModelCard(family="pix2pixhd", labels=LabelSpec(label_nc=35,
                                                          label_set=get_label_set("cityscapes").to_classes_json()))
    return save_pretrained(net, work / "global_512p", card=card)


def cityscapes_scene(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic street scene with Cityscapes label ids and instance ids (class*1000+k)."""
    from pix2pix.data.synthetic import render_scene

    scene = render_scene(np.random.default_rng([0, 7]), width, height)
    label = SYNTHETIC_TO_CITYSCAPES[scene.label]
    inst = np.where(scene.instance >= 1000,
                    SYNTHETIC_TO_CITYSCAPES[scene.instance // 1000] * 1000 + scene.instance % 1000, label)
    return label.astype(np.uint8), inst.astype(np.uint16)


def _png_b64(arr: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ----------------------------------------------------------------------------- measuring


def measure(url: str, open_body: dict, edits: int, thing: int, other_thing: int, styles: bool,
            warmup: int = 4, seed: int = 0) -> dict:
    """Run `edits` counted edits (after `warmup`); returns round-trip and generation times per edit."""
    state, _ = timed_post(url + "/api/sessions", open_body)
    sid, w, h = state["session"], state["width"], state["height"]
    edit_url = f"{url}/api/sessions/{sid}/edit"
    rng = np.random.default_rng(seed)
    radius = max(3.0, w / 64)
    rows: list[tuple[str, float, float]] = []
    i = 0
    while len(rows) < edits + warmup:
        kind = ("stroke", "style", "fill", "undo")[i % 4]
        if kind == "stroke":
            x, y = rng.uniform(0.1, 0.8) * w, rng.uniform(0.55, 0.9) * h
            last = [x, y]
            op = {"op": "stroke", "points": [[x, y], [x + 0.15 * w, y + rng.uniform(-0.03, 0.03) * h]],
                  "radius": radius, "class": thing}
        elif kind == "style":
            timed_post(edit_url, {"op": "select", "x": last[0], "y": last[1]})  # not counted: no new image
            op = {"op": "style", "cluster": int(i // 4) % 2 + 1} if styles else {"op": "relabel", "class": other_thing}
        elif kind == "fill":
            op = {"op": "fill", "x": rng.uniform(0, w), "y": rng.uniform(0, h), "class": int(rng.integers(1, 7))}
        else:
            op = {"op": "undo"}
        answer, seconds = timed_post(edit_url, op)
        rows.append((op["op"], seconds, answer["gen_ms"] / 1000))
        i += 1
    rows = rows[warmup:]
    return {"size": (w, h), "round_trip": [r[1] for r in rows], "model": [r[2] for r in rows],
            "by_op": {k: statistics.median(r[1] for r in rows if r[0] == k) for k in dict.fromkeys(r[0] for r in rows)}}


def _ms(values: list[float], q: float) -> str:
    return f"{np.quantile(np.asarray(values), q) * 1000:.0f} ms"


def table(results: list[tuple[str, str, dict]]) -> str:
    lines = ["| model | map size | device | edits | edit -> image, median | p90 | model time, median | "
             "median by edit |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, device, r in results:
        by_op = ", ".join(f"{k} {v * 1000:.0f}" for k, v in r["by_op"].items())
        lines.append(f"| {name} | {r['size'][0]}x{r['size'][1]} | {device} | {len(r['round_trip'])} | "
                     f"{_ms(r['round_trip'], 0.5)} | {_ms(r['round_trip'], 0.9)} | {_ms(r['model'], 0.5)} | "
                     f"{by_op} ms |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- screenshot


def screenshot(url: str, out: Path, chromium: str = "/usr/bin/chromium") -> None:
    """The editor after a car stroke on the road and a style pick for the largest car."""
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    def ready(page, version: int) -> None:
        page.wait_for_function(f"Number(document.body.dataset.version) >= {version} && "
                               "document.body.dataset.busy === '0'", timeout=120_000)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + "/")
        ready(page, 1)
        sid = page.evaluate("document.body.dataset.session")
        with urllib.request.urlopen(f"{url}/api/sessions/{sid}/download/instance.png") as r:
            inst = np.asarray(Image.open(io.BytesIO(r.read()))).astype(np.int64)
        with urllib.request.urlopen(f"{url}/api/sessions/{sid}/download/label.png") as r:
            label = np.asarray(Image.open(io.BytesIO(r.read())))
        h, w = label.shape

        def at(x: float, y: float) -> tuple[float, float]:  # asked each time: clicking the legend may scroll
            box = page.locator("#cursor").bounding_box()
            return box["x"] + float(x) * box["width"] / w, box["y"] + float(y) * box["height"] / h

        # a new car on the widest stretch of road
        rows = [(int((label[y] == 4).sum()), y) for y in range(h // 2, h)]
        _, y = max(rows)
        xs = np.nonzero(label[y] == 4)[0]
        page.click("#legend button[data-id='7']")
        page.fill("#radius", "9")
        page.dispatch_event("#radius", "input")
        page.mouse.move(*at(xs[len(xs) // 4], y))
        page.mouse.down()
        page.mouse.move(*at(xs[len(xs) // 4] + 0.22 * w, y), steps=15)
        page.mouse.up()
        ready(page, 2)
        # select the largest car and pick another style
        cars = [i for i in np.unique(inst) if i // 1000 == 7]
        car = max(cars, key=lambda i: int((inst == i).sum()))
        ys, xs = np.nonzero(inst == car)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        page.keyboard.press("s")
        page.mouse.click(*at(xs[k] + 0.5, ys[k] + 0.5))
        page.wait_for_selector(f"#swatches[data-instance='{car}'] button", timeout=120_000)
        page.click("#swatches button[data-index='1']")
        ready(page, 4)
        page.mouse.move(5, 5)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edits", type=int, default=40, help="counted edits per model (default 40)")
    p.add_argument("--synthetic-model", help="a trained pix2pixhd_synthetic run (default: train one here)")
    p.add_argument("--train-steps", type=int, default=400, help="steps to train it for when not given")
    p.add_argument("--synthetic-num", type=int, default=40, help="scenes of the world it is trained on (default 40)")
    p.add_argument("--synthetic-size", type=int, default=256, help="their size in pixels (default 256)")
    p.add_argument("--crop-size", type=int, default=128, help="training crop (default 128)")
    p.add_argument("--hd-size", default="512x256", help="map size for model (b), WxH (default 512x256)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--skip-hd", action="store_true", help="measure model (a) only")
    p.add_argument("--screenshot", help="also save a screenshot of the editor on model (a) here")
    p.add_argument("--work", help="folder for the generated data and models (default: a temporary folder)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="editor-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []

    run = Path(args.synthetic_model) if args.synthetic_model else synthetic_model(
        work, args.train_steps, args.device, args.synthetic_num, args.synthetic_size, args.crop_size)
    data_root = recorded_data_root(resolve_model_dir(run))
    model = EditorModel.load(run, device=args.device)
    srv = serve_in_thread(create_app(model, data_root))
    try:
        first_test = next(i for i in json.loads(urllib.request.urlopen(srv.url + "/api/dataset").read())["items"]
                          if i["split"] == "test")
        r = measure(srv.url, {"source": "dataset", "split": "test", "name": first_test["name"]}, args.edits,
                    thing=7, other_thing=8, styles=model.has_styles)
        step = ModelCard.read(resolve_model_dir(run)).provenance.step
        steps = "?" if step is None else step
        results.append((f"(a) pix2pixhd_synthetic, {steps} steps, encoder + clusters", args.device, r))
        if args.screenshot:
            screenshot(srv.url, Path(args.screenshot))
    finally:
        srv.shutdown()

    if not args.skip_hd:
        w, h = (int(v) for v in args.hd_size.lower().split("x"))
        model = EditorModel.load(cityscapes_model(work), device=args.device)
        srv = serve_in_thread(create_app(model))
        try:
            label, inst = cityscapes_scene(w, h)
            r = measure(srv.url, {"source": "upload", "label": _png_b64(label), "instance": _png_b64(inst)},
                        args.edits, thing=26, other_thing=24, styles=False)
            results.append(("(b) global G ngf 64, Cityscapes 35 classes + boundaries, untrained", args.device, r))
        finally:
            srv.shutdown()

    print(table(results))
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
