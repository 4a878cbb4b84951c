"""Adversarial losses over discriminator outputs.

A discriminator output is a list per scale of [features..., logits]; each loss is
computed on the logits of every scale and summed over scales (as pix2pixHD does; a
single-scale PatchGAN is the one-term case).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, did_you_mean

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")

DOutput = Sequence[Sequence[torch.Tensor]] | torch.Tensor


def _logits(pred: DOutput) -> list[torch.Tensor]:
    if isinstance(pred, torch.Tensor):
        return [pred]
    return [scale[-1] for scale in pred]


class GANLoss(nn.Module):
    """The adversarial loss of one GAN mode.

    vanilla: binary cross-entropy with logits (the pix2pix default); lsgan: mean squared
    error to 1 / 0 (pix2pixHD); hinge: relu(1 - x) for real, relu(1 + x) for fake in the D
    loss and -x for G; wgangp: -x for real and x for fake (add `gradient_penalty` to D).
    """

    def __init__(self, mode: str = "vanilla") -> None:
        super().__init__()
        if mode == "wgan-gp":
            mode = "wgangp"
        if mode not in GAN_MODES:
            raise ConfigError(f"unknown gan_mode '{mode}'; choose one of {', '.join(GAN_MODES)}."
                              + did_you_mean(mode, GAN_MODES))
        self.mode = mode

    def _one(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        logits = logits.float()  # loss reductions in fp32 whatever the compute dtype
        if self.mode == "vanilla":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.mode == "lsgan":
            return ((logits - (1.0 if target_is_real else 0.0)) ** 2).mean()
        if self.mode == "hinge" and for_discriminator:
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        # hinge generator loss and both wgan-gp losses
        return -logits.mean() if target_is_real else logits.mean()

    def forward(self, pred: DOutput, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        """Sum over scales of the loss of each scale's logits against the target."""
        losses = [self._one(lg, target_is_real, for_discriminator) for lg in _logits(pred)]
        return torch.stack(losses).sum()


def gradient_penalty(discriminator: Callable[[torch.Tensor], DOutput], real: torch.Tensor, fake: torch.Tensor,
                     weight: float = 10.0, constant: float = 1.0) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017) on random interpolates of real and fake D inputs.

    weight * mean_b (||d sum(D(x_hat)) / d x_hat||_2 - constant)^2, with x_hat = a*real +
    (1-a)*fake and a ~ U(0, 1) per sample. `real` and `fake` are the full D inputs
    (condition concatenated), as in the reference implementation.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = sum(lg.sum() for lg in _logits(discriminator(x_hat)))
    (grad,) = torch.autograd.grad(out, x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * ((norms - constant) ** 2).mean()


def r1_penalty(pred_real: DOutput, image: torch.Tensor, weight: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): weight / 2 * mean_b ||d sum(D(real)) / d image||^2, on real pairs only.

    `image` is the real image (not the condition) that D's input was made from, with
    requires_grad set before D ran; the graph is kept so the penalty trains D.
    """
    out = sum(lg.float().sum() for lg in _logits(pred_real))
    (grad,) = torch.autograd.grad(out, image, create_graph=True)
    return 0.5 * weight * grad.float().pow(2).flatten(1).sum(1).mean()
