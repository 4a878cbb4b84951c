"""The two families' training objectives, side by side. The training loop (`trainer.py`) calls them and
never asks which family it trains.

An objective owns what differs between pix2pix and pix2pixHD: which networks exist and how they
are built, the dataset, how a batch becomes the condition and the real image, how G makes the
fake, the losses of D and of G (dicts of named tensors; the totals are "D" and "G"), which
generator parameters train in which epoch, the sample grids and the model card. What both share
lives in `Objective`: D's input (the condition and the image concatenated), and the opt-in
regularisers of D's input, differentiable augmentation (`loss.diffaugment`) and R1
(`loss.lambda_r1`), so each works for both families.

The update rules differ and each objective says which it follows (`shares_d_pass`):

- pix2pix (Isola et al.): D's update first, on (A, fake.detach()) and (A, B); then G's update
  against the updated D, which runs again on (A, fake).
- pix2pixHD (Wang et al.): G's and D's losses from one D pass on the fake and one on the real
  pair, each network's gradients taken before either steps: the reference's update exactly
  (it runs D on the fake twice; the values are the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ..config import Config
from ..data.color import lab_channels_to_rgb
from ..data.images import tensor_to_image
from ..data.label_dataset import LabelDataset
from ..data.label_inputs import LabelInputs
from ..data.label_sets import (
    LabelSet,
    check_label_settings,
    colorize,
    generate_palette,
    resolve_label_set,
)
from ..data.labels import map_label_ids
from ..data.paired import PairedDataset
from ..errors import CheckpointError, ConfigError, DataError
from ..io.model_card import WEIGHTS, DataGeometry, LabelSpec, ModelCard, Provenance, recipe_of, utc_now
from ..losses import (
    GANLoss,
    PairAugment,
    VGGLoss,
    balanced_l1_loss,
    feature_matching_loss,
    gradient_penalty,
    r1_penalty,
    resolve_vgg_weights,
)
from ..losses.semantic import class_balance_weights, off_palette_share, palette_ids, segmentation_adversarial_loss
from ..models import accepted_options, create_discriminator, create_generator, run_padded, size_multiple
from ..models.segmentation_d import SegmentationDiscriminator, WithSegmentationD
from ..nn import init_weights


@dataclass
class Networks:
    """The networks a family trains: generator, discriminator (None without a GAN loss), feature encoder."""

    g: nn.Module
    d: nn.Module | None = None
    e: nn.Module | None = None


@dataclass
class Pair:
    """One (micro-)batch on the device: what G and D are conditioned on, and the real image."""

    cond: torch.Tensor  # pix2pix: the input image A; pix2pixHD: one-hot labels (+ boundary map)
    real: torch.Tensor | None  # the target image B (None: a split without photos, samples only)
    instance: torch.Tensor | None = None  # pix2pixHD instance ids [B, 1, H, W]
    cache: dict[str, Any] = field(default_factory=dict)  # what one loss computation leaves for the next


class Objective:
    """What both families share; see the module docstring."""

    shares_d_pass: bool = False
    uses_discriminator: bool = True  # pix2pix with lambda_gan 0 builds D but never trains it (the L1 ablation)
    vgg: VGGLoss | None = None
    cfg: Config

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.gan = GANLoss(cfg.loss.gan_mode)
        self.augment = PairAugment(cfg.loss.diffaugment)

    # -- networks ---------------------------------------------------------------------------------
    def build_networks(self) -> Networks:
        """The trained networks, initialised, then the losses' frozen ones (in the reference's order, so a seed
        gives the reference's initial weights)."""
        raise NotImplementedError

    def _build_vgg(self, weight: float) -> None:
        lc = self.cfg.loss
        if weight > 0:
            weights = resolve_vgg_weights(lc.vgg_weights or None, allow_download=lc.vgg_allow_download,
                                          allow_random=lc.vgg_random)
            self.vgg = VGGLoss(weights, normalize_input=lc.vgg_normalize, lambda_vgg=weight)

    def finish_discriminator(self, net_d: nn.Module) -> nn.Module:
        """Spectral normalisation of every D convolution (model.spectral_norm_d), after initialisation."""
        if self.cfg.model.spectral_norm_d:
            for m in list(net_d.modules()):
                if isinstance(m, nn.Conv2d):
                    torch.nn.utils.parametrizations.spectral_norm(m)
        return net_d

    def generator_phase(self, epochs_done: int) -> str:
        """Which generator parameters train after `epochs_done` epochs: "all" (or a family's partial phase)."""
        return "all"

    def generator_parameters(self, nets: Networks, phase: str) -> list[nn.Parameter]:
        params = list(nets.g.parameters())
        return params + (list(nets.e.parameters()) if nets.e is not None else [])

    def loss_modules(self) -> list[nn.Module]:
        """Frozen networks inside the losses (the VGG), for device moves and speed-ups."""
        return [self.vgg] if self.vgg is not None else []

    # -- D's input -----------------------------------------------------------------------------------
    def d_input(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, image], 1)

    def d_pairs(self, pair: Pair, *images: torch.Tensor) -> list[torch.Tensor]:
        """D's inputs for `images` conditioned on `pair.cond`, all through one augmentation draw per sample."""
        inputs = [self.d_input(pair.cond, image) for image in images]
        if not self.augment:
            return inputs
        x = inputs[0]
        params = self.augment.sample(x.shape[0], x.shape[-2], x.shape[-1], x.device)
        channels = images[0].shape[1]
        return [self.augment(x, params, image_channels=channels) for x in inputs]

    # -- the step (subclasses) ---------------------------------------------------------------------
    def prepare(self, batch: dict[str, Any], to_device: Any) -> Pair:
        raise NotImplementedError

    def generate(self, g: nn.Module, e: nn.Module | None, pair: Pair) -> torch.Tensor:
        raise NotImplementedError

    def discriminator_losses(self, net_d: nn.Module, pair: Pair, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """0.5 * (loss(D(cond, fake), 0) + loss(D(cond, real), 1)) plus the opt-in penalties: WGAN-GP
        (gan_mode wgangp) and R1 (loss.lambda_r1, on the real pairs of this pass).

        With `shares_d_pass` the fake stays attached and D's outputs are cached for G's losses (the
        trainer restricts this loss's gradients to D); otherwise D sees the fake detached.
        """
        r1 = self.cfg.loss.lambda_r1 > 0
        real = pair.real.detach().requires_grad_(True) if r1 else pair.real
        fake_in, real_in = self.d_pairs(pair, fake if self.shares_d_pass else fake.detach(), real)
        pred_fake, pred_real = net_d(fake_in), net_d(real_in)
        if self.shares_d_pass:
            pair.cache.update(pred_fake=pred_fake, pred_real=pred_real)
        losses = {"D_fake": self.gan(pred_fake, False), "D_real": self.gan(pred_real, True)}
        total = 0.5 * (losses["D_fake"] + losses["D_real"])
        if self.gan.mode == "wgangp":
            losses["D_gp"] = gradient_penalty(net_d, real_in, fake_in, self.cfg.loss.lambda_gp)
            total = total + losses["D_gp"]
        if r1:
            losses["D_r1"] = r1_penalty(pred_real, real, self.cfg.loss.lambda_r1)
            total = total + losses["D_r1"]
        losses["D"] = total
        return losses

    def generator_losses(self, net_d: nn.Module | None, pair: Pair, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- data, samples, the saved model ----------------------------------------------------------------
    def make_dataset(self, phase: str, train: bool) -> Any:
        raise NotImplementedError

    def sample_row(self, g: nn.Module, e: nn.Module | None, item: dict[str, Any], to_device: Any) -> list[Image.Image]:
        raise NotImplementedError

    def card(self, step: int) -> ModelCard:
        """The saved model's card (networks are added by `save_model`)."""
        d = self.cfg.data
        return ModelCard(family=self.cfg.model.family, labels=self.label_spec(),
                         data=DataGeometry(preprocess=d.preprocess, load_size=d.load_size, crop_size=d.crop_size,
                                           direction=d.direction, color_space=d.color_space, layout=d.layout,
                                           instance_edges=d.instance_edges),
                         provenance=Provenance(step=step, preset=self.cfg.preset, recipe=recipe_of(self.cfg.to_dict()),
                                               created=utc_now()))

    def label_spec(self) -> LabelSpec | None:
        return None


# ----------------------------------------------------------------------------------------------- pix2pix


def pix2pix_input_channels(cfg: Config) -> int:
    """G's input: the image's channels, plus the instance boundary map with data.instance_edges."""
    return cfg.model.in_channels + int(cfg.data.instance_edges)


def build_generator(cfg: Config) -> nn.Module:
    m = cfg.model
    return create_generator(m.generator, pix2pix_input_channels(cfg), m.out_channels, init=m.init,
                            init_gain=m.init_gain, ngf=m.ngf, norm=m.norm, dropout=m.dropout, upsample=m.upsample,
                            **m.generator_kwargs)


def build_discriminator(cfg: Config) -> nn.Module:
    m = cfg.model
    d_in = pix2pix_input_channels(cfg) + m.out_channels if m.conditional_d else m.out_channels
    return create_discriminator(m.discriminator, d_in, init=m.init, init_gain=m.init_gain, ndf=m.ndf,
                                n_layers=m.n_layers_d, norm=m.norm)


class Pix2PixObjective(Objective):
    """cGAN + lambda_L1 * L1 (+ opt-in perceptual loss). D judges (input, output) pairs, or the output
    alone with model.conditional_d=false (the paper's unconditional ablation)."""

    shares_d_pass = False

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.conditional = cfg.model.conditional_d
        self.uses_discriminator = cfg.loss.lambda_gan > 0 or cfg.loss.lambda_seg > 0
        if cfg.loss.lambda_perceptual > 0 and cfg.model.out_channels not in (1, 3):
            raise ConfigError(f"loss.lambda_perceptual={cfg.loss.lambda_perceptual:g} needs 1- or 3-channel outputs "
                              f"(VGG sees images), not model.out_channels={cfg.model.out_channels}: set "
                              "loss.lambda_perceptual=0.")
        self.seg_labels = None
        self._seg_input_checked = False  # the first batch is checked to be a label map of that label set
        if cfg.loss.lambda_seg > 0:
            self.seg_labels = resolve_label_set(cfg)
            beside = Path(cfg.data.root).parent / "classes.json"  # pix2pix trains on the synthetic world's AB/ pairs
            if self.seg_labels is None and cfg.data.root and beside.is_file():
                self.seg_labels = LabelSet.from_classes_json(beside)
            if self.seg_labels is None:
                raise ConfigError(f"loss.lambda_seg={cfg.loss.lambda_seg:g} needs the classes of the input label maps: "
                                  "set data.label_set (a name or a classes.json path; `pix2pix data synth` writes "
                                  "classes.json into the data folder, where it is found by itself).")

    def build_networks(self) -> Networks:
        g = build_generator(self.cfg)
        d = self.finish_discriminator(build_discriminator(self.cfg))
        if self.seg_labels is not None:
            m = self.cfg.model
            segmenter = SegmentationDiscriminator(m.out_channels, self.seg_labels.label_nc, m.ndf)
            d = WithSegmentationD(d, self.finish_discriminator(init_weights(segmenter, m.init, m.init_gain)))
        self._build_vgg(self.cfg.loss.lambda_perceptual)
        return Networks(g, d)

    def d_input(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, image], 1) if self.conditional else image

    def image_part(self, cond: torch.Tensor) -> torch.Tensor:
        """The input's image channels, without the instance boundary channel of data.instance_edges."""
        return cond[:, : self.cfg.model.in_channels]

    def prepare(self, batch: dict[str, Any], to_device: Any) -> Pair:
        pair = Pair(to_device(batch["A"]), to_device(batch["B"]) if "B" in batch else None)
        if self.seg_labels is not None:
            ls, palette = self.seg_labels, torch.as_tensor(self.seg_labels.palette_array)
            colours = self.image_part(pair.cond)
            if not self._seg_input_checked:
                self._check_label_map_input(colours, palette, batch.get("path", ["the first batch"])[0])
            ids = palette_ids(colours, palette, ls.ignore_id)
            pair.cache.update(seg_ids=ids, seg_weights=class_balance_weights(ids, ls.label_nc))
        return pair

    def _check_label_map_input(self, cond: torch.Tensor, palette: torch.Tensor, source: str) -> None:
        """loss.lambda_seg reads classes from the input's colours: a photo or an edge map as the input is an error."""
        share = off_palette_share(cond, palette)
        if share > 0.25:
            raise DataError(f"{source} (the first of its batch): {share:.0%} of the input's pixels are far from every "
                            f"colour of label set {self.seg_labels.name!r}; loss.lambda_seg needs colour-coded label "
                            "maps of data.label_set as the input (A after data.direction): set the label set they were "
                            "drawn with, or drop loss.lambda_seg.")
        self._seg_input_checked = True

    def generate(self, g: nn.Module, e: nn.Module | None, pair: Pair) -> torch.Tensor:
        return run_padded(g, pair.cond)

    def discriminator_losses(self, net_d: nn.Module, pair: Pair, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pair D's losses (`Objective.discriminator_losses`), plus with loss.lambda_seg the segmentation D's:
        0.5 * (class-balanced CE of the real photo against its labels + CE of the fake against "generated")."""
        losses = super().discriminator_losses(net_d, pair, fake)
        if self.seg_labels is not None:
            c = pair.cache
            # one pass over the real and generated images: no layer of the segmenter mixes a batch's samples
            real_logits, fake_logits = net_d(torch.cat([pair.real, fake.detach()]), segment=True).chunk(2)
            real_loss = segmentation_adversarial_loss(real_logits, c["seg_ids"], c["seg_weights"])
            fake_loss = segmentation_adversarial_loss(fake_logits)
            losses["D_seg"] = 0.5 * (real_loss + fake_loss)
            losses["D"] = losses["D"] + losses["D_seg"]
        return losses

    def generator_losses(self, net_d: nn.Module | None, pair: Pair, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        lc = self.cfg.loss
        losses: dict[str, torch.Tensor] = {}
        total = fake.new_zeros((), dtype=torch.float32)
        if lc.lambda_gan > 0 and net_d is not None:
            (fake_in,) = self.d_pairs(pair, fake)
            losses["G_GAN"] = self.gan(net_d(fake_in), True, for_discriminator=False)
            total = total + lc.lambda_gan * losses["G_GAN"]
        if self.seg_labels is not None and net_d is not None:
            losses["G_seg"] = segmentation_adversarial_loss(net_d(fake, segment=True), pair.cache["seg_ids"],
                                                            pair.cache["seg_weights"])
            total = total + lc.lambda_seg * losses["G_seg"]
        if lc.lambda_l1 > 0:
            losses["G_L1"] = balanced_l1_loss(fake, pair.real, self.image_part(pair.cond), lc.l1_balance)
            total = total + lc.lambda_l1 * losses["G_L1"]
        if self.vgg is not None:
            losses["G_VGG"] = self.vgg(fake, pair.real)
            total = total + losses["G_VGG"]
        losses["G"] = total
        return losses

    def make_dataset(self, phase: str, train: bool) -> PairedDataset:
        return PairedDataset.from_config(self.cfg.data, self.cfg.model, phase, train=train)

    def sample_row(self, g: nn.Module, e: nn.Module | None, item: dict[str, Any], to_device: Any) -> list[Image.Image]:
        """input | output | target (Lab outputs recombined with their L input)."""
        fake = run_padded(g, to_device(item["A"][None]))[0]
        return [self._display(item["A"]), self._display(fake, item["A"]), self._display(item["B"], item["A"])]

    def _display(self, t: torch.Tensor, source: torch.Tensor | None = None) -> Image.Image:
        t = t.detach().float().cpu()
        if self.cfg.data.color_space == "lab" and t.shape[0] == 2 and source is not None:
            t = lab_channels_to_rgb(source.float().cpu(), t)
        return tensor_to_image(t[:3] if t.shape[0] >= 3 else t[:1])


# ----------------------------------------------------------------------------------------------- pix2pixHD


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


def load_global_weights(net_g: nn.Module, directory: str | Path) -> None:
    """Initialise a local enhancer's global part from a saved `global` generator (a model directory)."""
    directory = Path(directory)
    card = ModelCard.read(directory)
    if card.generator is None or card.generator.name != "global":
        raise CheckpointError(f"{directory} does not hold a 'global' generator (train.load_global needs the "
                              "model/ directory of a global run).")
    if not hasattr(net_g, "load_global_state"):
        raise ConfigError("train.load_global is set but the generator is not a local enhancer ('local').")
    weights = directory / WEIGHTS["generator"]
    net_g.load_global_state(load_file(str(weights)), str(weights))


class Pix2PixHDObjective(Objective):
    """LSGAN + feature matching + VGG perceptual loss on label (+ instance) maps, as NVIDIA's pix2pixHD.

    The local enhancer can start from a trained global generator (`train.load_global`) and train
    only its outermost enhancer for `train.niter_fix_global` epochs (generator phase "enhancer"),
    after which the trainer rebuilds Adam over all parameters (the reference resets it there).
    """

    shares_d_pass = True

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        m = cfg.model
        if cfg.loss.lambda_perceptual > 0:  # it would be ignored
            raise ConfigError(f"loss.lambda_perceptual={cfg.loss.lambda_perceptual:g} is pix2pix's perceptual loss; "
                              "pix2pixHD's is loss.lambda_vgg: set that instead, and loss.lambda_perceptual=0.")
        self.inputs = label_inputs(cfg)
        if m.use_features and not self.inputs.use_instance:
            raise ConfigError("model.use_features needs instance maps (data.use_instance=true): the encoder "
                              "averages its features inside each instance.")
        self.label_set = resolve_label_set(cfg)

    def build_networks(self) -> Networks:
        g, e, d = build_hd_networks(self.cfg)
        if self.cfg.train.load_global:
            load_global_weights(g, self.cfg.train.load_global)
        nets = Networks(g, None if d is None else self.finish_discriminator(d), e)
        self._build_vgg(self.cfg.loss.lambda_vgg)
        return nets

    def generator_phase(self, epochs_done: int) -> str:
        fix = self.cfg.train.niter_fix_global
        return "enhancer" if fix > 0 and self.cfg.model.generator == "local" and epochs_done < fix else "all"

    def generator_parameters(self, nets: Networks, phase: str) -> list[nn.Parameter]:
        params = list(nets.g.enhancer_parameters() if phase == "enhancer" else nets.g.parameters())
        return params + (list(nets.e.parameters()) if nets.e is not None else [])

    def prepare(self, batch: dict[str, Any], to_device: Any) -> Pair:
        label = to_device(batch["label"])
        instance = to_device(batch["instance"]) if "instance" in batch else None
        cond = self.inputs.encode(label, instance, source=batch.get("path", ""))
        return Pair(cond, to_device(batch["image"]) if "image" in batch else None, instance)

    def generate(self, g: nn.Module, e: nn.Module | None, pair: Pair) -> torch.Tensor:
        """G(cond [+ E(real) pooled per instance])."""
        g_in = pair.cond
        if e is not None:
            g_in = torch.cat([pair.cond, e(pair.real, pair.instance)], 1)
        return run_padded(g, g_in)

    def generator_losses(self, net_d: nn.Module | None, pair: Pair, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """From the D pass of `discriminator_losses` (same values as a second pass, before either update)."""
        lc = self.cfg.loss
        losses: dict[str, torch.Tensor] = {}
        total = fake.new_zeros((), dtype=torch.float32)
        if net_d is not None:
            pred_fake, pred_real = pair.cache["pred_fake"], pair.cache["pred_real"]
            if lc.lambda_gan > 0:
                losses["G_GAN"] = self.gan(pred_fake, True, for_discriminator=False)
                total = total + lc.lambda_gan * losses["G_GAN"]
            if lc.lambda_feat > 0:
                losses["G_GAN_Feat"] = feature_matching_loss(pred_fake, pred_real, self.cfg.model.n_layers_d,
                                                             lc.lambda_feat)
                total = total + losses["G_GAN_Feat"]
        if self.vgg is not None:
            losses["G_VGG"] = self.vgg(fake, pair.real)
            total = total + losses["G_VGG"]
        losses["G"] = total
        return losses

    def make_dataset(self, phase: str, train: bool) -> LabelDataset:
        d = self.cfg.data
        if not d.root:
            raise DataError("no dataset given: pass --data DIR (or set data.root).")
        return LabelDataset(d.root, phase, label_nc=d.label_nc, use_instance=self.inputs.use_instance,
                            preprocess=d.preprocess, load_size=d.load_size, crop_size=d.crop_size, flip=d.flip,
                            train=train, ignore_index=d.ignore_index, class_from_folder=d.class_from_folder,
                            max_items=d.max_items, require_images=train, label_set=self.label_set)

    def label_image(self, label: torch.Tensor) -> Image.Image:
        """A label map as a colour image (an RGB input as it is); ids read as training reads them (ignore_index)."""
        d = self.cfg.data
        if d.label_nc == 0:
            return tensor_to_image(label.float())
        ids = map_label_ids(label.cpu(), d.label_nc, ignore_index=d.ignore_index, label_set=self.label_set)
        palette = self.label_set if self.label_set is not None else \
            np.asarray(generate_palette(d.label_nc), dtype=np.uint8)
        return Image.fromarray(colorize(ids, palette))

    def sample_row(self, g: nn.Module, e: nn.Module | None, item: dict[str, Any], to_device: Any) -> list[Image.Image]:
        """label map | output | photo (the photo when the split has one); [] when features need a missing photo."""
        batch = {k: (v[None] if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
        pair = self.prepare(batch, to_device)
        if e is not None and pair.real is None:
            return []
        fake = self.generate(g, e, pair)[0]
        row = [self.label_image(item["label"]), tensor_to_image(fake.float().cpu())]
        if pair.real is not None:
            row.append(tensor_to_image(item["image"]))
        return row

    def label_spec(self) -> LabelSpec:
        d = self.cfg.data
        return LabelSpec(label_nc=d.label_nc, ignore_index=d.ignore_index, use_instance=self.inputs.use_instance,
                         class_from_folder=d.class_from_folder,
                         label_set=self.label_set.to_classes_json() if self.label_set is not None else None)


# The largest side tried when looking for the smallest input a network takes.
_MAX_PROBE = 8192


def check_input_size(cfg: Config) -> None:
    """The crops must fit the networks: a U-Net needs at least its size multiple, and the discriminator's
    stride-2 layers (and normalisation layers) must not shrink a crop to nothing.

    Checked by running G and D, built one channel wide (the widths do not change the shapes), on
    zeros of data.crop_size at the micro-batch size, which raises exactly what the first training
    step would. (Not on the "meta" device: its global mode is active during any garbage collection
    inside it, and a DataLoader iterator collected there crashed the process.) Only crop-based
    preprocessing has a known size; "none" and "scale_width" keep the images'.
    """
    d, m, t = cfg.data, cfg.model, cfg.train
    if d.preprocess not in ("resize_and_crop", "crop", "scale_width_and_crop"):
        return
    size, batch = d.crop_size, max(1, t.batch_size // t.grad_accum)
    narrow = cfg.copy()
    narrow.model.ngf = narrow.model.ndf = narrow.model.nef = 1
    narrow.model.init = "normal"
    try:
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's stream alone
            if m.family == "pix2pix":
                g = build_generator(narrow)
                net_d = build_discriminator(narrow) if cfg.loss.lambda_gan > 0 else None
                g_in = pix2pix_input_channels(cfg)
                d_in = g_in + m.out_channels if m.conditional_d else m.out_channels
            else:
                g, _, net_d = build_hd_networks(narrow)
                g_in, d_in = hd_channels(cfg)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.generator={m.generator!r} / model.discriminator={m.discriminator!r} with "
                          f"model.generator_kwargs={m.generator_kwargs}: cannot be built ({exc}); fix the option "
                          "values.") from None
    multiple = size_multiple(g)

    def fits(net: Any, channels: int, side: int, padded: bool) -> str:
        """"" when `net` takes side x side inputs, else why not."""
        x = torch.zeros(batch, channels, side, side)
        try:
            with torch.no_grad():
                run_padded(net, x) if padded else net(x)
        except (RuntimeError, ValueError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "Kernel size" in text or "padded input size" in text.lower():
                return "its stride-2 convolutions shrink smaller crops below their kernel size"
            if "more than 1" in text:
                return f"its {m.norm}-norm layers would see a single value per channel at batch {batch}"
            return text
        return ""

    def smallest(net: Any, channels: int, padded: bool) -> tuple[int, str] | None:
        """(smallest side `net` takes, why `size` fails), None when `size` fits or no side up to _MAX_PROBE does."""
        reason = fits(net, channels, size, padded)
        if not reason:
            return None
        low, high = size, size * 2
        while high <= _MAX_PROBE and fits(net, channels, high, padded):
            low, high = high, high * 2
        if high > _MAX_PROBE:
            return None  # not a size problem: the first training step reports it
        while high - low > 1:  # the smallest side that fits is in (low, high]
            mid = (low + high) // 2
            low, high = (mid, high) if fits(net, channels, mid, padded) else (low, mid)
        return high, reason

    needs: list[tuple[int, str, str]] = []  # (side, what needs it and why, how else to fix it)
    if size < multiple:
        needs.append((multiple, f"the generator {m.generator!r} needs {multiple} (its down-samplings halve the image "
                                f"to 1 pixel there)", "a generator with fewer down-samplings (e.g. --set "
                                "model.generator=unet --set model.generator_kwargs.num_downs=N for 2**N-pixel crops)"))
    else:
        found = smallest(g, g_in, True)
        if found:
            needs.append((found[0], f"the generator {m.generator!r} needs {found[0]} ({found[1]})",
                          "a generator with fewer down-samplings (model.generator_kwargs)"))
    if net_d is not None:
        found = smallest(net_d, d_in, False)
        if found:
            scales = f", model.num_d={m.num_d}" if m.family == "pix2pixhd" else ""
            needs.append((found[0], f"the discriminator {m.discriminator!r} with model.n_layers_d={m.n_layers_d}"
                                    f"{scales} needs {found[0]} ({found[1]})",
                          "a shallower discriminator (lower model.n_layers_d)"))
    if needs:
        side = max(n for n, _, _ in needs)
        raise ConfigError(f"data.crop_size={size} is too small: " + "; ".join(why for _, why, _ in needs)
                          + f". Use crops of at least {side} (data.crop_size, with data.load_size >= crop_size), or "
                          + " or ".join(fix for _, _, fix in needs) + ".")


def check_trainable(cfg: Config) -> Config:
    """What `config.validate` cannot check without the library: a named label set's class count, and crops
    the networks take. `train` runs it after `validate`."""
    if cfg.model.family == "pix2pixhd":
        check_label_settings(cfg.data)
    check_input_size(cfg)
    return cfg


OBJECTIVES: dict[str, type[Objective]] = {"pix2pix": Pix2PixObjective, "pix2pixhd": Pix2PixHDObjective}


def make_objective(cfg: Config) -> Objective:
    """The objective of the config's model family."""
    return OBJECTIVES[cfg.model.family](cfg)
