"""Run an exported model from PyTorch: `load_exported(folder, backend)` -> an nn.Module that stands in for the network.

    G = load_exported("facades_onnx")                       # onnxruntime for an ONNX export
    G(x)                                                    # == run_padded(eager_G, x) to 1e-4, any H and W
    G = load_exported("facades_onnx", "openvino")           # OpenVINO reads ONNX too
    E = load_exported("city_onnx", kind="encoder")          # pix2pixHD's feature encoder: E(image, instance_map)

The module carries the saved network's `arch` and the model `card`, has `size_multiple` 1 (the
graph pads itself) and no parameters; its forward takes the tensors the eager network takes:

- `ExportedGenerator(x)`: pix2pix generators, and pix2pixHD ones exported with `encoded_input`;
- `ExportedLabelGenerator(label, instance=None, features=None)`: pix2pixHD generators exported with
  their label encoding (`takes_label_maps` is True): the same output as
  `run_padded(G, cat([LabelInputs.encode(label, instance), features]))`; label ids outside
  0..label_nc-1 are the same DataError as in the eager code (unless the model has an ignore index);
- `ExportedEncoder(image, instance_map=None)`: the feature encoder, instance-averaged when a map is given.

Outputs are float32 on the input's device. onnxruntime and OpenVINO run on the CPU (inputs are
copied there and back); TorchScript runs where `.to(device)` puts it. Exported files run code
written by whoever exported them: load exports you trust, as with any model file that is not
safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.labels import one_hot
from ..errors import CheckpointError, DataError
from ..io.model_card import ModelCard
from . import backends
from .exporter import EXPORT_NAME, EXPORT_VERSION

__all__ = ["ExportedEncoder", "ExportedGenerator", "ExportedLabelGenerator", "ExportedNetwork", "is_export",
           "load_exported", "read_export"]


def is_export(path: str | Path) -> bool:
    """Whether `path` is an export folder (or a file inside one)."""
    p = Path(path)
    return (p / EXPORT_NAME).is_file() or (p.is_file() and (p.parent / EXPORT_NAME).is_file())


def read_export(path: str | Path) -> tuple[Path, dict[str, Any], ModelCard]:
    """(folder, export.json, model card) of an export folder, its export.json or a network file in it."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    meta_path = folder / EXPORT_NAME
    if not meta_path.is_file():
        raise CheckpointError(f"{folder} is not an exported model (no {EXPORT_NAME}): export it with `pix2pix export "
                              f"--model {folder} --format onnx -o {folder.name}_onnx` and pass that folder.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON ({exc}): export the model again.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("networks"), dict) or meta.get("format") not in \
            backends.FORMATS:
        raise CheckpointError(f"{meta_path} is not a pix2pix export description: export the model again.")
    if int(meta.get("format_version", 0)) > EXPORT_VERSION:
        raise CheckpointError(f"{meta_path} has format version {meta['format_version']}, newer than this library's "
                              f"{EXPORT_VERSION}: upgrade pix2pix.")
    return folder, meta, ModelCard.read(folder)


class ExportedNetwork(nn.Module):
    """An exported graph behind a module interface (see the module docstring)."""

    size_multiple = 1  # the graph pads to its network's multiple itself

    def __init__(self, runner: backends.Runner, kind: str, info: dict[str, Any], card: ModelCard, fmt: str,
                 folder: Path) -> None:
        super().__init__()
        self.runner = runner
        spec = card.network(kind)
        assert spec is not None
        self.arch = spec.to_dict(kind)
        self.card = card
        self.kind = kind
        self.format = fmt
        self.backend = runner.backend
        self.export_info = info
        self.folder = folder
        self._dtypes = [torch.int64 if i["dtype"] == "int64" else torch.float32 for i in info["inputs"]]

    def _run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        device = inputs[0].device
        on_cpu = self.backend != "torchscript"
        feed = [t.to("cpu" if on_cpu else device, dtype) for t, dtype in zip(inputs, self._dtypes, strict=True)]
        with torch.no_grad():
            outs = self.runner.run(feed)
        return [o.to(device, torch.float32) for o in outs]

    def __repr__(self) -> str:  # not the TorchScript module's tree
        return f"{type(self).__name__}({self.arch['name']}, {self.format} on {self.backend}, {self.folder})"


def _four_d(t: torch.Tensor, what: str, channels: int) -> torch.Tensor:
    if t.dim() == 3 and channels == 1:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[1] != channels:
        raise DataError(f"the {what} tensor has shape {tuple(t.shape)}; expected [B, {channels}, H, W].")
    return t


class ExportedGenerator(ExportedNetwork):
    """forward(x [B, C, H, W]) -> [B, C_out, H, W], as the eager generator run with `run_padded`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(_four_d(x, "input", self._channels(0)))[0]

    def _channels(self, i: int) -> int:
        return int(self.export_info["inputs"][i]["shape"][1])


class ExportedLabelGenerator(ExportedGenerator):
    """forward(label, instance=None, features=None) -> photo [B, 3, H, W]: pix2pixHD with its label encoding."""

    takes_label_maps = True

    def forward(self, label: torch.Tensor, instance: torch.Tensor | None = None,  # type: ignore[override]
                features: torch.Tensor | None = None) -> torch.Tensor:
        labels = self.card.labels
        assert labels is not None
        names = [i["name"] for i in self.export_info["inputs"]]
        given = {"label": label, "instance": instance, "features": features}
        missing = [n for n in names if given[n] is None]
        if missing:
            raise DataError(f"this exported pix2pixHD generator needs {' and '.join(missing)} as well.")
        extra = [n for n, v in given.items() if v is not None and n not in names]
        if extra:
            raise DataError(f"this exported pix2pixHD generator takes no {' or '.join(extra)} (it takes "
                            f"{', '.join(names)}).")
        tensors = [_four_d(given[n], n, self._channels(i)) for i, n in enumerate(names)]
        size = tensors[0].shape[0], *tensors[0].shape[-2:]
        for n, t in zip(names[1:], tensors[1:], strict=True):
            if (t.shape[0], *t.shape[-2:]) != size:
                raise DataError(f"the {n} tensor is {tuple(t.shape)} but the label map is {tuple(tensors[0].shape)}: "
                                "give maps of the same batch and size.")
        if labels.label_nc > 0:
            ids = tensors[0]
            if ids.is_floating_point() and not torch.equal(ids, ids.round()):
                raise DataError("the label tensor holds fractional values: pass integer ids.")
            if labels.ignore_index < 0 and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= labels.label_nc):
                one_hot(ids.long(), labels.label_nc)  # raises the eager code's error, naming the ids
        return self._run(*tensors)[0]


class ExportedEncoder(ExportedNetwork):
    """forward(image, instance_map=None): the encoder's features, averaged per instance when a map is given."""

    def forward(self, image: torch.Tensor, instance_map: torch.Tensor | None = None) -> torch.Tensor:
        image = _four_d(image, "image", 3)
        if instance_map is None:  # the graph always pools; one instance covering everything leaves `raw` as it is
            return self._run(image, torch.zeros(image.shape[0], 1, *image.shape[-2:], dtype=torch.int64))[0]
        inst = _four_d(instance_map, "instance", 1)
        if inst.is_floating_point():
            inst = inst.round()
        if (inst.shape[0], *inst.shape[-2:]) != (image.shape[0], *image.shape[-2:]):
            raise DataError(f"the instance map has shape {tuple(instance_map.shape)} but the image is "
                            f"{tuple(image.shape)}; pass a [B, 1, H, W] map of the same size.")
        return self._run(image, inst)[1]


def load_exported(path: str | Path, backend: str | None = None, *, kind: str = "generator",
                  threads: int | None = None, options: dict[str, Any] | None = None) -> ExportedNetwork:
    """The exported network `kind` of the export folder `path`, run by `backend` (default: the format's own).

    `threads`: the runtime's threads (default torch's); `options`: onnxruntime session options or
    OpenVINO properties (e.g. {"INFERENCE_PRECISION_HINT": "bf16"}, faster and not exact).
    """
    folder, meta, card = read_export(path)
    fmt = meta["format"]
    backend = backends.check_backend(backend or backends.DEFAULT_BACKEND[fmt], fmt)
    info = meta["networks"].get(kind)
    if info is None:
        raise CheckpointError(f"{folder} holds no exported {kind} (it has: {', '.join(meta['networks'])}).")
    file = folder / info["file"]
    if not file.is_file():
        raise CheckpointError(f"{file} is missing: the export folder is incomplete; export the model again.")
    runner = backends.make_runner(file, backend, threads, options)
    if kind == "encoder":
        cls: type[ExportedNetwork] = ExportedEncoder
    else:
        cls = ExportedLabelGenerator if info.get("graph") == "labels" else ExportedGenerator
    return cls(runner, kind, info, card, fmt, folder)
