"""Network inputs of pix2pixHD built on the device from a batch: one-hot labels + instance boundaries.

Used by training and inference alike, so a model sees the same encoding in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .labels import boundary_map, one_hot


@dataclass(frozen=True)
class LabelInputs:
    """How label and instance maps become the generator's conditioning channels."""

    label_nc: int  # 0: the label is already an RGB image in [-1, 1]
    use_instance: bool = True
    ignore_index: int | None = None

    @property
    def channels(self) -> int:
        return (self.label_nc if self.label_nc > 0 else 3) + (1 if self.use_instance else 0)

    def encode(self, label: torch.Tensor, instance: torch.Tensor | None = None, source: str = "") -> torch.Tensor:
        """label [B, 1, H, W] ids (or [B, 3, H, W] RGB) and instance [B, 1, H, W] -> [B, channels, H, W]."""
        if self.label_nc > 0:
            x = one_hot(label.long(), self.label_nc, ignore_index=self.ignore_index, source=source)
        else:
            x = label.float()
        if self.use_instance:
            if instance is None:
                raise ValueError("this model uses instance maps, but none was given")
            x = torch.cat([x, boundary_map(instance).to(x.dtype)], 1)
        return x
