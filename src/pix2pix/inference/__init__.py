"""Inference for both families behind one interface (`BaseTranslator`); `load_translator` picks the family.

    translator = load_translator("runs/00003-facades")   # Translator (pix2pix) or LabelTranslator (pix2pixHD)
"""

from __future__ import annotations

from .base import BaseTranslator, ModelInputs, TestPair, check_options, load_translator
from .label_translator import LabelTranslator
from .translator import Translator

__all__ = ["BaseTranslator", "LabelTranslator", "ModelInputs", "TestPair", "Translator", "check_options",
           "load_translator"]
