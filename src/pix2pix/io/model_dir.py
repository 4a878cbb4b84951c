"""What a user passes as ``--model``, resolved to a model directory in one place.

Accepted, in this order: ``hf://org/name[@revision]`` (the Hugging Face Hub), an existing
model directory (``config.json`` + weights), a training run directory (its ``model/``), or the
name of a published checkpoint (``pix2pix download --list``), downloaded on first use.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CheckpointError, did_you_mean
from . import hub, zoo
from .model_card import CONFIG_NAME, WEIGHTS

WHAT_MODEL_IS = "a model directory, a run directory (its model/), a published name (`pix2pix download --list`) or hf://"


def resolve_model_dir(spec: str | Path, *, progress: bool = False) -> Path:
    """The model directory for `spec` (see the module docstring); downloads a published or Hub model if needed."""
    text = str(spec)
    if text.startswith(hub.SCHEME):
        return hub.model_dir(text, progress=progress)
    path = Path(spec)
    if path.is_dir():
        holds_weights = any((path / name).is_file() for name in WEIGHTS.values())
        if not holds_weights and (path / "model" / CONFIG_NAME).is_file():  # a run directory
            return path / "model"
        return path  # reading its card says what is wrong when it is not a model directory
    if zoo.is_published(text):
        return zoo.model_dir(text, progress=progress)
    if path.exists():
        raise CheckpointError(f"{path} is a file; --model takes a directory ({WHAT_MODEL_IS}).")
    hint = did_you_mean(text, zoo.names()) if "/" not in text and "\\" not in text else ""
    raise CheckpointError(f"{text}: no such model directory or run directory, and not a published model name.{hint} "
                          f"--model takes {WHAT_MODEL_IS}.")


def recorded_data_root(model_dir: Path) -> Path | None:
    """The data folder a training run recorded (RUN/config.json beside RUN/model), if it still exists here."""
    run_config = Path(model_dir).parent / "config.json"
    if not run_config.is_file() or run_config.resolve() == (Path(model_dir) / CONFIG_NAME).resolve():
        return None
    try:
        root = json.loads(run_config.read_text(encoding="utf-8")).get("data", {}).get("root", "")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(root) if isinstance(root, str) and root and Path(root).is_dir() else None
