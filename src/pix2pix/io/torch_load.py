"""torch.load restricted to tensors and plain containers (weights_only=True): no pickled code runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def safe_torch_load(path: str | Path, missing_hint: str, unreadable_hint: str) -> Any:
    """torch.load with weights_only=True, mapped to CPU, with CheckpointErrors that name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist{missing_hint}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} could not be loaded with weights_only=True ({exc}); "
                              f"{unreadable_hint}.") from None
