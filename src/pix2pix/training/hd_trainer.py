"""pix2pixHD training: label (+ instance) maps in, LSGAN + feature matching + VGG, as the reference.

Each step computes G's and D's losses from one forward pass (D on (labels, fake) and
(labels, real)), takes each network's gradients, then steps both: the same update as
NVIDIA's code, which steps G, then D. The local enhancer can start from a trained global generator (`train.load_global`)
and train only its outermost enhancer for `train.niter_fix_global` epochs, after which
Adam is rebuilt over all parameters (the reference resets it there).
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ..config import Config
from ..data.images import tensor_to_image
from ..data.label_dataset import LabelDataset
from ..data.label_inputs import LabelInputs
from ..data.label_sets import LabelSet, colorize, generate_palette, get_label_set
from ..errors import CheckpointError, ConfigError, DataError
from ..io.pretrained import WEIGHTS, read_config, save_pretrained
from ..losses import GANLoss, VGGLoss, feature_matching_loss, resolve_vgg_weights
from ..models import run_padded
from ..nn import init_weights
from ..registry import accepted_options, create_discriminator, create_generator
from .base import TrainerBase, add_weighted
from .fast_step import fused_adam_supported, speed_up
from .scaling import DistContext, gradient_sync
from .schedules import make_scheduler


def label_inputs(cfg: Config) -> LabelInputs:
    d = cfg.data
    return LabelInputs(d.label_nc, d.use_instance and not d.class_from_folder,
                       d.ignore_index if d.ignore_index >= 0 else None)


def hd_channels(cfg: Config) -> tuple[int, int]:
    """(generator input, discriminator input) channels as the reference computes them.

    G sees labels (+ boundary map) (+ encoded features); D sees labels (+ boundary map) + image.
    """
    cond = label_inputs(cfg).channels
    feat = cfg.model.feat_num if cfg.model.use_features else 0
    return cond + feat, cond + cfg.model.out_channels


def build_hd_networks(cfg: Config) -> tuple[nn.Module, nn.Module | None, nn.Module | None]:
    """(G, the feature encoder or None, D or None), built in this order and initialised as the reference.

    Conv weights N(0, init_gain), biases left at PyTorch's default; the encoder exists with
    model.use_features, D when a GAN or feature-matching loss needs it. On the CPU, not moved.
    """
    m, lc = cfg.model, cfg.loss
    g_in, d_in = hd_channels(cfg)
    # shared options go to the generators that take them (CRN has no norm choice, for one)
    common = {k: v for k, v in {"ngf": m.ngf, "norm": m.norm, "upsample": m.upsample}.items()
              if k in accepted_options(m.generator)}
    net_g = init_weights(create_generator(m.generator, g_in, m.out_channels, init=None,
                                          **{**common, **m.generator_kwargs}), m.init, m.init_gain, zero_bias=False)
    net_e = None
    if m.use_features:
        net_e = init_weights(create_generator("encoder", m.out_channels, m.feat_num, init=None, ngf=m.nef,
                                              n_downsample=m.n_downsample_e, norm=m.norm),
                             m.init, m.init_gain, zero_bias=False)
    net_d = None
    if lc.lambda_gan > 0 or lc.lambda_feat > 0:
        net_d = init_weights(create_discriminator(m.discriminator, d_in, init=None, ndf=m.ndf, n_layers=m.n_layers_d,
                                                  num_D=m.num_d, norm=m.norm), m.init, m.init_gain, zero_bias=False)
    return net_g, net_e, net_d


def resolve_label_set(cfg: Config) -> LabelSet | None:
    """The configured label set (names and palette), or the synthetic world's classes.json in the data folder."""
    if cfg.data.label_set:
        return get_label_set(cfg.data.label_set)
    classes = Path(cfg.data.root) / "classes.json"
    return LabelSet.from_classes_json(classes) if cfg.data.root and classes.is_file() else None


def hd_data_config(cfg: Config, label_set: LabelSet | None) -> dict[str, Any]:
    """What inference needs: the label encoding, sizes and the label set, saved beside the weights."""
    d, m = cfg.data, cfg.model
    inputs = label_inputs(cfg)
    return {"family": "pix2pixhd", "label_nc": d.label_nc, "use_instance": inputs.use_instance,
            "ignore_index": d.ignore_index, "use_features": m.use_features, "feat_num": m.feat_num,
            "preprocess": d.preprocess, "load_size": d.load_size, "crop_size": d.crop_size,
            "out_channels": m.out_channels, "class_from_folder": d.class_from_folder,
            "label_set": label_set.to_classes_json() if label_set is not None else None}


def load_global_weights(net_g: nn.Module, directory: str | Path) -> None:
    """Initialise a local enhancer's global part from a saved `global` generator (a model directory)."""
    directory = Path(directory)
    config = read_config(directory)
    if config.get("generator", {}).get("name") != "global":
        raise CheckpointError(f"{directory} does not hold a 'global' generator (train.load_global needs the "
                              "model/ directory of a global run).")
    if not hasattr(net_g, "load_global_state"):
        raise ConfigError("train.load_global is set but the generator is not a local enhancer ('local').")
    net_g.load_global_state(load_file(str(directory / WEIGHTS["generator"])))


class Pix2PixHDTrainer(TrainerBase):
    """Generator (+ feature encoder), multi-scale discriminator, their optimisers and the step."""

    def __init__(self, cfg: Config, device: torch.device, dist: DistContext | None = None) -> None:
        self.cfg, self.device = cfg, device
        m, lc, o = cfg.model, cfg.loss, cfg.optim
        if m.use_features and not label_inputs(cfg).use_instance:
            raise ConfigError("model.use_features needs instance maps (data.use_instance=true): the encoder "
                              "averages its features inside each instance.")
        self.inputs = label_inputs(cfg)
        self.label_set = resolve_label_set(cfg)
        net_g, net_e, net_d = build_hd_networks(cfg)
        self.net_g = net_g.to(device)
        if cfg.train.load_global:
            load_global_weights(self.net_g, cfg.train.load_global)
        self.net_e = None if net_e is None else net_e.to(device)
        self.net_d = None if net_d is None else net_d.to(device)
        if self.net_d is not None:
            self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
            self.sched_d = make_scheduler(self.opt_d, o)
        self.gan = GANLoss(lc.gan_mode)
        self.vgg = None
        if lc.lambda_vgg > 0:
            weights = resolve_vgg_weights(lc.vgg_weights or None, allow_download=lc.vgg_allow_download,
                                          allow_random=lc.vgg_random)
            self.vgg = VGGLoss(weights, normalize_input=lc.vgg_normalize, lambda_vgg=lc.lambda_vgg).to(device)
        self.global_frozen = cfg.train.niter_fix_global > 0 and hasattr(self.net_g, "enhancer_parameters")
        self._build_g_optimizer(epochs_done=0)
        if cfg.train.fast_step:
            speed_up(self)
        self.setup_scaling(dist)

    # -- optimisation ----------------------------------------------------------------------------
    def _g_parameters(self) -> list[nn.Parameter]:
        params = list(self.net_g.enhancer_parameters() if self.global_frozen else self.net_g.parameters())
        if self.net_e is not None:
            params += list(self.net_e.parameters())
        return params

    def _build_g_optimizer(self, epochs_done: int) -> None:
        o = self.cfg.optim
        trained = {id(p) for p in self._g_parameters()}
        for p in self.net_g.parameters():  # frozen parameters get no gradients (and DDP does not wait for them)
            p.requires_grad_(id(p) in trained)
        fused = self.cfg.train.fast_step and fused_adam_supported(self.device)  # kept when the net unfreezes
        self.opt_g = torch.optim.Adam(self._g_parameters(), lr=o.lr, betas=(o.beta1, o.beta2), fused=fused)
        self.sched_g = make_scheduler(self.opt_g, o)
        with warnings.catch_warnings():  # stepping a fresh schedule forward, before any optimiser step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epochs_done):
                self.sched_g.step()

    def end_epoch(self, epochs_done: int) -> None:
        super().end_epoch(epochs_done)
        if self.global_frozen and epochs_done >= self.cfg.train.niter_fix_global:
            self.global_frozen = False  # from now on everything trains; Adam starts afresh as in the reference
            self._build_g_optimizer(epochs_done)
            self.wrap_networks()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "global_frozen": self.global_frozen,
                "epochs_done": int(self.sched_g.last_epoch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if bool(state["global_frozen"]) != self.global_frozen:
            self.global_frozen = bool(state["global_frozen"])
            self._build_g_optimizer(int(state["epochs_done"]))
            self.wrap_networks()
        super().load_state_dict(state)

    # -- the step ----------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        label = self._to_device(batch["label"])
        instance = self._to_device(batch["instance"]) if "instance" in batch else None
        return self.inputs.encode(label, instance, source=batch.get("path", "")), instance

    def generate(self, cond: torch.Tensor, real: torch.Tensor | None, instance: torch.Tensor | None,
                 training: bool = False) -> torch.Tensor:
        """G(cond [+ E(real) pooled per instance]); `training` calls the wrapped modules of the step."""
        net_g, net_e = (self.g, self.e) if training else (self.net_g, self.net_e)
        g_in = cond
        if net_e is not None:
            g_in = torch.cat([cond, net_e(real, instance)], 1)
        return run_padded(net_g, g_in)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The reference step with one discriminator pass on the fake image; returns the detached losses.

        NVIDIA's code runs D on the fake twice (detached for the D loss, attached for the G
        loss). Both losses are taken from one pass here: G's gradients are computed for G (and
        E) only, D's for D only, both before either optimiser steps, so the update is the
        reference's exactly (D sees the same fake values, G sees D before its update). With
        train.grad_accum > 1 both gradients accumulate over the micro-batches before the steps.
        """
        parts = self.micro_batches(batch)
        g_params = [p for group in self.opt_g.param_groups for p in group["params"]]
        self.opt_g.zero_grad(set_to_none=True)
        if self.net_d is not None:
            self.opt_d.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        for i, (weight, part) in enumerate(parts):
            sync = i == len(parts) - 1
            with ExitStack() as stack:
                for net in (self.g, self.e, self.d):
                    if net is not None:
                        stack.enter_context(gradient_sync(net, sync))
                with self.amp.autocast():
                    part_losses = self._losses(part)
                # D's backward first, keeping the graph; G's backward then frees it layer by layer. The other
                # order keeps G's and the VGG's activations alive through D's backward: same gradients, but
                # a higher peak and ~3x the page faults per step on CPU (measured 1.25x slower at 512x256).
                if self.net_d is not None:
                    self.amp.backward(part_losses["D"] * weight, inputs=list(self.net_d.parameters()),
                                      retain_graph=True)
                self.amp.backward(part_losses["G"] * weight, inputs=g_params)
            add_weighted(losses, part_losses, weight)
        if self.net_d is not None:
            self.amp.step(self.opt_d)
        self.amp.step(self.opt_g)
        self.amp.update()
        return losses

    def _losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """G's and D's losses on one (micro-)batch, from one D pass on the fake and one on the real image."""
        lc = self.cfg.loss
        cond, instance = self.encode(batch)
        real = self._to_device(batch["image"])
        fake = self.generate(cond, real, instance, training=True)
        losses: dict[str, torch.Tensor] = {}
        total_g = fake.new_zeros((), dtype=torch.float32)
        if self.d is not None:
            pred_fake = self.d(torch.cat([cond, fake], 1))
            pred_real = self.d(torch.cat([cond, real], 1))
            losses["D_fake"] = self.gan(pred_fake, False)
            losses["D_real"] = self.gan(pred_real, True)
            losses["D"] = 0.5 * (losses["D_fake"] + losses["D_real"])
            if lc.lambda_gan > 0:
                losses["G_GAN"] = self.gan(pred_fake, True, for_discriminator=False)
                total_g = total_g + lc.lambda_gan * losses["G_GAN"]
            if lc.lambda_feat > 0:
                losses["G_GAN_Feat"] = feature_matching_loss(pred_fake, pred_real, self.cfg.model.n_layers_d,
                                                             lc.lambda_feat)
                total_g = total_g + losses["G_GAN_Feat"]
        if self.vgg is not None:
            losses["G_VGG"] = self.vgg(fake, real)
            total_g = total_g + losses["G_VGG"]
        losses["G"] = total_g
        return losses

    # -- data, samples and saving --------------------------------------------------------------------
    @staticmethod
    def make_dataset(cfg: Config, phase: str, train: bool) -> LabelDataset:
        d = cfg.data
        if not d.root:
            raise DataError("no dataset given: pass --data DIR (or set data.root).")
        return LabelDataset(d.root, phase, label_nc=d.label_nc, use_instance=label_inputs(cfg).use_instance,
                            preprocess=d.preprocess, load_size=d.load_size, crop_size=d.crop_size, flip=d.flip,
                            train=train, ignore_index=d.ignore_index, class_from_folder=d.class_from_folder,
                            max_items=d.max_items, require_images=train)

    def label_image(self, label: torch.Tensor) -> Image.Image:
        """A label map as a colour image (an RGB input as it is)."""
        if self.cfg.data.label_nc == 0:
            return tensor_to_image(label.float())
        palette = self.label_set.palette_array if self.label_set is not None else \
            np.asarray(generate_palette(self.cfg.data.label_nc), dtype=np.uint8)
        return Image.fromarray(colorize(label.cpu(), palette))

    @torch.no_grad()
    def sample_rows(self, items: list[dict[str, Any]]) -> list[list[Image.Image]]:
        """label map | output | photo (the photo when the split has one)."""
        nets = [n for n in (self.net_g, self.net_e) if n is not None]
        modes = [n.training for n in nets]
        for n in nets:
            n.eval()
        rows = []
        for item in items:
            batch = {k: (v[None] if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
            cond, instance = self.encode(batch)
            real = self._to_device(batch["image"]) if "image" in batch else None
            if self.net_e is not None and real is None:
                continue  # features need the photo
            fake = self.generate(cond, real, instance)[0]
            row = [self.label_image(item["label"]), tensor_to_image(fake.float().cpu())]
            if real is not None:
                row.append(tensor_to_image(item["image"]))
            rows.append(row)
        for n, mode in zip(nets, modes, strict=True):
            n.train(mode)
        return rows

    def save_model(self, directory: Path, step: int) -> None:
        data = hd_data_config(self.cfg, self.label_set)
        save_pretrained(self.net_g, directory, data=data, extra={"step": step})
        if self.net_e is not None:
            save_pretrained(self.net_e, directory, kind="encoder", data=data, extra={"step": step})
