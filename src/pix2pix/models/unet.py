"""U-Net generator with skip connections (pix2pix), key-compatible with the reference code.

The network is built recursively from the innermost block outwards, as in
pytorch-CycleGAN-and-pix2pix, so a reference `latest_net_G.pth` loads directly
(keys `model.model.1.model.1...`). Each block is [down] + [submodule] + [up] and
concatenates its input with its output on channels: [skip, up].
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..nn import conv_transpose_or_resize, get_norm_layer, norm_uses_bias
from .registry import register_generator


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-sample, run the inner levels, up-sample, concatenate the skip."""

    def __init__(self, outer_nc: int, inner_nc: int, *, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", dropout: bool = False, upsample: str = "transpose",
                 tanh: bool = True) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)

        def up(in_ch: int, bias: bool) -> nn.Module:
            return conv_transpose_or_resize(in_ch, outer_nc, kernel_size=4, padding=1, output_padding=0,
                                            bias=bias, upsample=upsample)

        if outermost:
            assert submodule is not None
            layers = [downconv, submodule, uprelu, up(inner_nc * 2, True)] + ([nn.Tanh()] if tanh else [])
        elif innermost:
            layers = [downrelu, downconv, uprelu, up(inner_nc, use_bias), norm_layer(outer_nc)]
        else:
            assert submodule is not None
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule,
                      uprelu, up(inner_nc * 2, use_bias), norm_layer(outer_nc)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with `num_downs` down-samplings; input sides must be multiples of 2^num_downs.

    Channels at level k are ngf * min(2^k, 8). As in the reference, dropout (when on)
    sits in the 512-channel levels between level 4 and the innermost block.

    `input_skip` (off in the reference) also hands the input itself to the output: the last
    up-sampling gives ngf channels, and a 3x3 convolution maps them, concatenated with the
    input, to the image. Without it the finest level the decoder sees is the first
    stride-2 encoding, so 1-2 pixel structures of the label map (poles, limbs) reach the
    output only through a 4x4 transposed convolution from half resolution.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = True, upsample: str = "transpose",
                 input_skip: bool = False) -> None:
        super().__init__()
        if num_downs < 2:
            raise ConfigError(f"num_downs={num_downs} is too small; a U-Net needs at least 2 down-samplings.")
        self.size_multiple = 2 ** num_downs

        def width(level: int) -> int:
            return ngf * min(2 ** level, 8)

        last = num_downs - 1
        block = UnetSkipConnectionBlock(width(last - 1), width(last), innermost=True, norm=norm, upsample=upsample)
        for level in range(last - 1, 0, -1):
            block = UnetSkipConnectionBlock(width(level - 1), width(level), submodule=block, norm=norm,
                                            dropout=dropout and level >= 4, upsample=upsample)
        self.model = UnetSkipConnectionBlock(ngf if input_skip else out_channels, ngf, input_nc=in_channels,
                                             submodule=block, outermost=True, norm=norm, upsample=upsample,
                                             tanh=not input_skip)
        self.head = nn.Sequential(nn.Conv2d(ngf + in_channels, out_channels, kernel_size=3, padding=1,
                                            padding_mode="reflect"), nn.Tanh()) if input_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.model(x)
        return self.head(torch.cat([torch.relu(self.model(x)), x], 1))


@register_generator("unet")
def unet(in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64, norm: str = "batch",
         dropout: bool = True, upsample: str = "transpose", input_skip: bool = False) -> UnetGenerator:
    """U-Net with any number of down-samplings."""
    return UnetGenerator(in_channels, out_channels, num_downs, ngf, norm, dropout, upsample, input_skip)


@register_generator("unet_256")
def unet_256(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: str = "batch",
             dropout: bool = True, upsample: str = "transpose", input_skip: bool = False) -> UnetGenerator:
    """The pix2pix default: 8 down-samplings (256x256 -> 1x1 at the bottleneck)."""
    return UnetGenerator(in_channels, out_channels, 8, ngf, norm, dropout, upsample, input_skip)


@register_generator("unet_128")
def unet_128(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: str = "batch",
             dropout: bool = True, upsample: str = "transpose", input_skip: bool = False) -> UnetGenerator:
    """7 down-samplings, for 128x128 images."""
    return UnetGenerator(in_channels, out_channels, 7, ngf, norm, dropout, upsample, input_skip)
