"""The full training state for exact resumption: networks, optimisers, schedulers, step, RNG.

Stored with torch.save and read back with `weights_only=True` (no pickled code), written
atomically so an interruption mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_path
from ..io.torch_load import safe_torch_load

STATE_FORMAT = 1


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    state = safe_torch_load(path, ": the run has no checkpoint to resume from yet",
                            "it may be corrupt or not a pix2pix training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a pix2pix training state (format {STATE_FORMAT}).")
    return state
