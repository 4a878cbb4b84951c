"""Objectives: adversarial losses (vanilla, lsgan, hinge, wgan-gp) and reconstruction losses."""

from .gan import GAN_MODES, GANLoss, gradient_penalty

__all__ = ["GAN_MODES", "GANLoss", "gradient_penalty"]
