"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al., NeurIPS 2020).

D sees every pair (condition, image) through one random transform per sample, real and fake
pairs alike, and G's loss goes through the same kind of transform, so G still receives
gradients. Geometric transforms (translation, cutout) move the condition and the image
together, so D keeps judging aligned pairs; colour transforms change the image channels only
(a label map or sketch is not a photo to recolour).

    aug = PairAugment("translation,cutout,color")
    params = aug.sample(batch=4, height=256, width=256, device=x.device)   # one draw per sample
    d_in = aug(torch.cat([cond, image], 1), params, image_channels=3)     # the same draw for real and fake
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError

AUGMENTATIONS = ("translation", "cutout", "color")
TRANSLATION_RATIO = 0.125  # shifts of up to 1/8 of each side (DiffAugment's default)
CUTOUT_RATIO = 0.5  # a square hole of half of each side


@dataclass
class AugmentParams:
    """One random transform per sample (tensors of length B on the device)."""

    shift_x: torch.Tensor | None = None  # pixels, may be negative
    shift_y: torch.Tensor | None = None
    cut_x: torch.Tensor | None = None  # centre of the hole
    cut_y: torch.Tensor | None = None
    brightness: torch.Tensor | None = None  # added, U(-0.5, 0.5)
    saturation: torch.Tensor | None = None  # factor around the pixel mean over channels, U(0, 2)
    contrast: torch.Tensor | None = None  # factor around the image mean, U(0.5, 1.5)


def parse_policy(policy: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"loss.diffaugment={policy!r}: unknown augmentation {unknown[0]!r}; use a comma-separated "
                          f"list of {', '.join(AUGMENTATIONS)} (or '' for none).")
    return names


class PairAugment:
    """The DiffAugment transforms of one policy ("translation,cutout,color", any subset)."""

    def __init__(self, policy: str) -> None:
        self.policy = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.policy)

    def sample(self, batch: int, height: int, width: int, device: torch.device) -> AugmentParams:
        """Draw one transform per sample from torch's global generator (so runs stay reproducible and resumable)."""
        p = AugmentParams()
        if "translation" in self.policy:
            sx, sy = int(width * TRANSLATION_RATIO + 0.5), int(height * TRANSLATION_RATIO + 0.5)
            p.shift_x = torch.randint(-sx, sx + 1, (batch,), device=device)
            p.shift_y = torch.randint(-sy, sy + 1, (batch,), device=device)
        if "cutout" in self.policy:
            cw, ch = int(width * CUTOUT_RATIO + 0.5), int(height * CUTOUT_RATIO + 0.5)
            p.cut_x = torch.randint(0, width + (1 - cw % 2), (batch,), device=device)
            p.cut_y = torch.randint(0, height + (1 - ch % 2), (batch,), device=device)
        if "color" in self.policy:
            p.brightness = torch.rand(batch, device=device) - 0.5
            p.saturation = torch.rand(batch, device=device) * 2.0
            p.contrast = torch.rand(batch, device=device) + 0.5
        return p

    def __call__(self, x: torch.Tensor, params: AugmentParams, image_channels: int) -> torch.Tensor:
        """Apply `params` to D's input [B, C, H, W] whose last `image_channels` channels are the image."""
        if params.brightness is not None:
            x = torch.cat([x[:, :-image_channels], _color(x[:, -image_channels:], params)], 1)
        if params.shift_x is not None:
            x = _translate(x, params.shift_x, params.shift_y)
        if params.cut_x is not None:
            x = _cutout(x, params.cut_x, params.cut_y)
        return x


def _color(img: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """DiffAugment's brightness, saturation and contrast. Their images are in [-1, 1] as ours are, and
    their brightness offset (U(-0.5, 0.5)) is added to them as it is."""
    img = img + p.brightness.view(-1, 1, 1, 1).to(img.dtype)
    mean = img.mean(dim=1, keepdim=True)
    img = (img - mean) * p.saturation.view(-1, 1, 1, 1).to(img.dtype) + mean
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    return (img - mean) * p.contrast.view(-1, 1, 1, 1).to(img.dtype) + mean


def _translate(x: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Shift each sample by (shift_x, shift_y) pixels, zero-filling what comes in (a gather, differentiable)."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1) - shift_y.view(b, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - shift_x.view(b, 1, 1)
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
    padded = F.pad(x, (1, 1, 1, 1))  # index 0 of the padded map is a zero
    ys = (ys + 1).clamp(0, h + 1)
    xs = (xs + 1).clamp(0, w + 1)
    flat = (ys * (w + 2) + xs).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    out = padded.flatten(2).gather(2, flat).view_as(x)
    return out * inside.to(x.dtype)


def _cutout(x: torch.Tensor, cut_x: torch.Tensor, cut_y: torch.Tensor) -> torch.Tensor:
    """Zero a square of CUTOUT_RATIO of each side around (cut_x, cut_y) in each sample."""
    b, _, h, w = x.shape
    cw, ch = int(w * CUTOUT_RATIO + 0.5), int(h * CUTOUT_RATIO + 0.5)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    y0 = (cut_y - ch // 2).view(b, 1, 1)
    x0 = (cut_x - cw // 2).view(b, 1, 1)
    hole = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)
