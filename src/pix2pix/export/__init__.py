"""Models out of PyTorch: ONNX, TorchScript and OpenVINO exports, checked at export time, and run back from PyTorch.

    from pix2pix.export import export_model, load_exported
    export_model("runs/00003-facades/model", "facades_onnx", "onnx")   # prints the parity check
    G = load_exported("facades_onnx")                                  # onnxruntime, a drop-in generator

See `exporter` (what is written), `graphs` (what is inside the graphs), `runtime` (the
wrappers) and `backends` (formats and runtimes). onnx, onnxruntime and openvino come with the
`[export]` extra; TorchScript needs only torch.
"""

from .backends import BACKENDS, DEFAULT_BACKEND, FORMATS
from .exporter import EXPORT_NAME, ExportResult, export_generator, export_graphs, export_model, network_graphs
from .parity import METRIC, THRESHOLD, ExportError, relative_difference
from .runtime import (
    ExportedEncoder,
    ExportedGenerator,
    ExportedLabelGenerator,
    ExportedNetwork,
    is_export,
    load_exported,
    read_export,
)

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "EXPORT_NAME", "FORMATS", "METRIC", "THRESHOLD", "ExportError",
           "ExportResult", "ExportedEncoder", "ExportedGenerator", "ExportedLabelGenerator", "ExportedNetwork",
           "export_generator", "export_graphs", "export_model", "is_export", "load_exported", "network_graphs",
           "read_export", "relative_difference"]
