"""Building blocks shared by the networks: norm layers, up-sampling, padding, initialisation, state dicts."""

from .blocks import conv_transpose_or_resize, get_norm_layer, norm_uses_bias, padding_layer
from .init import init_weights, set_requires_grad
from .state import as_state_dict, key_mismatch_report, load_state_strict, repair_legacy_state

__all__ = [
    "as_state_dict",
    "key_mismatch_report",
    "load_state_strict",
    "repair_legacy_state",
    "conv_transpose_or_resize",
    "get_norm_layer",
    "init_weights",
    "norm_uses_bias",
    "padding_layer",
    "set_requires_grad",
]
