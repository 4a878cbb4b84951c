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


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """One process's batches of one epoch, resumable at any step; `set_epoch` before each epoch.

    Step s takes the global batch at positions [s*G, (s+1)*G) of the epoch's order, G =
    batch_size * world_size, and process `rank` takes its contiguous share of batch_size
    items, so the processes together see exactly the batches one process with batch G would
    see. As with torch's DistributedSampler, a short last batch is completed by wrapping
    around to the start of the order, so that every process runs the same number of steps.
    """

    def __init__(self, num_items: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        self.num_items, self.seed, self.batch_size = num_items, seed, batch_size
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch, self.start_step = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_items // (self.batch_size * self.world_size))

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        items = list(EpochSampler(self.num_items, self.seed, self.epoch, shuffle=self.shuffle))
        size = self.batch_size * self.world_size
        for step in range(self.start_step, self.steps_per_epoch):
            chunk = items[step * size:(step + 1) * size]
            share = -(-len(chunk) // self.world_size)
            if self.world_size > 1:
                chunk = (chunk + items * (share * self.world_size // len(items) + 1))[:share * self.world_size]
            yield chunk[self.rank * share:(self.rank + 1) * share]

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step)
