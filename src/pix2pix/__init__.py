"""pix2pix: paired image-to-image translation with conditional GANs (pix2pix and pix2pixHD).

    import pix2pix
    G = pix2pix.create_generator("unet_256")
    translator = pix2pix.load_translator("runs/00000-facades")   # either family
    translator = pix2pix.Translator.from_pretrained("runs/00000-facades/model")

The names below are imported on first use, so `import pix2pix` (and the command line's start-up)
does not load torch or the trainer until they are needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors", "Pix2PixError": "errors",
    "TrainingDiverged": "errors",
    "Config": "config",
    "get_preset": "presets",
    "create_discriminator": "models", "create_generator": "models", "list_discriminators": "models",
    "list_generators": "models",
    "ModelCard": "io.model_card",
    "from_pretrained": "io.pretrained", "save_pretrained": "io.pretrained",
    "LabelTranslator": "inference", "Translator": "inference", "load_translator": "inference",
    "train": "training.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pix2pix' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
