"""Training-step benchmark: the library's pix2pix / pix2pixHD step against a plain eager reference step.

    python benchmarks/benchmark.py --presets reference,synthetic --steps 5 --warmup 2 \
        --out benchmarks/results.md [--device cpu|cuda] [--variants plain,library,library+fast]
    python benchmarks/benchmark.py --presets hd_reference --steps 3 --warmup 1 \
        --variants plain,library,library+fast,library+bf16

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
minus the memory allocated before) and the FLOPs of one full training step (forward and
backward of every network, counted with torch.utils.flop_counter.FlopCounterMode;
element-wise ops are not counted). Data loading is not timed: every step sees the same
random batch.

When the workers of all variants would not fit in memory together (a pix2pixHD worker
holds ~4-5 GiB at 512x256), they run in groups, each group in lockstep; the `plain`
base is then run again at the head of every group and each variant's speed-up is taken
against the plain run of its own group (the "group" column).

Variants (`--variants`, comma-separated): a base and optional `+switch`es.

  plain            the baseline, no library training code: for pix2pix `PlainEagerStep` (the reference
                   optimize_parameters), for pix2pixHD `PlainHDStep` (NVIDIA's step), both with the
                   registry's networks, plain Adam, fp32, NCHW
  library          the library's trainer (`build_trainer`, either family) .train_step, with
                   the defaults `pix2pix train` runs it with: fast_step.apply_process_defaults (the glibc allocator
                   setting, process-wide) before it is built, and BlockedAdam, the trainer's optimiser
                   (fast_step.make_adam). Bit-identical to plain.
  config switches (set before the trainer is built; the trainer applies them):
  +channels_last   train.channels_last=True
  +fast            train.fast_step=True: fused Adam + glibc allocator tuning + per-layer conv backend
                   autotuning (pix2pix.training.fast_step.speed_up)
  +compile         train.compile=True: G and D through torch.compile (default mode; Inductor's layout
                   optimisation off on CPU); the compile time is in the "first step" column
  +bf16, +fp16     train.precision (torch.autocast; fp16 adds a GradScaler)
  +ckpt            train.checkpoint_activations=True (residual blocks and local enhancers; a U-Net has none)
  +accum2          train.grad_accum=2 (the batch split in two micro-batches; n/a when the batch is 1)
  fine switches (applied to the built trainer, or to the whole worker process):
  +fused_adam      fast_step.use_fused_adam(trainer)
  +conv_autotune   fast_step.autotune_conv_backends on every network of the step (VGG included)
  +allocator       fast_step.tune_cpu_allocator() (process-wide)
  +no_onednn       torch.backends.mkldnn.enabled = False (process-wide)
  +no_allocator    library: without the process default (glibc as it is; PIX2PIX_CPU_ALLOCATOR=default)
  +torch_adam      library: torch.optim.Adam instead of BlockedAdam (same bits, the plain memory traffic)

The plain base takes only the process-wide switches (allocator, no_onednn).

Presets are the library's presets, plus aliases:
  reference       facades: unet_256 + 70x70 PatchGAN, 256x256, batch 1, fp32 (the pix2pix paper's setting)
  hd_reference    pix2pixhd_cityscapes_512 at 512x256: global G (ngf 64, 9 blocks), 2-scale D, feature
                  matching, VGG19 loss (random features: no ImageNet file here), batch 1, fp32
  hd_1024         the same model at 1024x512 (the 512p preset's own size)
  hd_local_2048   pix2pixhd_cityscapes_1024 at 2048x1024: local enhancer (ngf 32), 3-scale D, with the
                  whole generator training (niter_fix_global 0: the phase after the enhancer-only epochs)
Every pix2pixHD preset runs with loss.vgg_random=true (the ImageNet VGG19 file is used when it is in the
torch hub cache; the row says which). Sizes are W x H; a preset with data.preprocess=scale_width is
taken at load_size x load_size/2 (Cityscapes' 2:1 frames), `none` at 2048x1024.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

# alias -> (library preset, overrides applied to the config)
PRESET_ALIASES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "reference": ("facades", {}),
    "hd_reference": ("pix2pixhd_cityscapes_512", {"data": {"preprocess": "scale_width", "load_size": 512}}),
    "hd_1024": ("pix2pixhd_cityscapes_512", {"data": {"preprocess": "scale_width", "load_size": 1024}}),
    "hd_local_2048": ("pix2pixhd_cityscapes_1024", {"data": {"preprocess": "scale_width", "load_size": 2048},
                                                    "train": {"niter_fix_global": 0}}),
}
DEFAULT_PRESETS = "reference,synthetic,tiny"
BASES = ("plain", "library")
CONFIG_SWITCHES = ("channels_last", "fast", "compile", "bf16", "fp16", "ckpt", "accum2")
FINE_SWITCHES = ("fused_adam", "conv_autotune", "allocator", "no_onednn", "no_allocator", "torch_adam")
SWITCHES = CONFIG_SWITCHES + FINE_SWITCHES
PROCESS_WIDE = ("allocator", "no_onednn")
DEFAULT_VARIANTS = ("plain", "library", "library+fast", "library+bf16", "library+fast+bf16", "library+channels_last",
                    "library+compile")
HD_LOSSES = ("D_fake", "D_real", "D", "G_GAN", "G_GAN_Feat", "G_VGG", "G")


class NotApplicable(Exception):
    """A variant that does not apply to a preset (its row says why)."""


# ----------------------------------------------------------------------------------------------
# The baselines: the reference steps, written plainly


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


class PlainHDStep:
    """NVIDIA pix2pixHD's training step (Pix2PixHDModel.forward + train.py's updates), written out plainly.

    fake = G(input) with input = one-hot labels + instance boundary map (+ E(real) pooled per
    instance with the feature encoder); D(cat(input, fake.detach())) -> LSGAN loss against 0;
    D(cat(input, real)) -> LSGAN loss against 1; D(cat(input, fake)) -> G's LSGAN loss against 1
    plus feature matching (every output of each scale but the last, L1 against the real pass's
    detached features, weighted 1/num_D * 4/(n_layers_D+1) * lambda_feat); VGG19 loss (L1 of
    relu1_1..relu5_1 with weights 1/32, 1/16, 1/8, 1/4, 1, real features detached) * lambda_vgg.
    loss_D = 0.5 * (fake + real), loss_G = GAN + FM + VGG; then, as train.py:
    opt_G.zero_grad(); loss_G.backward(); opt_G.step(); opt_D.zero_grad(); loss_D.backward();
    opt_D.step(). loss_G.backward() also computes D's parameter gradients (pred_fake is not
    detached from D), which opt_D.zero_grad() then discards: the reference's cost, kept.

    LSGAN per scale is the reference's MSELoss against a target of ones / zeros, summed over
    scales. The feature-matching weight is folded into one constant before it multiplies each
    L1 term (the reference multiplies D_weights * feat_weights * L1 * lambda_feat left to right,
    which differs from this in the last bit at most). Plain Adam, fp32, NCHW. Only the networks
    (G, D, the library's VGG19Features, E) and the label encoding come from the library.
    """

    def __init__(self, net_g: nn.Module, net_d: nn.Module, vgg: nn.Module, encode: Any, *, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), lambda_feat: float = 10.0, lambda_vgg: float = 10.0,
                 n_layers_d: int = 3, num_d: int = 2, net_e: nn.Module | None = None) -> None:
        self.net_g, self.net_d, self.vgg, self.net_e, self.encode = net_g, net_d, vgg, net_e, encode
        self.lambda_feat, self.lambda_vgg = lambda_feat, lambda_vgg
        self.fm_weight = (1.0 / num_d) * (4.0 / (n_layers_d + 1)) * lambda_feat
        g_params = list(net_g.parameters()) + (list(net_e.parameters()) if net_e is not None else [])
        self.opt_g = torch.optim.Adam(g_params, lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(net_d.parameters(), lr=lr, betas=betas)
        self.mse = nn.MSELoss()
        self.l1 = nn.L1Loss()
        self.vgg_weights = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

    def gan_loss(self, pred: list[list[torch.Tensor]], target_is_real: bool) -> torch.Tensor:
        loss: Any = 0
        for scale in pred:
            logits = scale[-1]
            target = torch.tensor(1.0 if target_is_real else 0.0, device=logits.device).expand_as(logits)
            loss += self.mse(logits, target)
        return loss

    def vgg_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        x_vgg, y_vgg = self.vgg(fake), self.vgg(real)
        loss: Any = 0
        for w, x, y in zip(self.vgg_weights, x_vgg, y_vgg, strict=True):
            loss += w * self.l1(x, y.detach())
        return loss

    def generator_input(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(the label encoding, G's input): one-hot labels + boundaries (+ the instance-pooled features)."""
        label = batch["label"]
        input_label = self.encode(label, batch.get("instance"), source=batch.get("path", ""))
        if self.net_e is None:
            return input_label, input_label
        feat_map = self.net_e(batch["image"], batch["instance"])
        return input_label, torch.cat((input_label, feat_map), 1)

    def step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        real = batch["image"]
        input_label, input_concat = self.generator_input(batch)
        fake = self.net_g(input_concat)
        # fake detection and loss (the reference's discriminate(..., use_pool=True) detaches)
        pred_fake_pool = self.net_d(torch.cat((input_label, fake.detach()), 1))
        loss_d_fake = self.gan_loss(pred_fake_pool, False)
        pred_real = self.net_d(torch.cat((input_label, real.detach()), 1))
        loss_d_real = self.gan_loss(pred_real, True)
        # G's GAN loss: D on the fake again, attached
        pred_fake = self.net_d(torch.cat((input_label, fake), 1))
        loss_g_gan = self.gan_loss(pred_fake, True)
        loss_g_feat: Any = 0
        for i in range(len(pred_fake)):
            for j in range(len(pred_fake[i]) - 1):
                loss_g_feat += self.fm_weight * self.l1(pred_fake[i][j], pred_real[i][j].detach())
        loss_g_vgg = self.vgg_loss(fake, real) * self.lambda_vgg
        loss_d = (loss_d_fake + loss_d_real) * 0.5
        loss_g = loss_g_gan + loss_g_feat + loss_g_vgg
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        return {"D_fake": loss_d_fake.detach(), "D_real": loss_d_real.detach(), "D": loss_d.detach(),
                "G_GAN": loss_g_gan.detach(), "G_GAN_Feat": loss_g_feat.detach(), "G_VGG": loss_g_vgg.detach(),
                "G": loss_g.detach()}


def plain_networks(cfg: Any, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """pix2pix G and D from the registry, built in the same order (so from the same seed) as the trainer."""
    from pix2pix.models import create_discriminator, create_generator

    m = cfg.model
    net_g = create_generator(m.generator, m.in_channels, m.out_channels, init=m.init, init_gain=m.init_gain,
                             ngf=m.ngf, norm=m.norm, dropout=m.dropout, upsample=m.upsample, **m.generator_kwargs)
    d_in = m.in_channels + m.out_channels if m.conditional_d else m.out_channels
    net_d = create_discriminator(m.discriminator, d_in, init=m.init, init_gain=m.init_gain, ndf=m.ndf,
                                 n_layers=m.n_layers_d, norm=m.norm)
    return net_g.to(device), net_d.to(device)


def plain_hd_networks(cfg: Any, device: torch.device) -> dict[str, nn.Module | None]:
    """pix2pixHD's G (E), D and VGG19: the library's `build_hd_networks` (what Pix2PixHDTrainer builds, in
    the same order, so from the same seed the weights start identical), then the VGG19 features."""
    from pix2pix.losses import resolve_vgg_weights
    from pix2pix.losses.perceptual import VGG19Features
    from pix2pix.training.objectives import build_hd_networks

    lc = cfg.loss
    net_g, net_e, net_d = build_hd_networks(cfg)
    weights = resolve_vgg_weights(lc.vgg_weights or None, allow_download=lc.vgg_allow_download,
                                  allow_random=lc.vgg_random)
    vgg = VGG19Features()
    if weights is not None:
        vgg.load_weights(weights)
    return {"net_g": net_g.to(device), "net_e": None if net_e is None else net_e.to(device),
            "net_d": net_d.to(device), "vgg": vgg.to(device)}


def plain_step_from_config(cfg: Any, device: torch.device) -> PlainEagerStep | PlainHDStep:
    """The plain reference step of the config's model family."""
    o = cfg.optim
    if cfg.model.family == "pix2pixhd":
        from pix2pix.training.objectives import label_inputs

        lc = cfg.loss
        if (lc.gan_mode != "lsgan" or lc.lambda_gan != 1.0 or lc.lambda_feat <= 0 or lc.lambda_vgg <= 0
                or lc.vgg_normalize or cfg.train.load_global or cfg.train.niter_fix_global):
            raise SystemExit("the plain pix2pixHD step is the reference objective: lsgan, lambda_gan 1, feature "
                             "matching and VGG on, VGG inputs as they are, the whole generator training")
        nets = plain_hd_networks(cfg, device)
        return PlainHDStep(nets["net_g"], nets["net_d"], nets["vgg"], label_inputs(cfg).encode, lr=o.lr,
                           betas=(o.beta1, o.beta2), lambda_feat=lc.lambda_feat, lambda_vgg=lc.lambda_vgg,
                           n_layers_d=cfg.model.n_layers_d, num_d=cfg.model.num_d, net_e=nets["net_e"])
    if cfg.loss.gan_mode != "vanilla" or cfg.loss.lambda_gan != 1.0 or not cfg.model.conditional_d:
        raise SystemExit("the plain eager step is the reference objective: vanilla GAN, lambda_gan 1, conditional D")
    net_g, net_d = plain_networks(cfg, device)
    return PlainEagerStep(net_g, net_d, lr=o.lr, betas=(o.beta1, o.beta2), lambda_l1=cfg.loss.lambda_l1)


# ----------------------------------------------------------------------------------------------
# Building one configuration


def preset_config(name: str, device: str = "cpu") -> Any:
    """The library preset (or alias) as the benchmark runs it."""
    from pix2pix.config import update_config
    from pix2pix.presets import get_preset

    base, overrides = PRESET_ALIASES.get(name, (name, {}))
    cfg = get_preset(base)
    if overrides:
        update_config(cfg, overrides, source=f"benchmark alias '{name}'")
    cfg.train.device = device
    cfg.train.tensorboard = False
    if cfg.model.family == "pix2pixhd":
        cfg.loss.vgg_random = True  # no ImageNet VGG19 file on this machine: random features (same cost)
    return cfg


def frame_size(cfg: Any) -> tuple[int, int]:
    """(W, H) of the benchmark's batches: the crop, or Cityscapes' 2:1 frames for scale_width / none."""
    d = cfg.data
    if d.preprocess == "scale_width":
        return d.load_size, d.load_size // 2
    if d.preprocess == "none":
        return 2048, 1024
    return d.crop_size, d.crop_size


def _blocks(g: torch.Generator, n: int, h: int, w: int, cell: int, high: int) -> torch.Tensor:
    """[n, 1, h, w] int64: random ids in 0..high-1, constant over cell x cell squares."""
    gh, gw = -(-h // cell), -(-w // cell)
    ids = torch.randint(0, high, (n, 1, gh, gw), generator=g)
    return ids.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :h, :w].contiguous()


def make_batch(cfg: Any, device: torch.device, seed: int = 1234) -> dict[str, Any]:
    """One random batch of the preset's family and size (the same for every step and variant).

    pix2pix: {"A", "B"} uniform in [-1, 1]. pix2pixHD: "label" ids < label_nc on square blocks (8
    blocks down the frame), "instance" = label * 1000 + one of 3 ids on blocks half as large (so the
    boundary map marks object edges inside the regions too: ~1/4 of the pixels at 512x256),
    "image" uniform in [-1, 1].
    """
    g = torch.Generator().manual_seed(seed)
    n, m = cfg.train.batch_size, cfg.model
    w, h = frame_size(cfg)
    if m.family != "pix2pixhd":
        a = torch.rand(n, m.in_channels, h, w, generator=g) * 2 - 1
        b = torch.rand(n, m.out_channels, h, w, generator=g) * 2 - 1
        return {"A": a.to(device), "B": b.to(device)}
    from pix2pix.training.objectives import label_inputs

    inputs = label_inputs(cfg)
    cell = max(2, h // 8)
    label = _blocks(g, n, h, w, cell, max(cfg.data.label_nc, 1))
    batch: dict[str, Any] = {"label": label.to(device)}
    if inputs.use_instance:
        batch["instance"] = (label * 1000 + _blocks(g, n, h, w, max(2, cell // 2), 3)).to(device)
    batch["image"] = (torch.rand(n, m.out_channels, h, w, generator=g) * 2 - 1).to(device)
    return batch


def parse_variant(variant: str) -> tuple[str, list[str]]:
    """'library+fused_adam+conv_autotune' -> ('library', ['fused_adam', 'conv_autotune'])."""
    base, *switches = variant.split("+")
    if base not in BASES:
        raise SystemExit(f"variant '{variant}': it must start with {' or '.join(BASES)}")
    expanded: list[str] = []
    for sw in switches:
        if sw not in SWITCHES:
            raise SystemExit(f"variant '{variant}': unknown switch '{sw}'; switches: {', '.join(SWITCHES)}")
        if sw not in expanded:
            expanded.append(sw)
    if base == "plain" and set(expanded) - set(PROCESS_WIDE):
        raise SystemExit(f"variant '{variant}': the plain step takes only the process-wide switches "
                         f"{' and '.join(PROCESS_WIDE)}")
    if {"bf16", "fp16"} <= set(expanded):
        raise SystemExit(f"variant '{variant}': bf16 and fp16 exclude each other")
    if {"allocator", "no_allocator"} <= set(expanded):
        raise SystemExit(f"variant '{variant}': allocator and no_allocator exclude each other")
    return base, expanded


def check_applicable(variant: str, cfg: Any, device_type: str) -> None:
    """Raise NotApplicable (the row's text) or SystemExit (a variant that cannot work) before building."""
    _, switches = parse_variant(variant)
    if "accum2" in switches and cfg.train.batch_size % 2:
        raise NotApplicable(f"n/a: batch {cfg.train.batch_size}")
    if "ckpt" in switches and cfg.model.generator.startswith("unet"):
        raise NotApplicable("n/a: a U-Net has no residual blocks to checkpoint")
    if "compile" in switches and device_type == "cpu" and {"fast", "conv_autotune"} & set(switches):
        raise SystemExit(f"variant '{variant}': on the CPU compile and the conv autotuning (fast, conv_autotune) "
                         "do not combine (the native path toggles a global flag inside an autograd.Function)")


def _p2p_translate(net_g: nn.Module) -> Any:
    """batch -> G(A) (eval mode, no grad) for a pix2pix generator."""

    @torch.no_grad()
    def translate(batch: dict[str, Any]) -> torch.Tensor:
        was = net_g.training
        net_g.eval()
        out = net_g(batch["A"])
        net_g.train(was)
        return out

    return translate


def _hd_translate(encode: Any, net_g: nn.Module, net_e: nn.Module | None) -> Any:
    """batch -> G's output (eval mode, no grad) for a pix2pixHD generator."""
    from pix2pix.models import run_padded

    @torch.no_grad()
    def translate(batch: dict[str, Any]) -> torch.Tensor:
        nets = [n for n in (net_g, net_e) if n is not None]
        modes = [n.training for n in nets]
        for n in nets:
            n.eval()
        x = encode(batch)
        if net_e is not None:
            x = torch.cat([x, net_e(batch["image"], batch["instance"])], 1)
        out = run_padded(net_g, x)
        for n, mode in zip(nets, modes, strict=True):
            n.train(mode)
        return out

    return translate


def build_variant(variant: str, cfg: Any, device: torch.device) -> dict[str, Any]:
    """{'step': batch -> losses, 'translate': batch -> G's output (eval, no grad), 'nets': {...}, 'applied': {...}}."""
    from pix2pix.training import fast_step

    base, switches = parse_variant(variant)
    check_applicable(variant, cfg, device.type)
    hd = cfg.model.family == "pix2pixhd"
    applied: dict[str, Any] = {}
    # process-wide switches (each variant runs in its own process)
    if "allocator" in switches:
        applied["allocator"] = fast_step.tune_cpu_allocator()
    if "no_onednn" in switches:
        torch.backends.mkldnn.enabled = False
        applied["no_onednn"] = True
    if base == "plain":
        plain = plain_step_from_config(cfg, device)
        if hd:
            nets = {"net_g": plain.net_g, "net_d": plain.net_d, "net_e": plain.net_e, "vgg": plain.vgg}
            translate = _hd_translate(lambda b: plain.encode(b["label"], b.get("instance")), plain.net_g,
                                      plain.net_e)
            return {"step": plain.step, "translate": translate, "nets": nets, "applied": applied}

        return {"step": lambda batch: plain.step(batch["A"], batch["B"]), "translate": _p2p_translate(plain.net_g),
                "nets": {"net_g": plain.net_g, "net_d": plain.net_d}, "applied": applied}

    from pix2pix.config import validate
    from pix2pix.training.trainer import build_trainer

    t = cfg.train
    t.channels_last = "channels_last" in switches
    t.fast_step = "fast" in switches
    t.compile = "compile" in switches
    t.precision = "bf16" if "bf16" in switches else "fp16" if "fp16" in switches else "fp32"
    t.checkpoint_activations = "ckpt" in switches
    t.grad_accum = 2 if "accum2" in switches else 1
    validate(cfg)
    if "no_allocator" not in switches:  # what train() does first
        applied.update({k: v for k, v in fast_step.apply_process_defaults(device).items() if v})
    trainer = build_trainer(cfg, device)
    if "torch_adam" in switches:
        fast_step.rebuild_adams(trainer, "torch")
    applied["adam"] = fast_step._adam_kind(trainer.opt_g)
    applied.update({k: v for k, v in (("channels_last", t.channels_last), ("fast_step", t.fast_step),
                                      ("compile", t.compile), ("precision", t.precision),
                                      ("grad_accum", t.grad_accum)) if v not in (False, "fp32", 1)})
    if t.checkpoint_activations:
        applied["checkpointed_modules"] = sum(bool(getattr(m, "checkpointed", False))
                                              for m in trainer.net_g.modules())
    nets = {**trainer.networks(), "vgg": getattr(trainer, "vgg", None)}
    if "fused_adam" in switches:
        fast_step.use_fused_adam(trainer)
        applied["fused_adam"] = True
    if "conv_autotune" in switches:
        applied["conv_autotune"] = sum(fast_step.autotune_conv_backends(net) for net in nets.values()
                                       if net is not None)
    if hd:
        translate = _hd_translate(lambda b: trainer.objective.prepare(b, trainer._to_device).cond, trainer.net_g,
                                  trainer.net_e)
    else:
        translate = _p2p_translate(trainer.net_g)
    return {"step": trainer.train_step, "translate": translate, "nets": nets, "applied": applied}


# ----------------------------------------------------------------------------------------------
# Measuring


def _proc_kib(path: str, field: str) -> int:
    """A 'Field:  N kB' value of a /proc file, or -1 where there is none."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _proc_status_kib(field: str, pid: int | str = "self") -> int:
    return _proc_kib(f"/proc/{pid}/status", field)


def _meminfo_kib(field: str) -> int:
    return _proc_kib("/proc/meminfo", field)


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


def _children_cpu_s(pid: int | str = "self", depth: int = 3) -> float:
    """CPU seconds of the live child processes (data-loading workers), from /proc, or 0 where there is none."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
            if depth > 1:
                total += _children_cpu_s(child, depth - 1)
    return total


def _minor_faults() -> int:
    try:
        import resource
    except ImportError:  # not on Unix
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _own_cpu_s() -> float:
    """This process's CPU seconds, its threads and live child processes included."""
    t = os.times()
    return t.user + t.system + _children_cpu_s()


class OthersMeter:
    """CPU time that other processes used while a block ran: how disturbed a timing is."""

    def __enter__(self) -> OthersMeter:
        self.busy0, self.own0 = _machine_busy_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc: Any) -> None:
        busy1, own1 = _machine_busy_s(), _own_cpu_s()
        self.own_s = own1 - self.own0
        self.others_s = max(0.0, (busy1 - self.busy0) - self.own_s) if self.busy0 >= 0 else 0.0


def quiet_times(times: list[float], others: list[float]) -> tuple[list[float], int]:
    """(the times to take the median of, how many steps were quiet).

    A step is quiet when other processes used under 5 % of one CPU during it (plus one clock
    tick of slack); the median is over the quiet steps, or over all when fewer than 3 were.
    """
    tick = 1.0 / _CLK_TCK
    quiet = [t for t, o in zip(times, others, strict=True) if o <= 0.05 * t + tick]
    return (quiet if len(quiet) >= 3 else times), len(quiet)


def count_step_flops(step: Any, batch: dict[str, Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(batch)
    return int(counter.get_total_flops())


def counts_own_flops(variant: str, flops: str) -> bool:
    """Whether this row counts its FLOPs itself ('base' mode: the bases and the switches that change the work)."""
    base, switches = parse_variant(variant)
    if flops == "none" or "compile" in switches:
        return False
    return flops == "all" or not switches or bool({"ckpt", "accum2"} & set(switches)) or base == "plain"


def _describe_nets(cfg: Any, nets: dict[str, Any]) -> tuple[str, str]:
    m = cfg.model
    if m.family == "pix2pixhd":
        vgg = nets.get("vgg")
        g = f"{m.generator} (ngf {m.ngf})" + (" + encoder" if nets.get("net_e") is not None else "")
        d = f"{m.discriminator} (num_D {m.num_d}, n_layers {m.n_layers_d}, ndf {m.ndf})"
        if vgg is not None:
            d += " + VGG19 (" + ("ImageNet" if getattr(vgg, "pretrained", False) else "random") + ")"
        return g, d
    return f"{m.generator} (ngf {m.ngf})", f"{m.discriminator} (n_layers {m.n_layers_d}, ndf {m.ndf})"


class Worker:
    """One (preset, variant) in this process: build and warm up, then time steps on request."""

    def __init__(self, preset: str, variant: str, warmup: int, device_name: str, seed: int) -> None:
        from pix2pix.runtime import resolve_device, seed_everything

        self.preset, self.variant = preset, variant
        self.device = device = resolve_device(device_name)
        self.cfg = cfg = preset_config(preset, device.type)
        self.batch = make_batch(cfg, device)
        self.infer_batch = {k: v[:1] for k, v in self.batch.items()}
        _sync(device)
        self.rss0 = _proc_status_kib("VmRSS")
        if device.type == "cuda":
            self.mem0 = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        seed_everything(seed)
        t0 = time.perf_counter()
        self.built = build_variant(variant, cfg, device)
        self.build_s = time.perf_counter() - t0
        self.warmup_times = [self.step() for _ in range(max(warmup, 1))]
        self.times: list[float] = []
        self.others: list[float] = []  # CPU seconds other processes used during each timed step
        self.cpu_times: list[float] = []  # CPU seconds this process used in each timed step (all its threads)
        self.faults: list[int] = []  # minor page faults in each timed step (memory the allocator mapped afresh)
        self.infer_times: list[float] = []
        self.losses: dict[str, torch.Tensor] = {}

    def step(self) -> float:
        t0 = time.perf_counter()
        self.losses = self.built["step"](self.batch)
        _sync(self.device)
        return time.perf_counter() - t0

    def infer(self) -> float:
        t0 = time.perf_counter()
        self.built["translate"](self.infer_batch)
        _sync(self.device)
        return time.perf_counter() - t0

    def memory(self) -> dict[str, float]:
        """What the parent needs to decide whether another worker fits (MiB)."""
        if self.device.type == "cuda":
            return {"cuda_reserved_peak_mib": torch.cuda.max_memory_reserved(self.device) / 2**20}
        return {"hwm_mib": _proc_status_kib("VmHWM") / 1024}

    def finish(self, count_flops: bool) -> dict[str, Any]:
        device, cfg = self.device, self.cfg
        max_allocated_mib = None
        if device.type == "cuda":
            max_allocated_mib = torch.cuda.max_memory_allocated(device) / 2**20
            peak_mib = max_allocated_mib - self.mem0 / 2**20
        else:
            peak_mib = (_proc_status_kib("VmHWM") - self.rss0) / 1024 if self.rss0 >= 0 else float("nan")
        losses = {k: float(v) for k, v in self.losses.items()}
        flops = count_step_flops(self.built["step"], self.batch) if count_flops else None
        nets = self.built["nets"]
        g_desc, d_desc = _describe_nets(cfg, nets)
        w, h = frame_size(cfg)
        d_params = sum(p.numel() for p in nets["net_d"].parameters()) if nets.get("net_d") is not None else 0
        return {
            "preset": self.preset, "variant": self.variant, "device": str(device), "family": cfg.model.family,
            "generator": g_desc, "discriminator": d_desc,
            "width": w, "height": h, "batch": cfg.train.batch_size, "ngf": cfg.model.ngf, "ndf": cfg.model.ndf,
            "params_g": sum(p.numel() for p in nets["net_g"].parameters()), "params_d": d_params,
            "build_s": self.build_s, "warmup_times": self.warmup_times, "times": self.times,
            "cpu_times": self.cpu_times, "faults": self.faults,
            "others_cpu_s": self.others,
            "infer_times": self.infer_times, "flops": flops, "peak_mib": peak_mib, "losses": losses,
            "max_allocated_mib": max_allocated_mib,
            "applied": self.built["applied"], "threads": torch.get_num_threads(),
        }


def serve(args: argparse.Namespace, preset: str, variant: str) -> int:
    """Worker process: answer 'step', 'infer' and 'finish' lines on stdin with JSON lines on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library prints off the protocol channel
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.compile_backend:  # e.g. aot_eager: the compile path without code generation (a quick dry run)
        real_compile = torch.compile
        torch.compile = lambda model=None, **kw: real_compile(model, **{**kw, "backend": args.compile_backend})
    worker = Worker(preset, variant, args.warmup, args.device, args.seed)
    out.write(json.dumps({"ready": True, "first_step": worker.warmup_times[0], "last_warmup": worker.warmup_times[-1],
                          **worker.memory()}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "step":
            faults0 = _minor_faults()
            with OthersMeter() as meter:
                t = worker.step()
            worker.faults.append(_minor_faults() - faults0)
            worker.times.append(t)
            worker.others.append(meter.others_s)
            worker.cpu_times.append(meter.own_s)
            reply: dict[str, Any] = {"t": t, "others": meter.others_s}
        elif cmd == "infer":
            t = worker.infer()
            worker.infer_times.append(t)
            reply = {"t": t}
        elif cmd == "finish":
            out.write(json.dumps(worker.finish(counts_own_flops(variant, args.flops))) + "\n")
            out.flush()
            return 0
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, preset: str, variant: str, args: argparse.Namespace, flops: str | None = None) -> None:
        self.preset, self.variant, self.warmup = preset, variant, args.warmup
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--presets", preset, "--variants",
               variant, "--warmup", str(args.warmup), "--device", args.device, "--seed", str(args.seed),
               "--threads", str(args.threads), "--flops", flops or args.flops]
        if args.compile_backend:
            cmd += ["--compile-backend", args.compile_backend]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.error: str | None = None
        self.ready = self._reply(timeout=args.warmup_timeout or None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-200]

    def _reply(self, timeout: float | None = None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if timeout is not None and not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.proc.kill()
            self.proc.wait()
            self.error = f"stopped: not ready after {timeout:.0f} s (build + {self.warmup} warm-up step(s))"
            return {"error": self.error}
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._drain.join(timeout=5)
            tail = [ln.strip() for ln in self.stderr if ln.strip() and "USDT" not in ln]
            self.error = tail[-1] if tail else f"worker exited with {self.proc.returncode}"
            if self.proc.returncode in (-9, 137):
                self.error = f"killed (out of memory?): {self.error}"
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

    def rss_gap_mib(self) -> float:
        """How much more host memory this worker will take again in its next step (VmHWM - VmRSS)."""
        hwm, rss = _proc_status_kib("VmHWM", self.proc.pid), _proc_status_kib("VmRSS", self.proc.pid)
        return max(0, hwm - rss) / 1024 if hwm >= 0 and rss >= 0 else 0.0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def room_for_another(workers: list[WorkerProcess], args: argparse.Namespace) -> bool:
    """Whether one more worker fits in memory beside the live ones, with room to spare.

    The live workers keep their peak working set; the next one is assumed to need up to twice the
    largest peak so far (the allocator tuning, for one, can double a worker's peak after it is ready),
    and a fifth of the machine's memory stays free: under memory pressure the kernel's reclaim takes
    CPU time and page faults get slower, which skews the timings (seen: a plain pix2pixHD step at
    13.5 s with 3.5 GiB left free, 10.4 s with 15 GiB).
    """
    live = [w for w in workers if not w.error]
    if args.max_workers and len(live) >= args.max_workers:
        return False
    if not live:
        return True
    if args.device.startswith("cuda"):
        peak = max(w.ready.get("cuda_reserved_peak_mib", 0.0) for w in live)
        free_b, total_b = torch.cuda.mem_get_info()
        return free_b / 2**20 >= 2 * peak + 0.1 * total_b / 2**20
    available, total = _meminfo_kib("MemAvailable"), _meminfo_kib("MemTotal")
    if available < 0 or total < 0:
        return True
    peak = max(w.ready.get("hwm_mib", 0.0) for w in live)
    return available / 1024 - sum(w.rss_gap_mib() for w in live) >= 2 * peak + 0.2 * total / 1024


def _lockstep(preset: str, workers: list[WorkerProcess], args: argparse.Namespace, group: int) -> list[dict[str, Any]]:
    """Time the group's steps round by round; a variant over --max-slowdown x the plain's warm-up step is timed once."""
    live = [w for w in workers if not w.error]
    ref = [w.ready["last_warmup"] for w in live if w.variant == "plain"] or \
        [min((w.ready["last_warmup"] for w in live), default=0.0)]
    slow = {w.variant for w in live if args.max_slowdown > 0 and w.ready["last_warmup"] > args.max_slowdown * ref[0]}
    for v in sorted(slow):
        print(f"[{preset} g{group} {v}] over {args.max_slowdown:g}x the plain step: timed once", file=sys.stderr,
              flush=True)
    loads = [_load()]
    for i in range(args.steps):
        replies = {w.variant: w.ask("step") for w in workers if i == 0 or w.variant not in slow}
        loads.append(_load())
        print(f"[{preset} g{group}] step {i + 1}/{args.steps}: "
              + ", ".join(f"{v} {r['t']:.3f} ({r['others']:.2f})" for v, r in replies.items() if "t" in r),
              file=sys.stderr, flush=True)
    for i in range(args.infer_iters + 2):  # the first two are warm-up
        for w in workers:
            if i < 3 or w.variant not in slow:
                w.ask("infer")
    results = []
    for w in workers:
        res = w.ask("finish")
        if "error" in res:
            res = {"preset": preset, "variant": w.variant, "error": res["error"]}
        else:
            res["infer_times"] = res["infer_times"][2:]
            res["load"] = loads
            res["timed_once"] = w.variant in slow
        res["group"] = group
        results.append(res)
        w.close()
    return results


def run_preset(preset: str, variants: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start the variants' workers (one at a time, as many as fit in memory), time them in lockstep; one row each.

    When memory runs short the started workers are timed and closed, and the rest follow in
    another group, headed by a fresh plain worker (when plain is benchmarked) for its speed-ups.
    """
    cfg = preset_config(preset, "cuda" if args.device.startswith("cuda") else "cpu")
    results: list[dict[str, Any]] = []
    pending: list[str] = []
    for v in variants:
        try:
            check_applicable(v, cfg, "cuda" if args.device.startswith("cuda") else "cpu")
            pending.append(v)
        except NotApplicable as exc:
            results.append({"preset": preset, "variant": v, "error": str(exc), "group": 0})
    anchor = "plain" if "plain" in pending else None
    group = 0
    while pending:
        group += 1
        workers: list[WorkerProcess] = []

        def start(v: str, g: int = group, ws: list[WorkerProcess] = workers, flops: str | None = None) -> None:
            t0 = time.perf_counter()
            w = WorkerProcess(preset, v, args, flops)
            ws.append(w)
            msg = w.error or f"first step {w.ready['first_step']:.3f}s"
            print(f"[{preset} g{g} {v}] ready in {time.perf_counter() - t0:.0f}s: {msg}; "
                  f"MemAvailable {_meminfo_kib('MemAvailable') / 2**20:.1f} GiB", file=sys.stderr, flush=True)

        try:
            if group > 1 and anchor:
                start(anchor, flops="none")  # this group's own baseline (its FLOPs were counted in group 1)
            started = 0
            while pending and (started == 0 or room_for_another(workers, args)):
                start(pending.pop(0))
                started += 1
            results += _lockstep(preset, workers, args, group)
        finally:
            for w in workers:
                w.close()
    order = {v: i for i, v in enumerate(variants)}
    return sorted(results, key=lambda r: (r["group"] or 1 << 30, order[r["variant"]]))


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
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
        info["cpu_flags"] = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")
                                     if f in flags)
    except (OSError, StopIteration):
        pass
    mem = _meminfo_kib("MemTotal")
    if mem > 0:
        info["memory_gib"] = f"{mem / 2**20:.0f}"
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


METRIC = "wall"  # or "cpu" (--metric): what the medians and speed-ups are taken of


def _median(r: dict[str, Any]) -> float:
    if METRIC == "cpu" and r.get("cpu_times"):
        return statistics.median(r["cpu_times"])
    return statistics.median(quiet_times(r["times"], r["others_cpu_s"])[0])


def _plain_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["preset"], r["group"]): r for r in rows if r.get("variant") == "plain" and "error" not in r}


def _plain_for(r: dict[str, Any], plains: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any] | None:
    return plains.get((r["preset"], r["group"])) or plains.get((r["preset"], 1))


def _flops_for(r: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[int | None, bool]:
    """(FLOPs of the row's step, whether borrowed: from its own base's row, same maths, else the library's)."""
    if r.get("flops"):
        return r["flops"], False
    own = "plain" if r["variant"].startswith("plain") else "library"
    for base in (own, "library"):
        for o in rows:
            if o["preset"] == r["preset"] and o.get("variant") == base and o.get("flops"):
                return o["flops"], True
    return None, False


def _gib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("| preset | group | variant | G / D | W x H x batch | step median (s) | step min (s) | CPU s / step "
            "| page faults / step | quiet steps "
            "| speed-up vs plain eager | first step (s) | GFLOP/step | GFLOP/s | G inference median / min (ms) "
            "| peak mem Δ | losses vs plain |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    plains = _plain_rows(rows)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r.get('group', '-') or '-'} | {r['variant']} | {r['error']} |"
                         + " |" * 13)
            continue
        med = _median(r)
        _, n_quiet = quiet_times(r["times"], r["others_cpu_s"])
        quiet = f"{n_quiet}/{len(r['times'])}" + (" (timed once: too slow)" if r.get("timed_once") else "")
        flops, borrowed = _flops_for(r, rows)
        plain = _plain_for(r, plains)
        losses = ("- (fewer steps)" if r.get("timed_once") else
                  _loss_match(r["losses"], plain["losses"] if plain else None))
        speed = f"{_median(plain) / med:.2f}x" if plain else "-"
        flop_cells = (f"{flops / 1e9:.1f}{'*' if borrowed else ''} | {flops / 1e9 / med:.1f}" if flops else "- | -")
        cpu = statistics.median(r["cpu_times"]) if r.get("cpu_times") else float("nan")
        faults = f"{statistics.median(r['faults']):,.0f}" if r.get("faults") else "-"
        lines.append(
            f"| {r['preset']} | {r['group']} | {r['variant']} | {r['generator']} / {r['discriminator']} | "
            f"{r['width']}x{r['height']} x {r['batch']} | {med:.4g} | {min(r['times']):.4g} | "
            f"{cpu:.4g} | {faults} | {quiet} | {speed} | {r['warmup_times'][0]:.2f} | {flop_cells} | "
            f"{statistics.median(r['infer_times']) * 1e3:.1f} / {min(r['infer_times']) * 1e3:.1f} | "
            f"{_gib(r['peak_mib'])} | {losses} |")
    return "\n".join(lines)


def _switch_label(variant: str) -> str:
    if variant == "plain":
        return "plain fp32 eager"
    if variant == "library":
        return "library (no switch)"
    return variant.removeprefix("library+")


def format_summary(rows: list[dict[str, Any]], variants: list[str]) -> str:
    """One row per preset, one column per variant: speed-up vs the plain fp32 eager step · step time · peak memory."""
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    cols = list(dict.fromkeys(variants))
    head = "| preset | W x H x batch | " + " | ".join(_switch_label(v) for v in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    plains = _plain_rows(rows)
    for p in presets:
        prow = [r for r in rows if r["preset"] == p]
        ok = [r for r in prow if "error" not in r]
        size = f"{ok[0]['width']}x{ok[0]['height']} x {ok[0]['batch']}" if ok else "-"
        cells = []
        for v in cols:
            cand = [r for r in prow if r["variant"] == v]
            if not cand:
                cells.append("-")
                continue
            r = cand[0]  # the plain of group 1 for the plain column
            if "error" in r:
                cells.append(r["error"])
                continue
            med = _median(r)
            plain = _plain_for(r, plains)
            speed = f"**{_median(plain) / med:.2f}x**" if plain else "-"
            cells.append(f"{speed} · {med:.3g} s · {_gib(r['peak_mib'])}")
        lines.append(f"| {p} | {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_report(rows: list[dict[str, Any]], info: dict[str, str], argv: list[str], started: str,
                  args: argparse.Namespace, variants: list[str]) -> str:
    cmd = " ".join(["python", "benchmarks/benchmark.py", *argv])
    loads = [x for r in rows if "error" not in r for x in r.get("load", [])]
    groups = max((r.get("group", 1) for r in rows), default=1)
    lines = [
        "# Training-step benchmark", "",
        f"- command: `{cmd}`",
        f"- date: {started}",
        f"- machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info.get('cpu_flags', '?')}), "
        f"{info.get('memory_gib', '?')} GiB, torch threads {info['torch_threads']}"
        + (f", GPU {info['gpu']}" if "gpu" in info else ""),
        f"- torch {info['torch']}, Python {info['python']}, {info['platform']}",
        f"- device: {args.device}; {args.warmup} warm-up step(s), then {args.steps} timed steps per variant in "
        f"lockstep (one step of each variant in turn); load average at start: "
        f"{info.get('load_average_at_start', '?')}"
        + (f"; 1-minute load average during the timed steps {min(loads):.2f}-{max(loads):.2f}" if loads else ""),
    ]
    if groups > 1:
        lines.append(f"- the workers did not all fit in memory together: {groups} lockstep groups, each headed "
                     "by its own plain run; speed-ups are against the plain run of the same group")
    lines += [
        "", "Summary: speed-up vs the plain fp32 eager step (median step time plain / variant) · the variant's "
        "median step time · its peak memory.", "",
        format_summary(rows, variants), "",
        "Details:", "",
        format_table(rows), "",
        ("Medians and speed-ups of the CPU time each step used (--metric cpu). " if METRIC == "cpu" else "")
        + "Step median: over the quiet steps (those during which other processes used under 5 % of a CPU, "
        "measured from /proc/stat; all steps when fewer than 3 were quiet); step min: over all timed steps; "
        "speed-up = plain eager median / row median (same preset, same lockstep group). "
        "First step: the first warm-up step (lazy init, conv autotuning, compilation). "
        "GFLOP/step: FlopCounterMode over one full training step (convolutions and matmuls, forward and "
        "backward of every network; element-wise ops not counted); * = not counted in this row but taken from "
        "its base's row (same maths: the switch changes kernels, formats or precision, not the work). "
        "GFLOP/s = GFLOP/step / step median. "
        "Losses vs plain: the largest relative difference of the final losses (pix2pix: D_fake, D_real, D, "
        "G_GAN, G_L1, G; pix2pixHD: " + ", ".join(HD_LOSSES) + ") from the plain step's, after the same seed and "
        "the same number of steps (float rounding differences grow over the steps of a GAN). "
        "G inference: generator forward, eval mode, batch 1, no grad, fp32. Peak mem Δ: "
        + ("CUDA max_memory_allocated minus the memory allocated before the networks were built."
           if args.device.startswith("cuda") else
           "VmHWM after the timed steps minus VmRSS before the networks were built (one process per variant)."),
    ]
    if loads and max(loads) > (os.cpu_count() or 1) * 0.75 + 1:
        lines += ["", f"Note: the 1-minute load average reached {max(loads):.2f} during the timed steps; other "
                      "processes shared the CPU, so the times are noisy (the lockstep order spreads that over "
                      "all variants; the step minimum is the least disturbed figure)."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=DEFAULT_PRESETS, help=f"comma-separated (default {DEFAULT_PRESETS}); "
                   f"aliases: {', '.join(PRESET_ALIASES)}")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: plain or library, each optionally followed by +switch...; "
                   f"switches: {', '.join(SWITCHES)}")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default="benchmarks/results.md", help="markdown file to write ('' for none)")
    p.add_argument("--json", default="", help="also write the raw measurements to this JSON file")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in the workers (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--infer-iters", type=int, default=0, help="inference repetitions (default: max(steps, 3))")
    p.add_argument("--flops", choices=("base", "all", "none"), default="base",
                   help="which rows count their FLOPs with an extra step: base (the plain and library bases and "
                   "the ckpt / accum2 switches; the others do the library's work), all (but compiled ones), none")
    p.add_argument("--no-flops", action="store_true", help="= --flops none")
    p.add_argument("--max-slowdown", type=float, default=20.0,
                   help="a variant whose last warm-up step takes over this many times the plain one's is timed over "
                   "one step only (bf16 / fp16 on a CPU without native support: ~100x slower convolutions); 0: off")
    p.add_argument("--warmup-timeout", type=float, default=0,
                   help="seconds a worker may take to build and warm up before it is stopped (its row says so); "
                   "0: no limit")
    p.add_argument("--max-workers", type=int, default=0,
                   help="live workers at most per lockstep group (default: as many as fit in memory)")
    p.add_argument("--render", default="", metavar="JSON",
                   help="only re-render the report of a run saved with --json (its command, machine and rows) to "
                   "--out and stdout")
    p.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                   help="step time for the medians and speed-ups: wall clock over the quiet steps (default), or the "
                   "CPU time the worker used (all its threads; robust to other load at --threads 1, where a "
                   "step's CPU time is its wall time on an idle core)")
    p.add_argument("--compile-backend", default="", help="torch.compile backend for +compile (default: torch's, "
                   "inductor); aot_eager runs the same capture without code generation, for quick dry runs")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.no_flops:
        args.flops = "none"
    if args.infer_iters <= 0:
        args.infer_iters = max(args.steps, 3)
    return args


def main(argv: list[str] | None = None) -> int:
    global METRIC
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    METRIC = args.metric
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        run_args = parse_args(saved["argv"])
        run_variants = [s.strip() for s in run_args.variants.split(",") if s.strip()]
        report = format_report(saved["runs"], saved["machine"], saved["argv"], saved.get("started", "?"), run_args,
                               run_variants)
    else:
        presets = [s.strip() for s in args.presets.split(",") if s.strip()]
        variants = [s.strip() for s in args.variants.split(",") if s.strip()]
        if args.worker:
            return serve(args, presets[0], variants[0])
        device_type = "cuda" if args.device.startswith("cuda") else "cpu"
        for preset in presets:  # fail before any timing on a variant that cannot work
            cfg = preset_config(preset, device_type)
            for v in variants:
                try:
                    check_applicable(v, cfg, device_type)
                except NotApplicable:
                    pass
        started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        info = machine_info(args.device)
        rows = [row for preset in presets for row in run_preset(preset, variants, args)]
        report = format_report(rows, info, argv, started, args, variants)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": info, "argv": argv, "started": started, "runs": rows},
                                                  indent=1))
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
