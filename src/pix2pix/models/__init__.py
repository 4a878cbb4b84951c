"""Generators and discriminators; importing this package registers them by name."""

from . import crn, encoder, patchgan, pix2pixhd, resnet, unet  # noqa: F401  (registration side effects)
from .padding import run_padded, size_multiple

__all__ = ["run_padded", "size_multiple"]
