"""The prefetching iterator: the loader's batches in its order, loaded while the consumer works, errors passed on."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.utils.data import DataLoader

from pix2pix.training.prefetch import Prefetcher
from pix2pix.training.sampling import EpochBatchSampler


def _alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pix2pix-prefetch"]


@pytest.mark.parametrize("depth", [1, 3])
def test_same_batches_in_the_same_order(depth):
    items = [{"A": torch.full((2, 2), float(i)), "path": [f"x{i}"]} for i in range(7)]
    got = list(Prefetcher(items, depth=depth))
    assert [b["path"] for b in got] == [b["path"] for b in items]
    assert all(torch.equal(a["A"], b["A"]) for a, b in zip(got, items, strict=True))
    assert not _alive()


def test_the_loader_runs_ahead_of_the_consumer():
    produced = [threading.Event() for _ in range(4)]

    def loader():
        for i in range(4):
            produced[i].set()
            yield i

    for i in Prefetcher(loader(), depth=2):
        if i + 1 < 4:  # while the consumer still holds batch i, batch i + 1 gets made
            assert produced[i + 1].wait(timeout=10)


def test_a_loader_error_reaches_the_consumer():
    def loader():
        yield 0
        yield 1
        raise OSError("broken.png: cannot identify image file")

    seen = []
    with pytest.raises(OSError, match="broken.png"):
        for i in Prefetcher(loader()):
            seen.append(i)
    assert seen == [0, 1]
    assert not _alive()


def test_leaving_early_stops_the_thread():
    pulled = []

    def loader():
        for i in range(1000):
            pulled.append(i)
            yield i

    it = Prefetcher(loader(), depth=2)
    for i in it:
        if i == 3:
            break
    assert not _alive()
    assert len(pulled) <= 3 + 1 + 2 + 1  # what was consumed, the queue, the one in hand


def test_bad_depth():
    with pytest.raises(ValueError, match="at least 1"):
        Prefetcher([], depth=0)


def test_real_loader_gives_identical_batches_and_leaves_the_global_rng_alone(tiny_config):
    """Through the thread the augmented batches are bit for bit the loader's, and the global RNG (dropout's) is
    not drawn from: the step's random stream is the same whether or not the loop prefetches."""
    from pix2pix.data.paired import PairedDataset

    cfg = tiny_config
    dataset = PairedDataset.from_config(cfg.data, cfg.model, "train", train=True)
    batches = EpochBatchSampler(len(dataset), 3, 2)

    def epoch(wrap):
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=0, generator=torch.Generator())
        batches.set_epoch(1, 1)
        return list(wrap(loader))

    direct = epoch(lambda x: x)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    ahead = epoch(Prefetcher)
    assert torch.equal(torch.get_rng_state(), before)
    assert len(direct) == len(ahead) == batches.steps_per_epoch - 1
    for a, b in zip(direct, ahead, strict=True):
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
