"""pix2pix: paired image-to-image translation with conditional GANs (pix2pix and pix2pixHD).

    import pix2pix
    G = pix2pix.create_generator("unet_256")
    translator = pix2pix.Translator.from_pretrained("runs/00000-facades/model")
"""

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .errors import CheckpointError, ConfigError, DataError, Pix2PixError, TrainingDiverged  # noqa: E402
from .inference import Translator  # noqa: E402
from .io.pretrained import from_pretrained, save_pretrained  # noqa: E402
from .presets import get_preset  # noqa: E402
from .registry import create_discriminator, create_generator, list_discriminators, list_generators  # noqa: E402
from .training.trainer import train  # noqa: E402

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "Pix2PixError",
    "Translator",
    "TrainingDiverged",
    "create_discriminator",
    "create_generator",
    "from_pretrained",
    "get_preset",
    "list_discriminators",
    "list_generators",
    "save_pretrained",
    "train",
]
