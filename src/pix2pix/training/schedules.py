"""Learning-rate schedules, stepped once per epoch as in the reference code."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

from ..config import OptimConfig


def linear_decay_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """The reference rule: 1 for the first n_epochs, then linear towards 0 over n_epochs_decay.

    factor(e) = 1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)
    """
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


def hd_linear_decay_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """pix2pixHD's rule: lr drops by lr0 / n_epochs_decay after each epoch past n_epochs.

    factor(e) = 1 - max(0, e - n_epochs) / n_epochs_decay (one epoch later than pix2pix's, ending near 0)
    """
    return 1.0 - max(0, epoch - n_epochs) / float(max(1, n_epochs_decay))


def epochs_for_steps(steps: int, pairs: int, batch_size: int) -> tuple[int, int]:
    """(n_epochs, n_epochs_decay) whose schedule ends at about `steps` steps of `batch_size` over `pairs`
    training pairs: half constant, half decay (the papers' 100 + 100 proportions), at least 1 + 1."""
    per_epoch = -(-max(pairs, 1) // batch_size)
    epochs = max(2, -(-steps // per_epoch))
    return epochs // 2, epochs - epochs // 2


def make_scheduler(optimizer: Optimizer, cfg: OptimConfig) -> LRScheduler:
    if cfg.lr_policy == "linear":
        return LambdaLR(optimizer, lambda e: linear_decay_factor(e, cfg.n_epochs, cfg.n_epochs_decay))
    if cfg.lr_policy == "linear_hd":
        return LambdaLR(optimizer, lambda e: hd_linear_decay_factor(e, cfg.n_epochs, cfg.n_epochs_decay))
    if cfg.lr_policy == "step":
        return StepLR(optimizer, step_size=cfg.lr_decay_iters, gamma=0.1)
    if cfg.lr_policy == "cosine":
        total = max(1, cfg.n_epochs + cfg.n_epochs_decay)
        return LambdaLR(optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, total) / total)))
    return LambdaLR(optimizer, lambda e: 1.0)
