"""Saved models: a directory with config.json and generator.safetensors, rebuilt with no flags.

config.json records the format version, the generator's registry name, channels and
keyword arguments, and the data settings inference needs (direction, preprocessing,
colour space), so `from_pretrained(dir)` rebuilds the exact network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..registry import build_from_arch
from .atomic import atomic_path, write_json

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS = {"generator": "generator.safetensors", "discriminator": "discriminator.safetensors",
           "encoder": "encoder.safetensors"}


def save_pretrained(net: nn.Module, directory: str | Path, *, kind: str = "generator",
                    data: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write `net`'s weights and config into `directory` (each file atomically); returns the directory.

    `data` holds the preprocessing a user of the model needs (direction, sizes, colour space).
    """
    if not hasattr(net, "arch"):
        raise CheckpointError("this network was not built by create_generator/create_discriminator, so its "
                              "architecture is unknown; build it through the registry to save it.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(directory / WEIGHTS[kind]) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    config = {"format_version": FORMAT_VERSION, "library": "pix2pix", kind: net.arch, "data": data or {}}
    config.update(extra or {})
    config_path = directory / CONFIG_NAME
    if config_path.exists():  # a directory may hold both a generator and a discriminator
        old = json.loads(config_path.read_text())
        config = {**old, **config, "data": data or old.get("data", {})}
    write_json(config_path, config)
    return directory


def safe_torch_load(path: str | Path, missing_hint: str, unreadable_hint: str) -> Any:
    """torch.load with weights_only=True (no pickled code runs), mapped to CPU, with CheckpointErrors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist{missing_hint}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} could not be loaded with weights_only=True ({exc}); "
                              f"{unreadable_hint}.") from None


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        is_run = (Path(directory) / "stats.jsonl").exists()
        hint = " (a training run keeps its model in RUN_DIR/model)" if is_run else ""
        raise CheckpointError(f"{path} does not exist: pass a directory written by save_pretrained{hint}.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {config['format_version']}, newer than this "
                              f"library's {FORMAT_VERSION}: upgrade pix2pix.")
    return config


def load_state_strict(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `net`, raising CheckpointError that lists every missing, unexpected or mis-shaped key."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def block(title: str, keys: list[str]) -> str:
            if not keys:
                return ""
            return f"\n  {title} ({len(keys)}): " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")

        raise CheckpointError(
            f"{source} does not match the architecture:" + block("missing keys", missing)
            + block("unexpected keys", unexpected) + block("shape mismatches", shapes)
            + "\n  Check the architecture options (name, ngf, norm, dropout, channels) match the checkpoint."
        )
    net.load_state_dict(state, strict=True)


def from_pretrained(directory: str | Path, *, kind: str = "generator", device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved in `directory` and load its weights (strictly); eval mode.

    The saved config is attached as `net.pretrained_config`.
    """
    directory = Path(directory)
    config = read_config(directory)
    if kind not in config:
        raise CheckpointError(f"{directory} holds no {kind} (it has: "
                              f"{', '.join(k for k in WEIGHTS if k in config) or 'nothing'}).")
    net = build_from_arch(config[kind], kind)
    weights = directory / WEIGHTS[kind]
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the model directory is incomplete.")
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc}).") from None
    load_state_strict(net, state, str(weights))
    net.pretrained_config = config
    return net.to(device).eval()
