"""ResNet generator (Johnson et al. 2016) as in pytorch-CycleGAN-and-pix2pix, key-compatible.

Sequential indices match the reference: stem conv `model.1`, down convs `model.4`,
`model.7`, residual blocks `model.10...`, up convs after them, output conv last.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..nn import conv_transpose_or_resize, get_norm_layer, norm_uses_bias, padding_layer
from .registry import register_generator


class ResnetBlock(nn.Module):
    """[pad, conv3, norm, ReLU, (dropout), pad, conv3, norm] with an identity skip.

    With `checkpointed` set (train.checkpoint_activations) the block keeps only its input for
    backward and recomputes the rest (dropout masks are replayed from the saved RNG state).
    """

    checkpointed = False

    def __init__(self, dim: int, *, norm: str = "instance", padding_type: str = "reflect",
                 dropout: bool = False, use_bias: bool | None = None) -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        bias = norm_uses_bias(norm) if use_bias is None else use_bias
        layers: list[nn.Module] = []
        for i in range(2):
            pad, p = padding_layer(padding_type, 1)
            layers += [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=bias), norm_layer(dim)]
            if i == 0:
                layers.append(nn.ReLU(True))
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed and torch.is_grad_enabled():
            return x + checkpoint(self.conv_block, x, use_reentrant=False)
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Conv7 stem, two stride-2 convs, n residual blocks, two 2x up-samplings, Conv7 + tanh."""

    size_multiple = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_blocks: int = 9, ngf: int = 64,
                 norm: str = "instance", dropout: bool = True, upsample: str = "transpose",
                 padding_type: str = "reflect") -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, padding=0, bias=use_bias),
                                   norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                       norm_layer(ngf * mult * 2), nn.ReLU(True)]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(ngf * 4, norm=norm, padding_type=padding_type, dropout=dropout))
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [conv_transpose_or_resize(ngf * mult, ngf * mult // 2, kernel_size=3, padding=1,
                                                output_padding=1, bias=use_bias, upsample=upsample),
                       norm_layer(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_generator("resnet")
def resnet(in_channels: int = 3, out_channels: int = 3, n_blocks: int = 9, ngf: int = 64, norm: str = "instance",
           dropout: bool = True, upsample: str = "transpose", padding_type: str = "reflect") -> ResnetGenerator:
    """ResNet generator with any number of residual blocks."""
    return ResnetGenerator(in_channels, out_channels, n_blocks, ngf, norm, dropout, upsample, padding_type)


@register_generator("resnet_9blocks")
def resnet_9blocks(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: str = "instance",
                   dropout: bool = True, upsample: str = "transpose",
                   padding_type: str = "reflect") -> ResnetGenerator:
    return ResnetGenerator(in_channels, out_channels, 9, ngf, norm, dropout, upsample, padding_type)


@register_generator("resnet_6blocks")
def resnet_6blocks(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: str = "instance",
                   dropout: bool = True, upsample: str = "transpose",
                   padding_type: str = "reflect") -> ResnetGenerator:
    return ResnetGenerator(in_channels, out_channels, 6, ngf, norm, dropout, upsample, padding_type)
