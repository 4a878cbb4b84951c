"""An exponential moving average of the generator's weights (and the feature encoder's, which feeds it).

After the k-th optimiser step: ema = d_k * ema + (1 - d_k) * live for parameters, with
d_k = min(decay, (k - 1) / k): the plain mean of the weights seen so far until that reaches the
decay, so the random initialisation never lingers in the average of a short run (with 0.999 and
no warm-up, a quarter of the average is still the initial weights after 1400 steps). Buffers
(batch-norm statistics) are copied from the live networks. With `train.ema_decay > 0` the
averaged networks are what samples, evaluation, translation and the saved model use; they are
kept in the checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


class WeightAverage:
    """EMA copies of some networks, by name."""

    def __init__(self, networks: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay} must be in (0, 1)")
        self.decay = float(decay)
        self.updates = 0
        self.averaged = {name: _frozen_copy(net) for name, net in networks.items()}

    @torch.no_grad()
    def update(self, networks: dict[str, nn.Module]) -> None:
        self.updates += 1
        decay = min(self.decay, (self.updates - 1) / self.updates)
        for name, net in networks.items():
            avg = self.averaged[name]
            for a, p in zip(avg.parameters(), net.parameters(), strict=True):
                a.lerp_(p.detach().to(a.dtype), 1.0 - decay)
            for a, b in zip(avg.buffers(), net.buffers(), strict=True):
                a.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        nets = {name: net.state_dict() for name, net in self.averaged.items()}
        return {"decay": self.decay, "updates": self.updates, **nets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # another decay would continue another average: the resumed run would not be the run it continues
        saved = state.get("decay")
        if saved is not None and float(saved) != self.decay:
            raise ConfigError(f"the checkpoint's weight average has train.ema_decay={float(saved):g}, this run "
                              f"{self.decay:g}: resume with --set train.ema_decay={float(saved):g}, or start a new "
                              "run.")
        # a checkpoint written before the warm-up existed continues as the plain EMA it was
        self.updates = int(state.get("updates", 2**62))
        for name, net in self.averaged.items():
            if name not in state:
                raise ConfigError(f"the checkpoint's weight average has no {name!r} (networks {sorted(state)}): it "
                                  "was written with other model settings; resume with the run's settings.")
            net.load_state_dict(state[name])


def _frozen_copy(net: nn.Module) -> nn.Module:
    avg = copy.deepcopy(net)
    avg.requires_grad_(False)
    return avg.eval()
