"""The segmentation discriminator of `loss.lambda_seg` (after OASIS) and the pair D that carries it.

`SegmentationDiscriminator` maps an image to per-pixel logits over `n_classes` + 1 (the last:
"generated"). OASIS's D is a deep U-Net; this one is small (the pix2pix step with it costs 1.6x
at the synthetic world's 128x128, benchmarks/quality.md): stride-2 4x4 convolutions down (every
pixel reaches the first level, so 1-pixel poles are seen), a feature pyramid back up to half
resolution (1x1 laterals added top-down), one 3x3 convolution, and logits for each of a
half-resolution pixel's 2x2 image pixels. Leaky ReLUs and no normalisation, so a batch of real
and generated images is the same as two separate passes. It is not the evaluation segmenter's
U-Net, so the score that measures this term is not the network it trains against.

`WithSegmentationD` keeps the pair D (the PatchGAN) as it is and adds the segmenter beside it,
so one optimiser, one checkpoint entry and one wrapper (DDP, compile) hold both:
`d(pair)` runs the PatchGAN, `d(image, segment=True)` the segmenter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .padding import run_padded


class SegmentationDiscriminator(nn.Module):
    """Image -> [B, n_classes + 1, H, W] logits. Not in the discriminator registry: it answers per pixel and
    class, not the pair discriminators' list of scales that the GAN losses take."""

    def __init__(self, in_channels: int, n_classes: int, ndf: int = 64, n_layers: int = 4) -> None:
        super().__init__()
        widths = [ndf * min(2 ** i, 4) for i in range(n_layers)]
        self.down = nn.ModuleList(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
                                  for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True))
        self.lateral = nn.ModuleList(nn.Conv2d(w, ndf, 1) for w in widths)
        self.fuse = nn.Conv2d(ndf, ndf, 3, padding=1)
        self.head = nn.Conv2d(ndf, 4 * (n_classes + 1), 1)  # each half-resolution pixel's 2x2 pixels' logits
        self.size_multiple = 2 ** n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, h = [], x
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        top = self.lateral[-1](features[-1])
        for f, lateral in zip(reversed(features[:-1]), reversed(self.lateral[:-1]), strict=True):
            top = F.interpolate(top, scale_factor=2.0, mode="nearest") + lateral(f)
        return F.pixel_shuffle(self.head(F.leaky_relu(self.fuse(F.leaky_relu(top, 0.2)), 0.2)), 2)


class WithSegmentationD(nn.Module):
    """The pair D plus the segmentation D; `forward(x)` is the pair D's, `forward(image, segment=True)` segments."""

    def __init__(self, pair: nn.Module, segmenter: nn.Module) -> None:
        super().__init__()
        self.pair, self.segmenter = pair, segmenter

    def forward(self, x: torch.Tensor, segment: bool = False) -> torch.Tensor:
        return run_padded(self.segmenter, x) if segment else self.pair(x)
