"""Inference: `Translator.from_pretrained(dir)(image)`, `LabelTranslator` for pix2pixHD, `load_translator`."""

from .label_translator import LabelTranslator, load_translator
from .translator import Translator

__all__ = ["LabelTranslator", "Translator", "load_translator"]
