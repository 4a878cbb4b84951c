"""Distribution metrics through torchmetrics: FID, KID (on features of any extractor) and LPIPS.

Features are computed once per image by the extractor (the FID Inception network of
`pix2pix.evaluation.inception`, or any `nn.Module` mapping uint8 [B, 3, H, W] to [B, d]) and fed
to torchmetrics' `FrechetInceptionDistance` and `KernelInceptionDistance` through an identity
module, so FID and KID share one pass over the images.

torchmetrics is an optional dependency (``pip install pix2pix[eval]``); the functions here say so
when it is missing. LPIPS uses torchmetrics' implementation, whose AlexNet / VGG / SqueezeNet
backbones come from torchvision with ImageNet weights: without torchvision, or without the
backbone's weights in the torch hub cache (they are never downloaded here), LPIPS is reported as
unavailable with the reason.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["FeatureSets", "Precomputed", "frechet_distance", "kernel_distance", "lpips_metric", "lpips_unavailable",
           "require_torchmetrics"]

# torchvision's ImageNet checkpoints of LPIPS's backbones, looked for in <torch hub>/checkpoints
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                        "squeeze": "squeezenet1_1-b8a52dc0.pth"}


def require_torchmetrics(what: str) -> None:
    if importlib.util.find_spec("torchmetrics") is None:
        raise ConfigError(f"{what} needs torchmetrics: pip install 'pix2pix[eval]' (or pip install torchmetrics).")


class Precomputed(nn.Module):
    """The identity, posing as a feature extractor: torchmetrics receives features computed beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)  # torchmetrics reads the feature size from this attribute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class FeatureSets:
    """Features of the real and the generated images, accumulated batch by batch."""

    extractor: nn.Module
    real: list[torch.Tensor] = field(default_factory=list)
    fake: list[torch.Tensor] = field(default_factory=list)

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        """images: uint8 [B, 3, H, W]."""
        device = next(self.extractor.parameters(), torch.empty(0)).device
        feats = self.extractor(images.to(device))
        if feats.dim() != 2 or feats.shape[0] != images.shape[0]:
            raise ConfigError(f"the feature extractor returned {tuple(feats.shape)} for {images.shape[0]} images: "
                              "it must map [B, 3, H, W] to [B, d].")
        (self.real if real else self.fake).append(feats.detach().double().cpu())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(self.real), torch.cat(self.fake)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """torchmetrics' FID between two feature sets [N, d] and [M, d] (each needs at least 2 rows)."""
    require_torchmetrics("FID")
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=Precomputed(real.shape[1]), reset_real_features=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subset_size: int, subsets: int = 100,
                    seed: int = 0) -> tuple[float, float]:
    """torchmetrics' KID (mean, std over random subsets), seeded so that it is reproducible."""
    require_torchmetrics("KID")
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # "KID keeps all features in memory": it is meant to, here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subsets=subsets,
                                         subset_size=subset_size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def lpips_unavailable(net: str = "alex") -> str | None:
    """Why LPIPS cannot run here (None when it can): torchmetrics, torchvision or the backbone weights missing."""
    if net not in LPIPS_BACKBONE_FILES:
        raise ConfigError(f"LPIPS network {net!r}: use one of {', '.join(LPIPS_BACKBONE_FILES)}.")
    if importlib.util.find_spec("torchmetrics") is None:
        return "torchmetrics is not installed (pip install 'pix2pix[eval]')"
    if importlib.util.find_spec("torchvision") is None:
        return (f"torchmetrics builds LPIPS's {net} backbone from torchvision, which is not installed; install the "
                f"torchvision build matching your torch and put {LPIPS_BACKBONE_FILES[net]} in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}")
    weights = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]
    if not weights.is_file():
        return f"the {net} backbone's ImageNet weights {weights} are missing (they are not downloaded here)"
    return None


def lpips_metric(net: str = "alex") -> nn.Module:
    """torchmetrics' LPIPS (inputs in [0, 1], averaged over the images); check `lpips_unavailable` first."""
    reason = lpips_unavailable(net)
    if reason:
        raise ConfigError(f"LPIPS is unavailable: {reason}.")
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True, reduction="mean")
