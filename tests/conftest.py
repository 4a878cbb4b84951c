"""Shared fixtures: tiny datasets made by the tests themselves, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PIX2PIX_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a CUDA device: skipped with the reason where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_pix2pix_home(tmp_path_factory):
    """PIX2PIX_HOME (published models, translate's cached exports) in a temporary folder, never the user's cache;
    subprocesses inherit it."""
    old = os.environ.get("PIX2PIX_HOME")
    os.environ["PIX2PIX_HOME"] = str(tmp_path_factory.mktemp("pix2pix_home"))
    yield
    if old is None:
        os.environ.pop("PIX2PIX_HOME", None)
    else:
        os.environ["PIX2PIX_HOME"] = old


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_torch_thread(_single_thread_determinism):
    """One intra-op thread (modules opt in with `pytestmark`): tiny networks are dominated by thread hand-offs,
    which stall when other jobs share the two cores; the next test starts at two again."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)


def make_pair_images(n: int, size: tuple[int, int] = (40, 40), seed: int = 0) -> list[tuple[Image.Image, Image.Image]]:
    """n (A, B) pairs: A is a blocky pattern, B a colour function of A (learnable, and pairs are distinguishable)."""
    rng = np.random.default_rng(seed)
    w, h = size
    pairs = []
    for i in range(n):
        blocks = rng.integers(0, 4, (h // 8 + 1, w // 8 + 1))
        a = np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:h, :w]
        palette = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=np.uint8)
        img_a = palette[a]
        img_b = np.clip(255 - img_a.astype(int) + i, 0, 255).astype(np.uint8)
        pairs.append((Image.fromarray(img_a), Image.fromarray(img_b)))
    return pairs


def write_aligned(root: Path, phase: str, pairs: list[tuple[Image.Image, Image.Image]],
                  prefix: str = "p") -> list[Path]:
    folder = root / phase
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (a, b) in enumerate(pairs):
        ab = Image.new("RGB", (a.width * 2, a.height))
        ab.paste(a, (0, 0))
        ab.paste(b, (a.width, 0))
        path = folder / f"{prefix}{i:03d}.png"
        ab.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def aligned_dataset(tmp_path: Path) -> Path:
    """root/train (6 pairs) and root/test (2 pairs) of 40x40 A|B images."""
    root = tmp_path / "data"
    write_aligned(root, "train", make_pair_images(6, seed=0))
    write_aligned(root, "test", make_pair_images(2, seed=1))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The synthetic world (`pix2pix data synth`), 5 scenes of 40x40: AB/ pairs, pix2pixHD folders with instance
    maps, classes.json. Made once per module; a module that needs another size defines its own `world`."""
    from pix2pix.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("world")
    write_synthetic_dataset(root, num=5, size=40, seed=3)
    return root


@pytest.fixture
def tiny_config(aligned_dataset: Path, tmp_path: Path):
    from pix2pix.presets import get_preset

    cfg = get_preset("tiny")
    cfg.data.root = str(aligned_dataset)
    cfg.train.runs_dir = str(tmp_path / "runs")
    cfg.train.device = "cpu"
    return cfg


CHROMIUM = Path(os.environ.get("PIX2PIX_CHROMIUM", "/usr/bin/chromium"))
# Flags for a closed network: no background connections, no sandbox (the tests may run as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium driven by Playwright (`make test` installs both)."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright missing (make test installs it)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (make test does) "
                    "or set PIX2PIX_CHROMIUM")
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()
