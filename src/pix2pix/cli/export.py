"""`pix2pix export`: a saved model as ONNX, TorchScript or OpenVINO, checked against eager PyTorch.

    pix2pix export --model runs/00003-facades --format onnx -o facades_onnx
    pix2pix translate --model facades_onnx --backend onnxruntime photos/ -o out/

The parity check (two random input sizes, max|exported - eager| / max|eager| below 1e-4) is
printed; a failed check exits 2 with one line and leaves nothing at -o. See `pix2pix.export`.
"""

from __future__ import annotations

import argparse

# as in pix2pix.export.backends (not imported here: building the parser must not load torch)
_FORMATS = ("onnx", "torchscript", "openvino")
_BACKENDS = ("onnxruntime", "openvino", "torchscript")


def _cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..export.parity import THRESHOLD

    sizes = args.sizes.split(",") if args.sizes else None
    result = export_model(args.model, args.output, args.format, encoded_input=args.encoded_input, sizes=sizes,
                          backend=args.check_backend)
    size = sum(p.stat().st_size for p in result.files if p.is_file()) / 2**20
    names = ", ".join(p.name for p in result.files)
    print(f"exported {args.model} as {args.format} to {result.folder} ({names}; {size:.1f} MiB), "
          f"parity below {THRESHOLD:g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from .options import add_model, add_output

    p = sub.add_parser("export", help="export a model to ONNX, TorchScript or OpenVINO, with a parity check")
    add_model(p)
    p.add_argument("--format", required=True, choices=_FORMATS)
    add_output(p, "the folder to write (an existing one is replaced only if it holds an export)", required=True)
    p.add_argument("--sizes", metavar="HxW,HxW",
                   help="the two check sizes (default: from the generator's size multiple, e.g. 256x512 and "
                        "129x253 for unet_256); the second is checked with batch 2")
    p.add_argument("--encoded-input", action="store_true",
                   help="pix2pixHD: export the generator alone, taking the encoded tensor (one-hot labels, "
                        "boundary map, features) as the eager generator does, instead of the label and instance ids")
    p.add_argument("--check-backend", choices=_BACKENDS,
                   help="the runtime that runs the parity check (default: the format's own; openvino can "
                        "check an onnx export)")
    p.set_defaults(func=_cmd_export)
