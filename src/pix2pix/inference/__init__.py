"""Inference: `Translator.from_pretrained(dir)(image)`."""

from .translator import Translator

__all__ = ["Translator"]
