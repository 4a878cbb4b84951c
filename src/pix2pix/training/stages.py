"""pix2pixHD coarse-to-fine training in one call, as the paper does it.

1. the global generator alone at half resolution;
2. the local enhancer initialised from it, training only the enhancer for
   `train.niter_fix_global` epochs;
3. everything jointly, with Adam rebuilt at the unfreeze (the reference's behaviour).
Stages 2 and 3 are one run of the local configuration (`Pix2PixHDTrainer` switches
at the epoch boundary), so `--resume` works across them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..data.images import list_images, open_image
from ..errors import ConfigError
from .trainer import TrainResult, train


def global_stage_config(local: Config) -> Config:
    """The stage-1 config: a global generator of ngf * 2^n_local_enhancers at half the resolution."""
    if local.model.generator != "local":
        raise ConfigError(f"coarse-to-fine training needs model.generator=local, not '{local.model.generator}'.")
    cfg = local.copy()
    kw = dict(local.model.generator_kwargs)
    n_local = int(kw.pop("n_local_enhancers", 1))
    cfg.model.generator = "global"
    cfg.model.ngf = local.model.ngf * 2**n_local
    cfg.model.generator_kwargs = {"n_downsample": int(kw.pop("n_downsample_global", 4)),
                                  "n_blocks": int(kw.pop("n_blocks_global", 9))}
    cfg.model.num_d = max(1, local.model.num_d - 1)  # the 512p recipe uses one scale fewer than the 1024p one
    cfg.train.niter_fix_global = 0
    cfg.train.load_global = ""
    cfg.train.name = f"{local.train.name or local.preset or 'run'}-global"
    d = cfg.data
    factor = 2**n_local
    if d.preprocess == "none":  # full-size images: scale them to 1/factor of their width
        first = _first_image(Path(d.root))
        d.preprocess, d.load_size = "scale_width", max(1, open_image(first).width // factor)
    else:
        d.load_size, d.crop_size = max(1, d.load_size // factor), max(1, d.crop_size // factor)
    return cfg


def _first_image(root: Path) -> Path:
    for folder in (root / "train_img", root / "train_label"):
        if folder.is_dir() and list_images(folder):
            return list_images(folder)[0]
    raise ConfigError(f"{root} has no train_img/ or train_label/ images to size the global stage from.")


def coarse_to_fine(local: Config, *, progress: bool = False, log: Any = print) -> tuple[TrainResult, TrainResult]:
    """Run the global stage, then the local stage initialised from it; returns both runs."""
    stage1 = global_stage_config(local)
    log(f"stage 1/2: global generator (ngf {stage1.model.ngf}) at half resolution")
    first = train(stage1, progress=progress, log=log)
    stage2 = local.copy()
    stage2.train.load_global = str(first.run_dir / "model")
    log(f"stage 2/2: local enhancer from {stage2.train.load_global}; enhancer alone for "
        f"{stage2.train.niter_fix_global} epochs, then jointly")
    return first, train(stage2, progress=progress, log=log)
