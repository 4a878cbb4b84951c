"""Run a generator on any image size: pad to the multiple it needs, then crop back.

A U-Net with n downsamplings needs sides divisible by 2^n, a ResNet generator by 4.
Padding (reflection where the image is large enough, edge replication otherwise) keeps
the aspect ratio: nothing is resized or distorted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def size_multiple(net: nn.Module) -> int:
    """The multiple both image sides must have for `net` (1 when it takes any size); sees through DDP."""
    while not hasattr(net, "size_multiple") and isinstance(getattr(net, "module", None), nn.Module):
        net = net.module
    return int(getattr(net, "size_multiple", 1))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad [B, C, H, W] on the bottom and right to multiples of `multiple`; returns (padded, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def run_padded(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net(x) for any H, W: pad to `size_multiple(net)`, run, crop the output back to H, W."""
    padded, (h, w) = pad_to_multiple(x, size_multiple(net))
    out = net(padded)
    return out[..., :h, :w] if out.shape[-2:] != (h, w) else out
