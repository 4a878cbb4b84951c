"""The export `translate` makes once per model directory, so the default CPU path is the fastest exact one.

On the CPU onnxruntime runs the generators 1.3-1.7x faster than eager PyTorch in process, to
1e-6-1e-5 relative (benchmarks/inference.md); whole translate processes gain less (below).
`cached_export(model_dir)` exports a model directory to ONNX the first time a long job
translates it (parity-checked like `pix2pix export`) into
``PIX2PIX_HOME/exports/<path key>-<content key>/`` and returns that folder; later jobs reuse it
while the model's files are unchanged, with onnxruntime's optimised graph kept beside the export
on first load so later processes start faster. The content key covers the card, the weights and
the clusters (by size and modification time) and the library and runtime versions, so
retraining, re-clustering or upgrading makes a fresh export, which replaces the stale one of the
same directory. Anything that stops the export (onnxruntime missing, a failed parity check, no
space) returns None: the caller falls back to PyTorch, which gives the same outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..io.model_card import CLUSTER_FILES, CONFIG_NAME, WEIGHTS
from .exporter import EXPORT_NAME, EXPORT_VERSION, export_model

FORMAT, BACKEND = "onnx", "onnxruntime"
# Whole translate processes (benchmarks/translate_cli.md, 2-core VM): onnxruntime translates an image 8-13 %
# faster than PyTorch (25 ms at unet_256 256x256, 140 ms at pix2pixHD's global generator at 512x256) but its
# session starts 0.4-0.9 s later, and the export takes 5-15 s. So a job uses an existing export from
# USE_FROM_IMAGES images on, and makes one from EXPORT_FROM_IMAGES (a job that pays for it by itself).
USE_FROM_IMAGES, EXPORT_FROM_IMAGES = 16, 256
# What the export is made from: a change to any of these files (or versions) makes a new one.
SOURCE_FILES = (CONFIG_NAME, WEIGHTS["generator"], WEIGHTS["encoder"], *CLUSTER_FILES)

__all__ = ["BACKEND", "EXPORT_FROM_IMAGES", "USE_FROM_IMAGES", "cache_root", "cached_export", "export_key",
           "runner_options"]


def cache_root() -> Path:
    from ..io.zoo import home  # the zoo owns PIX2PIX_HOME

    return home() / "exports"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def export_key(model_dir: Path) -> str:
    """`<path key>-<content key>` of the export folder for `model_dir` (see the module docstring)."""
    model_dir = model_dir.resolve()
    files = {}
    for name in SOURCE_FILES:
        with contextlib.suppress(FileNotFoundError):
            st = (model_dir / name).stat()
            files[name] = [st.st_size, st.st_mtime_ns]
    versions = {"pix2pix": __version__, "torch": torch.__version__, "export": EXPORT_VERSION}
    for package in ("onnx", BACKEND):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    return f"{_digest(str(model_dir))}-{_digest({'files': files, 'versions': versions})}"


def _runtime_installed() -> bool:
    """onnx (to export; imported only then: it takes over a second) and onnxruntime (to run)."""
    return all(importlib.util.find_spec(package) is not None for package in ("onnx", BACKEND))


def cached_export(model_dir: Path, log: Callable[[str], Any] | None = None, *, create: bool = True) -> Path | None:
    """The ONNX export folder of `model_dir`, made now (with `create`) if there is none for its current files; None
    when there is none or it cannot be made (the reason goes to `log`)."""
    say = log or (lambda _: None)
    if not _runtime_installed():
        return None
    key = export_key(model_dir)
    out = cache_root() / key
    if (out / EXPORT_NAME).is_file():
        return out
    if not create:
        return None
    say(f"{model_dir}: exporting once to ONNX for onnxruntime, the fastest exact CPU runtime, into {out} "
        "(reused while the model is unchanged; --backend torch skips this)")
    try:
        export_model(model_dir, out, FORMAT, log=say)
    except Exception as exc:  # noqa: BLE001  (any exporter failure: PyTorch is the same model; `export` raises)
        say(f"{model_dir}: the ONNX export failed ({exc}); translating with PyTorch, which gives the same outputs")
        return None
    path_key = key.split("-")[0]
    for stale in out.parent.glob(f"{path_key}-*"):  # earlier exports of this directory's older files
        if stale != out:
            shutil.rmtree(stale, ignore_errors=True)
    return out


def runner_options(folder: Path, backend: str) -> dict[str, Any] | None:
    """The runtime options of an export folder: the cached ones keep onnxruntime's optimised graph too (see
    `backends.OnnxRuntimeRunner`); a user's own export folder is never written to."""
    root = cache_root().resolve()
    if backend == BACKEND and root in folder.resolve().parents:
        return {"optimized_cache": True}
    return None
