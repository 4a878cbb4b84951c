"""Named training recipes: the papers' configurations and tiny configurations for tests.

A preset is a nested dict of values applied on top of the defaults in `config.py`
(which are the pix2pix reference defaults). `pix2pix presets` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Config, update_config
from .errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Preset:
    description: str
    values: dict[str, Any]


_TINY_TRAIN = {"max_steps": 6, "log_every": 1, "sample_every": 3, "checkpoint_every": 3, "num_samples": 2,
               "tensorboard": False}

PRESETS: dict[str, Preset] = {
    "facades": Preset(
        "pix2pix paper: facades labels->photo (A|B pairs with the photo on the left), 200 epochs, batch 1",
        {"data": {"direction": "BtoA"}},
    ),
    "cityscapes": Preset(
        "pix2pix paper: Cityscapes labels->photo, 200 epochs, batch 1",
        {"data": {"direction": "BtoA"}},
    ),
    "maps": Preset(
        "pix2pix paper: maps aerial->map (use --set direction=BtoA for map->aerial), 200 epochs, batch 1",
        {"data": {"direction": "AtoB"}},
    ),
    "edges2shoes": Preset(
        "pix2pix paper: edges->shoes, 15 epochs, batch 4",
        {"data": {"direction": "AtoB"}, "train": {"batch_size": 4}, "optim": {"n_epochs": 15, "n_epochs_decay": 0}},
    ),
    "edges2handbags": Preset(
        "pix2pix paper: edges->handbags, 15 epochs, batch 4",
        {"data": {"direction": "AtoB"}, "train": {"batch_size": 4}, "optim": {"n_epochs": 15, "n_epochs_decay": 0}},
    ),
    "night2day": Preset(
        "pix2pix paper: night->day, 17 epochs, batch 4",
        {"data": {"direction": "AtoB"}, "train": {"batch_size": 4}, "optim": {"n_epochs": 17, "n_epochs_decay": 0}},
    ),
    "colorization": Preset(
        "gray->colour in Lab (A = L, B = ab) as the reference's colorization mode; data from `pix2pix data colorize`",
        {"data": {"layout": "colorization", "color_space": "lab"}, "model": {"in_channels": 1, "out_channels": 2}},
    ),
    "synthetic": Preset(
        "the demo: label->photo on the synthetic street world (`pix2pix data synth`), 128x128, U-Net with 16 "
        "filters, batch 4 at lr 4e-4 with an EMA of G, bf16 where the CPU has it (the measured winners, "
        "benchmarks/quality.md), 30 epochs",
        {
            "data": {"preprocess": "resize_and_crop", "load_size": 136, "crop_size": 128},
            "model": {"generator": "unet_128", "ngf": 16, "ndf": 16},
            "optim": {"lr": 4e-4, "n_epochs": 15, "n_epochs_decay": 15},
            "train": {"batch_size": 4, "ema_decay": 0.99, "precision": "auto", "log_every": 20, "sample_every": 200,
                      "checkpoint_every": 500},
        },
    ),
    "tiny": Preset(
        "for tests: 5-level U-Net with 8 filters on 32x32 crops, 6 steps",
        {
            "data": {"load_size": 36, "crop_size": 32},
            "model": {"generator": "unet", "generator_kwargs": {"num_downs": 5}, "ngf": 8, "ndf": 8},
            "optim": {"n_epochs": 2, "n_epochs_decay": 2},
            "train": {"batch_size": 2, **_TINY_TRAIN},
        },
    ),
    "tiny_resnet": Preset(
        "for tests: ResNet generator with 2 blocks and 8 filters, instance norm, 6 steps",
        {
            "data": {"load_size": 36, "crop_size": 32},
            "model": {"generator": "resnet", "generator_kwargs": {"n_blocks": 2}, "ngf": 8, "ndf": 8,
                      "norm": "instance"},
            "optim": {"n_epochs": 2, "n_epochs_decay": 2},
            "train": {"batch_size": 2, **_TINY_TRAIN},
        },
    ),
}

# pix2pixHD reference defaults (NVIDIA's base/train options): global G ngf 64, instance norm, 2-scale
# D with 3 layers, LSGAN, feature matching 10, VGG 10, Adam 2e-4 / 0.5, 100 + 100 epochs, batch 1.
_HD = {
    "data": {"label_nc": 35, "label_set": "cityscapes", "use_instance": True, "preprocess": "scale_width",
             "load_size": 1024, "crop_size": 512},
    "model": {"family": "pix2pixhd", "generator": "global", "ngf": 64, "norm": "instance", "dropout": False,
              "discriminator": "multiscale", "ndf": 64, "n_layers_d": 3, "num_d": 2},
    "loss": {"gan_mode": "lsgan", "lambda_l1": 0.0, "lambda_feat": 10.0, "lambda_vgg": 10.0},
    "optim": {"lr_policy": "linear_hd"},
}


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Preset values `base` updated section by section."""
    return {name: {**base.get(name, {}), **changes.get(name, {})} for name in {*base, *changes}}


def _hd(**sections: dict[str, Any]) -> dict[str, Any]:
    """The pix2pixHD defaults updated section by section."""
    return _merged(_HD, sections)


_TINY_HD_MODEL = {"generator_kwargs": {"n_downsample": 2, "n_blocks": 1}, "ngf": 4, "ndf": 4, "n_layers_d": 2,
                  "nef": 4, "n_downsample_e": 2}
_TINY_HD = dict(
    data={"label_nc": 10, "label_set": "", "preprocess": "resize_and_crop", "load_size": 36, "crop_size": 32},
    loss={"vgg_random": True},
    optim={"n_epochs": 2, "n_epochs_decay": 2},
    train={"batch_size": 1, **_TINY_TRAIN},
)

PRESETS.update({
    "pix2pixhd_cityscapes_512": Preset(
        "pix2pixHD 512p: global generator on Cityscapes label maps + instance boundaries, images scaled to "
        "1024x512, 200 epochs", _hd()),
    "pix2pixhd_cityscapes_512_feat": Preset(
        "pix2pixHD 512p with the instance-wise feature encoder (--instance_feat)",
        _hd(model={**_HD["model"], "use_features": True})),
    "pix2pixhd_cityscapes_1024": Preset(
        "pix2pixHD 1024p: local enhancer (ngf 32, 3-scale D) at 2048x1024, 100 epochs, the first 10 training "
        "only the enhancer; set train.load_global to a 512p run's model/ (or use `pix2pix coarse-to-fine`)",
        _hd(data={**_HD["data"], "preprocess": "none"},
            model={**_HD["model"], "generator": "local", "ngf": 32, "num_d": 3},
            optim={**_HD["optim"], "n_epochs": 50, "n_epochs_decay": 50},
            train={"niter_fix_global": 10})),
    "pix2pixhd_cityscapes_1024_feat": Preset(
        "pix2pixHD 1024p with the instance-wise feature encoder",
        _hd(data={**_HD["data"], "preprocess": "none"},
            model={**_HD["model"], "generator": "local", "ngf": 32, "num_d": 3, "use_features": True},
            optim={**_HD["optim"], "n_epochs": 50, "n_epochs_decay": 50},
            train={"niter_fix_global": 10})),
    "pix2pixhd_synthetic": Preset(
        "pix2pixHD with the feature encoder on the synthetic street world (`pix2pix data synth`), 128x128, a "
        "small global generator with batch norm (for local edits) and resize-convolution (no checkerboard), bf16 "
        "where the CPU has it; no VGG loss (its ImageNet weights are not needed)",
        _hd(data={"label_nc": 10, "label_set": "", "use_instance": True, "preprocess": "resize_and_crop",
                  "load_size": 136, "crop_size": 128},
            model={**_HD["model"], "ngf": 16, "ndf": 32, "use_features": True, "norm": "batch",
                   "upsample": "resize_conv", "generator_kwargs": {"n_downsample": 3, "n_blocks": 4}},
            loss={**_HD["loss"], "lambda_vgg": 0.0},
            optim={**_HD["optim"], "n_epochs": 10, "n_epochs_decay": 10},
            train={"batch_size": 4, "precision": "auto", "log_every": 20, "sample_every": 200,
                   "checkpoint_every": 500})),
    "crn_cityscapes": Preset(
        "CRN baseline (Chen and Koltun 2017): cascaded refinement network trained with the VGG perceptual loss "
        "alone, on Cityscapes label maps at 512x256",
        _hd(data={**_HD["data"], "use_instance": False, "load_size": 512, "crop_size": 256},
            model={**_HD["model"], "generator": "crn", "ngf": 64},
            loss={**_HD["loss"], "lambda_gan": 0.0, "lambda_feat": 0.0})),
    "tiny_hd": Preset(
        "for tests: pix2pixHD global generator with 4 filters on 32x32 label maps, random VGG features",
        _hd(model={**_HD["model"], **_TINY_HD_MODEL}, **_TINY_HD)),
    "tiny_hd_local": Preset(
        "for tests: pix2pixHD local enhancer with 4 filters, the enhancer alone for the first epoch",
        _hd(model={**_HD["model"], **_TINY_HD_MODEL, "generator": "local",
                   "generator_kwargs": {"n_downsample_global": 2, "n_blocks_global": 1, "n_blocks_local": 1}},
            **{**_TINY_HD, "train": {**_TINY_HD["train"], "niter_fix_global": 1}})),
    "tiny_crn": Preset(
        "for tests: CRN with 8 filters trained with random-feature VGG loss only",
        _hd(model={**_HD["model"], "generator": "crn", "ngf": 8, "generator_kwargs": {"n_modules": 4}},
            data={**_TINY_HD["data"], "use_instance": False},
            loss={**_HD["loss"], "lambda_gan": 0.0, "lambda_feat": 0.0, "vgg_random": True},
            optim=_TINY_HD["optim"], train=_TINY_HD["train"])),
})


# Measured improvements (benchmarks/quality.md, issue 11): each of these presets is a task's preset plus
# the changes that won at equal CPU wall-clock; `benchmarks/quality.py` runs the same changes as a recipe.
IMPROVEMENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "facades_plus": (
        "facades", "facades with the measured winners (benchmarks/quality.md): ngf/ndf 32, batch 4 at lr 4e-4, "
        "EMA of G 0.99; the same time gives a better score than the paper recipe",
        {"model": {"ngf": 32, "ndf": 32}, "train": {"batch_size": 4, "ema_decay": 0.99}, "optim": {"lr": 4e-4}}),
    # the synthetic preset's recipe is repeated so that the benchmark recipe (applied to the reference) is the preset
    "synthetic_plus": (
        "synthetic", "synthetic with the segmenting discriminator (loss.lambda_seg 5, benchmarks/quality.md): a "
        "better score per step (people 0.61 against 0.49 at 6,000 steps) at 1.6x the step's cost",
        {"train": {"ema_decay": 0.99, "precision": "auto"}, "optim": {"lr": 4e-4}, "loss": {"lambda_seg": 5.0}}),
}


def improvement_overrides(name: str) -> list[str]:
    """The changes of improved preset `name` as --set overrides ('model.ngf=32', ...)."""
    return [f"{section}.{key}={value}" for section, values in IMPROVEMENTS[name][2].items()
            for key, value in values.items()]


PRESETS.update({name: Preset(description, _merged(PRESETS[base].values, changes))
                for name, (base, description, changes) in IMPROVEMENTS.items()})


def get_preset(name: str) -> Config:
    """A fresh Config for preset `name`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; available: {', '.join(PRESETS)}." + did_you_mean(name, PRESETS))
    cfg = update_config(Config(), PRESETS[name].values, source=f"preset '{name}'")
    cfg.preset = name
    return cfg
