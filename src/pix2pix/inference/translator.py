"""Translate images with a saved model, at any size, from PIL images, arrays, tensors or files.

    translator = Translator.from_pretrained("runs/00003-facades/model")
    photo = translator(Image.open("labels.png"))

Images are padded to the multiple the generator needs and the output cropped back, so
no size is distorted. Eval mode is the default; `paper_mode=True` uses the pix2pix
paper's test protocol (dropout on, batch-norm with the test batch's statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..data.images import convert_channels, image_to_tensor, load_image, save_image, tensor_to_image
from ..errors import Pix2PixError
from ..io.pretrained import from_pretrained
from ..models import run_padded
from ..runtime import resolve_device

ImageLike = Image.Image | np.ndarray | torch.Tensor


@contextlib.contextmanager
def paper_test_mode(net: nn.Module) -> Iterator[None]:
    """Dropout active and batch norm on the batch's own statistics, leaving running statistics untouched."""
    saved = [(m, m.training, getattr(m, "momentum", None)) for m in net.modules()]
    for m in net.modules():
        if isinstance(m, (nn.Dropout, nn.modules.batchnorm._BatchNorm)):
            m.train()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0  # running statistics stay as trained
    try:
        yield
    finally:
        for m, training, momentum in saved:
            m.train(training)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = momentum


class Translator:
    """A generator plus the preprocessing it was trained with."""

    def __init__(self, generator: nn.Module, data: dict[str, Any] | None = None, *,
                 device: str | torch.device = "auto", paper_mode: bool = False) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.generator = generator.to(self.device).eval()
        self.data = dict(data or {})
        arch = getattr(generator, "arch", {})
        self.in_channels = int(self.data.get("in_channels", arch.get("in_channels", 3)))
        self.out_channels = int(self.data.get("out_channels", arch.get("out_channels", 3)))
        self.lab = self.data.get("color_space") == "lab"
        self.colorization = self.data.get("layout") == "colorization"
        self.paper_mode = paper_mode

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "auto",
                        paper_mode: bool = False) -> Translator:
        net = from_pretrained(directory)
        return cls(net, net.pretrained_config.get("data", {}), device=device, paper_mode=paper_mode)

    # -- input and output conversion -------------------------------------------------------------
    def image_to_input(self, img: Image.Image, source: str | Path = "<image>") -> torch.Tensor:
        """A PIL image as the generator's input tensor [C, H, W]."""
        if self.lab:
            from ..data.color import lab_image_tensors

            return lab_image_tensors(np.asarray(convert_channels(img, 3, source)))[0]
        if self.colorization:
            gray = image_to_tensor(convert_channels(img, 1, source))
            return gray.expand(self.in_channels, -1, -1).clone()
        return image_to_tensor(convert_channels(img, self.in_channels, source))

    def output_to_image(self, out: torch.Tensor, inp: torch.Tensor) -> Image.Image:
        if self.lab:
            from ..data.color import lab_channels_to_rgb

            out = lab_channels_to_rgb(inp.cpu(), out.cpu())
        return tensor_to_image(out)

    # -- translation -------------------------------------------------------------------------------
    @torch.no_grad()
    def translate_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] in [-1, 1] -> [B, C_out, H, W] in [-1, 1], any H and W."""
        if batch.dim() != 4 or batch.shape[1] != self.in_channels:
            raise Pix2PixError(f"expected a [B, {self.in_channels}, H, W] tensor, got {tuple(batch.shape)}.")
        batch = batch.to(self.device, torch.float32)
        ctx = paper_test_mode(self.generator) if self.paper_mode else contextlib.nullcontext()
        with ctx:
            return run_padded(self.generator, batch)

    def __call__(self, image: ImageLike) -> ImageLike:
        """Translate one image: PIL -> PIL, uint8/float array -> uint8 array, tensor -> tensor."""
        if isinstance(image, torch.Tensor):
            single = image.dim() == 3
            out = self.translate_tensor(image[None] if single else image)
            return out[0] if single else out
        if isinstance(image, np.ndarray):
            arr = image
            if arr.dtype != np.uint8:
                arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.asarray(self(Image.fromarray(arr)))
        if isinstance(image, Image.Image):
            inp = self.image_to_input(image)
            out = self.translate_tensor(inp[None])[0]
            return self.output_to_image(out, inp)
        raise Pix2PixError(f"cannot translate a {type(image).__name__}: pass a PIL image, a numpy array or a tensor.")

    def translate_files(self, paths: Sequence[Path], out_dir: str | Path, *, batch_size: int = 1,
                        progress: bool = False) -> list[Path]:
        """Translate image files into `out_dir` (as PNG, same stem); images of equal size share batches."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        channels = 3 if (self.lab or self.colorization) else self.in_channels
        written: list[Path] = []
        pending: list[tuple[Path, torch.Tensor]] = []

        def flush() -> None:
            outs = self.translate_tensor(torch.stack([t for _, t in pending]))
            for (p, t), out in zip(pending, outs, strict=True):
                target = out_dir / f"{p.stem}.png"
                save_image(self.output_to_image(out, t), target)
                written.append(target)
            pending.clear()

        for p in tqdm(paths, disable=not progress, unit="img"):
            t = self.image_to_input(load_image(p, channels), p)
            if pending and (t.shape != pending[0][1].shape or len(pending) == batch_size):
                flush()  # consecutive images of one size share a batch
            pending.append((p, t))
        if pending:
            flush()
        return written
