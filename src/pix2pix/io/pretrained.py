"""Saved models: a directory with the model card (config.json) and the networks' safetensors files.

    save_pretrained(G, "my_model")                   # a pix2pix generator with a default card
    save_model("runs/x/model", card, {"generator": G, "encoder": E})
    G = from_pretrained("my_model")                   # rebuilt from the card with no flags

`from_pretrained` attaches the card to the network as `net.card`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..models import build_from_arch
from ..nn.state import load_state_strict
from ..runtime import as_device
from .atomic import atomic_path
from .model_card import CONFIG_NAME, WEIGHTS, ModelCard, NetworkSpec

__all__ = ["CONFIG_NAME", "WEIGHTS", "from_pretrained", "load_network", "save_model", "save_pretrained"]


def save_model(directory: str | Path, card: ModelCard, networks: dict[str, nn.Module]) -> Path:
    """Write each network's weights (by kind: generator, encoder, discriminator) and the card; each file atomically.

    The card's network specs are taken from the networks themselves (their `arch`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for kind, net in networks.items():
        if kind not in WEIGHTS:
            raise ValueError(f"unknown network kind {kind!r}; use one of {', '.join(WEIGHTS)}")
        card = card.with_network(kind, NetworkSpec.of(net))
    card.check(str(directory / CONFIG_NAME))
    for kind, net in networks.items():
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(directory / WEIGHTS[kind]) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
    card.write(directory)
    return directory


def save_pretrained(net: nn.Module, directory: str | Path, *, kind: str = "generator",
                    card: ModelCard | None = None) -> Path:
    """Save one network into `directory`; returns the directory.

    The card is `card`, else the directory's existing card (a directory may hold a generator and a
    discriminator), else a default pix2pix card (A->B images, no preprocessing).
    """
    directory = Path(directory)
    if card is None:
        card = ModelCard.read(directory) if (directory / CONFIG_NAME).is_file() else ModelCard()
    return save_model(directory, card, {kind: net})


def load_network(directory: str | Path, card: ModelCard, kind: str = "generator",
                 device: str | torch.device = "cpu") -> nn.Module:
    """Build network `kind` from the card and load its weights strictly; eval mode, `net.card` attached."""
    directory = Path(directory)
    spec = card.network(kind)
    if spec is None:
        held = [k for k in WEIGHTS if card.network(k) is not None]
        raise CheckpointError(f"{directory} holds no {kind} (it has: {', '.join(held) or 'nothing'}).")
    weights = directory / WEIGHTS[kind]
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the model directory is incomplete.")
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc}).") from None
    net = _build_from_state(spec.to_dict(kind), kind, state, str(weights))
    net.card = card
    return net.to(as_device(device)).eval()


def _build_from_state(arch: dict, kind: str, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The network with the file's weights. Built on the meta device, so nothing is allocated or randomly
    initialised only to be overwritten (2 s of pix2pixHD's global generator); a network whose construction needs
    real tensors, or that keeps a tensor the file does not hold, is built normally."""
    try:
        with torch.device("meta"):
            net = build_from_arch(arch, kind)
    except (RuntimeError, NotImplementedError):
        net = None
    if net is not None:
        load_state_strict(net, state, source, assign=True)
        if not any(t.is_meta for t in (*net.parameters(), *net.buffers())):
            return net
    net = build_from_arch(arch, kind)
    load_state_strict(net, state, source)
    return net


def from_pretrained(directory: str | Path, *, kind: str = "generator", device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved in `directory` and load its weights (strictly); eval mode, `net.card` attached."""
    return load_network(directory, ModelCard.read(directory), kind, device)


def with_provenance(card: ModelCard, **fields: object) -> ModelCard:
    """The card with provenance fields replaced (e.g. step, metrics)."""
    return replace(card, provenance=replace(card.provenance, **fields))
