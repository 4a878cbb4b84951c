"""A deterministic, resumable order of training items.

Epoch e visits a permutation drawn from (seed, e); item i of that epoch gets its own
augmentation seed. Both depend only on (seed, epoch, position), so a run resumed at
any step sees exactly the batches the uninterrupted run would have seen, without
saving any loader state and whatever the number of worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (SplitMix64-style mixing)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (index, augmentation seed) for one epoch, starting at position `start`."""

    def __init__(self, num_items: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True) -> None:
        self.num_items, self.seed, self.epoch, self.start, self.shuffle = num_items, seed, epoch, start, shuffle

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for pos, index in enumerate(self.order()):
            if pos >= self.start:
                yield index, _mix(self.seed, self.epoch, pos, 1)

    def __len__(self) -> int:
        return max(0, self.num_items - self.start)
