"""pix2pixHD's instance-wise feature encoder E (`--instance_feat`), key-compatible with the reference.

E is a conv encoder-decoder (Conv7, `n_downsample` stride-2 convs, as many 2x
up-samplings, Conv7 + tanh; keys `model.{1,4,...,25,29}` with the defaults) whose output
is averaged inside every instance, per batch item and channel, so each object gets one
feature vector. Those maps are concatenated to G's input; after training the per-instance
vectors (`instance_mean_features`) are clustered with k-means per class to pick styles.

The averaging is vectorised: one `torch.unique` over the instance ids, one scatter-add of
the pixels into (batch, instance) segments and one gather back, instead of the
reference's Python loops over instances, batch items and channels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import DataError
from .pix2pixhd import _check_positive, _global_layers
from .registry import register_generator

__all__ = ["FeatureEncoder", "InstanceFeatures", "instance_average", "instance_mean_features"]


class InstanceFeatures(NamedTuple):
    """One row per (batch item, instance id) present in the map, sorted by batch index then id."""

    batch_index: torch.Tensor  # [N] long
    instance_id: torch.Tensor  # [N] long
    features: torch.Tensor  # [N, C] mean feature vector of the instance
    pixel_count: torch.Tensor  # [N] long, the instance's area in pixels


def _segments(features: torch.Tensor, instance_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-pixel segment ids b * U + rank(id) [B * H * W], the sorted unique ids [U], and U."""
    if features.dim() != 4:
        raise DataError(f"features must be [B, C, H, W]; got shape {tuple(features.shape)}.")
    b, _, h, w = features.shape
    inst = instance_map
    if inst.dim() == 4 and inst.shape[1] == 1:
        inst = inst[:, 0]
    if inst.shape != (b, h, w):
        raise DataError(f"the instance map has shape {tuple(instance_map.shape)} but the features are "
                        f"{tuple(features.shape)}; pass a [B, 1, H, W] (or [B, H, W]) map of the same size.")
    if inst.is_floating_point():
        inst = inst.round()  # ids stored in float tensors are exact integers up to 2^24
    ids, inverse = torch.unique(inst.to(device=features.device, dtype=torch.long), return_inverse=True)
    n_ids = ids.numel()
    offsets = torch.arange(b, device=features.device).view(b, 1, 1) * n_ids
    return (inverse + offsets).reshape(-1), ids, n_ids


def _segment_means(features: torch.Tensor, seg: torch.Tensor, n_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each segment [n_segments, C] (accumulated in float32 at least) and pixel counts [n_segments]."""
    b, c, h, w = features.shape
    acc_dtype = torch.promote_types(features.dtype, torch.float32)
    pixels = features.permute(0, 2, 3, 1).reshape(b * h * w, c).to(acc_dtype)
    sums = pixels.new_zeros(n_segments, c).index_add(0, seg, pixels)
    counts = torch.bincount(seg, minlength=n_segments)
    return sums / counts.clamp(min=1).unsqueeze(1).to(acc_dtype), counts


def instance_average(features: torch.Tensor, instance_map: torch.Tensor) -> torch.Tensor:
    """Replace every pixel of `features` [B, C, H, W] by its instance's mean (per batch item and channel).

    `instance_map` is [B, 1, H, W] or [B, H, W] with integer ids (float tensors holding
    integers are accepted). Differentiable; the result has the features' dtype.
    """
    seg, _, n_ids = _segments(features, instance_map)
    b, c, h, w = features.shape
    means, _ = _segment_means(features, seg, b * n_ids)
    return means[seg].reshape(b, h, w, c).permute(0, 3, 1, 2).to(features.dtype).contiguous()


def instance_mean_features(features: torch.Tensor, instance_map: torch.Tensor) -> InstanceFeatures:
    """One mean feature vector per (batch item, instance id) present: the input for k-means.

    Returns `InstanceFeatures(batch_index [N], instance_id [N], features [N, C], pixel_count [N])`;
    pairs whose id does not occur in that batch item are left out.
    """
    seg, ids, n_ids = _segments(features, instance_map)
    b = features.shape[0]
    means, counts = _segment_means(features, seg, b * n_ids)
    present = (counts > 0).nonzero().flatten()
    return InstanceFeatures(batch_index=present // n_ids, instance_id=ids[present % n_ids],
                            features=means[present].to(features.dtype), pixel_count=counts[present])


class FeatureEncoder(nn.Module):
    """pix2pixHD's feature encoder (netE): image -> `out_channels` (feat_num) maps, averaged per instance.

    nef 16, 4 down-samplings, 3 -> 3 channels: 788,803 parameters. Every conv has a bias.
    `forward(image, instance_map=None)`: without a map the raw tanh output is returned.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, *, ngf: int = 16, n_downsample: int = 4,
                 norm: str = "instance", upsample: str = "transpose") -> None:
        super().__init__()
        _check_positive(ngf=ngf, n_downsample=n_downsample)
        self.size_multiple = 2 ** n_downsample
        # the reference encoder is the global generator's layout without residual blocks
        self.model = nn.Sequential(*_global_layers(in_channels, out_channels, ngf, n_downsample, 0, norm,
                                                   "reflect", upsample))

    def forward(self, image: torch.Tensor, instance_map: torch.Tensor | None = None) -> torch.Tensor:
        out = self.model(image)
        return out if instance_map is None else instance_average(out, instance_map)


@register_generator("encoder")
def encoder(in_channels: int = 3, out_channels: int = 3, ngf: int = 16, n_downsample: int = 4,
            norm: str = "instance", upsample: str = "transpose") -> FeatureEncoder:
    """pix2pixHD feature encoder (ngf = nef, out_channels = feat_num); call it as E(image, instance_map)."""
    return FeatureEncoder(in_channels, out_channels, ngf=ngf, n_downsample=n_downsample, norm=norm,
                          upsample=upsample)
