"""State-dict utilities shared by every loader: strict loading with a key report, legacy repairs.

No file access here: the files are read by `pix2pix.io` (safetensors, or torch.load with
weights_only=True), so networks and losses can load weights without depending on io.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import CheckpointError


def key_mismatch_report(missing: list[str], unexpected: list[str], mis_shaped: list[str]) -> str:
    """The lines of a key-mismatch error (at most 12 keys shown per kind); empty when all match."""
    def block(title: str, keys: list[str]) -> str:
        if not keys:
            return ""
        return f"\n  {title} ({len(keys)}): " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")

    return block("missing keys", missing) + block("unexpected keys", unexpected) + block("shape mismatches", mis_shaped)


def load_state_strict(net: nn.Module, state: Mapping[str, torch.Tensor], source: str, *, assign: bool = False) -> None:
    """Load `state` into `net`, raising CheckpointError that lists every missing, unexpected or mis-shaped key.

    `assign`: the module takes the state's tensors themselves (cast to its dtypes) instead of copying into its own,
    which is how a network built on the meta device (no memory, no initialisation) gets its weights."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    report = key_mismatch_report(missing, unexpected, shapes)
    if report:
        raise CheckpointError(f"{source} does not match the architecture: check that the architecture options "
                              f"(name, ngf, norm, dropout, channels) match the checkpoint.{report}")
    if assign:
        state = {k: v.to(own[k].dtype) for k, v in state.items()}
    net.load_state_dict(state, strict=True, assign=assign)


def as_state_dict(state: object, source: str) -> dict[str, torch.Tensor]:
    """A plain state_dict of tensors (unwrapping {"state_dict": ...}) with DataParallel's `module.` stripped."""
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} is not a state_dict of tensors.")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def repair_legacy_state(net: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What old reference checkpoints differ by: drop PyTorch < 0.4 instance-norm statistics, add the
    batch-norm `num_batches_tracked` counters they lack."""
    modules = dict(net.named_modules())
    own = net.state_dict()
    repaired = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if key not in own and leaf in ("running_mean", "running_var", "num_batches_tracked") \
                and isinstance(modules.get(prefix), nn.InstanceNorm2d):
            continue
        repaired[key] = value
    for key in own:
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked" and key not in repaired and f"{prefix}.running_mean" in repaired:
            repaired[key] = torch.zeros((), dtype=torch.long)
    return repaired
