"""Full-reference image metrics on tensors in [0, 1]: mean absolute error, PSNR and SSIM.

Inputs are [B, C, H, W] (or [C, H, W]) float tensors with values in [0, 1]; each
function returns one value per image ([B]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _batched(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x[None], y[None]
    return x.double(), y.double()


def l1_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image."""
    x, y = _batched(x, y)
    return (x - y).abs().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: 10 log10(range^2 / MSE); inf for identical images."""
    x, y = _batched(x, y)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 1-d Gaussian whose outer product with itself is SSIM's window (so the blur is separable)."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, averaged over channels and valid windows.

    Gaussian 11x11 window with sigma 1.5 and K1 = 0.01, K2 = 0.03 as in the original;
    images smaller than the window use a window of their own size.
    """
    x, y = _batched(x, y)
    channels = x.shape[1]
    window_size = min(window_size, x.shape[-1], x.shape[-2])
    g = _gaussian_window(window_size, sigma, x.dtype, x.device)
    rows, cols = g.view(1, 1, -1, 1).expand(channels, 1, -1, 1), g.view(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # the 2-d Gaussian as two 1-d passes: ~5x fewer operations
        return F.conv2d(F.conv2d(t, rows, groups=channels), cols, groups=channels)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)
