"""Evaluation: image metrics against ground truth."""

from .metrics import l1_error, psnr, ssim

__all__ = ["l1_error", "psnr", "ssim"]
