"""Building blocks shared by the networks: norm layers, up-sampling, padding, initialisation."""

from .blocks import conv_transpose_or_resize, get_norm_layer, norm_uses_bias, padding_layer
from .init import init_weights, set_requires_grad

__all__ = [
    "conv_transpose_or_resize",
    "get_norm_layer",
    "init_weights",
    "norm_uses_bias",
    "padding_layer",
    "set_requires_grad",
]
