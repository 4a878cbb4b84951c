"""Training past one device and past fp32, with PyTorch's own engines.

* Distributed data parallel (`torch.nn.parallel.DistributedDataParallel`), launched by
  `torchrun`, which sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous); every
  process runs the same loop on its share of each global batch, rank 0 alone writes.
* Mixed precision: `torch.autocast` (bf16, or fp16 with a `GradScaler`) over the networks
  and losses. The losses reduce in fp32 (pix2pix.losses casts before reducing) and the
  normalisation kernels accumulate their statistics in fp32 (tested).
* `torch.compile` of the modules the step calls, and activation checkpointing of the
  residual blocks and local enhancers (their `checkpointed` flag).

The trainer keeps the plain modules in `net_g`, `net_d`, `net_e` (what is saved, sampled and
resumed) and calls the wrapped ones (`g`, `d`, `e`: the same parameters) in its step.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import Config
from ..errors import ConfigError
from ..runtime import resolve_device

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# -- processes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(cfg: Config) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(cfg.train.device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"distributed training runs on CUDA or the CPU, not on '{device}'.")
    backend = cfg.train.dist_backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistContext(rank, world, local_rank), device


def shutdown_distributed(*, finished: bool) -> None:
    """Leave the process group; after a finished run, only once every process has finished.

    A process that tears down its gloo connections while a peer still works (rank 0 writes the
    report) aborts now and then at exit ("terminate called without an active exception").
    """
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    gc.collect()  # DDP reducers caught in reference cycles hold the group: free them while Python is whole
    dist.destroy_process_group()


def mean_over_ranks(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """The mean of each value over all processes (one collective for the whole dict)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float64) for k in keys])
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked / ctx.world_size, strict=True))


def any_rank(flag: torch.Tensor, ctx: DistContext) -> bool:
    """True on every process when `flag` is true on any (so that all stop together)."""
    if not ctx.enabled:
        return bool(flag)
    value = flag.to(torch.int32).reshape(1).clone()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every process."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's `obj`, in rank order, on rank 0 (other ranks get [])."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size if ctx.is_main else []
    dist.gather_object(obj, out if ctx.is_main else None, dst=0)
    return out


# -- wrapping modules -----------------------------------------------------------------------------

def prepare_module(net: nn.Module, ctx: DistContext, device: torch.device, compile: bool) -> nn.Module:
    """The module the training step calls: DDP around `net` when distributed, then torch.compile.

    Only parameters that require grad at wrapping time are synchronised, so frozen parts
    (the global generator while the enhancer trains alone) must be frozen before this call.
    """
    run: nn.Module = net
    if ctx.enabled and any(p.requires_grad for p in net.parameters()):
        run = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        if device.type == "cpu":
            import torch._inductor.config as inductor_config

            # Inductor would turn the convolutions channels_last, measured slower on CPU (benchmarks/)
            inductor_config.layout_optimization = False
        import torch._functorch.config as functorch_config

        # the pix2pixHD step runs two backward passes through D's graph (D's loss, then G's, which
        # keeps it until then); a compiled backward that donates its saved buffers allows only one
        functorch_config.donated_buffer = False
        run = torch.compile(run)
    return run


def gradient_sync(module: nn.Module, sync: bool):
    """Context in which a DDP module skips its gradient all-reduce when `sync` is false."""
    if sync or not hasattr(module, "no_sync"):
        return nullcontext()
    return module.no_sync()


def convert_sync_batchnorm(net: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """Batch norm with statistics over all processes (the parameters stay the same objects)."""
    if not ctx.enabled:
        return net
    if device.type != "cuda":
        raise ConfigError("train.sync_bn: PyTorch's SyncBatchNorm runs on GPUs only; on the CPU set "
                          "train.sync_bn=false (or model.norm=instance, which needs no synchronisation).")
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def enable_activation_checkpointing(net: nn.Module) -> int:
    """Set `checkpointed` on every residual block and local enhancer; returns how many."""
    count = 0
    for module in net.modules():
        if hasattr(type(module), "checkpointed"):
            module.checkpointed = True
            count += 1
    return count


@contextmanager
def buffers_kept(net: nn.Module) -> Iterator[None]:
    """Run a forward pass without it changing the running statistics of batch norm."""
    saved = [b.detach().clone() for b in net.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(net.buffers(), saved, strict=True):
                buffer.copy_(value)


# -- precision ------------------------------------------------------------------------------------

def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 convolutions natively: a CUDA GPU that supports bf16, or a CPU with
    AVX-512-BF16 or AMX. Elsewhere oneDNN emulates bf16, many times slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """train.precision as the run computes it: "auto" becomes bf16 where the device has native bf16, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


class MixedPrecision:
    """Autocast and, for fp16, loss scaling; with fp32 both are no-ops."""

    def __init__(self, device: torch.device, precision: str = "fp32") -> None:
        precision = resolve_precision(precision, device)
        if precision not in _DTYPES:
            raise ConfigError(f"train.precision='{precision}': choose fp32, bf16, fp16 or auto.")
        self.precision = precision
        self.device_type, self.dtype = device.type, _DTYPES[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self):
        return nullcontext() if self.dtype is None else torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        self.scaler.scale(loss).backward(**kwargs)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)

    def update(self) -> None:
        self.scaler.update()
