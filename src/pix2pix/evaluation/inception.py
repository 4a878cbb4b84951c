"""The FID Inception network (InceptionV3 as converted from TensorFlow's 2015-12-05 graph), torch alone.

FID and KID are only comparable between papers when they use this exact network. torchmetrics
builds it through torch-fidelity, which needs torchvision (and pins its own torch), so this module
rebuilds it layer for layer with the parameter names of torch-fidelity's and pytorch-fid's
checkpoints (``pt_inception-2015-12-05-6726825d.pth`` or ``weights-inception-2015-12-05-6726825d.pth``)
and loads either from a local file with ``torch.load(weights_only=True)``; nothing is downloaded.
The network is handed to torchmetrics' `FrechetInceptionDistance` / `KernelInceptionDistance` as
their feature extractor.

Its quirks are the TF graph's: average pools that leave the padding out of the mean, and a max
pool in the last block's pool branch. Input handling follows torchmetrics' default: uint8 images
resized to 299x299 (bilinear with antialiasing), then (x - 128) / 128. The output is the 2048-d
pool3 feature.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io.reference import load_reference_state
from ..nn.state import load_state_strict, repair_legacy_state

__all__ = ["INCEPTION_FILENAMES", "INCEPTION_ENV", "FIDInceptionV3", "find_inception_weights",
           "load_fid_inception"]

# pytorch-fid's and torch-fidelity's names for the same converted weights
INCEPTION_FILENAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_ENV = "PIX2PIX_INCEPTION_WEIGHTS"
INPUT_SIZE = 299


class _Conv(nn.Module):
    """Conv (no bias) + batch norm (eps 1e-3, TF's) + ReLU; keys ``conv.*``, ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool divides by the number of real (unpadded) pixels
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):  # Mixed_5b..5d: 35x35
    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 64, 1)
        self.branch5x5_1 = _Conv(c_in, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _BlockB(nn.Module):  # Mixed_6a: 35x35 -> 17x17
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):  # Mixed_6b..6e: 17x17 with factorised 7x7 convolutions
    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 192, 1)
        self.branch7x7_1 = _Conv(c_in, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(c_in, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _BlockD(nn.Module):  # Mixed_7a: 17x17 -> 8x8
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(c_in, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(c_in, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):  # Mixed_7b (average pool branch) and Mixed_7c (max pool branch, the TF graph's)
    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(c_in, 320, 1)
        self.branch3x3_1 = _Conv(c_in, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(c_in, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """uint8 images [B, 3, H, W] (any size; floats are taken as 0..255) -> pool3 features [B, 2048].

    Always in eval mode with frozen weights. ``num_features`` tells torchmetrics the feature size.
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # the classifier: in the checkpoint, unused for FID features
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        return super().train(False)  # batch norm must keep the converted statistics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got {tuple(x.shape)}")
        x = x.to(self.fc.weight.dtype)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def _default_locations() -> list[Path]:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [hub / name for name in INCEPTION_FILENAMES]


def find_inception_weights(path: str | Path | None = None) -> Path | None:
    """The FID Inception weights: `path` (must exist), else $PIX2PIX_INCEPTION_WEIGHTS, else the torch hub
    checkpoints folder under either file name; None when there are none (nothing is downloaded)."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"Inception weights {p} do not exist: pass the path of "
                              f"{INCEPTION_FILENAMES[0]} (pytorch-fid) or {INCEPTION_FILENAMES[1]} (torch-fidelity).")
        return p
    env = os.environ.get(INCEPTION_ENV)
    if env:
        return find_inception_weights(env)
    return next((p for p in _default_locations() if p.is_file()), None)


def inception_search_text() -> str:
    """Where `find_inception_weights` looks, for messages."""
    return (f"--inception-weights FILE, ${INCEPTION_ENV}, or {' / '.join(str(p) for p in _default_locations())}")


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """FIDInceptionV3 with the converted TF weights from `path` (weights only, strict; batch-norm counters
    missing from an old file are added, as for reference checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: copy {INCEPTION_FILENAMES[0]} there (it cannot be downloaded "
                              "here) or pass --inception-weights FILE.")
    net = FIDInceptionV3()
    load_state_strict(net, repair_legacy_state(net, load_reference_state(path)), str(path))
    return net.to(device)
