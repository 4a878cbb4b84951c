"""`pix2pix edit`: the interactive editor in the browser (paint label maps, pick object styles).

    pix2pix edit --model runs/00004-pix2pixhd_synthetic [--clusters FILE] [--data DIR] [--port 8000]

Serves on 127.0.0.1 by default; open the printed address in a browser.
"""

from __future__ import annotations

import argparse

from .options import add_device, add_label_set, add_model


def _cmd_edit(args: argparse.Namespace) -> int:
    import numpy as np

    from ..editor.server import create_app
    from ..editor.session import EditorModel
    from ..errors import ConfigError
    from ..io.model_dir import recorded_data_root, resolve_model_dir
    from ..web import serve_forever

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: use 0..65535 (0 picks a free port).")
    model = EditorModel.load(args.model, clusters=args.clusters, labels=args.label_set, data=args.data,
                             device=args.device)
    data = args.data or recorded_data_root(resolve_model_dir(args.model))
    app = create_app(model, data)
    classes = model.label_set.label_nc
    styles = "with styles" if model.has_styles else "no styles"
    print(f"{model.family} model {model.model_dir} on {model.info()['device']}: {classes} classes "
          f"({model.label_set.name}), {styles}; dataset: {data or 'none (blank canvas or upload)'}")
    model.generate(*(np.full((64, 64), model.space.erase_class, np.int32),) * 2, {})  # the first pass is slow
    try:
        serve_forever(app, args.host, args.port, args.allow_host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc}): pick another --port (0: any free one).") \
            from None
    return 0


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "edit", help="interactive editor in the browser: paint a label map, pick object styles, see the photo",
        description="Start a local web app to edit label maps (brush, fill, erase, undo/redo), select objects, "
                    "change their class or style cluster, and see the model's photo after every edit.")
    add_model(p)
    p.add_argument("--clusters", metavar="FILE",
                   help="pix2pixHD with the feature encoder: clusters.safetensors (default: the model directory's)")
    p.add_argument("--data", metavar="DIR",
                   help="dataset to open label maps from ({split}_label/ + {split}_inst/; default: the run's data "
                        "folder when it still exists)")
    add_label_set(p, "class names and colours: cityscapes, ade20k, coco_stuff, synthetic or a classes.json "
                     "(default: the model's, else DIR/classes.json)", old=("--labels",))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="another name the page is opened by (this machine's LAN name, a reverse proxy's); requests "
                        "naming any other host are refused. Repeatable")
    add_device(p)
    p.set_defaults(func=_cmd_edit)
    return p
