"""sRGB <-> CIE Lab conversion (D65, 2° observer) in numpy and torch.

The conventions are those of scikit-image's ``rgb2lab``/``lab2rgb`` (which the reference
pytorch-CycleGAN-and-pix2pix colorization mode uses): L in [0, 100], a and b roughly in
[-110, 110]. The reference normalisation for the networks is ``A = L / 50 - 1`` and
``B = ab / 110``; `normalize_lab_tensor` / `denormalize_lab_tensor` implement it.

numpy functions work on uint8 images [..., 3]; torch functions work on float tensors
[B, 3, H, W] with RGB in [0, 1] and are differentiable (used at training/inference time).
"""

from __future__ import annotations

import numpy as np
import torch

# sRGB primaries -> XYZ, the matrix scikit-image uses (so values match it to float precision).
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
# D65 reference white for the 2° observer.
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])

# CIE constants: f(t) = t^(1/3) above (6/29)^3, a linear segment below it.
_EPSILON = 0.008856
_KAPPA_SLOPE = 7.787
_F_OFFSET = 16.0 / 116.0
_F_BREAK = 0.2068966  # f(_EPSILON), where the inverse switches from cube to linear

# Normalisation of the reference colorization model: L/50 - 1 in [-1, 1], ab/110 in about [-1, 1].
L_SCALE = 50.0
AB_SCALE = 110.0


# ---------------------------------------------------------------------------------------- numpy


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (or [0, 1] float) sRGB array [..., 3] -> float64 Lab array [..., 3]."""
    arr = np.asarray(rgb)
    _check_last_axis(arr, "rgb_to_lab")
    c = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = linear @ _XYZ_FROM_RGB.T / _WHITE_D65
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), _KAPPA_SLOPE * xyz + _F_OFFSET)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Lab array [..., 3] -> uint8 sRGB array [..., 3] (out-of-gamut colours are clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    _check_last_axis(lab, "lab_to_rgb")
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    # A negative fz has no real XYZ; scikit-image clips it to 0 as well.
    fz = np.maximum(fy - lab[..., 2] / 200.0, 0.0)
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f > _F_BREAK, f**3, (f - _F_OFFSET) / _KAPPA_SLOPE) * _WHITE_D65
    linear = xyz @ _RGB_FROM_XYZ.T
    # Clip before the power so negative (out-of-gamut) values cannot produce NaN.
    linear = np.clip(linear, 0.0, None)
    srgb = np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return np.round(np.clip(srgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_last_axis(arr: np.ndarray, name: str) -> None:
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"{name} expects an array whose last axis has 3 channels, got shape {arr.shape}")


# ---------------------------------------------------------------------------------------- torch


def _matrix(m: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(m, dtype=like.dtype, device=like.device)


def rgb_to_lab_tensor(rgb: torch.Tensor) -> torch.Tensor:
    """RGB tensor [B, 3, H, W] in [0, 1] -> Lab tensor [B, 3, H, W] (same conventions as `rgb_to_lab`)."""
    _check_channels(rgb, "rgb_to_lab_tensor")
    c = rgb.clamp(0.0, 1.0)
    # torch.where evaluates both branches: clamp the power's base so gradients stay finite.
    linear = torch.where(c > 0.04045, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _matrix(_XYZ_FROM_RGB, c), linear)
    xyz = xyz / _matrix(_WHITE_D65, c).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPSILON, xyz.clamp(min=_EPSILON) ** (1.0 / 3.0), _KAPPA_SLOPE * xyz + _F_OFFSET)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb_tensor(lab: torch.Tensor) -> torch.Tensor:
    """Lab tensor [B, 3, H, W] -> RGB tensor [B, 3, H, W] in [0, 1] (out-of-gamut colours clipped)."""
    _check_channels(lab, "lab_to_rgb_tensor")
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = fy + lab[:, 1] / 500.0
    fz = (fy - lab[:, 2] / 200.0).clamp(min=0.0)
    f = torch.stack([fx, fy, fz], dim=1)
    xyz = torch.where(f > _F_BREAK, f**3, (f - _F_OFFSET) / _KAPPA_SLOPE)
    xyz = xyz * _matrix(_WHITE_D65, lab).view(1, 3, 1, 1)
    linear = torch.einsum("ij,bjhw->bihw", _matrix(_RGB_FROM_XYZ, lab), xyz).clamp(min=0.0)
    srgb = torch.where(
        linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear
    )
    return srgb.clamp(0.0, 1.0)


def normalize_lab_tensor(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab [B, 3, H, W] -> (A = L/50 - 1 [B, 1, H, W], B = ab/110 [B, 2, H, W]), the reference scaling."""
    return lab[:, :1] / L_SCALE - 1.0, lab[:, 1:] / AB_SCALE


def denormalize_lab_tensor(light: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize_lab_tensor`: (A [B, 1, H, W], B [B, 2, H, W]) -> Lab [B, 3, H, W]."""
    return torch.cat([(light + 1.0) * L_SCALE, ab * AB_SCALE], dim=1)


def _check_channels(t: torch.Tensor, name: str) -> None:
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"{name} expects a tensor [B, 3, H, W], got shape {tuple(t.shape)}")


def lab_image_tensors(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB [H, W, 3] -> the colorization model's (input L [1, H, W], target ab [2, H, W])."""
    lab = torch.from_numpy(rgb_to_lab(rgb).astype(np.float32).transpose(2, 0, 1).copy())[None]
    light, ab = normalize_lab_tensor(lab)
    return light[0], ab[0]


def lab_channels_to_rgb(light: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The model's normalised L and ab ([1|B, ...] or [B, 1|2, H, W]) -> RGB in [-1, 1], same batching."""
    single = light.dim() == 3
    if single:
        light, ab = light[None], ab[None]
    rgb = lab_to_rgb_tensor(denormalize_lab_tensor(light.float(), ab.float())) * 2.0 - 1.0
    return rgb[0] if single else rgb
