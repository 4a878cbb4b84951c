"""The export-time parity check: the exported graph against eager PyTorch on random inputs at two sizes.

Relative difference of an output: max|exported - eager| / max|eager| over the whole tensor (the
largest absolute error, in units of the output's range; generators end in tanh, so max|eager| is
close to 1 and the figure is close to the absolute error). A check passes below `THRESHOLD`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import Pix2PixError

THRESHOLD = 1e-4
METRIC = "max|exported - eager| / max|eager|"

__all__ = ["METRIC", "THRESHOLD", "ExportError", "InputSpec", "ParityCheck", "default_sizes", "random_inputs",
           "relative_difference"]


class ExportError(Pix2PixError):
    """An export that failed its parity check or could not be written; nothing is left at the output path."""


@dataclass(frozen=True)
class InputSpec:
    """One graph input: `kind` is image (float in [-1, 1]), label (int64 ids below `classes`), instance
    (int64 ids) or features (float in [-1, 1])."""

    name: str
    kind: str
    channels: int
    classes: int = 0

    @property
    def dtype(self) -> str:
        return "int64" if self.kind in ("label", "instance") else "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": ["batch", self.channels, "height", "width"]}


@dataclass(frozen=True)
class ParityCheck:
    shapes: list[list[int]]  # the input shapes, graph order
    max_abs: float
    max_rel: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_rel) and self.max_rel < THRESHOLD

    def to_dict(self) -> dict:
        return {"input_shapes": self.shapes, "max_abs": self.max_abs, "max_rel": self.max_rel}


def relative_difference(exported: torch.Tensor, eager: torch.Tensor) -> tuple[float, float]:
    """(max|a - b|, max|a - b| / max|b|) of exported `a` against eager `b`; inf for a shape mismatch or NaN."""
    if exported.shape != eager.shape:
        return math.inf, math.inf
    diff = (exported.double() - eager.double()).abs().max().item()
    scale = eager.double().abs().max().item()
    if not math.isfinite(diff):
        return math.inf, math.inf
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def _blocks(gen: torch.Generator, b: int, h: int, w: int, high: int, block: int) -> torch.Tensor:
    """Random ids constant over block x block squares: regions with boundaries, as in real label maps."""
    coarse = torch.randint(0, max(high, 1), (b, 1, -(-h // block), -(-w // block)), generator=gen)
    return coarse.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :h, :w].contiguous()


def random_inputs(specs: Sequence[InputSpec], batch: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for spec in specs:
        if spec.kind == "label":
            out.append(_blocks(gen, batch, height, width, spec.classes, 3))
        elif spec.kind == "instance":  # Cityscapes-style ids class*1000+k, blocks that cut across label blocks
            out.append(_blocks(gen, batch, height, width, 4, 5) * 1000 + _blocks(gen, batch, height, width, 3, 2))
        else:
            out.append(torch.rand(batch, spec.channels, height, width, generator=gen) * 2 - 1)
    return out


def default_sizes(multiple: int, runs: Callable[[int, int], bool]) -> list[tuple[int, int, int]]:
    """Two (batch, height, width) checks: a multiple of the network's size multiple (H != W, batch 1) and a
    size just below the base square that needs padding on both sides (batch 2).

    The base side is the smallest multiple of `multiple` of at least 64 pixels that the eager network runs
    at (`runs(h, w)`; 1x1 residual blocks cannot reflect-pad). Smaller maps are not a fair test: instance
    norm over a 2x2 bottleneck makes eager fp32 itself differ from fp64 by ~1e-4 there.
    """
    m = max(int(multiple), 1)
    first = -(-64 // m)
    for k in (first, first * 2, first * 4):
        base = m * k
        if runs(base, base):
            break
    else:
        raise ExportError(f"the eager network fails on random {base}x{base} inputs: it cannot be checked; pass "
                          "explicit --sizes.")
    if m == 1:
        return [(1, base, 2 * base), (2, base + 5, base + 3)]
    return [(1, base, 2 * base), (2, base - max(1, m // 2 - 1), base - min(3, m - 1))]
