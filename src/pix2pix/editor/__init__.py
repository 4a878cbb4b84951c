"""Interactive editing in the browser: paint label maps, pick per-object styles, see the photo change.

`pix2pix edit --model RUN [--clusters FILE] [--data DIR]` serves the page; `ops` holds the edit
operations on arrays, `session` the model side, `server` the HTTP API (see docs/README_editor.md).
"""

from .ops import EditDocument, LabelSpace
from .server import create_app
from .session import EditorModel

__all__ = ["EditDocument", "EditorModel", "LabelSpace", "create_app"]
