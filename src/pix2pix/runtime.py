"""Device selection and seeding, used by training, inference and the tools."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; an unavailable device is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available: use --set device=cpu.")
    return device


def as_device(device: str | torch.device) -> torch.device:
    """A torch.device from a name (resolved as `resolve_device` does) or a device."""
    return resolve_device(device) if isinstance(device, str) else device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_num_workers(requested: int) -> int:
    """Data-loading workers: `requested`, or for -1 min(4, CPUs / 2 - 1) (the reference's 4 on a GPU machine,
    none where two CPUs are better spent on the step itself)."""
    if requested >= 0:
        return requested
    return min(4, max(0, (os.cpu_count() or 1) // 2 - 1))

