"""Objectives: adversarial losses (vanilla, lsgan, hinge, wgan-gp) and reconstruction losses."""

from .feature_matching import feature_matching_loss
from .gan import GAN_MODES, GANLoss, gradient_penalty
from .perceptual import (
    VGG19_FILENAME,
    VGG19_URL,
    VGG_LAYER_WEIGHTS,
    VGG_SLICES,
    VGG19Features,
    VGGLoss,
    resolve_vgg_weights,
    vgg19_features_state,
    vgg19_hub_path,
)

__all__ = [
    "GAN_MODES",
    "GANLoss",
    "VGG19_FILENAME",
    "VGG19_URL",
    "VGG_LAYER_WEIGHTS",
    "VGG_SLICES",
    "VGG19Features",
    "VGGLoss",
    "feature_matching_loss",
    "gradient_penalty",
    "resolve_vgg_weights",
    "vgg19_features_state",
    "vgg19_hub_path",
]
