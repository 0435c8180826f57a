"""How uint8 pixels become a model's float input: one value per model, applied the same way before every
runtime. A module of its own because the registry, LoadedModel, the ONNX import and evaluation all need it,
and none of them should need each other to get it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Preprocessing:
    """uint8 pixels -> float32 model input, applied identically before every runtime."""

    input_scale: str = "raw255"  # "raw255": 0-255 floats; "unit": divided by 255
    mean: tuple[float, ...] | None = None  # one value per channel of the model
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.input_scale not in ("raw255", "unit"):
            raise UserError(f"--input-scale must be raw255 or unit, got {self.input_scale!r}")
        if (self.mean is None) != (self.std is None) or self.mean is not None and (
                len(self.mean) != len(self.std) or not 1 <= len(self.mean) <= 4):
            raise UserError("--mean and --std go together, one comma-separated number per channel of the model each "
                            "(e.g. 0.49,0.48,0.45 for RGB, 0.5 for greyscale)")
        if self.mean is not None and not all(map(math.isfinite, (*self.mean, *self.std))):
            raise UserError(f"--mean and --std must be finite numbers, got mean {self.mean} and std {self.std}")
        if self.std is not None and min(self.std) <= 0:
            raise UserError(f"--std must be positive (it divides the input), got {self.std}")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import torch  # here, not at the top: the registry lists models without importing torch

        x = images.float()
        if self.input_scale == "unit":
            x = x / 255.0
        if self.mean is not None:
            x = (x - torch.tensor(self.mean).view(1, -1, 1, 1)) / torch.tensor(self.std).view(1, -1, 1, 1)
        return x

    def check_channels(self, channels: int, who: object) -> None:
        """One line before any work when --mean/--std do not give one value per channel `who` takes."""
        if self.mean is not None and len(self.mean) != channels:
            raise UserError(f"--mean/--std give {len(self.mean)} values, {who} takes images of {channels} "
                            f"channel{'s' * (channels != 1)}: give {channels} value{'s' * (channels != 1)} each")

    def to_dict(self) -> dict:
        return asdict(self)
