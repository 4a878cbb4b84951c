"""Preprocessing shared by both images of a pair: resize, crop and flip with the same parameters.

Modes (as in the reference code, `--preprocess`):
- resize_and_crop: resize to load_size x load_size, then crop crop_size (the default, 286 -> 256);
- crop: crop crop_size from the original;
- scale_width: scale the width to load_size, keeping the aspect ratio (height at least crop_size);
- scale_width_and_crop: scale_width, then crop crop_size;
- none: keep the image as it is; the generator pads to the multiple it needs and crops back.

Training samples a random crop position and flip; evaluation crops the centre and never flips.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from ..errors import DataError


@dataclass(frozen=True)
class TransformParams:
    """What to do to every image of one pair."""

    resize: tuple[int, int] | None  # (width, height)
    crop: tuple[int, int, int, int] | None  # (left, top, width, height)
    flip: bool


def _scaled_width_size(w: int, h: int, load_size: int, crop_size: int) -> tuple[int, int]:
    if w == load_size and h >= crop_size:
        return w, h
    return load_size, int(max(load_size * h / w, crop_size))


def sample_params(size: tuple[int, int], preprocess: str, load_size: int, crop_size: int, *, flip: bool,
                  rng: random.Random | None, source: str = "<image>") -> TransformParams:
    """Parameters for an image of `size` (w, h); `rng=None` means evaluation (centre crop, no flip)."""
    w, h = size
    resize: tuple[int, int] | None = None
    if preprocess == "resize_and_crop":
        resize = (load_size, load_size)
    elif preprocess in ("scale_width", "scale_width_and_crop"):
        resize = _scaled_width_size(w, h, load_size, crop_size)
    rw, rh = resize or (w, h)
    crop = None
    if preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
        if rw < crop_size or rh < crop_size:
            raise DataError(f"{source}: image is {rw}x{rh} after resizing, smaller than crop_size={crop_size}: "
                            "use a smaller data.crop_size or data.preprocess=resize_and_crop.")
        if rng is None:
            x, y = (rw - crop_size) // 2, (rh - crop_size) // 2
        else:
            x, y = rng.randint(0, rw - crop_size), rng.randint(0, rh - crop_size)
        crop = (x, y, crop_size, crop_size)
    do_flip = bool(flip and rng is not None and rng.random() > 0.5)
    return TransformParams(resize=None if resize == (w, h) else resize, crop=crop, flip=do_flip)


def apply_params(img: Image.Image, params: TransformParams, resample: int = Image.BICUBIC) -> Image.Image:
    """Apply resize, crop and flip. Use Image.NEAREST for label and instance maps."""
    if params.resize is not None:
        img = img.resize(params.resize, resample)
    if params.crop is not None:
        x, y, cw, ch = params.crop
        img = img.crop((x, y, x + cw, y + ch))
    if params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img
