"""Opt-in speed-ups for the training step (`train.fast_step`) that leave the maths unchanged.

    from pix2pix.training.fast_step import speed_up
    trainer = Pix2PixTrainer(cfg, device)
    speed_up(trainer)            # before the first train_step
    trainer.train_step(batch)    # same losses and weights, to float rounding

What each one does, and what it measured on a 2-core AMD EPYC (Zen 3, AVX2) with
unet_256 + 70x70 PatchGAN at 256x256, batch 1 (benchmarks/benchmark.py; all three
together: 1.4-1.7x the step throughput of a plain eager reference step, see
benchmarks/README.md):

* fused Adam (`torch.optim.Adam(fused=True)`): one vectorised kernel over every
  parameter instead of ~6 elementwise passes per tensor. The generator has 54 M
  parameters, so the unfused update is ~15-20 % of the CPU step. Same update
  rule; results agree to float rounding (not bit for bit).
* glibc allocator tuning (`tune_cpu_allocator`): PyTorch's CPU allocator is plain
  malloc; glibc serves blocks over its mmap threshold with fresh mmap()s and
  returns them on free, so every step page-faults its activations and gradients
  in again (~50 000 minor faults, ~0.1 s of kernel time per step). Keeping the
  memory in the heap removes that. Bit-identical results; process-wide; Linux
  glibc only (a no-op elsewhere).
* per-layer convolution backend (`autotune_conv_backends`): oneDNN re-lays out
  the weights of every convolution call, which dominates the weight-heavy layers
  near the U-Net bottleneck (up to 1024x512x4x4 weights on 1x1 to 16x16 maps);
  PyTorch's native im2col + BLAS path is up to 2x faster there, and slower on the
  large maps. Each Conv2d / ConvTranspose2d with a small im2col buffer times both
  backends the first time it sees an input shape (forward + backward, a few
  repetitions) and keeps the faster; the others keep oneDNN. The same convolution,
  summed in another order: results agree to float rounding.

On pix2pixHD's 512p step (global G, 182 M parameters) fused Adam and the allocator
give the gain (1.28-1.34x with the three, 1.22-1.24x with the allocator alone,
bit-identical); oneDNN wins every layer there.

Not applied here because they did not help on that CPU: channels_last (0.7-0.9x:
the weights are re-laid out on every call and the optimiser copies between
formats), torch.compile (no faster than fused Adam alone: the step is
convolution-bound, and Inductor's default layout optimisation converts to
channels_last, which is slower), turning oneDNN off globally (0.9x). Running D
on real and fake pairs as one batch would save a pass but changes batch-norm
statistics, so it is not the same maths.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time
from typing import Any

import torch
from torch import nn

__all__ = [
    "autotune_conv_backends",
    "speed_up",
    "tune_cpu_allocator",
    "use_fused_adam",
]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of unmapping it (no page faults on reuse).

    Sets M_MMAP_MAX=0 (no mmap()ed blocks) and a 1 GiB M_TRIM_THRESHOLD for the whole
    process. Returns True when applied (Linux with glibc), False otherwise. The peak
    resident memory stays about the same; memory freed by the process is reused by it
    rather than returned to the system while it runs.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _allocator_tuned = ok
    return ok


def fused_adam_supported(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


def use_fused_adam(trainer: Any) -> None:
    """Rebuild the trainer's Adam optimisers (and their schedulers) with fused=True, same parameters.

    Call before the first step; an optimiser that already holds state keeps it (its
    state dict is loaded into the fused one, which reads the same format).
    """
    from .schedules import make_scheduler

    for opt_name, sched_name in (("opt_g", "sched_g"), ("opt_d", "sched_d")):
        old = getattr(trainer, opt_name, None)
        if old is None:
            continue
        group = old.param_groups[0]
        params = [p for g in old.param_groups for p in g["params"]]
        new = torch.optim.Adam(params, lr=group["lr"], betas=group["betas"], eps=group["eps"],
                               weight_decay=group["weight_decay"], fused=True)
        if old.state:
            new.load_state_dict(old.state_dict())
        old_sched = getattr(trainer, sched_name)
        sched = make_scheduler(new, trainer.cfg.optim)
        sched.load_state_dict(old_sched.state_dict())
        setattr(trainer, opt_name, new)
        setattr(trainer, sched_name, sched)


# ----------------------------------------------------------------------------------------------
# Per-layer convolution backend: oneDNN (PyTorch's CPU default) or native im2col + BLAS


def _set_mkldnn(enabled: bool) -> bool:
    prev = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(enabled)
    return prev


class _NativeConvolution(torch.autograd.Function):
    """aten.convolution with oneDNN switched off for its forward and its backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                conv: tuple) -> torch.Tensor:
        prev = _set_mkldnn(False)
        try:
            out = torch.ops.aten.convolution(x, weight, bias, *conv)
        finally:
            _set_mkldnn(prev)
        ctx.save_for_backward(x, weight)
        ctx.conv = conv
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        mask = list(ctx.needs_input_grad[:3])
        prev = _set_mkldnn(False)
        try:
            gx, gw, gb = torch.ops.aten.convolution_backward(grad_out, x, weight, ctx.bias_sizes, *ctx.conv, mask)
        finally:
            _set_mkldnn(prev)
        return gx, gw, gb, None


def _conv_args(m: nn.Module, x: torch.Tensor) -> tuple:
    """(stride, padding, dilation, transposed, output_padding, groups) as aten.convolution takes them."""
    if isinstance(m, nn.ConvTranspose2d):
        return list(m.stride), list(m.padding), list(m.dilation), True, list(m.output_padding), m.groups
    return list(m.stride), list(m.padding), list(m.dilation), False, [0, 0], m.groups


class _BackendChoice:
    """The backend chosen per input signature, measured on first sight."""

    def __init__(self, repeats: int, margin: float, max_columns_mib: float) -> None:
        self.repeats, self.margin, self.max_columns_mib = repeats, margin, max_columns_mib
        self.native: dict[tuple, bool] = {}
        self.timings: dict[tuple, tuple[float, float]] = {}


def _columns_mib(m: nn.Module, x: torch.Tensor) -> float:
    """The size of the native path's im2col buffer (channels x kernel taps x output positions), in MiB."""
    taps = m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.ConvTranspose2d):  # columns: out channels x taps x input positions
        return m.out_channels // m.groups * taps * x.shape[2] * x.shape[3] * 4 / 2**20
    positions = (x.shape[2] // m.stride[0]) * (x.shape[3] // m.stride[1])
    return m.in_channels // m.groups * taps * positions * 4 / 2**20


def _run(m: nn.Module, x: torch.Tensor, native: bool) -> torch.Tensor:
    if native:
        return _NativeConvolution.apply(x, m.weight, m.bias, _conv_args(m, x))
    return m._default_forward(x)


def _measure(m: nn.Module, x: torch.Tensor, train: bool, native: bool) -> float:
    xi = x.detach().requires_grad_(x.requires_grad)
    params = [p for p in (m.weight, m.bias) if p is not None and p.requires_grad]
    t0 = time.perf_counter()
    if train:
        out = _run(m, xi, native)
        inputs = ([xi] if xi.requires_grad else []) + params
        if inputs:
            torch.autograd.grad(out, inputs, torch.ones_like(out))  # no .grad accumulation, no RNG use
    else:
        with torch.no_grad():
            _run(m, xi, native)
    return time.perf_counter() - t0


def _tuned_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    choice: _BackendChoice = self._backend_choice
    train = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
        return self._default_forward(x)
    key = (tuple(x.shape), x.is_contiguous(), train, x.requires_grad, self.weight.requires_grad)
    native = choice.native.get(key)
    if native is None and _columns_mib(self, x) > choice.max_columns_mib:
        # native im2col only ever won on small maps (weight-heavy layers); on large ones it is slower
        # and its column buffer alone can take GiBs (1.6 GiB for pix2pixHD's last layer at 512x256)
        native = choice.native[key] = False
    if native is None:
        best = [float("inf"), float("inf")]
        _measure(self, x, train, False)  # warm both paths once
        _measure(self, x, train, True)
        for _ in range(choice.repeats):
            for i, nat in enumerate((False, True)):
                best[i] = min(best[i], _measure(self, x, train, nat))
        native = best[1] < choice.margin * best[0]
        choice.native[key], choice.timings[key] = native, (best[0], best[1])
    return _run(self, x, native)


class _TunedConv2d(nn.Conv2d):
    _default_forward = nn.Conv2d.forward
    forward = _tuned_forward


class _TunedConvTranspose2d(nn.ConvTranspose2d):
    def _default_forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.ConvTranspose2d.forward(self, x)

    forward = _tuned_forward


def autotune_conv_backends(net: nn.Module, repeats: int = 3, margin: float = 0.9,
                           max_columns_mib: float = 8.0) -> int:
    """Let every Conv2d / ConvTranspose2d of `net` pick oneDNN or native per input shape, by timing.

    The modules keep their parameters, state-dict keys and isinstance; only the kernel
    that computes them changes (CPU float32 only; other devices and dtypes are left
    alone). Native is kept only when it is faster than `margin` times oneDNN, and tried
    only when its im2col buffer stays under `max_columns_mib` (measured: it won only at
    4 MiB and below, the U-Net's bottleneck layers; above, oneDNN won every layer of
    pix2pix at 256x256 and pix2pixHD at 512x256). Returns the number of layers switched
    to tuning.
    """
    n = 0
    for m in net.modules():
        if type(m) is nn.Conv2d and m.padding_mode == "zeros":
            m.__class__ = _TunedConv2d
        elif type(m) is nn.ConvTranspose2d and m.padding_mode == "zeros":
            m.__class__ = _TunedConvTranspose2d
        else:
            continue
        m._backend_choice = _BackendChoice(repeats, margin, max_columns_mib)
        n += 1
    return n


def conv_backend_report(net: nn.Module) -> list[tuple[str, tuple, str, float, float]]:
    """(module name, input signature, chosen backend, oneDNN ms, native ms) for every tuned layer."""
    rows = []
    for name, m in net.named_modules():
        choice = getattr(m, "_backend_choice", None)
        if choice is None:
            continue
        for key, native in choice.native.items():
            t_one, t_nat = choice.timings.get(key, (float("nan"), float("nan")))  # nan: not timed (large map)
            rows.append((name, key, "native" if native else "onednn", t_one * 1e3, t_nat * 1e3))
    return rows


def speed_up(trainer: Any, *, fused_adam: bool = True, allocator: bool = True, conv_autotune: bool = True) -> dict:
    """Apply the speed-ups that measured faster on CPU to a fresh trainer (any family); returns what was applied.

    The convolutions of every network the step runs (G, D, the encoder, the VGG loss's) are autotuned.
    """
    device = trainer.device
    applied = {"fused_adam": False, "allocator": False, "conv_autotune": 0}
    if fused_adam and fused_adam_supported(device):
        use_fused_adam(trainer)
        applied["fused_adam"] = True
    if device.type == "cpu":
        if allocator:
            applied["allocator"] = tune_cpu_allocator()
        if conv_autotune:
            nets = [*trainer.networks().values(), getattr(trainer, "vgg", None)]
            applied["conv_autotune"] = sum(autotune_conv_backends(net) for net in nets if net is not None)
    return applied

