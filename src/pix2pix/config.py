"""Typed training configuration: data, model, loss, optimiser and run settings.

A `Config` is built from a preset, then a JSON config file, then `--set key=value`
overrides, each checked strictly: an unknown key is an error with a close-match
suggestion, a value is parsed by the field's type. The resolved config is written
into every run directory and into saved models, so inference needs no flags.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.layout import LAYOUTS
from .errors import ConfigError, did_you_mean
from .losses import GAN_MODES
from .losses.augment import parse_policy
from .nn.blocks import NORMS, UPSAMPLES
from .nn.init import INIT_TYPES

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LR_POLICIES = ("linear", "linear_hd", "constant", "step", "cosine")
FAMILIES = ("pix2pix", "pix2pixhd")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass
class DataConfig:
    """Where the pairs are and how they are prepared (defaults: the reference's)."""

    root: str = ""  # dataset folder; `--data DIR` sets it
    layout: str = "auto"  # auto | aligned (A|B side by side) | folders (A/ and B/ by stem) | colorization
    direction: str = "AtoB"  # AtoB or BtoA: which side is the input
    preprocess: str = "resize_and_crop"  # see PREPROCESS_MODES
    load_size: int = 286  # resize target before cropping
    crop_size: int = 256  # random crop (training) size
    flip: bool = True  # random horizontal flip, the same for both images of a pair
    color_space: str = "rgb"  # rgb, or lab for the colorization layout (A = L, B = ab)
    max_items: int = 0  # use only the first N pairs (0: all)
    num_workers: int = -1  # data-loading worker processes (persistent); -1: min(4, CPUs / 2 - 1), 0 on 2 CPUs
    instance_edges: bool = False  # pix2pix: the boundaries of {phase}_inst/ maps as one more input channel
    # pix2pixHD inputs ({phase}_label, {phase}_inst, {phase}_img folders)
    label_nc: int = 35  # classes of the label maps (one-hot channels); 0: the input is an RGB image
    label_set: str = ""  # names and palette: cityscapes | ade20k | coco_stuff | a classes.json path
    use_instance: bool = True  # add the instance boundary map as one more input channel
    ignore_index: int = -1  # label ids >= label_nc map to this class (-1: they are an error)
    class_from_folder: bool = False  # class-label condition: root/{phase}/{class}/*.png, one class per image


@dataclass
class ModelConfig:
    """Generator and discriminator architecture (names from the registry)."""

    family: str = "pix2pix"  # pix2pix (U-Net/ResNet + PatchGAN) | pix2pixhd (label maps, multi-scale D, FM, VGG)
    generator: str = "unet_256"
    ngf: int = 64
    norm: str = "batch"  # batch | instance | none, for G and D
    dropout: bool = True  # pix2pix uses dropout as its noise source
    upsample: str = "transpose"  # transpose (reference) | resize_conv (no checkerboard)
    generator_kwargs: dict[str, Any] = field(default_factory=dict)  # extra options, e.g. {"num_downs": 6}
    discriminator: str = "patchgan"
    ndf: int = 64
    n_layers_d: int = 3  # PatchGAN depth: 0 = 1x1, 1 = 16x16, 3 = 70x70, 5 = 286x286
    conditional_d: bool = True  # D sees (input, output); False = unconditional GAN ablation
    spectral_norm_d: bool = False  # spectral normalisation of every D convolution (Miyato et al. 2018)
    num_d: int = 2  # pix2pixHD: discriminator scales
    use_features: bool = False  # pix2pixHD: instance-wise feature encoder (--instance_feat)
    feat_num: int = 3  # encoded feature channels
    nef: int = 16  # encoder filters
    n_downsample_e: int = 4  # encoder down-samplings
    in_channels: int = 3
    out_channels: int = 3
    init: str = "normal"
    init_gain: float = 0.02


@dataclass
class LossConfig:
    gan_mode: str = "vanilla"  # vanilla | lsgan | hinge | wgangp
    lambda_gan: float = 1.0  # 0 turns the adversarial term off (the paper's L1-only ablation)
    lambda_l1: float = 100.0  # 0 gives the GAN-only ablations
    lambda_gp: float = 10.0  # gradient penalty weight, wgangp only
    lambda_feat: float = 10.0  # pix2pixHD discriminator feature matching (0: off)
    lambda_vgg: float = 10.0  # pix2pixHD VGG19 perceptual loss (0: off)
    vgg_weights: str = ""  # torchvision vgg19 ImageNet weights file (default: the torch hub cache)
    vgg_allow_download: bool = False  # fetch the VGG19 weights when they are not on disk
    vgg_random: bool = False  # accept random VGG features when no weights exist (tests, smoke runs)
    vgg_normalize: bool = False  # ImageNet-normalise VGG inputs (the reference does not)
    lambda_perceptual: float = 0.0  # pix2pix: VGG19 perceptual loss added to G's loss (pix2pixHD's is lambda_vgg)
    diffaugment: str = ""  # DiffAugment of D's inputs, e.g. "translation,cutout,color" ("": off)
    lambda_r1: float = 0.0  # R1 gradient penalty on real pairs (0: off)
    l1_balance: float = 0.0  # pix2pix: weight L1 pixels by (input colour's share)^-l1_balance (0: plain L1)
    lambda_seg: float = 0.0  # pix2pix, label-map inputs: OASIS-style segmentation D's term in G's loss (0: off)


@dataclass
class OptimConfig:
    lr: float = 2e-4
    lr_d: float = 0.0  # D's learning rate (two time-scale update rule); 0: the same as lr
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100  # epochs at the initial learning rate
    n_epochs_decay: int = 100  # epochs of linear decay to zero
    lr_policy: str = "linear"  # linear (pix2pix) | linear_hd (pix2pixHD) | constant | step | cosine
    lr_decay_iters: int = 50  # step policy: epochs between x0.1 decays


@dataclass
class TrainConfig:
    batch_size: int = 1
    max_steps: int = 0  # stop after this many steps (0: run every epoch)
    max_seconds: float = 0.0  # stop (saved) once the training steps took this long in all, resumes included (0: off)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    log_every: int = 100  # steps between stats.jsonl lines and progress-bar updates
    sample_every: int = 1000  # steps between sample grids
    checkpoint_every: int = 2000  # steps between training-state checkpoints (also at the end)
    num_samples: int = 4  # pairs shown in each sample grid
    runs_dir: str = "runs"
    name: str = ""  # run directory suffix (default: the preset name)
    tensorboard: bool = True  # log to TensorBoard when it is installed
    channels_last: bool = False  # memory format for convolutions (faster on some CPUs and GPUs)
    ema_decay: float = 0.0  # exponential moving average of G's weights for samples and the saved model (0: off)
    fast_step: bool = False  # fused Adam and a per-layer conv backend (float-rounding differences from the
    #                          reference step; the conv choices are saved, so resumes stay exact)
    # -- scaling (see pix2pix.training.scaling and the README's multi-GPU section) --
    precision: str = "fp32"  # fp32 | bf16 | fp16: torch.autocast over G, D and losses (fp16 adds a GradScaler);
    #                          auto: bf16 where the device computes it natively, else fp32
    compile: bool = False  # torch.compile G and D (the first steps pay the compilation)
    checkpoint_activations: bool = False  # recompute residual blocks and enhancers in backward (less memory)
    grad_accum: int = 1  # micro-batches of batch_size per optimiser step (the batch is split, not enlarged)
    sync_bn: bool = False  # distributed: batch-norm statistics over all processes (nn.SyncBatchNorm)
    dist_backend: str = "auto"  # distributed: nccl on CUDA, gloo on CPU, or name one
    niter_fix_global: int = 0  # pix2pixHD local: epochs training only the outermost enhancer
    load_global: str = ""  # pix2pixHD local: a global generator model dir to initialise the global part


@dataclass
class Config:
    preset: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> Config:
        return config_from_dict(self.to_dict())


SECTIONS = ("data", "model", "loss", "optim", "train")


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


_TYPE_HINTS = {int: "a whole number, e.g. 4", float: "a number, e.g. 2e-4", bool: "true or false"}


def _parse_value(text: str, typ: Any, key: str) -> Any:
    """Parse a --set value by the field's type."""
    try:
        if typ is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        if typing.get_origin(typ) is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return text
    except ValueError:
        hint = _TYPE_HINTS.get(typ, 'a JSON object, e.g. {"num_downs": 6}')
        raise ConfigError(f"--set {key}={text!r} is not a valid {getattr(typ, '__name__', typ)}: give {hint}.") \
            from None


def _check_type(value: Any, typ: Any, key: str, source: str = "config") -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = typing.get_origin(typ) or typ
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        name = getattr(expected, "__name__", expected)
        hint = _TYPE_HINTS.get(expected, "a JSON object" if expected is dict else f"a {name}")
        raise ConfigError(f"{source}: {key}={value!r} should be a {name} ({hint}); fix the value in the file.")
    return value


def update_config(cfg: Config, values: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested dict of values onto `cfg` (in place); unknown keys are errors."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections ({', '.join(SECTIONS)}), not "
                          f"{type(values).__name__}; fix the file.")
    for section, sub in values.items():
        if section == "preset":
            cfg.preset = str(sub)
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section '{section}'; sections are {', '.join(SECTIONS)} (remove "
                              "it or correct its name)." + did_you_mean(section, SECTIONS))
        if not isinstance(sub, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys to values, not "
                              f"{type(sub).__name__}; fix the file.")
        obj = getattr(cfg, section)
        types = _field_types(obj)
        for key, value in sub.items():
            if key not in types:
                raise ConfigError(f"{source}: unknown key '{section}.{key}'; remove it or correct its name."
                                  + did_you_mean(key, types))
            setattr(obj, key, _check_type(copy.deepcopy(value), types[key], f"{section}.{key}", source))
    return cfg


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    return update_config(Config(), values, source)


def all_keys(cfg: Config | None = None) -> list[str]:
    cfg = cfg or Config()
    return [f"{s}.{k}" for s in SECTIONS for k in _field_types(getattr(cfg, s))]


def _key_type(key: str) -> Any:
    section, name = key.split(".")
    return _field_types(getattr(Config(), section))[name]


def resolve_key(key: str) -> str:
    """Full dotted key for `key`, which may omit the section when the field name is unique."""
    keys = all_keys()
    if key in keys or key == "preset":
        return key
    head = key.split(".")[0]
    if head in SECTIONS and len(key.split(".")) == 3:  # model.generator_kwargs.num_downs
        return key
    dicts = [k for k in keys if k.split(".", 1)[1] == head and typing.get_origin(_key_type(k)) is dict]
    if len(key.split(".")) == 2 and len(dicts) == 1:  # generator_kwargs.num_downs
        return f"{dicts[0]}.{key.split('.')[1]}"
    matches = [k for k in keys if k.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"'{key}' is ambiguous: use one of {', '.join(matches)}.")
    raise ConfigError(f"unknown config key '{key}'." + did_you_mean(key, keys + [k.split('.', 1)[1] for k in keys]))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings (e.g. `optim.lr=1e-4`, `lr=1e-4`, `model.generator_kwargs.num_downs=6`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set optim.lr=1e-4.")
        raw_key, text = item.split("=", 1)
        key = resolve_key(raw_key.strip())
        if key == "preset":
            cfg.preset = text
            continue
        parts = key.split(".")
        obj = getattr(cfg, parts[0])
        types = _field_types(obj)
        if len(parts) == 3:
            if typing.get_origin(types.get(parts[1])) is not dict:
                raise ConfigError(f"unknown config key '{key}'.")
            try:
                value: Any = json.loads(text)
            except json.JSONDecodeError:
                value = text
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--set {key}={text}: give a finite number.")
            getattr(obj, parts[1])[parts[2]] = value
        else:
            setattr(obj, parts[1], _parse_value(text, types[parts[1]], key))
    return cfg


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (or, on Python 3.11+, TOML) config file as a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        data = json.loads(text)
    except ImportError:
        raise ConfigError(f"{path}: TOML needs Python 3.11+; write the config as JSON.") from None
    except Exception as exc:
        raise ConfigError(f"{path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections.")
    return data


def _choice(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}." + did_you_mean(value, choices))


# Numeric ranges: key -> (check, what a valid value is, the fix). Every numeric field is listed (a test
# checks that), so a new field without a rule fails the suite instead of slipping through.
def _finite(x: float) -> bool:
    return math.isfinite(x)


_RANGES: dict[str, tuple[Any, str, str]] = {
    "data.load_size": (lambda x: x >= 1, "must be at least 1 pixel", "e.g. --set data.load_size=286"),
    "data.crop_size": (lambda x: x >= 1, "must be at least 1 pixel", "e.g. --set data.crop_size=256"),
    "data.max_items": (lambda x: x >= 0, "must be 0 (all pairs) or more", "use 0 for every pair"),
    "data.num_workers": (lambda x: x >= -1, "must be -1 (automatic), 0 (in-process) or more", "use -1"),
    "data.label_nc": (lambda x: x >= 0, "must be 0 (RGB label images) or the number of label ids",
                      "e.g. --set data.label_nc=35 for Cityscapes"),
    "data.ignore_index": (lambda x: x >= -1, "must be -1 (none) or a label id", "use -1 or a class id"),
    "model.ngf": (lambda x: x >= 1, "must be at least 1 filter", "e.g. --set model.ngf=64"),
    "model.ndf": (lambda x: x >= 1, "must be at least 1 filter", "e.g. --set model.ndf=64"),
    "model.n_layers_d": (lambda x: x >= 0, "must be 0 (1x1 PatchGAN) or more", "e.g. 3 (70x70)"),
    "model.num_d": (lambda x: x >= 1, "must be at least 1 discriminator scale", "e.g. 2"),
    "model.feat_num": (lambda x: x >= 1, "must be at least 1 feature channel", "e.g. 3"),
    "model.nef": (lambda x: x >= 1, "must be at least 1 filter", "e.g. 16"),
    "model.n_downsample_e": (lambda x: x >= 0, "must be 0 or more", "e.g. 4"),
    "model.in_channels": (lambda x: x in (1, 3, 4), "must be 1 (gray), 3 (RGB) or 4 (RGBA)", "e.g. 3"),
    "model.out_channels": (lambda x: x in (1, 2, 3, 4), "must be 1, 3, 4, or 2 (the Lab colorization mode)",
                           "e.g. 3"),
    "model.init_gain": (lambda x: _finite(x) and x > 0, "must be a finite number above 0", "e.g. 0.02"),
    "optim.lr": (lambda x: _finite(x) and x > 0, "must be a finite learning rate above 0",
                 "e.g. --set optim.lr=2e-4"),
    "optim.lr_d": (lambda x: _finite(x) and x >= 0, "must be a finite learning rate, or 0 (the same as optim.lr)",
                   "e.g. --set optim.lr_d=0"),
    "optim.beta1": (lambda x: _finite(x) and 0 <= x < 1, "must be in [0, 1)", "e.g. 0.5"),
    "optim.beta2": (lambda x: _finite(x) and 0 <= x < 1, "must be in [0, 1)", "e.g. 0.999"),
    "optim.n_epochs": (lambda x: x >= 0, "must be 0 or more epochs", "e.g. 100"),
    "optim.n_epochs_decay": (lambda x: x >= 0, "must be 0 or more epochs", "e.g. 100"),
    "optim.lr_decay_iters": (lambda x: x >= 1, "must be at least 1 epoch", "e.g. 50"),
    "train.batch_size": (lambda x: x >= 1, "must be at least 1", "e.g. --set train.batch_size=1"),
    "train.max_steps": (lambda x: x >= 0, "must be 0 (train for optim.n_epochs + optim.n_epochs_decay epochs) or a "
                        "number of steps", "use 0 for the full schedule"),
    "train.seed": (lambda x: 0 <= x < 2**63, "must be in 0..2**63-1", "e.g. 0"),
    "train.log_every": (lambda x: x >= 1, "must be at least 1 step", "e.g. 100"),
    "train.sample_every": (lambda x: x >= 1, "must be at least 1 step", "e.g. 1000"),
    "train.checkpoint_every": (lambda x: x >= 1, "must be at least 1 step", "e.g. 2000"),
    "train.num_samples": (lambda x: x >= 1, "must be at least 1 pair", "e.g. 4"),
    "train.ema_decay": (lambda x: _finite(x) and 0 <= x < 1, "must be in [0, 1) (0: off)", "e.g. 0.999"),
    "train.grad_accum": (lambda x: x >= 1, "must be at least 1 micro-batch", "e.g. 1"),
    "train.niter_fix_global": (lambda x: x >= 0, "must be 0 or more epochs", "e.g. 10"),
    "loss.l1_balance": (lambda x: _finite(x) and 0 <= x <= 1, "must be in [0, 1] (0: the plain L1)", "e.g. 0.5"),
    "train.max_seconds": (lambda x: _finite(x) and x >= 0, "must be 0 (no time limit) or a number of seconds",
                          "e.g. --set train.max_seconds=3600"),
}
_RANGES.update({f"loss.{name}": (lambda x: _finite(x) and x >= 0, "must be a finite weight, 0 (off) or more",
                                 f"e.g. --set loss.{name}=0 to turn the term off")
                for name in ("lambda_gan", "lambda_l1", "lambda_gp", "lambda_feat", "lambda_vgg", "lambda_perceptual",
                             "lambda_r1", "lambda_seg")})


def _get(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def validate(cfg: Config) -> Config:
    """Check values that types alone cannot; raise ConfigError naming the key, the value and the fix.

    What needs the networks or the label sets (the crop size a discriminator takes, a label set's class count)
    is checked by `pix2pix.training.objectives.check_trainable`, which `train` runs after this.
    """
    for key, (ok, what, fix) in _RANGES.items():
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} {what}: {fix}.")
    d, m, t = cfg.data, cfg.model, cfg.train
    _choice(d.direction, DIRECTIONS, "data.direction")
    _choice(d.preprocess, PREPROCESS_MODES, "data.preprocess")
    _choice(d.layout, LAYOUTS, "data.layout")
    _choice(d.color_space, ("rgb", "lab"), "data.color_space")
    _choice(m.family, FAMILIES, "model.family")
    _choice(m.norm, NORMS, "model.norm")
    _choice(m.upsample, UPSAMPLES, "model.upsample")
    _choice(m.init, INIT_TYPES, "model.init")
    _choice(cfg.loss.gan_mode.replace("wgan-gp", "wgangp"), GAN_MODES, "loss.gan_mode")
    _choice(cfg.optim.lr_policy, LR_POLICIES, "optim.lr_policy")
    _choice(t.precision, PRECISIONS, "train.precision")
    parse_policy(cfg.loss.diffaugment)
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop") and d.crop_size > d.load_size:
        raise ConfigError(f"data.crop_size={d.crop_size} is larger than data.load_size={d.load_size}: "
                          "lower crop_size or raise load_size.")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.grad_accum={t.grad_accum} must divide train.batch_size={t.batch_size}: the batch "
                          "is split into grad_accum micro-batches.")
    if cfg.optim.n_epochs + cfg.optim.n_epochs_decay < 1 and t.max_steps < 1:
        raise ConfigError("optim.n_epochs + optim.n_epochs_decay must be at least 1 (or set train.max_steps).")
    if cfg.loss.l1_balance and (m.family != "pix2pix" or m.in_channels > 3):
        raise ConfigError(f"loss.l1_balance={cfg.loss.l1_balance!r} weights pix2pix's L1 by the input's colours: it "
                          f"needs model.family=pix2pix (got {m.family!r}) and at most 3 input channels (got "
                          f"model.in_channels={m.in_channels}); drop it.")
    if cfg.loss.lambda_seg and (m.family != "pix2pix" or m.in_channels != 3 or m.out_channels not in (1, 3)):
        raise ConfigError(f"loss.lambda_seg={cfg.loss.lambda_seg!r} segments pix2pix's outputs into the classes of "
                          f"a colour-coded label map input: it needs model.family=pix2pix (got {m.family!r}), "
                          f"model.in_channels=3 (got {m.in_channels}) and 1- or 3-channel outputs (got "
                          f"{m.out_channels}); drop it.")
    if d.instance_edges and (m.family != "pix2pix" or d.layout == "colorization" or m.in_channels not in (1, 3)):
        raise ConfigError(f"data.instance_edges=true adds instance boundaries to pix2pix's label-map input: it needs "
                          f"model.family=pix2pix (got {m.family!r}), a 1- or 3-channel input (got "
                          f"model.in_channels={m.in_channels}) and not the colorization layout (pix2pixHD has its "
                          "own data.use_instance); drop it.")
    if t.load_global and (m.family != "pix2pixhd" or m.generator != "local"):
        raise ConfigError(f"train.load_global={t.load_global!r} initialises a pix2pixHD local enhancer, but "
                          f"model.family={m.family!r}, model.generator={m.generator!r}: drop it, or train "
                          "model.generator=local (e.g. --preset pix2pixhd_cityscapes_1024).")
    return cfg
