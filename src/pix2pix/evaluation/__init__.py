"""Evaluation: image metrics against ground truth, FID/KID/LPIPS, the segmentation score.

- `metrics`: L1, PSNR, SSIM per image.
- `evaluate`: `evaluate_folders` / `evaluate_model` (what `pix2pix eval` runs) and the report files.
- `segmentation`: confusion-matrix scores and the `SegmentationModel` interface; `segmenter`: the
  library's own segmentation network (`pix2pix segmenter train`).
- `distribution` / `inception`: FID and KID through torchmetrics with the FID Inception network
  loaded from a local file, LPIPS when torchvision and its weights are present.
"""

from .evaluate import evaluate_folders, evaluate_model, write_report
from .metrics import l1_error, psnr, ssim
from .segmentation import SegmentationModel, confusion_matrix, scores_from_confusion, segmentation_score

__all__ = ["SegmentationModel", "confusion_matrix", "evaluate_folders", "evaluate_model", "l1_error", "psnr",
           "scores_from_confusion", "segmentation_score", "ssim", "write_report"]
