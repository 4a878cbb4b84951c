"""PatchGAN discriminators (pix2pix): n-layer patch discriminator and the 1x1 pixel discriminator.

Both are key-compatible with the reference (`model.{0,2,5,8,11}` for the basic 70x70
D, `net.{0,2,3,5}` for the pixel D) and, like every discriminator here, return a list
with one entry per scale holding the intermediate features with the logits last, so
single- and multi-scale discriminators share one loss path.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import get_norm_layer, norm_uses_bias
from .registry import register_discriminator


class NLayerDiscriminator(nn.Module):
    """PatchGAN with `n_layers` stride-2 convs: receptive field 16 (n=1), 34 (2), 70 (3), 142 (4), 286 (5).

    `padding` is 1 in pix2pix and 2 (ceil((4-1)/2)) in pix2pixHD.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 padding: int = 1) -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        kw = 4
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kw, stride=2, padding=padding), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=stride, padding=padding, bias=use_bias),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padding))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        features = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x)
        features.append(x)
        return [features]


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies each pixel independently (the paper's 1x1 receptive field)."""

    def __init__(self, in_channels: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1, stride=1, padding=0), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, stride=1, padding=0, bias=use_bias), norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * 2, 1, 1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        h1 = self.net[1](self.net[0](x))
        h2 = self.net[4](self.net[3](self.net[2](h1)))
        return [[h1, h2, self.net[5](h2)]]


@register_discriminator("patchgan")
def patchgan(in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> nn.Module:
    """pix2pix PatchGAN; n_layers 0 is the 1x1 pixel D, 1 = 16x16, 3 = 70x70 (default), 5 = 286x286."""
    if n_layers == 0:
        return PixelDiscriminator(in_channels, ndf, norm)
    return NLayerDiscriminator(in_channels, ndf, n_layers, norm)
