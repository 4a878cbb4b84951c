"""The network registry's public name: `create_generator`, `create_discriminator` and the decorators.

It lives in `pix2pix.models.registry`, beside the networks that register themselves in it;
importing this module imports `pix2pix.models`, so every built-in network is registered.
"""

from .models import (  # noqa: F401
    accepted_options,
    build_from_arch,
    create_discriminator,
    create_generator,
    list_discriminators,
    list_generators,
    register_discriminator,
    register_generator,
)
from .models.registry import DISCRIMINATORS, GENERATORS  # noqa: F401
