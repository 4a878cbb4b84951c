"""Image reading, mode conversion and tensor conversion with clear errors.

Pixels are scaled to [-1, 1] as in the reference code. Mode handling is explicit:
grayscale is replicated to RGB, RGBA is composited onto white when three channels
are wanted (transparent sketches and edge maps become black-on-white), and RGB is
reduced to luma when one channel is wanted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..io.atomic import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")

_CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: point the path at a folder of images.")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def open_image(path: str | Path, *, palette_indices: bool = False) -> Image.Image:
    """Open and fully decode an image, turning any decoding problem into a DataError.

    Palette images become RGBA colours, or stay mode "P" with `palette_indices` (label maps
    stored as palette PNGs keep their class ids that way).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now so truncation surfaces here, not in a worker later
            return img.copy() if img.mode != "P" or palette_indices else img.convert("RGBA")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist: check the path.") from None
    except Image.DecompressionBombError as exc:
        raise DataError(bomb_message(path, exc)) from None
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image PIL can read: remove it or convert it to PNG/JPEG.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path} is truncated or corrupt ({exc}): re-export the file or remove it.") from None


def bomb_message(path: str | Path, exc: Exception) -> str:
    """Why a file over Pillow's pixel limit is refused, and the fix (the limit guards against decompression bombs)."""
    return (f"{path} claims more pixels than Pillow opens ({exc}): a decompression bomb or a huge image; "
            "shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file.")


def convert_channels(img: Image.Image, channels: int, path: str | Path = "<image>") -> Image.Image:
    """Convert to the PIL mode for `channels` (1, 3 or 4), handling alpha and 16-bit explicitly."""
    if channels not in _CHANNEL_MODES:
        raise DataError(f"{path}: {channels} channels requested; use 1 (gray), 3 (RGB) or 4 (RGBA).")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit photographs: scale to 8 bits rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    target = _CHANNEL_MODES[channels]
    if img.mode == target:
        return img
    if img.mode in ("RGBA", "LA", "PA") and target != "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert(target)


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Read `path` and convert it to `channels` channels."""
    return convert_channels(open_image(path), channels, path)


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor [C, H, W] in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)


def tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """Tensor [C, H, W] in [-1, 1] -> uint8 array [H, W, C] (or [H, W] for one channel)."""
    arr = ((tensor.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Tensor [C, H, W] in [-1, 1] -> PIL image (L, RGB or RGBA)."""
    return Image.fromarray(tensor_to_array(tensor))


def save_image(img: Image.Image, path: str | Path) -> None:
    """Write an image atomically (a partly written file never replaces a good one)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format=_format_for(path))


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
            ".webp": "WEBP", ".ppm": "PPM"}.get(ext, "PNG")


def open_map(path: str | Path) -> Image.Image:
    """Open a label or instance map keeping its integer ids exactly.

    Returns mode "L" (8-bit), "I" (32-bit, for 16-bit PNGs) or "RGB" (a colour-coded or RGB file;
    the caller decides). Palette ("P") files give their palette indices, which is how such label
    files store class ids.
    """
    img = open_image(path, palette_indices=True)
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("P", "1"):
        return Image.fromarray(np.asarray(img, dtype=np.uint8))
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I: ids up to 65535 (or more) stay exact
        return Image.fromarray(np.asarray(img).astype(np.int32))
    if mode == "LA":
        return img.getchannel(0)
    if mode == "F":
        arr = np.asarray(img)
        if not np.all(arr == np.round(arr)):
            raise DataError(f"{path} holds fractional values: a label map must hold integer ids.")
        return Image.fromarray(arr.astype(np.int32))
    return img.convert("RGB")
