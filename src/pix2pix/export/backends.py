"""Export formats and the runtimes that execute them.

    format       file                      runtimes (backend names)
    onnx         NAME.onnx                 onnxruntime (default), openvino
    torchscript  NAME.pt                   torchscript
    openvino     NAME.xml + NAME.bin       openvino

A runner takes and returns lists of CPU tensors in the graph's input / output order. The
onnxruntime and OpenVINO runners use as many threads as torch (`torch.get_num_threads()` when
loaded) and OpenVINO runs in f32 (its CPU plugin otherwise picks bf16 on CPUs that have it,
which is not exact to 1e-4); pass `options` to change either.

Writing: TorchScript is `torch.jit.trace` of the graph module; ONNX is torch's TorchScript-based
exporter (`dynamo=False`), whose traced shape arithmetic keeps the in-graph padding dynamic
(`torch.export`'s symbolic shapes reject the padding's divisibility guards); OpenVINO IR is the
ONNX file read by OpenVINO's own reader and saved uncompressed (no fp16 weights). ONNX and
OpenVINO graphs get two-pass instance / group norms (`graphs.exportable`). OpenVINO's
`convert_model` is not used: it sends usage telemetry unless the user has opted out.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import platform
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, Pix2PixError
from .graphs import exportable

FORMATS = ("onnx", "torchscript", "openvino")
BACKENDS = ("onnxruntime", "openvino", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml"}
DEFAULT_BACKEND = {"onnx": "onnxruntime", "torchscript": "torchscript", "openvino": "openvino"}
READS = {"onnxruntime": ("onnx",), "openvino": ("openvino", "onnx"), "torchscript": ("torchscript",)}
OPSET = 17
_PACKAGES = {"onnx": "onnx", "onnxruntime": "onnxruntime", "openvino": "openvino"}

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "FORMATS", "SUFFIX", "check_backend", "check_format", "make_runner",
           "require", "write_graph"]


def require(package: str) -> Any:
    """Import an optional runtime package, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise Pix2PixError(f"{_PACKAGES.get(package, package)} is not installed ({exc}): "
                           "pip install 'pix2pix[export]'.") from None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    return fmt


def check_backend(backend: str, fmt: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    if fmt not in READS[backend]:
        readers = [b for b in BACKENDS if fmt in READS[b]]
        raise ConfigError(f"backend {backend} cannot run a {fmt} export: use {' or '.join(readers)}, or export "
                          f"with --format {READS[backend][0]}.")
    return backend


def _trace(module: nn.Module, example: Sequence[torch.Tensor]) -> torch.jit.ScriptModule:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings for shape reads that the parity check covers
        return torch.jit.trace(module.eval(), tuple(example), check_trace=False)


def _write_onnx(module: nn.Module, example: Sequence[torch.Tensor], path: Path, input_names: Sequence[str],
                output_names: Sequence[str]) -> None:
    require("onnx")  # torch's exporter serialises through it
    dynamic = {name: {0: "batch", 2: "height", 3: "width"} for name in (*input_names, *output_names)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice, TracerWarnings
        torch.onnx.export(module.eval(), tuple(example), str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(input_names), output_names=list(output_names), dynamic_axes=dynamic,
                          do_constant_folding=True)


def write_graph(module: nn.Module, example: Sequence[torch.Tensor], fmt: str, folder: Path, stem: str,
                input_names: Sequence[str], output_names: Sequence[str]) -> list[Path]:
    """Write `module` traced on `example` as format `fmt` into `folder`; returns the files written."""
    check_format(fmt)
    if fmt != "torchscript":  # TorchScript runs torch's own (precise) norm kernels

        module = exportable(module)
    if fmt == "torchscript":
        path = folder / f"{stem}.pt"
        traced = _trace(module, example)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still works
            torch.jit.save(traced, str(path))
        return [path]
    if fmt == "onnx":
        path = folder / f"{stem}.onnx"
        _write_onnx(module, example, path, input_names, output_names)
        return [path]
    ov = require("openvino")
    onnx_path = folder / f".{stem}.intermediate.onnx"
    try:
        _write_onnx(module, example, onnx_path, input_names, output_names)
        model = openvino_core().read_model(str(onnx_path))
        xml = folder / f"{stem}.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
    finally:
        onnx_path.unlink(missing_ok=True)
    return [xml, xml.with_suffix(".bin")]


_CORE: list[Any] = []


def openvino_core() -> Any:
    """One OpenVINO Core for the process, never released. A Core released while models it compiled are still
    alive (a local in a constructor) unloads the CPU plugin under them: the test suite crashed later, in
    garbage collection, one run in two."""
    if not _CORE:
        _CORE.append(require("openvino").Core())
    return _CORE[0]


class Runner:
    """Runs one exported graph: `run(inputs) -> outputs`, CPU tensors in graph order."""

    backend: str

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError


class TorchScriptRunner(Runner, nn.Module):
    """A TorchScript module; it follows `.to(device)` of the module holding it (CUDA works too)."""

    backend = "torchscript"

    def __init__(self, path: Path, threads: int | None = None, options: dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        if options:
            raise ConfigError(f"the torchscript backend takes no options (got {', '.join(options)}).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = self.module(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]


def _numpy(t: torch.Tensor) -> Any:
    return t.detach().cpu().contiguous().numpy()


def _optimized_path(path: Path, ort: Any) -> Path:
    """Where onnxruntime's optimised copy of `path` is kept: its CPU layout transforms are specific to the
    runtime version and the processor, so both are in the name."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu += next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    key = hashlib.sha256(f"{ort.__version__} {cpu}".encode()).hexdigest()[:12]
    return path.with_name(f".{path.stem}.ort-{key}.onnx")


class OnnxRuntimeRunner(Runner):
    """`options`: onnxruntime session options, plus `optimized_cache=True`: keep the optimised graph beside the file
    on first load and load that later with optimisation off (pix2pixHD's global generator: 1.2 s instead of 3.9 s
    to start, the same kernels)."""

    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, options: dict[str, Any] | None = None) -> None:
        ort = require("onnxruntime")
        options = dict(options or {})
        optimized = _optimized_path(path, ort) if options.pop("optimized_cache", False) else None
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        for key, value in options.items():
            if not hasattr(so, key):
                raise ConfigError(f"onnxruntime has no session option {key!r}.")
            setattr(so, key, value)
        source, written = path, None
        if optimized is not None and optimized.is_file():
            source, so.graph_optimization_level = optimized, ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif optimized is not None:
            written = optimized.with_name(f"{optimized.name}.{secrets.token_hex(4)}.tmp")
            so.optimized_model_filepath = str(written)
            so.log_severity_level = 3  # not the warning that the copy is hardware-specific: the name says so
        self.session = ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
        if written is not None:
            try:
                os.replace(written, optimized)  # whole or not at all
            except OSError:  # a read-only folder: start the slow way next time too
                with contextlib.suppress(OSError):
                    written.unlink()
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        feed = {name: _numpy(t) for name, t in zip(self.input_names, inputs, strict=True)}
        return [torch.from_numpy(a) for a in self.session.run(None, feed)]


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, path: Path, threads: int | None = None, options: dict[str, Any] | None = None) -> None:
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        config.update(options or {})
        core = openvino_core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        result = self.request.infer([_numpy(t) for t in inputs], share_outputs=False)
        return [torch.from_numpy(result[out]) for out in self.compiled.outputs]


_RUNNERS = {"torchscript": TorchScriptRunner, "onnxruntime": OnnxRuntimeRunner, "openvino": OpenVinoRunner}


def make_runner(path: Path, backend: str, threads: int | None = None,
                options: dict[str, Any] | None = None) -> Runner:
    return _RUNNERS[backend](path, threads, options)
