"""Cascaded Refinement Network (Chen & Koltun, ICCV 2017), the baseline pix2pixHD compares against.

A cascade of `n_modules` refinement modules, each doubling the resolution. Module 0 runs
at the coarsest size (H, W) / 2^(n_modules-1) (4x8 for a 256x512 output with the default
7 modules) on the label map alone; module k > 0 takes the previous module's features
up-sampled 2x concatenated with the label map at its resolution (in that order). A module is two 3x3
convs, each followed by layer norm and LeakyReLU(0.2); a final 1x1 conv maps the last
features to the output channels.

As in the authors' code: the label map is down-sampled by area averaging (2x2 mean,
`tf.image.resize_area`), features are up-sampled bilinearly with aligned corners, the
3x3 convs have no bias (layer norm's shift replaces it) and layer norm normalises over
channels and pixels with a per-channel scale and shift (`GroupNorm(1, C)`, the same as
TF-slim's `layer_norm`).

Differences, for this library's conventions: the original synthesises several images at
once (a 27- or 9-channel linear output, for diversity) and scales it to [0, 255]; here
there is one output of `out_channels` passed through tanh, so it lies in [-1, 1] like
every other generator.

Widths (`crn_widths`): the authors' schedule by row count at the paper's 4-row coarsest
level is 1024 channels below 128 rows, 512 at 128 and 256 rows, 128 at 512 rows and 32 at
1024 rows. It is kept here by module index k (k = 0 coarsest): ngf for k <= 4, ngf/2 for
k = 5, 6, ngf/8 for k = 7, ngf/32 beyond (at least 1), with ngf = 1024 by default. A small
`ngf` scales the whole schedule down (tests use ngf 4); `widths` sets it explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from .registry import register_generator

__all__ = ["CascadedRefinementNetwork", "crn_widths"]

LABEL_DOWNSAMPLES = ("area", "bilinear", "nearest")


def crn_widths(ngf: int, n_modules: int) -> list[int]:
    """Feature widths of the refinement modules, coarsest first (see the module docstring)."""

    def divisor(k: int) -> int:
        return 1 if k <= 4 else 2 if k <= 6 else 8 if k == 7 else 32

    return [max(1, ngf // divisor(k)) for k in range(n_modules)]


class CascadedRefinementNetwork(nn.Module):
    """CRN generator: label map [B, in, H, W] -> image [B, out, H, W] in [-1, 1].

    H and W must be multiples of `size_multiple` = 2^(n_modules-1); the coarsest
    resolution is computed from the input, so any such size (and aspect ratio) works.
    With the defaults (ngf 1024, 7 modules), 256x512 outputs start from 4x8.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, *, ngf: int = 1024, n_modules: int = 7,
                 widths: Sequence[int] | None = None, label_downsample: str = "area") -> None:
        super().__init__()
        if n_modules < 1:
            raise ConfigError(f"n_modules={n_modules} is invalid; a CRN needs at least 1 refinement module.")
        if label_downsample not in LABEL_DOWNSAMPLES:
            raise ConfigError(f"unknown label_downsample '{label_downsample}'; choose one of "
                              f"{', '.join(LABEL_DOWNSAMPLES)}.")
        widths = list(widths) if widths is not None else crn_widths(ngf, n_modules)
        if len(widths) != n_modules or min(widths) < 1:
            raise ConfigError(f"widths={widths} must list {n_modules} positive channel counts, coarsest first.")
        self.n_modules = n_modules
        self.size_multiple = 2 ** (n_modules - 1)
        self.label_downsample = label_downsample
        self.widths = widths
        self.refine = nn.ModuleList()
        prev = 0
        for width in widths:
            self.refine.append(nn.Sequential(
                nn.Conv2d(prev + in_channels, width, 3, padding=1, bias=False), nn.GroupNorm(1, width),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(width, width, 3, padding=1, bias=False), nn.GroupNorm(1, width), nn.LeakyReLU(0.2, True),
            ))
            prev = width
        self.to_image = nn.Conv2d(prev, out_channels, 1)

    def _downsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.label_downsample == "area":
            return F.avg_pool2d(x, 2)
        if self.label_downsample == "nearest":
            return F.interpolate(x, scale_factor=0.5, mode="nearest")
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        h, w = label.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise DataError(f"CRN with {self.n_modules} modules needs sides that are multiples of {m}; got {h}x{w}. "
                            f"Pad the input with pix2pix.models.run_padded.")
        pyramid = [label]
        for _ in range(self.n_modules - 1):
            pyramid.append(self._downsample(pyramid[-1]))
        features = self.refine[0](pyramid[-1])
        for k in range(1, self.n_modules):
            level = pyramid[self.n_modules - 1 - k]
            up = F.interpolate(features, size=level.shape[-2:], mode="bilinear", align_corners=True)
            features = self.refine[k](torch.cat([up, level], 1))  # the authors' order
        return torch.tanh(self.to_image(features))


@register_generator("crn")
def crn(in_channels: int = 3, out_channels: int = 3, ngf: int = 1024, n_modules: int = 7,
        widths: list[int] | None = None, label_downsample: str = "area") -> CascadedRefinementNetwork:
    """Cascaded Refinement Network; size_multiple 2^(n_modules-1) (7 modules: 256x512 from 4x8)."""
    return CascadedRefinementNetwork(in_channels, out_channels, ngf=ngf, n_modules=n_modules, widths=widths,
                                     label_downsample=label_downsample)
