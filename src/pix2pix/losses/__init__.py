"""Objectives: adversarial losses (vanilla, lsgan, hinge, wgan-gp) and reconstruction losses."""

from .augment import AUGMENTATIONS, PairAugment
from .balanced_l1 import balanced_l1_loss, input_rarity_weights
from .feature_matching import feature_matching_loss
from .gan import GAN_MODES, GANLoss, gradient_penalty, r1_penalty
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
    "AUGMENTATIONS",
    "GAN_MODES",
    "GANLoss",
    "PairAugment",
    "VGG19_FILENAME",
    "VGG19_URL",
    "VGG_LAYER_WEIGHTS",
    "VGG_SLICES",
    "VGG19Features",
    "VGGLoss",
    "balanced_l1_loss",
    "feature_matching_loss",
    "gradient_penalty",
    "input_rarity_weights",
    "r1_penalty",
    "resolve_vgg_weights",
    "vgg19_features_state",
    "vgg19_hub_path",
]
