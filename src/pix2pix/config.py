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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, did_you_mean

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LR_POLICIES = ("linear", "linear_hd", "constant", "step", "cosine")
FAMILIES = ("pix2pix", "pix2pixhd")
PRECISIONS = ("fp32", "bf16", "fp16")


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
    fast_step: bool = False  # pix2pix: fused Adam, CPU allocator tuning, per-layer conv backend (float-rounding
    #                          differences only; off by default so that resumed runs stay bit-exact)
    # -- scaling (see pix2pix.training.scaling and the README's multi-GPU section) --
    precision: str = "fp32"  # fp32 | bf16 | fp16: torch.autocast over G, D and losses (fp16 adds a GradScaler)
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
        raise ConfigError(f"{key}={text!r} is not a valid {getattr(typ, '__name__', typ)}.") from None


def _check_type(value: Any, typ: Any, key: str) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = typing.get_origin(typ) or typ
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} should be a {getattr(expected, '__name__', expected)}.")
    return value


def update_config(cfg: Config, values: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested dict of values onto `cfg` (in place); unknown keys are errors."""
    for section, sub in values.items():
        if section == "preset":
            cfg.preset = str(sub)
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section '{section}'; sections are {', '.join(SECTIONS)}."
                              + did_you_mean(section, SECTIONS))
        if not isinstance(sub, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys to values.")
        obj = getattr(cfg, section)
        types = _field_types(obj)
        for key, value in sub.items():
            if key not in types:
                raise ConfigError(f"{source}: unknown key '{section}.{key}'." + did_you_mean(key, types))
            setattr(obj, key, _check_type(copy.deepcopy(value), types[key], f"{section}.{key}"))
    return cfg


def config_from_dict(values: dict[str, Any]) -> Config:
    return update_config(Config(), values)


def all_keys(cfg: Config | None = None) -> list[str]:
    cfg = cfg or Config()
    return [f"{s}.{k}" for s in SECTIONS for k in _field_types(getattr(cfg, s))]


def resolve_key(key: str) -> str:
    """Full dotted key for `key`, which may omit the section when the field name is unique."""
    keys = all_keys()
    if key in keys or key == "preset":
        return key
    head = key.split(".")[0]
    if head in SECTIONS and len(key.split(".")) == 3:  # model.generator_kwargs.num_downs
        return key
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


def validate(cfg: Config) -> Config:
    """Check values that types alone cannot; raise ConfigError naming the key and the fix."""
    from .data.layout import LAYOUTS
    from .losses import GAN_MODES
    from .nn.blocks import NORMS, UPSAMPLES

    d, m, t = cfg.data, cfg.model, cfg.train
    _choice(d.direction, DIRECTIONS, "data.direction")
    _choice(d.preprocess, PREPROCESS_MODES, "data.preprocess")
    _choice(d.layout, LAYOUTS, "data.layout")
    _choice(d.color_space, ("rgb", "lab"), "data.color_space")
    _choice(m.family, FAMILIES, "model.family")
    _choice(m.norm, NORMS, "model.norm")
    _choice(m.upsample, UPSAMPLES, "model.upsample")
    _choice(cfg.loss.gan_mode.replace("wgan-gp", "wgangp"), GAN_MODES, "loss.gan_mode")
    _choice(cfg.optim.lr_policy, LR_POLICIES, "optim.lr_policy")
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop") and d.crop_size > d.load_size:
        raise ConfigError(f"data.crop_size={d.crop_size} is larger than data.load_size={d.load_size}: "
                          "lower crop_size or raise load_size.")
    for key in ("load_size", "crop_size"):
        if getattr(d, key) < 1:
            raise ConfigError(f"data.{key} must be positive.")
    _choice(t.precision, PRECISIONS, "train.precision")
    if t.grad_accum < 1 or t.batch_size % t.grad_accum:
        raise ConfigError(f"train.grad_accum={t.grad_accum} must be at least 1 and divide train.batch_size="
                          f"{t.batch_size}: the batch is split into grad_accum micro-batches.")
    for key in ("batch_size", "log_every", "sample_every", "checkpoint_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be at least 1.")
    if cfg.optim.n_epochs + cfg.optim.n_epochs_decay < 1 and t.max_steps < 1:
        raise ConfigError("optim.n_epochs + optim.n_epochs_decay must be at least 1 (or set train.max_steps).")
    if m.in_channels not in (1, 3, 4) or m.out_channels not in (1, 2, 3, 4):
        raise ConfigError(f"model.in_channels={m.in_channels}, model.out_channels={m.out_channels}: "
                          "use 1 (gray), 3 (RGB) or 4 (RGBA); out_channels 2 is the Lab colorization mode.")
    return cfg
