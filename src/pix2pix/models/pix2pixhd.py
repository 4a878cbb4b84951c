"""pix2pixHD networks (Wang et al., CVPR 2018), key-compatible with NVIDIA's reference code.

* `global`: GlobalGenerator, keys `model.{1,4,...,38}`: Conv7 stem, `n_downsample` stride-2
  convs, `n_blocks` residual blocks (`model.{16..24}.conv_block.{1,5}`), as many 2x
  up-samplings, Conv7 + tanh.
* `local`: LocalEnhancer, a global generator (built with ngf * 2^n_local_enhancers and its
  final pad/conv/tanh removed) at `model.*`, and enhancers `model{n}_1` (front end) and
  `model{n}_2` (residual blocks, up-sampling, and for the outermost one the output layer).
* `multiscale`: MultiscaleDiscriminator, `num_D` PatchGANs with k4 / padding 2 at
  `scale{i}_layer{j}.0.*`, each returning every intermediate output (feature matching).

Unlike pix2pix (where only instance-norm convs have one), every conv here carries a bias,
as in the reference.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..nn import (
    as_state_dict,
    conv_transpose_or_resize,
    get_norm_layer,
    load_state_strict,
    padding_layer,
    repair_legacy_state,
)
from .registry import register_discriminator, register_generator
from .resnet import ResnetBlock

__all__ = ["GlobalGenerator", "LocalEnhancer", "MultiscaleDiscriminator", "downsample_pool"]


def downsample_pool() -> nn.AvgPool2d:
    """The reference's 2x down-sampling for input pyramids: 3x3 average, border pixels averaged over valid ones."""
    return nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name}={value} is invalid; it must be at least 1.")


def _global_layers(in_channels: int, out_channels: int, ngf: int, n_downsample: int, n_blocks: int, norm: str,
                   padding_type: str, upsample: str) -> list[nn.Module]:
    """The GlobalGenerator's Sequential, index for index as in the reference (every conv has a bias)."""
    norm_layer = get_norm_layer(norm)
    padding_layer(padding_type, 1)  # validate early, with the library's message
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, padding=0), norm_layer(ngf),
                               nn.ReLU(True)]
    for i in range(n_downsample):
        mult = 2 ** i
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), norm_layer(ngf * mult * 2),
                   nn.ReLU(True)]
    mult = 2 ** n_downsample
    for _ in range(n_blocks):
        # pix2pixHD's ResnetBlock is pix2pix's without dropout but with biases whatever the norm
        layers.append(ResnetBlock(ngf * mult, norm=norm, padding_type=padding_type, dropout=False, use_bias=True))
    for i in range(n_downsample):
        mult = 2 ** (n_downsample - i)
        layers += [conv_transpose_or_resize(ngf * mult, ngf * mult // 2, kernel_size=3, padding=1, output_padding=1,
                                            bias=True, upsample=upsample),
                   norm_layer(ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7, padding=0), nn.Tanh()]
    return layers


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator G1 (the `global` netG).

    With the defaults (ngf 64, 4 down-samplings, 9 blocks) and 36 input channels it has
    182,546,755 parameters. Input sides must be multiples of 2^n_downsample.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, *, ngf: int = 64, n_downsample: int = 4,
                 n_blocks: int = 9, norm: str = "instance", padding_type: str = "reflect",
                 upsample: str = "transpose") -> None:
        super().__init__()
        _check_positive(ngf=ngf, n_downsample=n_downsample)
        self.size_multiple = 2 ** n_downsample
        self.model = nn.Sequential(*_global_layers(in_channels, out_channels, ngf, n_downsample, n_blocks, norm,
                                                   padding_type, upsample))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LocalEnhancer(nn.Module):
    """pix2pixHD's coarse-to-fine generator G = {G1, G2, ...} (the `local` netG).

    `model` is a global generator built with ngf * 2^n_local_enhancers whose final
    pad/conv/tanh are dropped, so it returns features at 1/2^N of the input resolution.
    Enhancer n (1..N, n = N the outermost, at full resolution) has width
    g = ngf * 2^(N - n): `model{n}_1` = [ReflPad3, Conv7(in->g), norm, ReLU, Conv3 s2 (g->2g),
    norm, ReLU] and `model{n}_2` = [n_blocks_local ResBlocks(2g), 2x up (2g->g), norm, ReLU]
    plus [ReflPad3, Conv7(g->out), Tanh] for n = N. Forward: an input pyramid by
    `downsample_pool()`, out = model(coarsest), then out = model{n}_2(model{n}_1(x_n) + out).

    ngf 32, one enhancer and 36 inputs: 182,857,059 parameters. The reference trains the
    global part first, then only `enhancer_parameters()` for `niter_fix_global` epochs,
    then everything; `load_global_state` moves a trained `global` generator in.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, *, ngf: int = 32, n_downsample_global: int = 4,
                 n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3,
                 norm: str = "instance", padding_type: str = "reflect", upsample: str = "transpose") -> None:
        super().__init__()
        _check_positive(ngf=ngf, n_downsample_global=n_downsample_global, n_local_enhancers=n_local_enhancers)
        self.n_local_enhancers = n_local_enhancers
        self.size_multiple = 2 ** (n_downsample_global + n_local_enhancers)
        norm_layer = get_norm_layer(norm)
        global_layers = _global_layers(in_channels, out_channels, ngf * 2 ** n_local_enhancers, n_downsample_global,
                                       n_blocks_global, norm, padding_type, upsample)
        self.model = nn.Sequential(*global_layers[:-3])  # drop ReflPad3, Conv7, Tanh
        for n in range(1, n_local_enhancers + 1):
            g = ngf * 2 ** (n_local_enhancers - n)
            front = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, g, 7, padding=0), norm_layer(g), nn.ReLU(True),
                     nn.Conv2d(g, 2 * g, 3, stride=2, padding=1), norm_layer(2 * g), nn.ReLU(True)]
            back: list[nn.Module] = [ResnetBlock(2 * g, norm=norm, padding_type=padding_type, dropout=False,
                                                 use_bias=True) for _ in range(n_blocks_local)]
            back += [conv_transpose_or_resize(2 * g, g, kernel_size=3, padding=1, output_padding=1, bias=True,
                                              upsample=upsample),
                     norm_layer(g), nn.ReLU(True)]
            if n == n_local_enhancers:
                back += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7, padding=0), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))
        self.downsample = downsample_pool()

    checkpointed = False  # train.checkpoint_activations: recompute each enhancer (full-resolution maps) in backward

    def _enhance(self, n: int, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"model{n}_2")(getattr(self, f"model{n}_1")(x) + coarse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            x_n = pyramid[self.n_local_enhancers - n]
            if self.checkpointed and torch.is_grad_enabled():
                out = checkpoint(self._enhance, n, x_n, out, use_reentrant=False)
            else:
                out = self._enhance(n, x_n, out)
        return out

    def enhancer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the outermost enhancer (`model{N}_*`), trained alone for `niter_fix_global` epochs."""
        prefix = f"model{self.n_local_enhancers}_"
        return [p for name, p in self.named_parameters() if name.startswith(prefix)]

    def load_global_state(self, state_dict: Mapping[str, torch.Tensor], source: str = "the global generator's "
                          "state_dict") -> None:
        """Load a `global` generator's state_dict into the global part `model` (files: `pix2pix.io.reference`).

        The global generator's output layer (`model.{len(model) + 1}.*`, the Conv7 this model
        drops) is ignored; every other key must match exactly, otherwise a CheckpointError
        lists the missing, unexpected and mis-shaped keys. As for `import_reference`, a
        `module.` prefix is stripped and legacy instance-norm statistics are dropped.
        """
        state = as_state_dict(state_dict, source)
        dropped_conv = f"model.{len(self.model) + 1}."
        state = {k: v for k, v in state.items() if not k.startswith(dropped_conv)}
        holder = nn.Module()
        holder.model = self.model  # same key names as the global generator: `model.*`
        load_state_strict(holder, repair_legacy_state(holder, state), source)


def _multiscale_layers(in_channels: int, ndf: int, n_layers: int, norm: str,
                       use_sigmoid: bool) -> list[nn.Sequential]:
    """One pix2pixHD NLayerDiscriminator as its getIntermFeat list of Sequentials (model0..model{n_layers+1})."""
    norm_layer = get_norm_layer(norm)
    kw, pad = 4, 2  # padding ceil((4 - 1) / 2) = 2, not pix2pix's 1
    layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2, True))]
    nf = ndf
    for _ in range(1, n_layers):
        nf_prev, nf = nf, min(nf * 2, 512)  # the reference caps at 512 channels, not at 8 * ndf
        layers.append(nn.Sequential(nn.Conv2d(nf_prev, nf, kw, stride=2, padding=pad), norm_layer(nf),
                                    nn.LeakyReLU(0.2, True)))
    nf_prev, nf = nf, min(nf * 2, 512)
    layers.append(nn.Sequential(nn.Conv2d(nf_prev, nf, kw, stride=1, padding=pad), norm_layer(nf),
                                nn.LeakyReLU(0.2, True)))
    last: list[nn.Module] = [nn.Conv2d(nf, 1, kw, stride=1, padding=pad)]
    if use_sigmoid:
        last.append(nn.Sigmoid())
    layers.append(nn.Sequential(*last))
    return layers


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's multi-scale discriminator: `num_D` PatchGANs on an input pyramid.

    Layer j of scale i is the Sequential `scale{i}_layer{j}` (keys `scale{i}_layer{j}.0.*`).
    Scale assignment follows the reference code, not the paper's wording: the forward pass
    runs the layers of `scale{num_D-1-k}` on the input down-sampled k times, so
    `scale{num_D-1}` sees the full resolution and `scale0` the coarsest. A reference
    checkpoint therefore behaves exactly as it was trained.

    Returns `[[feat_0, ..., feat_{n_layers}, logits] per scale]`, ordered from the full
    resolution to the coarsest, every entry the output of one `scale{i}_layer{j}`.
    Down-sampling is `AvgPool2d(3, 2, padding 1, count_include_pad=False)`.

    `use_sigmoid` appends a sigmoid to the last layer (no parameters, keys unchanged); the
    reference's feature-matching path silently drops it, and this library's GAN losses
    expect logits, so leave it off unless a loss takes probabilities.
    Every conv has a bias. One scale with 39 inputs: 2,801,601 parameters.
    """

    def __init__(self, in_channels: int, *, ndf: int = 64, n_layers: int = 3, num_D: int = 2,
                 norm: str = "instance", use_sigmoid: bool = False) -> None:
        super().__init__()
        _check_positive(ndf=ndf, n_layers=n_layers, num_D=num_D)
        self.num_D = num_D
        self.n_layers = n_layers
        for i in range(num_D):
            for j, layer in enumerate(_multiscale_layers(in_channels, ndf, n_layers, norm, use_sigmoid)):
                setattr(self, f"scale{i}_layer{j}", layer)
        self.downsample = downsample_pool()

    def scale_layers(self, i: int) -> list[nn.Module]:
        """The layers of `scale{i}` in order (scale num_D-1 is the one run at full resolution)."""
        return [getattr(self, f"scale{i}_layer{j}") for j in range(self.n_layers + 2)]

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        result = []
        for k in range(self.num_D):
            features = []
            h = x
            for layer in self.scale_layers(self.num_D - 1 - k):
                h = layer(h)
                features.append(h)
            result.append(features)
            if k != self.num_D - 1:
                x = self.downsample(x)
        return result


@register_generator("global")
def global_generator(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_downsample: int = 4,
                     n_blocks: int = 9, norm: str = "instance", padding_type: str = "reflect",
                     upsample: str = "transpose") -> GlobalGenerator:
    """pix2pixHD global generator (netG global); size_multiple 2^n_downsample."""
    return GlobalGenerator(in_channels, out_channels, ngf=ngf, n_downsample=n_downsample, n_blocks=n_blocks,
                           norm=norm, padding_type=padding_type, upsample=upsample)


@register_generator("local")
def local_enhancer(in_channels: int = 3, out_channels: int = 3, ngf: int = 32, n_downsample_global: int = 4,
                   n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3,
                   norm: str = "instance", padding_type: str = "reflect",
                   upsample: str = "transpose") -> LocalEnhancer:
    """pix2pixHD local enhancer (netG local); size_multiple 2^(n_downsample_global + n_local_enhancers)."""
    return LocalEnhancer(in_channels, out_channels, ngf=ngf, n_downsample_global=n_downsample_global,
                         n_blocks_global=n_blocks_global, n_local_enhancers=n_local_enhancers,
                         n_blocks_local=n_blocks_local, norm=norm, padding_type=padding_type, upsample=upsample)


@register_discriminator("multiscale")
def multiscale(in_channels: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2,
               norm: str = "instance", use_sigmoid: bool = False) -> MultiscaleDiscriminator:
    """pix2pixHD multi-scale discriminator; returns one [features..., logits] list per scale."""
    return MultiscaleDiscriminator(in_channels, ndf=ndf, n_layers=n_layers, num_D=num_D, norm=norm,
                                   use_sigmoid=use_sigmoid)
