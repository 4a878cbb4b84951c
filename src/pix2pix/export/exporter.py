"""Export a saved model's networks to ONNX, TorchScript or OpenVINO, checked against eager PyTorch.

    result = export_model("runs/00003-facades/model", "facades_onnx", "onnx")
    G = load_exported("facades_onnx")            # pix2pix.export.load_exported: a drop-in generator

The output folder holds, written together or not at all (a temporary folder beside it, renamed
into place after the parity check passes):

- ``generator.<ext>`` and, for pix2pixHD models with the feature encoder, ``encoder.<ext>``;
- ``config.json``: the model card, so the folder describes its model as a model directory does;
- ``export.json``: format, files, graph inputs and outputs, sizes checked and parity figures;
- the model's ``clusters.safetensors`` / ``clusters.json`` when it has them (feature styles).

Graphs (see `graphs`): pix2pix generators take the image tensor [B, C, H, W] in [-1, 1]; pix2pixHD
generators take the label ids (+ instance ids) (+ feature maps) with the one-hot encoding and
boundary map inside, or, with ``encoded_input=True``, the encoded tensor the eager generator takes.
The encoder takes (image, instance ids) and returns (raw features, instance-averaged features).
Every graph pads to the generator's multiple inside and crops back, so any H and W work.
Clusters and the per-instance feature map built from them stay outside the graph
(`pix2pix.inference.feature_map` builds the `features` input).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..data.label_inputs import LabelInputs
from ..errors import ConfigError
from ..io.model_card import CLUSTER_FILES, CONFIG_NAME, ModelCard, NetworkSpec, utc_now
from ..io.model_dir import resolve_model_dir
from ..io.pretrained import load_network
from ..models import run_padded, size_multiple
from ..models.encoder import instance_average
from . import backends
from .graphs import EncoderGraph, LabelGraph, PaddedGraph
from .parity import (
    METRIC,
    THRESHOLD,
    ExportError,
    InputSpec,
    ParityCheck,
    default_sizes,
    random_inputs,
    relative_difference,
)

EXPORT_NAME = "export.json"
EXPORT_VERSION = 1

__all__ = ["EXPORT_NAME", "ExportResult", "NetworkGraph", "export_generator", "export_model", "network_graphs"]


@dataclass
class NetworkGraph:
    """One network to export: the module traced, its inputs and outputs, and the eager computation it must match."""

    kind: str  # generator or encoder (the file stem)
    module: nn.Module
    inputs: list[InputSpec]
    outputs: list[str]
    eager: Callable[..., Sequence[torch.Tensor]]
    multiple: int
    graph: str  # what the input is: image, labels or encoded
    description: str = ""


@dataclass
class ExportResult:
    folder: Path
    format: str
    files: list[Path]
    checks: dict[str, list[ParityCheck]] = field(default_factory=dict)


def _hd_label_inputs(card: ModelCard) -> list[InputSpec]:
    labels = card.labels
    assert labels is not None
    specs = [InputSpec("label", "label", 1, labels.label_nc) if labels.label_nc > 0 else InputSpec("label", "image", 3)]
    if labels.use_instance:
        specs.append(InputSpec("instance", "instance", 1))
    if card.feat_num:
        specs.append(InputSpec("features", "features", card.feat_num))
    return specs


def network_graphs(card: ModelCard, generator: nn.Module, encoder: nn.Module | None = None, *,
                   encoded_input: bool = False) -> list[NetworkGraph]:
    """The graphs `export_model` writes for a model with this card (see the module docstring)."""
    generator = generator.eval()
    m = size_multiple(generator)
    out = ["image"]
    if card.family != "pix2pixhd" or encoded_input:
        what = "encoded" if card.family == "pix2pixhd" else "image"
        graphs = [NetworkGraph("generator", PaddedGraph(generator, m),
                               [InputSpec("input", "image", card.in_channels)],
                               out, lambda x: [run_padded(generator, x)], m, what,
                               f"input [B, {card.in_channels}, H, W] float in [-1, 1] -> image [B, "
                               f"{card.out_channels}, H, W] in [-1, 1]")]
    else:
        labels = card.labels
        assert labels is not None
        ignore = labels.ignore_index if labels.ignore_index >= 0 else None
        encode = LabelInputs(labels.label_nc, labels.use_instance, ignore)
        specs = _hd_label_inputs(card)

        def eager_hd(*inputs: torch.Tensor) -> list[torch.Tensor]:
            cond = encode.encode(inputs[0], inputs[1] if labels.use_instance else None)
            if card.feat_num:
                cond = torch.cat([cond, inputs[-1]], 1)
            return [run_padded(generator, cond)]

        module = LabelGraph(generator, m, label_nc=labels.label_nc, use_instance=labels.use_instance,
                            ignore_index=ignore, feat_num=card.feat_num)
        desc = ", ".join(f"{s.name} [B, {s.channels}, H, W] {s.dtype}" for s in specs)
        graphs = [NetworkGraph("generator", module, specs, out, eager_hd, m, "labels",
                               f"{desc} -> image [B, {card.out_channels}, H, W] in [-1, 1]; one-hot encoding, "
                               "boundary map and padding inside the graph")]
    if encoder is not None:
        encoder = encoder.eval()
        me = size_multiple(encoder)

        def eager_encoder(image: torch.Tensor, instance: torch.Tensor) -> list[torch.Tensor]:
            raw = run_padded(encoder, image)
            return [raw, instance_average(raw, instance)]

        graphs.append(NetworkGraph(
            "encoder", EncoderGraph(encoder, me),
            [InputSpec("image", "image", 3), InputSpec("instance", "instance", 1)], ["features", "pooled"],
            eager_encoder, me, "image",
            "image [B, 3, H, W] in [-1, 1], instance [B, 1, H, W] int64 -> features and their per-instance "
            "means, [B, feat_num, H, W] each"))
    return graphs


def _parse_sizes(sizes: Sequence[str | tuple[int, int]] | None) -> list[tuple[int, int]] | None:
    if sizes is None:
        return None
    out = []
    for s in sizes:
        if isinstance(s, str):
            h, sep, w = s.lower().partition("x")
            if not sep or not h.strip().isdigit() or not w.strip().isdigit() or int(h) < 1 or int(w) < 1:
                raise ConfigError(f"size {s!r} is not HEIGHTxWIDTH (e.g. 256x256).")
            out.append((int(h), int(w)))
        else:
            out.append((int(s[0]), int(s[1])))
    if len(out) != 2:
        raise ConfigError(f"give two check sizes (HxW,HxW), not {len(out)}.")
    return out


def _check_sizes(graph: NetworkGraph, sizes: list[tuple[int, int]] | None) -> list[tuple[int, int, int]]:
    if sizes is not None:
        return [(1, *sizes[0]), (2, *sizes[1])]

    def runs(h: int, w: int) -> bool:
        try:
            with torch.no_grad():
                graph.eager(*random_inputs(graph.inputs, 1, h, w, seed=0))
            return True
        except (RuntimeError, ValueError):
            return False

    return default_sizes(graph.multiple, runs)


def _parity(graph: NetworkGraph, runner: backends.Runner, sizes: list[tuple[int, int, int]]) -> list[ParityCheck]:
    checks = []
    for i, (b, h, w) in enumerate(sizes):
        inputs = random_inputs(graph.inputs, b, h, w, seed=1 + i)
        with torch.no_grad():
            expected = graph.eager(*inputs)
        got = runner.run(inputs)
        pairs = [relative_difference(g.float(), e.float()) for g, e in zip(got, expected, strict=True)] \
            if len(got) == len(expected) else [(float("inf"), float("inf"))]
        checks.append(ParityCheck([list(t.shape) for t in inputs], max(p[0] for p in pairs),
                                  max(p[1] for p in pairs)))
    return checks


def _versions(fmt: str, backend: str) -> dict[str, str]:
    import importlib.metadata as md

    out = {"pix2pix": __version__, "torch": torch.__version__}
    for pkg in {"onnx": ("onnx",), "openvino": ("onnx", "openvino"), "torchscript": ()}[fmt] + (backend,):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _prepare_output(out: Path) -> None:
    if out.is_file():
        raise ConfigError(f"{out} is a file: -o takes a folder for the exported model.")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_NAME).is_file():
        raise ConfigError(f"{out} exists and is not an exported model (no {EXPORT_NAME}): choose a new -o folder "
                          "or empty it.")


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder to `out`, replacing an earlier export there as a whole."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.with_name(f".{out.name}.{secrets.token_hex(4)}.old")
        os.replace(out, old)
    try:
        os.replace(tmp, out)  # also replaces an empty folder
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_graphs(graphs: Sequence[NetworkGraph], card: ModelCard, out: str | Path, fmt: str = "onnx", *,
                  sizes: Sequence[str | tuple[int, int]] | None = None, backend: str | None = None,
                  extra_files: Sequence[Path] = (), log: Callable[[str], Any] | None = print) -> ExportResult:
    """Write `graphs` in format `fmt` into the folder `out`, after checking each against eager PyTorch.

    `sizes`: the two (height, width) check sizes (default: derived from each network's multiple);
    `backend`: the runtime that runs the check (default: the format's own). A check above
    `THRESHOLD` raises ExportError and leaves `out` as it was.
    """
    backends.check_format(fmt)
    backend = backends.check_backend(backend or backends.DEFAULT_BACKEND[fmt], fmt)
    out = Path(out)
    _prepare_output(out)
    wanted = _parse_sizes(sizes)
    say = log or (lambda _: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        meta_networks: dict[str, Any] = {}
        files: list[Path] = []
        result = ExportResult(out, fmt, [])
        for graph in graphs:
            check_sizes = _check_sizes(graph, wanted)
            example = random_inputs(graph.inputs, *check_sizes[0], seed=0)
            written = backends.write_graph(graph.module, example, fmt, tmp, graph.kind,
                                           [s.name for s in graph.inputs], graph.outputs)
            runner = backends.make_runner(written[0], backend)
            checks = _parity(graph, runner, check_sizes)
            del runner
            result.checks[graph.kind] = checks
            say(f"parity of {graph.kind} ({backend} against eager PyTorch, {METRIC}, limit {THRESHOLD:g}):")
            for c in checks:
                b, _, h, w = c.shapes[0]
                say(f"  batch {b}, {h}x{w}: max relative {c.max_rel:.2e} (max absolute {c.max_abs:.2e})"
                    f"{'' if c.passed else '  FAILED'}")
            failed = [c for c in checks if not c.passed]
            if failed:
                worst = max(failed, key=lambda c: c.max_rel)
                raise ExportError(f"{graph.kind} exported to {fmt} differs from eager PyTorch by {worst.max_rel:.2e} "
                                  f"(relative, limit {THRESHOLD:g}) on inputs of shape {worst.shapes[0]}; nothing "
                                  f"was written to {out}. Try another --format, or report the architecture.")
            files += written
            meta_networks[graph.kind] = {
                "file": written[0].name, "files": [p.name for p in written], "graph": graph.graph,
                "description": graph.description,
                "inputs": [s.to_dict() for s in graph.inputs],
                "outputs": [{"name": n, "dtype": "float32", "shape": ["batch", "channels", "height", "width"]}
                            for n in graph.outputs],
                "size_multiple": graph.multiple,
                "padding": (f"inside the graph: bottom/right to a multiple of {graph.multiple} (reflect; replicate "
                            "when a pad is not shorter than its side), output cropped back") if graph.multiple > 1
                           else "none needed",
                "parity": {"backend": backend, "metric": METRIC, "threshold": THRESHOLD,
                           "checks": [c.to_dict() for c in checks]},
            }
        card.write(tmp)
        for extra in extra_files:
            shutil.copy2(extra, tmp / extra.name)
        meta = {"format_version": EXPORT_VERSION, "library": "pix2pix", "format": fmt, "created": utc_now(),
                "opset": backends.OPSET if fmt != "torchscript" else None, "versions": _versions(fmt, backend),
                "networks": meta_networks}
        (tmp / EXPORT_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.files = [out / p.name for p in files] + [out / CONFIG_NAME, out / EXPORT_NAME]
    return result


def export_generator(net: nn.Module, out: str | Path, fmt: str = "onnx", *, card: ModelCard | None = None,
                     **options: Any) -> ExportResult:
    """Export one registry-built generator (its own input tensor in; a default pix2pix card unless given)."""
    card = card or ModelCard(generator=NetworkSpec.of(net))
    return export_graphs(network_graphs(card, net, encoded_input=True), card, out, fmt, **options)


def export_model(model: str | Path, out: str | Path, fmt: str = "onnx", *, encoded_input: bool = False,
                 **options: Any) -> ExportResult:
    """Export the generator (and feature encoder) of a saved model: a model or run directory, a published name
    or hf://org/name. Options: `sizes`, `backend`, `log` (see `export_graphs`)."""
    model_dir = resolve_model_dir(model, progress=True)
    card = ModelCard.read(model_dir)
    if card.generator is None:
        raise ConfigError(f"{model_dir} holds no generator to export.")
    generator = load_network(model_dir, card, "generator")  # traced on the CPU: the graphs are device-neutral
    encoder = load_network(model_dir, card, "encoder") if card.encoder is not None else None
    graphs = network_graphs(card, generator, encoder, encoded_input=encoded_input)
    extra = [model_dir / name for name in CLUSTER_FILES if (model_dir / name).is_file()]
    return export_graphs(graphs, card, out, fmt, extra_files=extra, **options)
