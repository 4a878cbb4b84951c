"""The pix2pix objective: conditional GAN loss plus lambda_L1 * L1, returned as dicts of named losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig
from ..losses import GANLoss, gradient_penalty


class Pix2PixObjective:
    """D loss 0.5 * (fake + real) [+ gradient penalty]; G loss lambda_gan * GAN + lambda_l1 * L1.

    With `conditional` the discriminator judges (input, output) concatenated on channels;
    without, it sees the output alone (the paper's unconditional-GAN ablation).
    """

    def __init__(self, cfg: LossConfig, conditional: bool = True) -> None:
        self.cfg = cfg
        self.gan = GANLoss(cfg.gan_mode)
        self.conditional = conditional

    @property
    def uses_discriminator(self) -> bool:
        return self.cfg.lambda_gan > 0

    def d_input(self, real_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([real_a, b], 1) if self.conditional else b

    def discriminator_losses(self, net_d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor,
                             fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_in = self.d_input(real_a, fake_b.detach())
        real_in = self.d_input(real_a, real_b)
        losses = {"D_fake": self.gan(net_d(fake_in), False), "D_real": self.gan(net_d(real_in), True)}
        total = 0.5 * (losses["D_fake"] + losses["D_real"])
        if self.gan.mode == "wgangp":
            losses["D_gp"] = gradient_penalty(net_d, real_in, fake_in, self.cfg.lambda_gp)
            total = total + losses["D_gp"]
        losses["D"] = total
        return losses

    def generator_losses(self, net_d: nn.Module | None, real_a: torch.Tensor, real_b: torch.Tensor,
                         fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        total = fake_b.new_zeros((), dtype=torch.float32)
        if self.uses_discriminator and net_d is not None:
            losses["G_GAN"] = self.gan(net_d(self.d_input(real_a, fake_b)), True, for_discriminator=False)
            total = total + self.cfg.lambda_gan * losses["G_GAN"]
        if self.cfg.lambda_l1 > 0:
            losses["G_L1"] = F.l1_loss(fake_b.float(), real_b.float())
            total = total + self.cfg.lambda_l1 * losses["G_L1"]
        losses["G"] = total
        return losses
