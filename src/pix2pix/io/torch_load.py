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
    except Exception as exc:  # torch's own text runs over many lines (and suggests weights_only=False): condensed
        text = str(exc).strip()
        if "WeightsUnpickler error:" in text:
            detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0].split())
            reason = f"not a torch file, or one holding more than tensors and plain containers: {detail}"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(f"{path} could not be loaded with weights_only=True ({reason}); "
                              f"{unreadable_hint}.") from None
