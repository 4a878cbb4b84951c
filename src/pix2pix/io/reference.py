"""Import checkpoints of the reference implementations (pytorch-CycleGAN-and-pix2pix, pix2pixHD).

    G = import_reference("latest_net_G.pth", "unet_256")
    D = import_reference("latest_net_D.pth", "basic", in_channels=6)

Files are read with `torch.load(weights_only=True)`: no pickled code runs. Known
differences of old checkpoints are repaired: a DataParallel `module.` prefix is
stripped, instance-norm running statistics saved by PyTorch < 0.4 are dropped, and
batch-norm `num_batches_tracked` counters missing from old files are added. Anything
else that does not match is an error listing the keys.

pix2pixHD: `global`, `local` and `encoder` (netE, `latest_net_E.pth`) load by their registry
names; its discriminator is `multiscale`, whose `num_D` and `n_layers` are read from the
keys when not given, and whose `--no_ganFeat_loss` layout (`layer{i}.{k}`, one flat
Sequential per scale) is renamed to the `scale{i}_layer{j}.{m}` layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, did_you_mean
from ..models import create_discriminator, create_generator, list_discriminators, list_generators
from ..models.pix2pixhd import MultiscaleDiscriminator
from ..nn.state import as_state_dict, load_state_strict, repair_legacy_state
from .torch_load import safe_torch_load

# Reference discriminator names (--netD) and the registry entries they correspond to.
REFERENCE_DISCRIMINATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "basic": ("patchgan", {"n_layers": 3}),
    "n_layers": ("patchgan", {}),
    "pixel": ("patchgan", {"n_layers": 0}),
    "patchgan": ("patchgan", {}),
}


def load_reference_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a reference .pth state_dict safely."""
    state = safe_torch_load(path, "", "only plain state_dicts are accepted: re-save it with "
                            "torch.save(model.state_dict())")
    return as_state_dict(state, str(path))


def _guess_dropout(arch: str, state: Mapping[str, torch.Tensor]) -> bool | None:
    """ResNet blocks put the second conv at index 5 without dropout and 6 with it."""
    if not arch.startswith("resnet"):
        return None
    keys = " ".join(state)
    if re.search(r"conv_block\.6\.weight", keys) and not re.search(r"conv_block\.5\.weight", keys):
        return True
    if re.search(r"conv_block\.5\.weight", keys):
        return False
    return None


_SCALE_KEY = re.compile(r"^scale(\d+)_layer(\d+)\.")
_FLAT_SCALE_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")


def _guess_multiscale(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """num_D and n_layers of a pix2pixHD multi-scale D from its keys (either layout).

    Scale 0 holds n_layers + 2 convs (the only 4-D weights); the scale indices give num_D.
    """
    scales, convs = set(), 0
    for key, value in state.items():
        match = _SCALE_KEY.match(key) or _FLAT_SCALE_KEY.match(key)
        if match:
            scales.add(int(match.group(1)))
            if match.group(1) == "0" and key.endswith(".weight") and value.dim() == 4:
                convs += 1
    if not scales or convs < 3:
        return {}
    return {"num_D": 1 + max(scales), "n_layers": convs - 2}


def _unflatten_multiscale(net: MultiscaleDiscriminator, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the reference's getIntermFeat=False keys `layer{i}.{k}.*` to `scale{i}_layer{j}.{m}.*`.

    Without intermediate features the reference concatenates each scale's layer lists into
    one Sequential `layer{i}`; its flat index k runs over the same modules in the same order.
    """
    if not any(map(_FLAT_SCALE_KEY.match, state)) or any(map(_SCALE_KEY.match, state)):
        return state
    rename: dict[str, str] = {}
    for i in range(net.num_D):
        flat = 0
        for j, layer in enumerate(net.scale_layers(i)):
            for m in range(len(layer)):
                rename[f"layer{i}.{flat}."] = f"scale{i}_layer{j}.{m}."
                flat += 1
    renamed = {}
    for key, value in state.items():
        match = _FLAT_SCALE_KEY.match(key)
        prefix = match.group(0) if match else ""
        renamed[rename[prefix] + key[len(prefix):] if prefix in rename else key] = value
    return renamed


def build_reference_network(arch: str, state: Mapping[str, torch.Tensor] | None = None,
                            **arch_kwargs: Any) -> tuple[nn.Module, str]:
    """Build the network for reference name `arch`; returns (network, 'generator' | 'discriminator')."""
    kwargs = dict(arch_kwargs)
    if arch in REFERENCE_DISCRIMINATORS or arch in list_discriminators():
        name, fixed = REFERENCE_DISCRIMINATORS.get(arch, (arch, {}))
        if name == "multiscale" and state is not None:
            fixed = {**{k: v for k, v in _guess_multiscale(state).items() if k not in kwargs}, **fixed}
        in_channels = kwargs.pop("in_channels", None)
        if in_channels is None:
            raise CheckpointError(f"discriminator '{arch}' needs in_channels (6 for a conditional D on RGB pairs).")
        kwargs.pop("out_channels", None)
        return create_discriminator(name, in_channels, init=None, **{**kwargs, **fixed}), "discriminator"
    if arch in list_generators():
        if "dropout" not in kwargs and state is not None:
            guessed = _guess_dropout(arch, state)
            if guessed is not None:
                kwargs["dropout"] = guessed
        return create_generator(arch, init=None, **kwargs), "generator"
    known = sorted(set(list_generators()) | set(REFERENCE_DISCRIMINATORS) | set(list_discriminators()))
    raise CheckpointError(f"unknown architecture '{arch}'; choose one of {', '.join(known)}."
                          + did_you_mean(arch, known))


def reference_state(state_dict_or_path: str | Path | Mapping[str, torch.Tensor],
                    what: str = "the state_dict") -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, where it came from) from a .pth path or an in-memory state_dict."""
    if isinstance(state_dict_or_path, (str, Path)):
        return load_reference_state(state_dict_or_path), str(state_dict_or_path)
    return as_state_dict(state_dict_or_path, what), what


def import_reference(state_dict_or_path: str | Path | Mapping[str, torch.Tensor], arch: str,
                     **arch_kwargs: Any) -> nn.Module:
    """Build `arch` with `arch_kwargs` and load a reference checkpoint into it strictly (eval mode)."""
    state, source = reference_state(state_dict_or_path)
    net, kind = build_reference_network(arch, state, **arch_kwargs)
    if isinstance(net, MultiscaleDiscriminator):
        state = _unflatten_multiscale(net, state)
    load_state_strict(net, repair_legacy_state(net, state), source)
    net.reference_kind = kind
    return net.eval()
