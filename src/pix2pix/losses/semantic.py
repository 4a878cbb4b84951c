"""Segmentation-adversarial term (opt-in `loss.lambda_seg`), after OASIS (Schönfeld et al., ICLR 2021).

A second discriminator segments the image alone into the label set's N classes plus one "fake"
class: on real photos it learns each pixel's class from the input label map, on generated ones
the fake class; G is rewarded where its pixels are segmented as their label. Each class present
in a batch weighs the same in the class cross-entropies (OASIS's class balancing; the fake-class
term is a plain mean, as there), so a pole's few hundred pixels count as much as the sky's
thousands: that is where the L1 + PatchGAN recipe falls short on label maps
(benchmarks/quality.md). The label of every pixel comes from the input itself, the nearest
colour of the label set's palette, so no extra data is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE", "class_balance_weights", "colour_keys", "off_palette_share", "palette_ids",
           "segmentation_adversarial_loss"]

IGNORE = -1  # pixels of no class (the label set's void colour): weight 0


def colour_keys(cond: torch.Tensor) -> torch.Tensor:
    """[B, H, W] int64: each pixel's colour in `cond` ([B, C <= 3, H, W] in [-1, 1]) at 8 bits per channel, packed
    with channel 0 highest, so equal colours have equal keys and a 3-channel key reads back as RGB."""
    levels = ((cond.detach().float().clamp(-1, 1) + 1) * 127.5).round().long()
    keys = levels[:, 0]
    for i in range(1, levels.shape[1]):
        keys = (keys << 8) | levels[:, i]
    return keys


def _nearest_colours(cond: torch.Tensor, palette: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(each distinct colour's nearest palette id, its RGB distance to it, each pixel's distinct-colour index)."""
    colours, inverse = torch.unique(colour_keys(cond), return_inverse=True)  # a label map has few, even after resizing
    rgb = torch.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], 1).float()
    distance, nearest = torch.cdist(rgb, palette.to(device=cond.device, dtype=torch.float32)).min(1)
    return nearest, distance, inverse


def palette_ids(cond: torch.Tensor, palette: torch.Tensor, ignore_id: int | None = None) -> torch.Tensor:
    """Class ids [B, H, W] of a colour-coded label map `cond` ([B, 3, H, W] in [-1, 1]): the nearest
    colour of `palette` ([N, 3], 0..255), as the segmentation score reads colour maps; `ignore_id` -> IGNORE."""
    nearest, _, inverse = _nearest_colours(cond, palette)
    if ignore_id is not None:
        nearest[nearest == ignore_id] = IGNORE
    return nearest[inverse]


def off_palette_share(cond: torch.Tensor, palette: torch.Tensor, far: float = 48.0) -> float:
    """The share of `cond`'s pixels farther than `far` (RGB distance, 0..255 levels) from every palette colour:
    near 0 for a label map of that palette (resized ones blend a few boundary pixels), large for photos."""
    _, distance, inverse = _nearest_colours(cond, palette)
    return float((distance[inverse] > far).float().mean())


def class_balance_weights(ids: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[B, H, W] weights: each class present in the batch gets the same total weight, IGNORE pixels 0,
    and the weights sum to the number of labelled pixels (so uniform classes give weight 1 everywhere)."""
    labelled = ids >= 0
    counts = torch.bincount(ids[labelled], minlength=n_classes).float()
    present = (counts > 0).sum().clamp(min=1)
    per_class = torch.where(counts > 0, labelled.sum() / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return torch.where(labelled, per_class[ids.clamp(min=0)], torch.zeros((), device=ids.device))


def segmentation_adversarial_loss(logits: torch.Tensor, ids: torch.Tensor | None = None,
                                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of `logits` ([B, N + 1, H, W]): with `ids` and `weights`, against each pixel's class,
    class-balanced (weighted mean); without, against the fake class (index N) everywhere, a plain mean
    (as OASIS's discriminator loss on generated images)."""
    if ids is None:
        target = torch.full((logits.shape[0], *logits.shape[2:]), logits.shape[1] - 1, dtype=torch.long,
                            device=logits.device)
        return F.cross_entropy(logits.float(), target)
    ce = F.cross_entropy(logits.float(), ids.clamp(min=0), reduction="none")
    return (ce * weights).sum() / weights.sum().clamp(min=1)
