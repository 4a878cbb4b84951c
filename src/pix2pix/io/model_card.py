"""The model card: one typed description of a saved model, written and read in one place.

A model directory holds ``config.json`` (this card) and the weights of its networks
(``generator.safetensors``, and ``encoder.safetensors`` / ``discriminator.safetensors`` when
present). The card says everything a user of the model needs and nothing else:

- ``family``: ``pix2pix`` (image in, image out) or ``pix2pixhd`` (label map + instance map in);
- the networks: registry name, channels and keyword arguments, so they are rebuilt with no flags;
- ``data``: the geometry the model was trained with (preprocess, load/crop size, direction,
  colour space, layout), from which evaluation rebuilds its datasets;
- ``labels`` (pix2pixHD): label_nc, the label set, the ignore index, instance and class-folder use;
- ``provenance``: training step, preset and recipe, or the checkpoint it was imported from with
  its sha256, and metrics when known.

Every field is validated when read; an error names ``config.json`` and the field. Format 1
files (the library's first layout: one ``data`` dict mixing geometry and labels) still load.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..data.label_sets import LabelSet
from ..errors import CheckpointError
from .atomic import write_json

FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
WEIGHTS = {"generator": "generator.safetensors", "discriminator": "discriminator.safetensors",
           "encoder": "encoder.safetensors"}
CLUSTER_FILES = ("clusters.safetensors", "clusters.json")  # pix2pixHD feature styles (pix2pix.clusters)
FAMILIES = ("pix2pix", "pix2pixhd")
_PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


class _Fields:
    """Typed reads of one JSON object, with errors that name the file and the field."""

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        self.source, self.prefix = source, prefix
        if not isinstance(data, dict):
            raise self.error("", f"must be a JSON object, not {_kind(data)}")
        self.data = data

    def error(self, key: str, problem: str) -> CheckpointError:
        name = f"{self.prefix}{key}" if key else (self.prefix.rstrip(".") or "the top level")
        return CheckpointError(f"{self.source}: field '{name}' {problem}; fix the field or re-save the model "
                               "with save_pretrained.")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _get(self, key: str, default: Any, types: tuple[type, ...], what: str) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                raise self.error(key, "is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise self.error(key, f"must be {what}, not {_kind(value)} {_short(value)}")
        return value

    def str(self, key: str, default: Any = None, choices: tuple[str, ...] | None = None) -> Any:
        value = self._get(key, default, (str,), "a string")
        if choices and value is not None and value not in choices:
            raise self.error(key, f"is {value!r}, not one of {', '.join(choices)}")
        return value

    def int(self, key: str, default: Any = None, minimum: int | None = None) -> Any:
        value = self._get(key, default, (int,), "an integer")
        if value is not None and minimum is not None and value < minimum:
            raise self.error(key, f"is {value}, below the minimum {minimum}")
        return value

    def bool(self, key: str, default: Any = None) -> Any:
        return self._get(key, default, (bool,), "true or false")

    def dict(self, key: str, default: Any = None) -> Any:
        return self._get(key, default, (dict,), "an object")

    def sub(self, key: str) -> _Fields:
        return _Fields(self.data[key], self.source, f"{self.prefix}{key}.")


_REQUIRED = object()


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return f"({text[:40]}...)" if len(text) > 40 else f"({text})"


@dataclass(frozen=True)
class NetworkSpec:
    """How one network is built: its registry name, channels and keyword arguments."""

    name: str
    in_channels: int
    out_channels: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, net: Any) -> NetworkSpec:
        """The spec a registry-built network recorded in `net.arch`."""
        arch = getattr(net, "arch", None)
        if not isinstance(arch, dict):
            raise CheckpointError("this network was not built by create_generator/create_discriminator, so its "
                                  "architecture is unknown; build it through the registry to save it.")
        return cls(arch["name"], int(arch["in_channels"]), int(arch.get("out_channels", 1)), dict(arch["kwargs"]))

    @classmethod
    def read(cls, f: _Fields, kind: str) -> NetworkSpec:
        name = f.str("name", _REQUIRED)
        in_channels = f.int("in_channels", _REQUIRED, minimum=1)
        out_channels = f.int("out_channels", 1 if kind == "discriminator" else _REQUIRED, minimum=1)
        return cls(name, in_channels, out_channels, dict(f.dict("kwargs", _REQUIRED)))

    def to_dict(self, kind: str) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "in_channels": self.in_channels}
        if kind != "discriminator":
            d["out_channels"] = self.out_channels
        d["kwargs"] = dict(self.kwargs)
        return d


@dataclass(frozen=True)
class DataGeometry:
    """How inputs were prepared in training; evaluation and translation follow it."""

    preprocess: str = "none"  # see config.PREPROCESS_MODES
    load_size: int = 256
    crop_size: int = 256
    direction: str = "AtoB"  # pix2pix A|B data: which side is the input
    color_space: str = "rgb"  # rgb, or lab (input L, output ab)
    layout: str = "auto"  # the training data's layout (colorization: the input is the gray image)
    instance_edges: bool = False  # pix2pix: the input's last channel is an instance boundary map

    @classmethod
    def read(cls, f: _Fields) -> DataGeometry:
        crop = f.int("crop_size", 256, minimum=1)
        return cls(preprocess=f.str("preprocess", "none", _PREPROCESS), load_size=f.int("load_size", crop, minimum=1),
                   crop_size=crop, direction=f.str("direction", "AtoB", ("AtoB", "BtoA")),
                   color_space=f.str("color_space", "rgb", ("rgb", "lab")), layout=f.str("layout", "auto"),
                   instance_edges=f.bool("instance_edges", False))


@dataclass(frozen=True)
class LabelSpec:
    """pix2pixHD inputs: label ids (one-hot encoded), instance boundaries, the classes' names and colours."""

    label_nc: int = 35  # 0: the input is an RGB image
    label_set: dict[str, Any] | None = None  # LabelSet.to_classes_json()
    ignore_index: int = -1  # ids >= label_nc map to this class (-1: they are an error)
    use_instance: bool = True
    class_from_folder: bool = False

    @property
    def channels(self) -> int:
        """Conditioning channels: one-hot labels (or RGB) plus the boundary map."""
        return (self.label_nc if self.label_nc > 0 else 3) + (1 if self.use_instance else 0)

    @classmethod
    def read(cls, f: _Fields) -> LabelSpec:
        label_nc = f.int("label_nc", 35, minimum=0)
        ignore = f.int("ignore_index", -1, minimum=-1)
        if ignore >= max(label_nc, 1):
            raise f.error("ignore_index", f"is {ignore}, outside the label ids 0..{label_nc - 1}")
        label_set = f.dict("label_set", None)
        if label_set is not None:
            try:
                LabelSet.from_dict(label_set, source=f"{f.source}: field '{f.prefix}label_set'")
            except Exception as exc:  # a malformed class table names the field
                raise CheckpointError(str(exc)) from None
        return cls(label_nc=label_nc, label_set=label_set, ignore_index=ignore,
                   use_instance=f.bool("use_instance", True), class_from_folder=f.bool("class_from_folder", False))


@dataclass(frozen=True)
class Provenance:
    """Where a model came from."""

    step: int | None = None  # training steps behind the weights
    preset: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)  # the resolved training config (paths removed)
    source: str = ""  # the checkpoint (file or URL) an imported model was converted from
    sha256: str = ""  # of that checkpoint
    created: str = ""  # ISO 8601, UTC
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"test": {"mIoU": 0.61}}

    @classmethod
    def read(cls, f: _Fields) -> Provenance:
        return cls(step=f.int("step", None, minimum=0), preset=f.str("preset", ""), recipe=f.dict("recipe", {}),
                   source=f.str("source", ""), sha256=f.str("sha256", ""), created=f.str("created", ""),
                   metrics=f.dict("metrics", {}))


@dataclass(frozen=True)
class ModelCard:
    """Everything a saved model's user needs; see the module docstring."""

    family: str = "pix2pix"
    generator: NetworkSpec | None = None
    data: DataGeometry = field(default_factory=DataGeometry)
    labels: LabelSpec | None = None  # pix2pixHD only
    encoder: NetworkSpec | None = None  # pix2pixHD feature encoder (model.use_features)
    discriminator: NetworkSpec | None = None
    provenance: Provenance = field(default_factory=Provenance)

    # -- what the card implies --------------------------------------------------------------------
    @property
    def use_features(self) -> bool:
        return self.encoder is not None

    @property
    def feat_num(self) -> int:
        return self.encoder.out_channels if self.encoder is not None else 0

    @property
    def in_channels(self) -> int:
        return self.generator.in_channels if self.generator is not None else 3

    @property
    def image_channels(self) -> int:
        """The input image's channels: `in_channels` less the instance boundary channel, if any."""
        return self.in_channels - int(self.data.instance_edges)

    @property
    def out_channels(self) -> int:
        return self.generator.out_channels if self.generator is not None else 3

    def network(self, kind: str) -> NetworkSpec | None:
        return {"generator": self.generator, "encoder": self.encoder, "discriminator": self.discriminator}[kind]

    def label_set(self) -> Any:
        """The saved `LabelSet` (names and palette), or None."""
        if self.labels is None or not self.labels.label_set:
            return None
        saved = self.labels.label_set
        return LabelSet.from_dict(saved, name=saved.get("name") or "model")

    def with_network(self, kind: str, spec: NetworkSpec | None) -> ModelCard:
        return replace(self, **{kind: spec})

    # -- checks -----------------------------------------------------------------------------------
    def check(self, source: str = CONFIG_NAME) -> ModelCard:
        """Cross-field consistency (field types are checked when reading)."""
        if self.family not in FAMILIES:
            raise CheckpointError(f"{source}: field 'family' is {self.family!r}, not one of {', '.join(FAMILIES)}.")
        if self.family == "pix2pixhd":
            if self.labels is None:
                raise CheckpointError(f"{source}: a pix2pixHD model needs the 'labels' section (label_nc, ...).")
            if self.generator is not None and self.generator.in_channels != self.labels.channels + self.feat_num:
                raise CheckpointError(
                    f"{source}: field 'generator.in_channels' is {self.generator.in_channels}, but the labels give "
                    f"{self.labels.channels} channels (label_nc {self.labels.label_nc}, instance "
                    f"{self.labels.use_instance}) plus {self.feat_num} feature channels: the card is inconsistent; "
                    "re-save the model.")
            if self.encoder is not None and self.labels.use_instance is False:
                raise CheckpointError(f"{source}: the feature encoder needs instance maps, but "
                                      "'labels.use_instance' is false.")
        elif self.labels is not None:
            raise CheckpointError(f"{source}: field 'labels' belongs to pix2pixHD models; this card's family is "
                                  f"{self.family!r}.")
        if self.data.instance_edges and (self.family != "pix2pix" or self.image_channels not in (1, 3)):
            raise CheckpointError(f"{source}: field 'data.instance_edges' is true, so 'generator.in_channels' must be "
                                  f"a 1- or 3-channel image plus the boundary channel (got {self.in_channels}, family "
                                  f"{self.family!r}): the card is inconsistent; re-save the model.")
        return self

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format_version": FORMAT_VERSION, "library": "pix2pix", "family": self.family}
        for kind in WEIGHTS:
            spec = self.network(kind)
            if spec is not None:
                out[kind] = spec.to_dict(kind)
        out["data"] = asdict(self.data)
        if self.labels is not None:
            out["labels"] = asdict(self.labels)
        out["provenance"] = asdict(self.provenance)
        return out

    @classmethod
    def from_dict(cls, config: Any, source: str = CONFIG_NAME) -> ModelCard:
        """Validate and read a config.json dict (format 1 or 2)."""
        top = _Fields(config, source)
        version = top.int("format_version", _REQUIRED, minimum=1)
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{source} has format version {version}, newer than this library's "
                                  f"{FORMAT_VERSION}: upgrade pix2pix.")
        read = _read_v1 if version == 1 else _read_v2
        card = read(top)
        if card.generator is None and card.encoder is None and card.discriminator is None:
            raise CheckpointError(f"{source} describes no network (no 'generator', 'encoder' or 'discriminator'): "
                                  "pass a directory written by save_pretrained.")
        return card.check(source)

    @classmethod
    def read(cls, directory: str | Path) -> ModelCard:
        """The card of a model directory."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            hint = (" (a training run keeps its model in RUN_DIR/model)"
                    if (Path(directory) / "stats.jsonl").exists() else "")
            raise CheckpointError(f"{path} does not exist: pass a directory written by save_pretrained{hint}.")
        try:
            config = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc}): restore it or re-save the model.") from None
        return cls.from_dict(config, str(path))

    def write(self, directory: str | Path) -> Path:
        """Write config.json (atomically) into `directory`; returns its path."""
        path = Path(directory) / CONFIG_NAME
        write_json(path, self.check(str(path)).to_dict())
        return path


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _networks(top: _Fields) -> dict[str, NetworkSpec | None]:
    return {kind: NetworkSpec.read(top.sub(kind), kind) if top.has(kind) else None for kind in WEIGHTS}


def _read_v2(top: _Fields) -> ModelCard:
    family = top.str("family", _REQUIRED, FAMILIES)
    data = DataGeometry.read(top.sub("data")) if top.has("data") else DataGeometry()
    labels = LabelSpec.read(top.sub("labels")) if top.has("labels") else None
    provenance = Provenance.read(top.sub("provenance")) if top.has("provenance") else Provenance()
    return ModelCard(family=family, data=data, labels=labels, provenance=provenance, **_networks(top))


def _read_v1(top: _Fields) -> ModelCard:
    """The first layout: geometry, labels and feature settings in one `data` dict; step / imported_from on top."""
    d = top.sub("data") if top.has("data") else _Fields({}, top.source, "data.")
    family = d.str("family", "pix2pix", FAMILIES)
    networks = _networks(top)
    labels = None
    if family == "pix2pixhd":
        labels = LabelSpec.read(d)
        if not d.bool("use_features", False):
            networks["encoder"] = None
    provenance = Provenance(step=top.int("step", None, minimum=0), source=top.str("imported_from", ""))
    return ModelCard(family=family, data=DataGeometry.read(d), labels=labels, provenance=provenance, **networks)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file (the checkpoint an imported model came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """A training config as a card records it: without local paths (data root, runs folder, load_global)."""
    recipe = json.loads(json.dumps(config))
    for section, key in (("data", "root"), ("train", "runs_dir"), ("train", "load_global"), ("loss", "vgg_weights")):
        recipe.get(section, {}).pop(key, None)
    return recipe

