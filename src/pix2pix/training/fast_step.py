"""Speed-ups for the training step: the defaults (bit-identical maths) and `train.fast_step` (float rounding).

Always on (the same bits as a plain eager step, so resume and the reference comparison stay exact):

* `BlockedAdam`, what `make_adam` builds for the trainers on the CPU: torch's Adam computing its
  update block by block, with the same element-wise operations in the same order as Adam's own
  single-tensor CPU path (bit-identical parameters and state, same state_dict). The plain update
  runs ~19 passes over each parameter-sized tensor in main memory; by blocks of 256 Ki elements the
  7 passes stay in cache. unet_256's 54 M parameters: 142 ms -> 80 ms per G update.
* `apply_process_defaults` (called by `train()` at its start), on the CPU: the glibc allocator
  setting (`tune_cpu_allocator`). PyTorch's CPU allocator is plain malloc; glibc serves blocks over
  its mmap threshold with fresh mmap()s and unmaps them on free, so every step page-faults its
  activations and gradients in again (~50 000 minor faults at 256x256, up to ~1 M at pix2pixHD's
  512x256: 0.1-1.5 s of kernel time per step). Keeping the memory in the heap removes that.
  Bit-identical; process-wide; Linux glibc only (a no-op elsewhere); PIX2PIX_CPU_ALLOCATOR=default
  in the environment leaves glibc alone.

Opt-in, `train.fast_step=true` (`speed_up`): float-rounding differences from the plain step.

* fused Adam (`torch.optim.Adam(fused=True)`): one vectorised pass per tensor (~50 ms for 54 M
  parameters on 2 cores); it evaluates the same update rule in another order (not bit for bit).
* per-layer convolution backend (`autotune_conv_backends`): oneDNN re-lays out the weights of
  every convolution call, which dominates the weight-heavy layers near the U-Net bottleneck (up
  to 1024x512x4x4 weights on 1x1 to 16x16 maps); PyTorch's native im2col + BLAS path is up to 2x
  faster there, and slower on the large maps. Each Conv2d / ConvTranspose2d with a small im2col
  buffer times both backends the first time it sees an input shape and keeps the faster; the
  others keep oneDNN. The choice is timed, so two runs may choose differently: `ConvPlan` holds
  the choices of a trainer's networks, is saved in the checkpoint and restored on resume, so that
  a resumed fast run computes with the kernels the uninterrupted run used (exact resume). Under
  CPU autocast (bf16) every convolution keeps the default path: oneDNN's bf16 kernels (AMX or
  AVX-512-BF16 where the CPU has them), where the native path would compute in fp32.

Not applied because they did not help on the CPUs measured (benchmarks/README.md): channels_last
(the weights are re-laid out on every call and the optimiser copies between formats),
torch.compile (the step is convolution-bound; Inductor's default layout optimisation converts to
channels_last, which is slower), oneDNN off globally (0.9x). Running D on real and fake pairs as
one batch would save a pass but changes batch-norm statistics, so it is not the same maths.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = [
    "BlockedAdam",
    "ConvPlan",
    "apply_process_defaults",
    "autotune_conv_backends",
    "make_adam",
    "rebuild_adams",
    "speed_up",
    "tune_cpu_allocator",
    "use_blocked_adam",
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


def apply_process_defaults(device: torch.device | str) -> dict[str, bool]:
    """What the training process sets for itself before its first step; returns what was applied.

    On the CPU: the glibc allocator setting (bit-identical results, ~1.2x per step), unless
    PIX2PIX_CPU_ALLOCATOR=default is in the environment. Nothing on other devices.
    """
    device = torch.device(device)
    applied = {"allocator": False}
    if device.type == "cpu" and os.environ.get("PIX2PIX_CPU_ALLOCATOR", "tuned") != "default":
        applied["allocator"] = tune_cpu_allocator()
    return applied


def fused_adam_supported(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


# ----------------------------------------------------------------------------------------------
# Adam, block by block (bit-identical) or fused (float rounding)

_BLOCK = 1 << 18  # elements: 5 float32 blocks of 1 MiB, in the L2 / L3 of the CPUs measured (Zen 3/4, Xeon)


def _flat(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-d view over t's elements in memory order, or None when t is not dense (then no blocks)."""
    if t.is_contiguous():
        return t.view(-1)
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    dense = t.permute(order)
    return dense.view(-1) if dense.is_contiguous() else None


class BlockedAdam(torch.optim.Adam):
    """torch.optim.Adam with its CPU update computed block by block: the same bits, fewer trips to memory.

    Adam's single-tensor CPU path (what torch.optim.Adam runs on CPU tensors by default) makes 7
    element-wise passes over each parameter-sized tensor (lerp, mul, addcmul, sqrt, div, add,
    addcdiv), each reading and writing main memory. This runs the same seven operations, with the
    same scalars, on blocks of `block` elements, so that a block's passes stay in cache. Every
    element goes through the same float operations in the same order, so parameters and state are
    bit-identical to torch.optim.Adam's (tested at 1 and 2 threads), and the state_dict is the same
    (a checkpoint of either loads into the other). Anything else (another device, foreach / fused,
    amsgrad, maximize, capturable, differentiable, weight decay, tensor lr, sparse or complex
    parameters) goes through torch.optim.Adam.step unchanged.
    """

    block = _BLOCK

    def _blockable(self) -> bool:
        for group in self.param_groups:
            if (group.get("foreach") or group.get("fused") or group.get("amsgrad") or group.get("maximize")
                    or group.get("capturable") or group.get("differentiable")
                    or group.get("decoupled_weight_decay") or group.get("weight_decay", 0) != 0
                    or isinstance(group["lr"], torch.Tensor) or any(isinstance(b, torch.Tensor)
                                                                   for b in group["betas"])):
                return False
            for p in group["params"]:
                if p.grad is None:
                    continue
                if (p.device.type != "cpu" or p.dtype != torch.float32 or p.grad.is_sparse
                        or p.grad.dtype != p.dtype):
                    return False
        return True

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if not self._blockable():
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        buf = torch.empty(self.block)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:  # as torch.optim.Adam._init_group, non-fused, non-capturable
                    state["step"] = torch.tensor(0.0, dtype=torch.float64 if torch.get_default_dtype() ==
                                                 torch.float64 else torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                step_t = state["step"]
                step_t += 1
                step = step_t.item()
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                bias_correction2_sqrt = bias_correction2**0.5
                tensors = (p, p.grad, state["exp_avg"], state["exp_avg_sq"])
                flat = [_flat(t) for t in tensors]
                if any(f is None for f in flat) or len({t.stride() for t in tensors}) > 1:
                    flat = [t for t in tensors]  # one block: the whole tensors, as Adam's own loop
                    blocks = [(0, None)]
                else:
                    n = p.numel()
                    blocks = [(s, min(n, s + self.block)) for s in range(0, n, self.block)]
                param, grad, exp_avg, exp_avg_sq = flat
                for s, e in blocks:
                    if e is None:
                        pb, gb, mb, vb = param, grad, exp_avg, exp_avg_sq
                        denom = torch.empty_like(vb)
                    else:
                        pb, gb, mb, vb = param[s:e], grad[s:e], exp_avg[s:e], exp_avg_sq[s:e]
                        denom = buf[:e - s]
                    # the operations of torch.optim.adam._single_tensor_adam, in its order
                    mb.lerp_(gb, 1 - beta1)
                    vb.mul_(beta2).addcmul_(gb, gb, value=1 - beta2)
                    torch.sqrt(vb, out=denom)
                    denom.div_(bias_correction2_sqrt).add_(eps)
                    pb.addcdiv_(mb, denom, value=-step_size)
        return loss


def make_adam(params: Iterable[Any], *, lr: float, betas: tuple[float, float], eps: float = 1e-8,
              fused: bool = False) -> torch.optim.Adam:
    """The trainers' Adam: fused when asked (float rounding), else BlockedAdam (torch's Adam, bit for bit)."""
    if fused:
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
    return BlockedAdam(params, lr=lr, betas=betas, eps=eps)


_ADAM_KINDS = ("blocked", "fused", "torch")


def _adam_kind(opt: torch.optim.Optimizer) -> str:
    if type(opt) is BlockedAdam:
        return "blocked"
    return "fused" if opt.defaults.get("fused") else "torch"


def rebuild_adams(trainer: Any, kind: str) -> int:
    """Replace the trainer's Adam optimisers (and their schedulers) by `kind`'s, same parameters and state.

    kind: "blocked" (BlockedAdam, the default), "fused" (`train.fast_step`) or "torch" (torch.optim.Adam as
    it is: the plain reference's optimiser, for the benchmark). Returns how many were replaced (those
    already of that kind are kept).
    """
    from .schedules import make_scheduler  # here: the allocator test runs this file without the package

    if kind not in _ADAM_KINDS:
        raise ValueError(f"Adam kind {kind!r}: choose one of {', '.join(_ADAM_KINDS)}")
    rebuilt = 0
    for opt_name, sched_name in (("opt_g", "sched_g"), ("opt_d", "sched_d")):
        old = getattr(trainer, opt_name, None)
        if old is None or _adam_kind(old) == kind:
            continue
        group = old.param_groups[0]
        params = [p for g in old.param_groups for p in g["params"]]
        args = {"lr": group["lr"], "betas": group["betas"], "eps": group["eps"]}
        new = torch.optim.Adam(params, **args) if kind == "torch" else make_adam(params, **args, fused=kind == "fused")
        if old.state:
            new.load_state_dict(old.state_dict())
        old_sched = getattr(trainer, sched_name)
        sched = make_scheduler(new, trainer.cfg.optim)
        sched.load_state_dict(old_sched.state_dict())
        for new_group, old_group in zip(new.param_groups, old.param_groups, strict=True):
            new_group["lr"] = old_group["lr"]  # the schedule's current rate, not its base (mid-decay rebuilds)
        setattr(trainer, opt_name, new)
        setattr(trainer, sched_name, sched)
        rebuilt += 1
    return rebuilt


def use_fused_adam(trainer: Any) -> None:
    """Rebuild the trainer's Adam optimisers (and their schedulers) with fused=True, same parameters.

    Call before the first step; an optimiser that already holds state keeps it (its
    state dict is loaded into the fused one, which reads the same format).
    """
    rebuild_adams(trainer, "fused")


def use_blocked_adam(trainer: Any) -> int:
    """Make a trainer's optimisers BlockedAdam (what `make_adam` gives without fused); returns how many changed."""
    return rebuild_adams(trainer, "blocked")


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


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _tuned_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    choice: _BackendChoice = self._backend_choice
    train = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or _cpu_autocast():
        return self._default_forward(x)  # under autocast: oneDNN's bf16 kernels (the native path would run fp32)
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


class ConvPlan:
    """The backend each tuned convolution chose per input signature, for a set of named networks.

    The choice is timed, so a fresh process may choose otherwise; `state_dict` records it (plain
    lists, loadable with weights_only=True) and `load_state_dict` makes the same layers use the same
    kernels for the same inputs without timing them again: a resumed `train.fast_step` run then
    computes what the uninterrupted run computed. Input signatures first met after the checkpoint
    are timed as usual.
    """

    def __init__(self, nets: dict[str, nn.Module | None]) -> None:
        self.nets = {name: net for name, net in nets.items() if net is not None}

    def _choices(self) -> Iterable[tuple[str, str, _BackendChoice]]:
        for net_name, net in self.nets.items():
            for mod_name, m in net.named_modules():
                choice = getattr(m, "_backend_choice", None)
                if choice is not None:
                    yield net_name, mod_name, choice

    def state_dict(self) -> dict[str, dict[str, list[list[Any]]]]:
        """{network: {module: [[input shape, contiguous, train, input grad, weight grad, native], ...]}}."""
        out: dict[str, dict[str, list[list[Any]]]] = {}
        for net_name, mod_name, choice in self._choices():
            rows = [[list(key[0]), *key[1:], native] for key, native in choice.native.items()]
            if rows:
                out.setdefault(net_name, {})[mod_name] = rows
        return out

    def load_state_dict(self, state: dict[str, dict[str, list[list[Any]]]]) -> None:
        tuned = {(net_name, mod_name): choice for net_name, mod_name, choice in self._choices()}
        for net_name, modules in state.items():
            for mod_name, rows in modules.items():
                choice = tuned.get((net_name, mod_name))
                if choice is None:
                    raise ValueError(f"conv plan: {net_name}.{mod_name} is not a tuned convolution of this trainer "
                                     "(the checkpoint was written by another model or without train.fast_step)")
                for shape, contiguous, train, x_grad, w_grad, native in rows:
                    key = (tuple(int(v) for v in shape), bool(contiguous), bool(train), bool(x_grad), bool(w_grad))
                    choice.native[key] = bool(native)


def speed_up(trainer: Any, *, fused_adam: bool = True, allocator: bool = True, conv_autotune: bool = True) -> dict:
    """Apply the speed-ups that measured faster on CPU to a fresh trainer (any family); returns what was applied.

    The convolutions of every network the step runs (G, D, the encoder, the VGG loss's) are autotuned.
    """
    device = trainer.device
    applied: dict[str, Any] = {"fused_adam": False, "allocator": False, "conv_autotune": 0}
    if fused_adam and fused_adam_supported(device):
        use_fused_adam(trainer)
        applied["fused_adam"] = True
    if device.type == "cpu":
        if allocator:
            applied["allocator"] = tune_cpu_allocator()
        if conv_autotune:
            nets = {**trainer.networks(), "vgg": getattr(trainer, "vgg", None)}
            applied["conv_autotune"] = sum(autotune_conv_backends(net) for net in nets.values() if net is not None)
            trainer.conv_plan = ConvPlan(nets)  # saved in the checkpoint (a component with a state_dict)
    return applied

