"""Translate images with a saved pix2pix model, at any size, from PIL images, arrays, tensors or files.

    translator = Translator.from_pretrained("runs/00003-facades/model")
    photo = translator(Image.open("labels.png"))

Images are padded to the multiple the generator needs and the output cropped back, so
no size is distorted. Eval mode is the default; `paper_mode=True` uses the pix2pix
paper's test protocol (dropout on, batch-norm with the test batch's statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..data.color import lab_channels_to_rgb, lab_image_tensors
from ..data.for_model import model_dataset, test_geometry
from ..data.images import (
    convert_channels,
    image_to_tensor,
    load_image,
    open_map,
    save_image,
    tensor_to_image,
)
from ..data.label_dataset import map_ids_tensor
from ..data.label_sets import read_label_ids
from ..data.paired import color_region_ids, edge_channel, instance_maps
from ..data.transforms import apply_params, sample_params
from ..errors import ConfigError, DataError, Pix2PixError
from ..io.model_card import ModelCard, NetworkSpec
from ..models import run_padded
from ..runtime import as_device
from .base import BaseTranslator, ModelInputs, TestPair, load_networks

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


class Translator(BaseTranslator):
    """A pix2pix generator plus the preprocessing it was trained with (its model card)."""

    family = "pix2pix"
    load_options = frozenset({"paper_mode", "backend"})
    file_options = frozenset({"batch_size", "instance_dir"})

    def __init__(self, generator: nn.Module, card: ModelCard | None = None, *, device: str | torch.device = "auto",
                 paper_mode: bool = False) -> None:
        self.device = as_device(device)
        self.generator = generator.to(self.device).eval()
        self.card = card or getattr(generator, "card", None) or ModelCard(generator=NetworkSpec.of(generator))
        self.in_channels, self.out_channels = self.card.in_channels, self.card.out_channels
        self.instance_edges = self.card.data.instance_edges  # the last input channel is an instance boundary map
        self.image_channels = self.card.image_channels
        self.lab = self.card.data.color_space == "lab"
        self.colorization = self.card.data.layout == "colorization"
        self.paper_mode = paper_mode

    @classmethod
    def from_card(cls, model_dir: Path, card: ModelCard, *, device: str | torch.device = "auto",
                  paper_mode: bool = False, backend: str = "torch") -> Translator:
        """`backend`: torch (the saved weights), or onnxruntime / openvino / torchscript for an export folder
        (`pix2pix export`), whose generator maps the same tensors to the same outputs, in eval mode only."""
        if paper_mode and backend != "torch":
            raise ConfigError("--paper-mode needs the PyTorch model (dropout, batch-norm statistics); exported "
                              "graphs run in eval mode: translate the model directory with --backend torch.")
        generator, _ = load_networks(model_dir, card, backend, as_device(device))
        translator = cls(generator, card, device=device, paper_mode=paper_mode)
        translator.model_dir = model_dir
        return translator

    def inputs(self) -> ModelInputs:
        return ModelInputs("pix2pix", self.image_channels, self.out_channels, instances=self.instance_edges)

    # -- input and output conversion -------------------------------------------------------------
    def image_to_input(self, img: Image.Image, source: str | Path = "<image>",
                       instance: Image.Image | None = None) -> torch.Tensor:
        """A PIL image as the generator's input tensor [C, H, W]. An instance-edge model also takes the
        instance map (ids, e.g. from `open_map`); without one, each colour region counts as one instance."""
        if self.lab:
            return lab_image_tensors(np.asarray(convert_channels(img, 3, source)))[0]
        if self.colorization:
            gray = image_to_tensor(convert_channels(img, 1, source))
            return gray.expand(self.in_channels, -1, -1).clone()
        tensor = image_to_tensor(convert_channels(img, self.image_channels, source))
        if not self.instance_edges:
            if instance is not None:
                raise ConfigError(f"{self.describe()} was trained without instance maps: drop the instance map.")
            return tensor
        if instance is None:
            ids = color_region_ids(tensor)
        elif instance.size != img.size:
            raise DataError(f"the instance map of {source} is {instance.size[0]}x{instance.size[1]}, the image "
                            f"{img.size[0]}x{img.size[1]}: they must have the same size.")
        else:
            ids = map_ids_tensor(instance, Path(str(source)), "instance", None)
        return torch.cat([tensor, edge_channel(ids)])

    def output_to_image(self, out: torch.Tensor, inp: torch.Tensor) -> Image.Image:
        if self.lab:
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

    def __call__(self, image: ImageLike, instance: Image.Image | None = None) -> ImageLike:  # type: ignore[override]
        """Translate one image: PIL -> PIL, uint8/float array -> uint8 array, tensor -> tensor (with every input
        channel, the boundary map included). `instance`: an instance-edge model's instance map."""
        if isinstance(image, torch.Tensor):
            single = image.dim() == 3
            out = self.translate_tensor(image[None] if single else image)
            return out[0] if single else out
        if isinstance(image, np.ndarray):
            arr = image
            if arr.dtype != np.uint8:
                arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.asarray(self(Image.fromarray(arr), instance))
        if isinstance(image, Image.Image):
            inp = self.image_to_input(image, instance=instance)
            out = self.translate_tensor(inp[None])[0]
            return self.output_to_image(out, inp)
        raise Pix2PixError(f"cannot translate a {type(image).__name__}: pass a PIL image, a numpy array or a tensor.")

    def translate_files(self, paths: Sequence[Path], out_dir: str | Path, *, progress: bool = False,
                        log: Callable[[str], None] | None = None, batch_size: int = 1,
                        instance_dir: str | Path | None = None) -> list[Path]:
        """Translate image files into `out_dir` (as PNG, same stem); consecutive images of one size share batches.
        `instance_dir`: an instance-edge model's instance maps, matched by file name."""
        if int(batch_size) < 1:
            raise ConfigError(f"batch size {batch_size} must be at least 1.")
        instances = self._instance_files(paths, instance_dir, log)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        channels = 3 if (self.lab or self.colorization) else self.image_channels
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
            inst = open_map(instances[p]) if p in instances else None
            t = self.image_to_input(load_image(p, channels), p, inst)
            if pending and (t.shape != pending[0][1].shape or len(pending) == batch_size):
                flush()
            pending.append((p, t))
        if pending:
            flush()
        return written

    def _instance_files(self, paths: Sequence[Path], instance_dir: str | Path | None,
                        log: Callable[[str], None] | None) -> dict[Path, Path]:
        if instance_dir is None:
            if self.instance_edges and log is not None:
                log("no --instances: each colour region of the label maps counts as one instance, so touching "
                    "objects of one class merge; pass the instance maps for their boundaries")
            return {}
        if not self.instance_edges:
            raise ConfigError(f"--instances {instance_dir}: this model was trained without instance maps; drop it.")
        folder = Path(instance_dir)
        if not folder.is_dir():
            raise ConfigError(f"--instances {folder}: no such folder.")
        maps = instance_maps([Path(p) for p in paths], folder, "images", "add them, or drop --instances.")
        return dict(zip(paths, maps, strict=True))

    def test_pairs(self, root: str | Path, phase: str = "test", *, label_set: Any = None,
                   progress: bool = False) -> Iterator[TestPair]:
        """The split with the model's test-time geometry; label ids decoded from the input side's colours."""
        ds = model_dataset(self.card, root, phase)
        if label_set is not None and ds.layout == "colorization":
            raise ConfigError("a colorization model's inputs are not label maps: drop the segmenter.")
        mode, load, crop = test_geometry(self.card.data)
        for i in tqdm(range(len(ds)), disable=not progress, unit="img"):
            item = ds[i]
            fake = self.translate_tensor(item["A"][None])[0]
            ids = None
            if label_set is not None:  # the input side, decoded at full size, then resized like the images
                a, b = ds.load_pair(i)
                raw = b if self.card.data.direction == "BtoA" else a
                full = read_label_ids(raw, label_set).numpy().astype(np.int32)
                params = sample_params(raw.size, mode, load, crop, flip=False, rng=None, source=item["path"])
                ids = np.asarray(apply_params(Image.fromarray(full), params, Image.NEAREST)).astype(np.int64)
            image = item["A"][: self.image_channels]
            shown = image if image.shape[0] in (1, 3) else image[:1]
            yield TestPair(Path(item["path"]).stem, tensor_to_image(shown), self.output_to_image(fake, item["A"]),
                           self.output_to_image(item["B"], item["A"]), ids)
