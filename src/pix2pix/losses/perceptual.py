"""VGG19 perceptual loss (pix2pixHD), built from torch alone (no torchvision).

`VGG19Features` reproduces torchvision's `vgg19().features` layer for layer, so its parameter
names are torchvision's state_dict keys (`0.weight`, `0.bias`, `2.weight`, ..., `34.bias`) and
torchvision's ImageNet checkpoint `vgg19-dcbb9e9d.pth` loads into it. Its forward returns the
outputs of the reference slices [0:2], [2:7], [7:12], [12:21], [21:30] (relu1_1 .. relu5_1); the
layers after 29 are kept only so that the checkpoint's keys match, and never run.

`resolve_vgg_weights` finds the ImageNet weights (explicit file > torch hub cache > download,
only when allowed) and `VGGLoss` is lambda * sum_k w_k * L1(phi_k(fake), phi_k(real).detach()).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError, Pix2PixError
from ..io.torch_load import safe_torch_load
from ..nn.state import key_mismatch_report, load_state_strict

log = logging.getLogger(__name__)

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILENAME}"

# torchvision's VGG19 "E" configuration: channels of each 3x3 conv, "M" for a 2x2 max pool.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                               512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# the reference slices (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1) as [start, end) layer indices
VGG_SLICES: tuple[tuple[int, int], ...] = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
VGG_LAYER_WEIGHTS: tuple[float, ...] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
_USED_LAYERS = VGG_SLICES[-1][1]  # layers 0..29 run; 30..36 exist only for key compatibility
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _feature_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    idx, c_in = 0, 3
    for v in _CFG:
        if v == "M":
            idx += 1
            continue
        shapes[f"{idx}.weight"] = (int(v), c_in, 3, 3)
        shapes[f"{idx}.bias"] = (int(v),)
        c_in = int(v)
        idx += 2  # conv, relu
    return shapes


VGG19_FEATURE_SHAPES: dict[str, tuple[int, ...]] = _feature_shapes()


def _layer_index(key: str) -> int:
    return int(key.split(".", 1)[0])


def vgg19_hub_path() -> Path:
    """Where torch.hub (and torchvision) cache the VGG19 checkpoint: <hub dir>/checkpoints/vgg19-dcbb9e9d.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def vgg19_features_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The features-only state_dict (keys `N.weight` / `N.bias`) of a full or features-only VGG19 state_dict.

    A full torchvision checkpoint's `features.` entries are taken and its `classifier.` entries
    ignored. Keys of the unused layers after 29 may be absent. Raises CheckpointError naming
    `source` and listing every missing, unexpected or mis-shaped key.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a VGG19 state_dict.")
    if any(k.startswith("features.") for k in state):
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        others = [k for k in state if not k.startswith(("features.", "classifier."))]
    else:
        feats, others = dict(state), []
    missing = [k for k in VGG19_FEATURE_SHAPES if k not in feats and _layer_index(k) < _USED_LAYERS]
    unexpected = others + [k for k in feats if k not in VGG19_FEATURE_SHAPES]
    bad = [f"{k}: checkpoint {tuple(getattr(v, 'shape', ()))} vs model {VGG19_FEATURE_SHAPES[k]}"
           for k, v in feats.items() if k in VGG19_FEATURE_SHAPES
           and (not isinstance(v, torch.Tensor) or tuple(v.shape) != VGG19_FEATURE_SHAPES[k])]
    report = key_mismatch_report(missing, unexpected, bad)
    if report:
        raise CheckpointError(f"{source} is not a VGG19 checkpoint (torchvision's {VGG19_FILENAME} or its "
                              f"`features` state_dict):{report}")
    return feats


class VGG19Features(nn.Sequential):
    """torchvision's `vgg19().features` (same layer indices and parameter names), frozen, in eval mode.

    forward(x) returns the five reference slice outputs [relu1_1, relu2_1, relu3_1, relu4_1,
    relu5_1]. The convolutions run in the input's dtype (weights are cast on the fly when they
    differ). Random init (torchvision's: kaiming normal, fan_out, zero bias) until weights are loaded.
    """

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        c_in = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                conv = nn.Conv2d(c_in, int(v), kernel_size=3, padding=1)
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
                layers += [conv, nn.ReLU(inplace=True)]
                c_in = int(v)
        super().__init__(*layers)
        self.requires_grad_(False)
        self.eval()
        self.pretrained = False

    def train(self, mode: bool = True) -> VGG19Features:  # always eval: a frozen feature extractor
        return super().train(False)

    def load_weights(self, state: Mapping[str, torch.Tensor], source: str = "the VGG19 state_dict") -> None:
        """Load a full torchvision VGG19 checkpoint or a features-only state_dict, strictly."""
        feats = vgg19_features_state(state, source)
        own = self.state_dict()
        # the unused layers after 29 may be absent: keep their current values
        feats = {**{k: v for k, v in own.items() if k not in feats}, **feats}
        load_state_strict(self, feats, source)
        self.pretrained = True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        ends = {end for _, end in VGG_SLICES}
        feats: list[torch.Tensor] = []
        for idx, layer in enumerate(self):
            if idx >= _USED_LAYERS:
                break
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, layer.weight.to(x.dtype), layer.bias.to(x.dtype), padding=1)
            else:
                x = layer(x)
            if idx + 1 in ends:
                feats.append(x)
        return feats


def _no_weights_message(hub: Path) -> str:
    return (
        "the VGG loss (pix2pixHD's perceptual loss) needs torchvision's ImageNet VGG19 weights "
        f"({VGG19_FILENAME}), and none were found. Provide them one of three ways:\n"
        "  1. --set loss.vgg_weights=FILE (the torchvision checkpoint, or a VGG19 `features` state_dict);\n"
        f"  2. place the file in the torch hub cache at {hub}\n"
        f"     (download it from {VGG19_URL} on a machine with internet access);\n"
        f"  3. allow the download from {VGG19_URL} (--set loss.vgg_allow_download=true).\n"
        "Or turn the loss off with loss.lambda_vgg=0, or accept randomly initialised VGG features "
        "explicitly (--set loss.vgg_random=true; the loss then no longer matches pix2pixHD's).")


def resolve_vgg_weights(path: str | os.PathLike[str] | None = None, *, allow_download: bool = False,
                        allow_random: bool = False) -> dict[str, torch.Tensor] | None:
    """Find the VGG19 ImageNet weights; returns a features-only state_dict, or None for random init.

    Order: (a) `path`, loaded with weights_only=True (a missing, unreadable or non-VGG19 file is a
    CheckpointError naming it); (b) the torch hub cache `vgg19_hub_path()`; (c) a download from
    torchvision's URL, only when `allow_download`; (d) None (random features, with a warning) when
    `allow_random`; otherwise a Pix2PixError that says how to provide the weights or turn the loss off.
    """
    if path is not None:
        raw = safe_torch_load(path, " (the --vgg-weights file)",
                              f"pass torchvision's {VGG19_FILENAME} or a VGG19 features state_dict")
        log.info("VGG19 weights: %s", path)
        return vgg19_features_state(raw, str(path))
    hub = vgg19_hub_path()
    if hub.is_file():
        raw = safe_torch_load(hub, "", f"delete it or replace it with torchvision's {VGG19_FILENAME}")
        log.info("VGG19 weights: %s (torch hub cache)", hub)
        return vgg19_features_state(raw, str(hub))
    if allow_download:
        try:
            raw = torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=True,
                                                     check_hash=True, weights_only=True)
        except Exception as exc:
            raise Pix2PixError(f"downloading {VGG19_URL} failed ({exc}).\n" + _no_weights_message(hub)) from None
        log.info("VGG19 weights: downloaded %s to %s", VGG19_URL, hub)
        return vgg19_features_state(raw, VGG19_URL)
    if allow_random:
        log.warning("VGG19 ImageNet weights not found (no --vgg-weights, nothing at %s, download not allowed): "
                    "the VGG loss uses randomly initialised features and does not match pix2pixHD's.", hub)
        return None
    raise Pix2PixError(_no_weights_message(hub))


class VGGLoss(nn.Module):
    """lambda_vgg * sum_k w_k * L1(phi_k(fake), phi_k(real).detach()), w = [1/32, 1/16, 1/8, 1/4, 1].

    `weights_source`: a state_dict (full torchvision VGG19 checkpoint or features-only, as returned
    by `resolve_vgg_weights`), a path to one, a `VGG19Features` to share, or None for random
    features (what `resolve_vgg_weights(allow_random=True)` returns when nothing is found).
    Images are in [-1, 1]; the reference feeds them as they are (the default). With
    `normalize_input` they are mapped to [0, 1] and normalised with ImageNet's mean and std.
    One-channel images are repeated to three. VGG runs in the input dtype; the L1 means are fp32
    and the result is an fp32 scalar. The VGG parameters are frozen.
    """

    def __init__(self, weights_source: Mapping[str, torch.Tensor] | str | os.PathLike[str] | VGG19Features | None,
                 *, normalize_input: bool = False, lambda_vgg: float = 10.0) -> None:
        super().__init__()
        if isinstance(weights_source, VGG19Features):
            self.vgg = weights_source
        else:
            self.vgg = VGG19Features()
            if isinstance(weights_source, (str, os.PathLike)):
                weights_source = resolve_vgg_weights(weights_source)
            if weights_source is not None:
                self.vgg.load_weights(weights_source)
        self.normalize_input = normalize_input
        self.lambda_vgg = float(lambda_vgg)
        self.layer_weights = VGG_LAYER_WEIGHTS
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def pretrained(self) -> bool:
        return bool(self.vgg.pretrained)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """What VGG sees: x itself (reference), or ImageNet-normalised ((x + 1) / 2 - mean) / std."""
        if x.dim() != 4:
            raise ConfigError(f"the VGG loss needs NCHW images, got shape {tuple(x.shape)}.")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ConfigError(f"the VGG loss needs 1- or 3-channel images, got {x.shape[1]} channels; "
                              "turn it off with loss.lambda_vgg=0.")
        if self.normalize_input:
            x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.lambda_vgg == 0:
            return torch.zeros((), dtype=torch.float32, device=fake.device)
        fake_feats = self.vgg(self.preprocess(fake))
        with torch.no_grad():  # the real features are constants: no graph kept for them
            real_feats = self.vgg(self.preprocess(real.detach()))
        loss = torch.zeros((), dtype=torch.float32, device=fake.device)
        for w, f, r in zip(self.layer_weights, fake_feats, real_feats, strict=True):
            loss = loss + w * F.l1_loss(f.float(), r.float())
        return self.lambda_vgg * loss
