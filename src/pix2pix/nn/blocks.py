"""Norm layers, padding and up-sampling layers, built the way the reference code builds them."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import ConfigError, did_you_mean

NORMS = ("batch", "instance", "none")
UPSAMPLES = ("transpose", "resize_conv")
PADDINGS = ("reflect", "replicate", "zero")


def get_norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Return a constructor `channels -> norm module`.

    batch: BatchNorm2d with learned affine and running statistics; instance:
    InstanceNorm2d without affine or running statistics (the reference's choice);
    none: identity.
    """
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if norm == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda c: nn.Identity()
    raise ConfigError(f"unknown norm '{norm}'; choose one of {', '.join(NORMS)}.{did_you_mean(norm, NORMS)}")


def norm_uses_bias(norm: str) -> bool:
    """Convolutions followed by a norm carry a bias only for instance norm, as in the reference.

    (Batch norm's shift makes a bias redundant; the reference also leaves it out for 'none'.)
    """
    return norm == "instance"


def padding_layer(padding_type: str, amount: int) -> tuple[list[nn.Module], int]:
    """Explicit padding module(s) and the conv padding to use with them."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(amount)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(amount)], 0
    if padding_type == "zero":
        return [], amount
    raise ConfigError(
        f"unknown padding_type '{padding_type}'; choose one of {', '.join(PADDINGS)}."
        + did_you_mean(padding_type, PADDINGS)
    )


def conv_transpose_or_resize(
    in_ch: int, out_ch: int, *, kernel_size: int, padding: int, output_padding: int, bias: bool, upsample: str
) -> nn.Module:
    """A 2x up-sampling convolution.

    transpose: ConvTranspose2d, the reference layer. resize_conv: nearest-neighbour
    up-sampling followed by a 3x3 convolution, which avoids checkerboard artifacts
    (Odena et al., 2016). Both double height and width.
    """
    if upsample == "transpose":
        return nn.ConvTranspose2d(
            in_ch, out_ch, kernel_size, stride=2, padding=padding, output_padding=output_padding, bias=bias
        )
    if upsample == "resize_conv":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=bias),
        )
    raise ConfigError(
        f"unknown upsample '{upsample}'; choose one of {', '.join(UPSAMPLES)}." + did_you_mean(upsample, UPSAMPLES)
    )
