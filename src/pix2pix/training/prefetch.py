"""Batches loaded ahead of the training step, in a background thread (and copied to the GPU on a side stream).

    loader = DataLoader(dataset, batch_sampler=batches, ...)
    for batch in Prefetcher(loader, device):   # instead of `for batch in loader`
        trainer.train_step(batch)

The batches are the loader's, in its order: the thread only calls `next()` on the loader's
iterator (its workers, when it has any, do the loading) and hands each batch over through a
queue of `depth` batches. Nothing here draws random numbers, so a run that prefetches trains
exactly as one that does not (the data order and augmentations come from the batch sampler's
seeds; see `sampling`). On CUDA each tensor is copied to the device in the thread, on its own
stream (non_blocking, which overlaps the copy with the step when the loader pins memory), and
the step's stream waits for that copy before it uses the batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch

__all__ = ["Prefetcher"]

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for v in batch.values():
            yield from _tensors(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _tensors(v)


class Prefetcher:
    """Iterate `loader` in a background thread, up to `depth` batches ahead of the consumer.

    `device`: a CUDA device to copy the batches to (on a side stream) before they are handed
    over; None or another device hands them over as the loader made them. An exception in the
    loader is raised in the consuming thread. Leaving the loop early (break, an exception, Ctrl-C)
    stops the thread after the batch it is loading.
    """

    def __init__(self, loader: Iterable[Any], device: torch.device | str | None = None, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"Prefetcher depth {depth}: it must be at least 1")
        self.loader, self.depth = loader, depth
        self.device = torch.device(device) if device is not None else None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        cuda = self.device is not None and self.device.type == "cuda" and torch.cuda.is_available()
        stream = torch.cuda.Stream(self.device) if cuda else None
        slots: queue.Queue[Any] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for batch in self.loader:
                    event = None
                    if stream is not None:
                        with torch.cuda.stream(stream):
                            batch = _to_device(batch, self.device)
                            event = torch.cuda.Event()
                            event.record(stream)
                    if not put((batch, event)):
                        return
                put(_END)
            except BaseException as exc:  # handed to the consumer, raised there
                put(_Failed(exc))

        thread = threading.Thread(target=work, name="pix2pix-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = slots.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                batch, event = item
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for t in _tensors(batch):
                        if t.device.type == "cuda":
                            t.record_stream(current)  # its memory is not reused before the step is done with it
                yield batch
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    slots.get(timeout=0.05)  # unblock a pending put
                except queue.Empty:
                    pass
                thread.join(timeout=0.05)
