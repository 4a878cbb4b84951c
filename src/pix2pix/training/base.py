"""What every model family's trainer shares: device moves, named state, epoch-based schedules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import Config


class TrainerBase:
    """Networks, optimisers and schedulers of one run, saved and restored by name.

    A family's trainer sets `net_g`, `opt_g`, `sched_g` (and usually `net_d`, `opt_d`,
    `sched_d`) and implements `train_step`, `sample_rows`, `save_model` and `make_dataset`.
    """

    cfg: Config
    device: torch.device
    net_g: nn.Module
    opt_g: torch.optim.Optimizer
    sched_g: Any

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.cfg.train.channels_last and x.dim() == 4 else torch.contiguous_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def components(self) -> dict[str, Any]:
        """Everything with a state_dict that a checkpoint must hold, by name."""
        names = ("net_g", "net_d", "net_e", "opt_g", "opt_d", "sched_g", "sched_d")
        return {n: getattr(self, n) for n in names if getattr(self, n, None) is not None}

    def networks(self) -> dict[str, nn.Module]:
        return {n: m for n, m in self.components().items() if isinstance(m, nn.Module)}

    def schedulers(self) -> list[Any]:
        return [s for n, s in self.components().items() if n.startswith("sched")]

    def end_epoch(self, epochs_done: int) -> None:
        """Called after each full epoch: steps the learning-rate schedules (the reference's rhythm)."""
        for sched in self.schedulers():
            sched.step()

    @property
    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.components().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.components().items():
            part.load_state_dict(state[name])

    def describe(self) -> str:
        return "\n".join(f"{name}: {type(net).__name__} ({sum(p.numel() for p in net.parameters()):,} parameters)"
                         for name, net in self.networks().items())
