"""What every model family's trainer shares: device moves, named state, epoch-based schedules, and the
wrapping for distributed, mixed-precision, compiled and checkpointed training (see `scaling`)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch
from torch import nn

from ..config import Config
from .scaling import (
    DistContext,
    MixedPrecision,
    convert_sync_batchnorm,
    enable_activation_checkpointing,
    prepare_module,
)


class TrainerBase:
    """Networks, optimisers and schedulers of one run, saved and restored by name.

    A family's trainer sets `net_g`, `opt_g`, `sched_g` (and usually `net_d`, `opt_d`,
    `sched_d`), calls `setup_scaling` at the end of its constructor, and implements
    `train_step`, `sample_rows`, `save_model` and `make_dataset`. The step calls `g`, `d`,
    `e` (the networks wrapped for DDP / compile); sampling and saving use the plain `net_*`.
    """

    cfg: Config
    device: torch.device
    net_g: nn.Module
    opt_g: torch.optim.Optimizer
    sched_g: Any
    dist: DistContext
    amp: MixedPrecision

    def setup_scaling(self, dist: DistContext | None = None) -> None:
        """Sync batch norm, activation checkpointing, precision and the wrapped modules, per the config."""
        t = self.cfg.train
        self.dist = dist or DistContext()
        self.amp = MixedPrecision(self.device, t.precision)
        if t.sync_bn:
            for name, net in self.networks().items():
                setattr(self, name, convert_sync_batchnorm(net, self.dist, self.device))
        if t.checkpoint_activations:
            enable_activation_checkpointing(self.net_g)
        self.wrap_networks()

    def wrap_networks(self) -> None:
        """(Re)build `g`, `d`, `e` from `net_g`, `net_d`, `net_e` (again after parameters are (un)frozen)."""
        for name in ("net_g", "net_d", "net_e"):
            net = getattr(self, name, None)
            setattr(self, name[4:], None if net is None else
                    prepare_module(net, self.dist, self.device, self.cfg.train.compile))

    def micro_batches(self, batch: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
        """(weight, part) for the batch split into train.grad_accum micro-batches along the batch axis.

        The weight is the part's share of the batch, so that the weighted sum of the parts' mean
        losses is the whole batch's mean loss: accumulated gradients equal the whole batch's.
        """
        n = next(len(v) for v in batch.values() if isinstance(v, torch.Tensor))
        size = -(-n // min(self.cfg.train.grad_accum, n))
        return [(min(size, n - start) / n, {key: value[start:start + size] for key, value in batch.items()})
                for start in range(0, n, size)]

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.cfg.train.channels_last and x.dim() == 4 else torch.contiguous_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def components(self) -> dict[str, Any]:
        """Everything with a state_dict that a checkpoint must hold, by name."""
        names = ("net_g", "net_d", "net_e", "opt_g", "opt_d", "sched_g", "sched_d")
        parts = {n: getattr(self, n) for n in names if getattr(self, n, None) is not None}
        if getattr(self, "amp", None) is not None and self.amp.scaler.is_enabled():
            parts["grad_scaler"] = self.amp.scaler
        return parts

    def networks(self) -> dict[str, nn.Module]:
        return {n: m for n, m in self.components().items() if isinstance(m, nn.Module)}

    def schedulers(self) -> list[Any]:
        return [s for n, s in self.components().items() if n.startswith("sched")]

    def end_epoch(self, epochs_done: int) -> None:
        """Called after each full epoch: steps the learning-rate schedules (the reference's rhythm)."""
        with warnings.catch_warnings():  # fp16: the GradScaler may have skipped every optimiser step so far
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
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


def add_weighted(total: dict[str, torch.Tensor], losses: dict[str, torch.Tensor], weight: float) -> None:
    """total[k] += weight * losses[k], detached (a micro-batch's share of the step's mean losses)."""
    for key, value in losses.items():
        value = value.detach() * weight if weight != 1.0 else value.detach()
        total[key] = total[key] + value if key in total else value

