"""The modules traced into exported graphs: padding, pix2pixHD's label encoding and the encoder's pooling.

Each computes exactly what the library computes eagerly (`models.run_padded`,
`data.label_inputs.LabelInputs.encode`, `models.encoder.instance_average`), written with
operations every exporter and runtime handles, so the exported graph is self-contained:

- padding to the generator's multiple gathers the padding strips with indices computed from the
  input's traced shape (reflection where both pads are shorter than their sides, edge
  replication otherwise, as `pad_to_multiple` decides), so height and width stay dynamic;
  the output is cropped back in the graph;
- one-hot encoding is a comparison with `arange(label_nc)` and the boundary map is built from
  zero-padded neighbour differences (the eager code's in-place slice updates do not export);
- instance pooling sums with `scatter_add` (ONNX ScatterElements with add) instead of
  `index_add` / `bincount` (the first exports wrongly for repeated indices, the second not at all);
- instance and group norm (`exportable`) compute their statistics in two passes (mean, then the
  mean of squared deviations), reducing one axis at a time: onnxruntime's InstanceNormalization
  loses precision on large maps (7e-6 against fp64 on one 256x512 layer whose mean is 20 standard
  deviations, torch 4e-7; 2e-4 against eager fp32 at the output of pix2pixHD's global generator at
  1024x512).

The tests compare each helper with its eager counterpart on hand-made and random inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EncoderGraph", "LabelGraph", "PaddedGraph", "StagedNorm", "boundary_graph", "exportable",
           "instance_average_graph", "one_hot_graph", "pad_to_multiple_graph"]


def _arange_like(t: torch.Tensor, n: int) -> torch.Tensor:
    """0..n-1 (int64) on `t`'s device. `torch.arange(device=...)` would trace the device as a constant, and a
    TorchScript export moved to CUDA would then index CUDA tensors with CPU indices."""
    return t.new_ones(n, dtype=torch.long).cumsum(0) - 1


def pad_to_multiple_graph(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """`models.padding.pad_to_multiple` (bottom / right) in exportable operations; returns (padded, H, W).

    The padding strips are gathered (rows h..hp-1 mirrored to 2(h-1)-i, or clamped to h-1 for edge
    replication) and concatenated, with indices computed from the traced shape. Gathering only the
    strips, not the whole padded map, also avoids an OpenVINO 2026.4 CPU bug: a Gather along the last
    axis whose output has more than ~2^25 elements returns wrong values for the later batch items.
    """
    h, w = x.shape[-2], x.shape[-1]
    if multiple <= 1:
        return x, h, w
    hp = (h + multiple - 1) // multiple * multiple
    wp = (w + multiple - 1) // multiple * multiple
    rows = _arange_like(x, hp)[h:]
    cols = _arange_like(x, wp)[w:]
    mirror_rows = 2 * (h - 1) - rows
    mirror_cols = 2 * (w - 1) - cols
    # reflection is possible when every mirrored index stays inside: pad < side on both axes
    reflect = (mirror_rows >= 0).all() & (mirror_cols >= 0).all()
    rows = torch.where(reflect, mirror_rows, rows.clamp(max=h - 1))
    cols = torch.where(reflect, mirror_cols, cols.clamp(max=w - 1))
    x = torch.cat([x, x.index_select(2, rows)], 2)
    return torch.cat([x, x.index_select(3, cols)], 3), h, w


def one_hot_graph(label: torch.Tensor, label_nc: int, ignore_index: int | None = None) -> torch.Tensor:
    """Integer ids [B, 1, H, W] -> float one-hot [B, label_nc, H, W], as `data.labels.one_hot`.

    With `ignore_index`, ids outside 0..label_nc-1 become that class; without it they give an
    all-zero pixel here (the runtime wrapper rejects them first, as the eager code does).
    """
    label = label.long()
    if ignore_index is not None:
        bad = (label < 0) | (label >= label_nc)
        label = torch.where(bad, torch.full_like(label, ignore_index), label)
    classes = _arange_like(label, label_nc).view(1, label_nc, 1, 1)
    return (label == classes).to(torch.float32)


def boundary_graph(instance: torch.Tensor) -> torch.Tensor:
    """Instance ids [B, 1, H, W] -> [B, 1, H, W] float, 1 where a 4-neighbour differs (`data.labels.boundary_map`)."""
    dx = (instance[..., :, 1:] != instance[..., :, :-1]).to(torch.float32)
    dy = (instance[..., 1:, :] != instance[..., :-1, :]).to(torch.float32)
    marks = F.pad(dx, (1, 0)) + F.pad(dx, (0, 1)) + F.pad(dy, (0, 0, 1, 0)) + F.pad(dy, (0, 0, 0, 1))
    return (marks > 0).to(torch.float32)


def instance_average_graph(features: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
    """Every pixel of `features` [B, C, H, W] replaced by its instance's mean (`models.encoder.instance_average`)."""
    b, c, h, w = features.shape
    ids, inverse = torch.unique(instance.long(), sorted=True, return_inverse=True)
    n = ids.shape[0]
    seg = (inverse.reshape(b, h * w) + _arange_like(inverse, b).view(b, 1) * n).reshape(-1)
    pixels = features.permute(0, 2, 3, 1).reshape(b * h * w, c).to(torch.float32)
    sums = pixels.new_zeros(b * n, c).scatter_add(0, seg.unsqueeze(1).expand(-1, c), pixels)
    counts = pixels.new_zeros(b * n)
    counts = counts.scatter_add(0, seg, torch.ones_like(seg, dtype=torch.float32))
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return means[seg].reshape(b, h, w, c).permute(0, 3, 1, 2).to(features.dtype)


class StagedNorm(nn.Module):
    """Instance norm (`groups` = channels) or group norm in eval mode, statistics in two passes, axis by axis."""

    def __init__(self, channels: int, groups: int, eps: float, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.channels, self.groups, self.eps = int(channels), int(groups), float(eps)
        self.weight = None if weight is None else nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @staticmethod
    def _mean(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        for d in dims:  # one axis at a time: shorter sums, less rounding than one long reduction
            x = x.mean(d, keepdim=True)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = self.groups != self.channels
        g = x.reshape(b, self.groups, c // self.groups, h, w) if grouped else x
        dims = (4, 3, 2) if grouped else (3, 2)
        d = g - self._mean(g, dims)
        y = d * torch.rsqrt(self._mean(d * d, dims) + self.eps)
        y = y.reshape(b, c, h, w) if grouped else y
        if self.weight is not None:
            y = y * self.weight.view(1, c, 1, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, c, 1, 1)
        return y


def _staged(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.InstanceNorm2d) and not (m.track_running_stats and m.running_mean is not None):
        return StagedNorm(m.num_features, m.num_features, m.eps, m.weight, m.bias)
    if isinstance(m, nn.GroupNorm):
        return StagedNorm(m.num_channels, m.num_groups, m.eps, m.weight, m.bias)
    return None


def exportable(net: nn.Module) -> nn.Module:
    """A copy of `net` (eval mode) whose instance and group norms are `StagedNorm`s; `net` is not changed."""
    import copy

    net = copy.deepcopy(net).eval()
    replacement = _staged(net)
    if replacement is not None:
        return replacement
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            replacement = _staged(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    return net


class PaddedGraph(nn.Module):
    """`run_padded(net, x)`: any H and W in, the same H and W out."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, h, w = pad_to_multiple_graph(x, self.multiple)
        out = self.net(padded)
        return out[..., :h, :w] if self.multiple > 1 else out


class LabelGraph(nn.Module):
    """pix2pixHD's generator with its input encoding: label ids (+ instance ids) (+ features) in, photo out.

    Inputs, in order: `label` int64 [B, 1, H, W] (label_nc 0: float RGB [B, 3, H, W] in [-1, 1]);
    `instance` int64 [B, 1, H, W] when the model uses instance maps; `features` float
    [B, feat_num, H, W] when it uses the feature encoder. Computes
    `run_padded(G, cat([LabelInputs.encode(label, instance), features]))`.
    """

    def __init__(self, net: nn.Module, multiple: int, *, label_nc: int, use_instance: bool,
                 ignore_index: int | None, feat_num: int) -> None:
        super().__init__()
        self.padded = PaddedGraph(net, multiple)
        self.label_nc = int(label_nc)
        self.use_instance = bool(use_instance)
        self.ignore_index = ignore_index
        self.feat_num = int(feat_num)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        label = inputs[0]
        parts = [one_hot_graph(label, self.label_nc, self.ignore_index) if self.label_nc > 0
                 else label.to(torch.float32)]
        if self.use_instance:
            parts.append(boundary_graph(inputs[1]))
        if self.feat_num:
            parts.append(inputs[-1].to(torch.float32))
        return self.padded(torch.cat(parts, 1))


class EncoderGraph(nn.Module):
    """pix2pixHD's feature encoder: (image [B, 3, H, W], instance ids [B, 1, H, W]) -> (raw, instance-averaged)."""

    def __init__(self, encoder: nn.Module, multiple: int) -> None:
        super().__init__()
        self.padded = PaddedGraph(encoder, multiple)

    def forward(self, image: torch.Tensor, instance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.padded(image)
        return raw, instance_average_graph(raw, instance)
