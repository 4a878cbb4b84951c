"""One translator interface for both families: load by path or name, translate, describe the inputs.

    translator = load_translator("runs/00003-facades")        # or a model dir, a published name, hf://...
                                                               # (pix2pix.inference.load_translator)
    translator.inputs()                                        # what it takes: channels, label set, instances, ...
    translator(image)                                          # one image (PIL / array / tensor)
    translator.translate_files(paths, "out/", **options)       # files, batched where sizes agree
    for pair in translator.test_pairs("data/", "test"): ...     # a split translated for evaluation

`load_translator` answers "which family is this model?" once, from the model card, and returns
a `Translator` (pix2pix: images in) or a `LabelTranslator` (pix2pixHD: label + instance maps in).
Callers (CLI, evaluation, the editor, the demo) use only this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ..errors import CheckpointError, ConfigError
from ..export.backends import DEFAULT_BACKEND
from ..export.runtime import is_export, load_exported, read_export
from ..io.model_card import ModelCard
from ..io.model_dir import resolve_model_dir
from ..io.pretrained import load_network
from ..runtime import as_device


@dataclass(frozen=True)
class ModelInputs:
    """What a model takes, for a user interface or a caller that must prepare inputs."""

    family: str
    in_channels: int  # pix2pix: image channels; pix2pixHD: conditioning channels (one-hot + boundary)
    out_channels: int
    label_set: Any = None  # LabelSet of the classes (pix2pixHD models save one), or None
    label_ids: bool = False  # the input is a map of class ids (pix2pixHD with label_nc > 0)
    instances: bool = False  # instance maps are used (boundaries and/or features)
    features: bool = False  # per-instance style features are needed (the feature encoder)
    clusters: Any = None  # Clusters available for feature modes "cluster" / "random"
    feature_modes: tuple[str, ...] = ()


@dataclass
class TestPair:
    """One item of a split, translated: what evaluation saves and scores."""

    key: str  # file stem (Cityscapes prefix for label maps)
    input: Image.Image  # what the model saw, as a picture (a label map in its palette's colours)
    fake: Image.Image
    real: Image.Image
    label_ids: np.ndarray | None = None  # int64 [H, W] class ids of the input, when asked for (IGNORE = -1)


FAMILY_TRANSLATORS: dict[str, type[BaseTranslator]] = {}  # filled as the family classes are defined


class BaseTranslator(ABC):
    """A saved model ready to translate; see the module docstring."""

    family: ClassVar[str]
    # keyword options of `load_translator` / `from_pretrained` this family takes
    load_options: ClassVar[frozenset[str]] = frozenset()
    # keyword options of `translate_files`
    file_options: ClassVar[frozenset[str]] = frozenset()

    card: ModelCard
    device: torch.device
    model_dir: Path | None = None

    @classmethod
    @abstractmethod
    def from_card(cls, model_dir: Path, card: ModelCard, *, device: str | torch.device = "auto",
                  **options: Any) -> BaseTranslator:
        """Load the networks of `model_dir` described by `card`."""

    @classmethod
    def from_pretrained(cls, model: str | Path, *, device: str | torch.device = "auto",
                        **options: Any) -> BaseTranslator:
        """Load a model directory, run directory, published name or hf:// model of this family."""
        return _load(model, device, options, family=cls.family)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        FAMILY_TRANSLATORS[cls.family] = cls

    @abstractmethod
    def inputs(self) -> ModelInputs:
        """What the model takes (see `ModelInputs`)."""

    @abstractmethod
    def __call__(self, *inputs: Any, **options: Any) -> Any:
        """Translate one input (PIL in -> PIL out, arrays -> arrays or PIL, tensors -> tensors)."""

    @abstractmethod
    def translate_files(self, paths: Sequence[Path], out_dir: str | Path, *, progress: bool = False,
                        log: Callable[[str], None] | None = None, **options: Any) -> list[Path]:
        """Translate input files into `out_dir` (PNG, named by the input's stem); returns the written paths.

        `options` are the family's (`file_options`); `log` receives notes for the user (e.g. which
        instance maps were found)."""

    @abstractmethod
    def test_pairs(self, root: str | Path, phase: str = "test", *, label_set: Any = None,
                   progress: bool = False) -> Iterator[TestPair]:
        """Every item of the `phase` split of `root`, prepared as at test time and translated.

        With `label_set`, each pair also carries the class ids of its input (for the segmentation score).
        """

    def describe(self) -> str:
        name = self.card.generator.name if self.card.generator is not None else "?"
        return f"{self.family} model {self.model_dir or ''} ({name})".replace(" ()", "")


def check_options(options: dict[str, Any], allowed: frozenset[str], family: str, what: str) -> None:
    """Options another family takes are a one-line error naming them."""
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        other = "pix2pixHD label-map" if family == "pix2pix" else "pix2pix image"
        raise ConfigError(f"{', '.join(unknown)} {'applies' if len(unknown) == 1 else 'apply'} to {other} models; "
                          f"this is a {family} model (it takes: {', '.join(sorted(allowed)) or 'no options'} "
                          f"to {what}).")


def _load(model: str | Path, device: str | torch.device, options: dict[str, Any],
          family: str | None = None) -> BaseTranslator:
    """The one loading path: resolve `model`, read its card, pick the family's class, check the options."""
    model_dir = resolve_model_dir(model, progress=True)
    card = ModelCard.read(model_dir)
    if family is not None and card.family != family:
        raise CheckpointError(f"{model_dir} holds a {card.family} model, not {family}: use load_translator, which "
                              "picks the right translator.")
    cls = FAMILY_TRANSLATORS[card.family]
    log, images = options.pop("log", None), options.pop("images", None)
    options = {k: v for k, v in options.items() if v is not None}
    check_options(options, cls.load_options, cls.family, "load")
    dev = as_device(device)
    model_dir, options["backend"] = resolve_backend(model_dir, options.get("backend"), device=dev,
                                                    paper_mode=bool(options.get("paper_mode")), images=images,
                                                    log=log)
    return cls.from_card(model_dir, card, device=dev, **options)


BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "torchscript")


def resolve_backend(model_dir: Path, backend: str | None, *, device: torch.device | str = "cpu",
                    paper_mode: bool = False, images: int | None = None,
                    log: Callable[[str], Any] | None = None) -> tuple[Path, str]:
    """(folder, backend) that run `model_dir`.

    An export folder (`pix2pix export`, parity-checked to 1e-4 when written) runs on its format's runtime
    (OpenVINO, onnxruntime, TorchScript) unless a backend is named. A model directory runs on PyTorch, except
    with `auto` (`pix2pix translate`'s default) on the CPU for a job of `images` images (None: many): then on its
    cached ONNX export through onnxruntime, the fastest exact CPU runtime (`pix2pix.export.cache`: used from
    USE_FROM_IMAGES images, made from EXPORT_FROM_IMAGES), or on PyTorch when the export cannot be made or the
    paper's test protocol (dropout on) needs the eager network.
    """
    if backend not in (None, "auto"):
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r}: use one of {', '.join(BACKENDS)}.")
        return model_dir, backend
    if is_export(model_dir):
        return model_dir, DEFAULT_BACKEND[read_export(model_dir)[1]["format"]]
    if backend == "auto" and torch.device(device).type == "cpu" and not paper_mode:
        from ..export import cache

        many = images is None or images >= cache.EXPORT_FROM_IMAGES
        if images is None or images >= cache.USE_FROM_IMAGES:
            exported = cache.cached_export(model_dir, log, create=many)
            if exported is not None:
                return exported, cache.BACKEND
    return model_dir, "torch"


def load_networks(model_dir: Path, card: ModelCard, backend: str,
                  device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(generator, feature encoder or None): the saved weights on PyTorch, or an export folder's graphs on
    `backend`, which map the same tensors to the same outputs (eval mode)."""
    if backend == "torch":
        if is_export(model_dir):
            raise ConfigError(f"{model_dir} is an export folder (no PyTorch weights): use --backend auto, or --model "
                              "the model directory it was exported from.")
        encoder = load_network(model_dir, card, "encoder", device) if card.use_features else None
        return load_network(model_dir, card, "generator", device), encoder
    from ..export.cache import runner_options

    options = runner_options(model_dir, backend)
    encoder = load_exported(model_dir, backend, kind="encoder", options=options) if card.use_features else None
    return load_exported(model_dir, backend, options=options), encoder


def load_translator(model: str | Path, *, device: str | torch.device = "auto", **options: Any) -> BaseTranslator:
    """The translator of the model's family (read from its card); an option of the other family is an error.

    `model`: a model directory, a run directory, a published model name or hf://org/name.
    """
    return _load(model, device, options)
