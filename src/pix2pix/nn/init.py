"""Weight initialisation and gradient freezing."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02, zero_bias: bool = True) -> nn.Module:
    """Initialise conv and linear weights as the reference does.

    normal: N(0, gain); batch-norm weights N(1, gain) and biases 0. `zero_bias=False`
    keeps PyTorch's default bias init (the pix2pixHD reference leaves biases alone).
    """
    if init_type not in INIT_TYPES:
        raise ConfigError(f"unknown init '{init_type}'; choose one of {', '.join(INIT_TYPES)}.")
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None and zero_bias:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def set_requires_grad(nets: nn.Module | list[nn.Module], requires_grad: bool) -> None:
    """Freeze or unfreeze every parameter (D is frozen during the G step)."""
    for net in nets if isinstance(nets, list) else [nets]:
        for p in net.parameters():
            p.requires_grad_(requires_grad)
