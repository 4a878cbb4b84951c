"""L1 with each pixel weighted by how rare its input colour is in its image (opt-in: `loss.l1_balance`).

With a label map as the input, most of the L1 term is spent on the large regions (sky, road,
buildings) and the thin or small classes (poles, people) get a few hundred pixels of it, so the
generator learns them last (benchmarks/quality.md). Here a pixel whose input colour covers the
fraction f of its image weighs f ** -balance, scaled so that the weights average 1 over the image:
0 is the plain L1, 1 gives every input colour the same total weight, 0.5 lies between. The input
is known at training and test time, so no labels are needed; with a photo as the input nearly
every colour is unique and the weights stay close to 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .semantic import colour_keys

__all__ = ["balanced_l1_loss", "input_rarity_weights"]


def input_rarity_weights(cond: torch.Tensor, balance: float) -> torch.Tensor:
    """[B, 1, H, W] weights, mean 1 per image, from the condition `cond` ([B, C, H, W] in [-1, 1], C <= 3)."""
    b, _, h, w = cond.shape  # at most 3 channels (config.validate): a colour's key fits in 24 bits
    keys = colour_keys(cond).reshape(b, h * w)
    weights = torch.empty(b, h * w, device=cond.device)
    for i in range(b):
        _, inverse, counts = torch.unique(keys[i], return_inverse=True, return_counts=True)
        wi = (counts.float() / (h * w)).pow(-balance)[inverse]
        weights[i] = wi / wi.mean()
    return weights.reshape(b, 1, h, w)


def balanced_l1_loss(fake: torch.Tensor, real: torch.Tensor, cond: torch.Tensor, balance: float) -> torch.Tensor:
    """mean(w * |fake - real|) with w from `input_rarity_weights`; balance 0 is the reference's `F.l1_loss` itself,
    so the default step stays bit-identical."""
    if balance == 0:
        return F.l1_loss(fake.float(), real.float())
    return (input_rarity_weights(cond, balance) * (fake.float() - real.float()).abs()).mean()
