"""Discriminator feature matching (pix2pixHD).

A discriminator output is a list per scale of [features..., logits]. The loss compares every
intermediate feature map (all but the last entry, the logits) of D on the fake and on the real
input, with the real features detached, exactly as pix2pixHD's `loss_G_GAN_Feat`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DScales = Sequence[Sequence[torch.Tensor]]


def _check_scales(pred: DScales, name: str) -> None:
    if isinstance(pred, torch.Tensor) or not all(isinstance(s, (list, tuple)) for s in pred):
        raise ValueError(f"feature matching needs {name} as a list per scale of [features..., logits] "
                         "(a discriminator that returns its intermediate features), not a bare tensor.")


def feature_matching_loss(pred_fake: DScales, pred_real: DScales, n_layers_d: int,
                          lambda_feat: float = 10.0) -> torch.Tensor:
    """sum_i sum_j (1/num_D) * (4/(n_layers_d+1)) * lambda_feat * L1(D_i^j(fake), D_i^j(real).detach()).

    i runs over the scales and j over each scale's outputs except the last (the logits). The L1
    means are computed in fp32 whatever the compute dtype; the result is an fp32 scalar. Gradients
    flow into the fake features only.
    """
    _check_scales(pred_fake, "pred_fake")
    _check_scales(pred_real, "pred_real")
    if len(pred_fake) != len(pred_real):
        raise ValueError(f"pred_fake has {len(pred_fake)} scales but pred_real has {len(pred_real)}.")
    if len(pred_fake) == 0:
        raise ValueError("feature matching needs at least one discriminator scale.")
    num_d = len(pred_fake)
    weight = (1.0 / num_d) * (4.0 / (n_layers_d + 1)) * lambda_feat
    device = pred_fake[0][-1].device
    loss = torch.zeros((), dtype=torch.float32, device=device)
    for i, (fake_scale, real_scale) in enumerate(zip(pred_fake, pred_real, strict=True)):
        if len(fake_scale) != len(real_scale):
            raise ValueError(f"scale {i}: pred_fake has {len(fake_scale)} outputs but pred_real has "
                             f"{len(real_scale)}.")
        for fake, real in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            loss = loss + weight * F.l1_loss(fake.float(), real.detach().float())
    return loss
