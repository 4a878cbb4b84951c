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
        "the demo: label->photo on the synthetic street world (`pix2pix data synth`), 128x128, small U-Net, "
        "a few minutes on a 2-core CPU",
        {
            "data": {"preprocess": "resize_and_crop", "load_size": 136, "crop_size": 128},
            "model": {"generator": "unet_128", "ngf": 32, "ndf": 32},
            "optim": {"n_epochs": 10, "n_epochs_decay": 10},
            "train": {"batch_size": 4, "log_every": 20, "sample_every": 200, "checkpoint_every": 500},
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


def get_preset(name: str) -> Config:
    """A fresh Config for preset `name`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; available: {', '.join(PRESETS)}." + did_you_mean(name, PRESETS))
    cfg = update_config(Config(), PRESETS[name].values, source=f"preset '{name}'")
    cfg.preset = name
    return cfg
