"""Generators and discriminators; importing this package registers them by name."""

from . import crn, encoder, patchgan, pix2pixhd, resnet, unet  # noqa: F401  (registration side effects)
from .padding import run_padded, size_multiple
from .registry import (
    accepted_options,
    build_from_arch,
    create_discriminator,
    create_generator,
    list_discriminators,
    list_generators,
    register_discriminator,
    register_generator,
)

__all__ = ["accepted_options", "build_from_arch", "create_discriminator", "create_generator", "list_discriminators",
           "list_generators", "register_discriminator", "register_generator", "run_padded", "size_multiple"]
