"""Training-step benchmark: the library's pix2pix step against a plain eager reference step.

    python benchmarks/benchmark.py --presets reference,synthetic --steps 5 --warmup 2 \
        --out benchmarks/results.md [--device cpu|cuda] [--variants plain,library,library+fast]

Each variant of a preset runs in its own worker process (so that its peak memory and
any process-wide setting are its own). The workers are started one after the other;
each builds its networks from the same seed and runs `--warmup` training steps (the
first one's time is reported separately: it includes lazy initialisation, autotuning
and, for compiled variants, compilation). Then the timed steps run in lockstep: one
step of each variant in turn, `--steps` rounds, so that a change in the machine's load
hits every variant alike (this machine is shared). The table gives the median step
time. The same is done for the generator's inference latency (eval mode, batch 1, no
grad). Each worker then reports its peak memory (CPU: VmHWM minus the VmRSS before the
networks were built, from /proc/self/status; CUDA: torch.cuda.max_memory_allocated
minus the memory allocated before) and the FLOPs of one full training step (G forward,
D step, G step: forward and backward of both networks, counted with
torch.utils.flop_counter.FlopCounterMode; element-wise ops are not counted). Data
loading is not timed: every step sees the same random batch.

Variants (`--variants`, comma-separated): a base and optional `+switch`es.

  plain            `PlainEagerStep` below: the reference optimize_parameters written out with
                   the registry's networks and plain Adam, no library trainer code (the baseline)
  library          Pix2PixTrainer.train_step with the preset's config
  +channels_last   train.channels_last=True (networks and inputs channels_last)
  +fused_adam      Adam(fused=True)                          (pix2pix.training.fast_step)
  +allocator       glibc malloc tuned, no mmap churn         (pix2pix.training.fast_step)
  +conv_autotune   per-layer oneDNN / native conv backend    (pix2pix.training.fast_step)
  +fast            = +fused_adam+allocator+conv_autotune: train.fast_step=true, which makes
                   Pix2PixTrainer call fast_step.speed_up (or speed_up itself if the config
                   has no such switch)
  +compile         G and D compiled (nn.Module.compile, mode --compile-mode; Inductor's layout
                   optimisation off on CPU); the compile time is in the "first step" column
  +no_onednn       torch.backends.mkldnn.enabled = False for the whole process

The plain base takes only the process-wide switches (allocator, no_onednn).

Presets are the library's presets, plus `reference` = `facades` (unet_256 + 70x70
PatchGAN, 256x256, batch 1, fp32: the pix2pix paper's setting).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRESET_ALIASES = {"reference": "facades"}
DEFAULT_PRESETS = "reference,synthetic,tiny"
BASES = ("plain", "library")
SWITCHES = ("channels_last", "fused_adam", "allocator", "conv_autotune", "compile", "no_onednn")
FAST = ["fused_adam", "allocator", "conv_autotune"]  # fast_step.speed_up: what measured faster on CPU
DEFAULT_VARIANTS = ("plain", "library", "library+channels_last", "library+fused_adam", "library+allocator",
                    "library+conv_autotune", "library+fast", "library+fused_adam+compile")


# ----------------------------------------------------------------------------------------------
# The baseline: the reference pix2pix step, written plainly


def _set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad = flag


class PlainEagerStep:
    """pytorch-CycleGAN-and-pix2pix's Pix2PixModel.optimize_parameters, written out in eager PyTorch.

    fake_B = G(A); D step on 0.5 * (BCE(D(cat(A, fake_B.detach())), 0) + BCE(D(cat(A, B)), 1));
    G step with D's requires_grad off on BCE(D(cat(A, fake_B)), 1) + lambda_L1 * L1(fake_B, B).
    Plain Adam (no foreach/fused choice made), zero_grad() as the reference calls it (which sets
    the gradients to None in PyTorch 2), contiguous NCHW float32. Only the networks come from
    the library; a discriminator output that is a list per scale of [features..., logits]
    contributes the BCE of each scale's logits, summed.
    """

    def __init__(self, net_g: nn.Module, net_d: nn.Module, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 lambda_l1: float = 100.0) -> None:
        self.net_g, self.net_d, self.lambda_l1 = net_g, net_d, lambda_l1
        self.opt_g = torch.optim.Adam(net_g.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(net_d.parameters(), lr=lr, betas=betas)
        self.bce = nn.BCEWithLogitsLoss()
        self.l1 = nn.L1Loss()

    def gan_loss(self, pred: Any, target_is_real: bool) -> torch.Tensor:
        logits = [pred] if isinstance(pred, torch.Tensor) else [scale[-1] for scale in pred]
        losses = [self.bce(lg, torch.tensor(1.0 if target_is_real else 0.0, device=lg.device).expand_as(lg))
                  for lg in logits]
        return losses[0] if len(losses) == 1 else torch.stack(losses).sum()

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_b = self.net_g(real_a)
        # D: real pairs -> 1, fake pairs -> 0
        _set_requires_grad(self.net_d, True)
        self.opt_d.zero_grad()
        fake_ab = torch.cat((real_a, fake_b), 1)
        loss_d_fake = self.gan_loss(self.net_d(fake_ab.detach()), False)
        real_ab = torch.cat((real_a, real_b), 1)
        loss_d_real = self.gan_loss(self.net_d(real_ab), True)
        loss_d = (loss_d_fake + loss_d_real) * 0.5
        loss_d.backward()
        self.opt_d.step()
        # G: fool D and stay close to B, with D frozen
        _set_requires_grad(self.net_d, False)
        self.opt_g.zero_grad()
        fake_ab = torch.cat((real_a, fake_b), 1)
        loss_g_gan = self.gan_loss(self.net_d(fake_ab), True)
        l1 = self.l1(fake_b, real_b)
        loss_g_l1 = l1 * self.lambda_l1
        loss_g = loss_g_gan + loss_g_l1
        loss_g.backward()
        self.opt_g.step()
        return {"D_fake": loss_d_fake.detach(), "D_real": loss_d_real.detach(), "D": loss_d.detach(),
                "G_GAN": loss_g_gan.detach(), "G_L1": l1.detach(), "G": loss_g.detach()}


def plain_networks(cfg: Any, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """G and D from the registry, built in the same order (so from the same seed) as the trainer builds them."""
    from pix2pix.registry import create_discriminator, create_generator

    m = cfg.model
    net_g = create_generator(m.generator, m.in_channels, m.out_channels, init=m.init, init_gain=m.init_gain,
                             ngf=m.ngf, norm=m.norm, dropout=m.dropout, upsample=m.upsample, **m.generator_kwargs)
    d_in = m.in_channels + m.out_channels if m.conditional_d else m.out_channels
    net_d = create_discriminator(m.discriminator, d_in, init=m.init, init_gain=m.init_gain, ndf=m.ndf,
                                 n_layers=m.n_layers_d, norm=m.norm)
    return net_g.to(device), net_d.to(device)


def plain_step_from_config(cfg: Any, device: torch.device) -> PlainEagerStep:
    if cfg.loss.gan_mode != "vanilla" or cfg.loss.lambda_gan != 1.0 or not cfg.model.conditional_d:
        raise SystemExit("the plain eager step is the reference objective: vanilla GAN, lambda_gan 1, conditional D")
    net_g, net_d = plain_networks(cfg, device)
    o = cfg.optim
    return PlainEagerStep(net_g, net_d, lr=o.lr, betas=(o.beta1, o.beta2), lambda_l1=cfg.loss.lambda_l1)


# ----------------------------------------------------------------------------------------------
# Building one configuration


def preset_config(name: str, device: str = "cpu") -> Any:
    from pix2pix.presets import get_preset

    cfg = get_preset(PRESET_ALIASES.get(name, name))
    cfg.train.device = device
    cfg.train.tensorboard = False
    return cfg


def make_batch(cfg: Any, device: torch.device, seed: int = 1234) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, s, m = cfg.train.batch_size, cfg.data.crop_size, cfg.model
    a = torch.rand(n, m.in_channels, s, s, generator=g) * 2 - 1
    b = torch.rand(n, m.out_channels, s, s, generator=g) * 2 - 1
    return {"A": a.to(device), "B": b.to(device)}


def parse_variant(variant: str) -> tuple[str, list[str]]:
    """'library+fused_adam+conv_autotune' -> ('library', ['fused_adam', 'conv_autotune']); 'fast' expands."""
    base, *switches = variant.split("+")
    if base not in BASES:
        raise SystemExit(f"variant '{variant}': it must start with {' or '.join(BASES)}")
    expanded: list[str] = []
    for sw in switches:
        for s in (FAST if sw == "fast" else [sw]):
            if s not in SWITCHES:
                raise SystemExit(f"variant '{variant}': unknown switch '{sw}'; switches: fast, {', '.join(SWITCHES)}")
            if s not in expanded:
                expanded.append(s)
    if base == "plain" and set(expanded) - {"allocator", "no_onednn"}:
        raise SystemExit(f"variant '{variant}': the plain step takes only the process-wide switches "
                         "allocator and no_onednn")
    if "compile" in expanded and "conv_autotune" in expanded:
        raise SystemExit(f"variant '{variant}': compile and conv_autotune do not combine")
    return base, expanded


def build_variant(variant: str, cfg: Any, device: torch.device, compile_mode: str = "default") -> dict[str, Any]:
    """{'step': batch -> losses, 'translate': A -> fake_B (eval, no grad), 'nets': (G, D), 'applied': {...}}."""
    from pix2pix.training import fast_step

    base, switches = parse_variant(variant)
    applied: dict[str, Any] = {}
    # process-wide switches (each variant runs in its own process)
    if "allocator" in switches:
        applied["allocator"] = fast_step.tune_cpu_allocator()
    if "no_onednn" in switches:
        torch.backends.mkldnn.enabled = False
        applied["no_onednn"] = True
    if base == "plain":
        plain = plain_step_from_config(cfg, device)

        @torch.no_grad()
        def translate(a: torch.Tensor) -> torch.Tensor:
            was = plain.net_g.training
            plain.net_g.eval()
            out = plain.net_g(a)
            plain.net_g.train(was)
            return out

        return {"step": lambda batch: plain.step(batch["A"], batch["B"]), "translate": translate,
                "nets": (plain.net_g, plain.net_d), "applied": applied}

    from pix2pix.training.trainer import Pix2PixTrainer

    cfg.train.channels_last = "channels_last" in switches
    if set(FAST) <= set(switches) and hasattr(cfg.train, "fast_step"):
        # the library's own switch: Pix2PixTrainer applies fast_step.speed_up itself
        cfg.train.fast_step = True
        applied["fast_step"] = True
        switches = [s for s in switches if s not in FAST]
    trainer = Pix2PixTrainer(cfg, device)
    applied["channels_last"] = cfg.train.channels_last
    if "fused_adam" in switches:
        fast_step.use_fused_adam(trainer)
        applied["fused_adam"] = True
    if "conv_autotune" in switches:
        applied["conv_autotune"] = (fast_step.autotune_conv_backends(trainer.net_g)
                                    + fast_step.autotune_conv_backends(trainer.net_d))
    if "compile" in switches:
        if device.type == "cpu":
            import torch._inductor.config as inductor_config

            # Inductor's layout optimisation turns the convolutions channels_last, which is slower on CPU here
            inductor_config.layout_optimization = False
        trainer.net_g.compile(mode=compile_mode)
        trainer.net_d.compile(mode=compile_mode)
        applied["compile"] = compile_mode
    return {"step": trainer.train_step, "translate": trainer.translate, "nets": (trainer.net_g, trainer.net_d),
            "applied": applied}


# ----------------------------------------------------------------------------------------------
# Measuring


def _proc_status_kib(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float:
    """CPU seconds spent busy by the whole machine so far (all CPUs; /proc/stat), or -1."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return -1.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class OthersMeter:
    """CPU time that other processes used while a block ran: how disturbed a timing is."""

    def __enter__(self) -> OthersMeter:
        self.busy0, self.own0 = _machine_busy_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc: Any) -> None:
        busy1, own1 = _machine_busy_s(), _own_cpu_s()
        self.others_s = max(0.0, (busy1 - self.busy0) - (own1 - self.own0)) if self.busy0 >= 0 else 0.0


def quiet_times(times: list[float], others: list[float]) -> tuple[list[float], int]:
    """(the times to take the median of, how many steps were quiet).

    A step is quiet when other processes used under 5 % of one CPU during it (plus one clock
    tick of slack); the median is over the quiet steps, or over all when fewer than 3 were.
    """
    tick = 1.0 / _CLK_TCK
    quiet = [t for t, o in zip(times, others, strict=True) if o <= 0.05 * t + tick]
    return (quiet if len(quiet) >= 3 else times), len(quiet)


def count_step_flops(step: Any, batch: dict[str, torch.Tensor]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(batch)
    return int(counter.get_total_flops())


class Worker:
    """One (preset, variant) in this process: build and warm up, then time steps on request."""

    def __init__(self, preset: str, variant: str, warmup: int, device_name: str, seed: int,
                 compile_mode: str) -> None:
        from pix2pix.runtime import resolve_device, seed_everything

        self.preset, self.variant = preset, variant
        self.device = device = resolve_device(device_name)
        self.cfg = cfg = preset_config(preset, device.type)
        self.batch = make_batch(cfg, device)
        _sync(device)
        self.rss0 = _proc_status_kib("VmRSS")
        if device.type == "cuda":
            self.mem0 = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        seed_everything(seed)
        t0 = time.perf_counter()
        self.built = build_variant(variant, cfg, device, compile_mode)
        self.build_s = time.perf_counter() - t0
        self.warmup_times = [self.step() for _ in range(max(warmup, 1))]
        self.times: list[float] = []
        self.others: list[float] = []  # CPU seconds other processes used during each timed step
        self.infer_times: list[float] = []
        self.losses: dict[str, torch.Tensor] = {}

    def step(self) -> float:
        t0 = time.perf_counter()
        self.losses = self.built["step"](self.batch)
        _sync(self.device)
        return time.perf_counter() - t0

    def infer(self) -> float:
        a1 = self.batch["A"][:1]
        t0 = time.perf_counter()
        self.built["translate"](a1)
        _sync(self.device)
        return time.perf_counter() - t0

    def finish(self, count_flops: bool) -> dict[str, Any]:
        device, cfg = self.device, self.cfg
        if device.type == "cuda":
            peak_mib = (torch.cuda.max_memory_allocated(device) - self.mem0) / 2**20
        else:
            peak_mib = (_proc_status_kib("VmHWM") - self.rss0) / 1024 if self.rss0 >= 0 else float("nan")
        losses = {k: float(v) for k, v in self.losses.items()}
        flops = count_step_flops(self.built["step"], self.batch) if count_flops else None
        net_g, net_d = self.built["nets"]
        return {
            "preset": self.preset, "variant": self.variant, "device": str(device),
            "generator": f"{cfg.model.generator} (ngf {cfg.model.ngf})",
            "discriminator": f"{cfg.model.discriminator} (n_layers {cfg.model.n_layers_d}, ndf {cfg.model.ndf})",
            "size": cfg.data.crop_size, "batch": cfg.train.batch_size, "ngf": cfg.model.ngf, "ndf": cfg.model.ndf,
            "params_g": sum(p.numel() for p in net_g.parameters()),
            "params_d": sum(p.numel() for p in net_d.parameters()),
            "build_s": self.build_s, "warmup_times": self.warmup_times, "times": self.times,
            "others_cpu_s": self.others,
            "infer_times": self.infer_times, "flops": flops, "peak_mib": peak_mib, "losses": losses,
            "applied": self.built["applied"], "threads": torch.get_num_threads(),
        }


def serve(args: argparse.Namespace, preset: str, variant: str) -> int:
    """Worker process: answer 'step', 'infer' and 'finish' lines on stdin with JSON lines on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library prints off the protocol channel
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    worker = Worker(preset, variant, args.warmup, args.device, args.seed, args.compile_mode)
    out.write(json.dumps({"ready": True, "first_step": worker.warmup_times[0]}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "step":
            with OthersMeter() as meter:
                t = worker.step()
            worker.times.append(t)
            worker.others.append(meter.others_s)
            reply: dict[str, Any] = {"t": t, "others": meter.others_s}
        elif cmd == "infer":
            t = worker.infer()
            worker.infer_times.append(t)
            reply = {"t": t}
        elif cmd == "finish":
            count = not args.no_flops and not variant.endswith("compile")
            out.write(json.dumps(worker.finish(count)) + "\n")
            out.flush()
            return 0
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, preset: str, variant: str, args: argparse.Namespace) -> None:
        self.preset, self.variant = preset, variant
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--presets", preset, "--variants",
               variant, "--warmup", str(args.warmup), "--device", args.device, "--seed", str(args.seed),
               "--compile-mode", args.compile_mode, "--threads", str(args.threads)]
        cmd += ["--no-flops"] if args.no_flops else []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.error: str | None = None
        self.ready = self._reply()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-200]

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            tail = [ln.strip() for ln in self.stderr if ln.strip() and "USDT" not in ln]
            self.error = tail[-1] if tail else f"worker exited with {self.proc.returncode}"
            sys.stderr.write("".join(self.stderr[-30:]))
            return {"error": self.error}
        return json.loads(line)

    def ask(self, cmd: str) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_preset(preset: str, variants: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start every variant's worker (one at a time), then time them in lockstep; one result per variant."""
    workers = []
    try:
        for v in variants:
            t0 = time.perf_counter()
            w = WorkerProcess(preset, v, args)
            workers.append(w)
            msg = w.error or f"first step {w.ready['first_step']:.3f}s"
            print(f"[{preset} {v}] ready in {time.perf_counter() - t0:.0f}s: {msg}", file=sys.stderr, flush=True)
        loads = [_load()]
        for i in range(args.steps):
            replies = {w.variant: w.ask("step") for w in workers}
            loads.append(_load())
            print(f"[{preset}] step {i + 1}/{args.steps}: "
                  + ", ".join(f"{v} {r['t']:.3f} ({r['others']:.2f})" for v, r in replies.items() if "t" in r),
                  file=sys.stderr, flush=True)
        for _ in range(args.infer_iters + 2):  # the first two are warm-up
            for w in workers:
                w.ask("infer")
        results = []
        for w in workers:
            res = w.ask("finish")
            if "error" in res:
                res = {"preset": preset, "variant": w.variant, "error": res["error"]}
            else:
                res["infer_times"] = res["infer_times"][2:]
                res["load"] = loads
            results.append(res)
        return results
    finally:
        for w in workers:
            w.close()


# ----------------------------------------------------------------------------------------------
# Reporting


def machine_info(device: str) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads()),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def _loss_match(losses: dict[str, float], ref: dict[str, float] | None) -> str:
    """How far this row's losses after its last timed step are from the plain step's (same seed, same steps)."""
    if ref is None:
        return "-"
    keys = [k for k in ref if k in losses]
    if not keys:
        return "-"
    worst = max(abs(losses[k] - ref[k]) / max(abs(ref[k]), 1e-12) for k in keys)
    return "identical" if worst == 0 else f"rel. {worst:.0e}"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("| preset | variant | G / D | size x batch | step median (s) | step min (s) | quiet steps | steps/s "
            "| speed-up vs plain eager | first step (s) | GFLOP/step | GFLOP/s | G inference median / min (ms) "
            "| peak mem Δ (MiB) | losses vs plain |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    plain_median: dict[str, float] = {}
    plain_flops: dict[str, int] = {}
    plain_losses: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("variant") == "plain" and "error" not in r:
            plain_losses[r["preset"]] = r["losses"]
            plain_median[r["preset"]] = statistics.median(quiet_times(r["times"], r["others_cpu_s"])[0])
            if r.get("flops"):
                plain_flops[r["preset"]] = r["flops"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['variant']} | error: {r['error']} |" + " |" * 11)
            continue
        used, n_quiet = quiet_times(r["times"], r["others_cpu_s"])
        med = statistics.median(used)
        flops = r.get("flops") or plain_flops.get(r["preset"])
        base = plain_median.get(r["preset"])
        speed = f"{base / med:.2f}x" if base else "-"
        first = f"{r['warmup_times'][0]:.2f}"
        flop_cells = f"{flops / 1e9:.2f} | {flops / 1e9 / med:.1f}" if flops else "- | -"
        lines.append(
            f"| {r['preset']} | {r['variant']} | {r['generator']} / {r['discriminator']} | "
            f"{r['size']}x{r['size']} x {r['batch']} | {med:.4f} | {min(r['times']):.4f} | "
            f"{n_quiet}/{len(r['times'])} | {1 / med:.2f} | {speed} | "
            f"{first} | {flop_cells} | {statistics.median(r['infer_times']) * 1e3:.1f} / "
            f"{min(r['infer_times']) * 1e3:.1f} | {r['peak_mib']:.0f} | "
            f"{_loss_match(r['losses'], plain_losses.get(r['preset']))} |")
    return "\n".join(lines)


def format_report(rows: list[dict[str, Any]], info: dict[str, str], argv: list[str], started: str,
                  args: argparse.Namespace) -> str:
    cmd = " ".join(["python", "benchmarks/benchmark.py", *argv])
    lines = [
        "# pix2pix training-step benchmark", "",
        f"- command: `{cmd}`",
        f"- date: {started}",
        f"- machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']}"
        + (f", GPU {info['gpu']}" if "gpu" in info else ""),
        f"- torch {info['torch']}, Python {info['python']}, {info['platform']}",
        f"- device: {args.device}; {args.warmup} warm-up steps, then {args.steps} timed steps per variant in "
        f"lockstep (one step of each variant in turn); load average at start: "
        f"{info.get('load_average_at_start', '?')}",
        "",
        format_table(rows), "",
        "Step median: over the quiet steps (those during which other processes used under 5 % of a CPU, "
        "measured from /proc/stat; all steps when fewer than 3 were quiet); step min: over all timed steps; "
        "speed-up = plain eager median / row median (same preset). "
        "First step: the first warm-up step (lazy init, conv autotuning, compilation). "
        "GFLOP/step: FlopCounterMode over one full training step (convolutions and matmuls, forward and "
        "backward of G and D; element-wise ops not counted); a row without its own count uses the plain "
        "step's (same maths). Losses vs plain: the largest relative difference of the final losses (D_fake, "
        "D_real, D, G_GAN, G_L1, G) from the plain step's, after the same seed and the same number of steps "
        "(float rounding differences grow over the steps of a GAN). "
        "G inference: generator forward, eval mode, batch 1, no grad. Peak mem Δ: "
        + ("CUDA max_memory_allocated minus the memory allocated before the networks were built."
           if args.device.startswith("cuda") else
           "VmHWM after the timed steps minus VmRSS before the networks were built (one process per variant)."),
    ]
    loads = [x for r in rows if "error" not in r for x in r.get("load", [])]
    if loads and max(loads) > (os.cpu_count() or 1) * 0.75 + 1:
        lines += ["", f"Note: the 1-minute load average reached {max(loads):.2f} during the timed steps; other "
                      "processes shared the CPU, so the times are noisy (the lockstep order spreads that over "
                      "all variants; the step minimum is the least disturbed figure)."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=DEFAULT_PRESETS, help=f"comma-separated (default {DEFAULT_PRESETS})")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: plain or library, each optionally followed by +switch...; "
                   f"switches: fast (= {'+'.join(FAST)}), {', '.join(SWITCHES)}")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default="benchmarks/results.md", help="markdown file to write ('' for none)")
    p.add_argument("--json", default="", help="also write the raw measurements to this JSON file")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in the workers (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile-mode", default="default", help="torch.compile mode for library+compile "
                   "(default, max-autotune-no-cudagraphs, ...)")
    p.add_argument("--infer-iters", type=int, default=0, help="inference repetitions (default: max(steps, 5))")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.infer_iters <= 0:
        args.infer_iters = max(args.steps, 5)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    variants = [s.strip() for s in args.variants.split(",") if s.strip()]
    if args.worker:
        return serve(args, presets[0], variants[0])
    for v in variants:
        parse_variant(v)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    rows = [row for preset in presets for row in run_preset(preset, variants, args)]
    report = format_report(rows, info, argv, started, args)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "argv": argv, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
