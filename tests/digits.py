"""A data set and models the project never saw, built here: 8x8 greyscale "digits" (ten classes, each a fixed
random pattern of 0-16 ink under noise, like scikit-learn's digits) and a two-conv CNN trained a few steps on them.
Shared by the tests of users' own models (`test_user_models.py`, `test_untouched.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CLASSES = 10
SIZE = 8


def digits(n: int, seed: int, channels: int = 1) -> torch.utils.data.TensorDataset:
    """`n` float images [channels, 8, 8] of 0-16 ink, labels cycling 0-9: each class a fixed pattern plus noise."""
    patterns = 16 * torch.rand(CLASSES, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(123))
    labels = torch.arange(n) % CLASSES
    noise = 8 * torch.randn(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.TensorDataset((patterns[labels] + noise).clamp(0, 16).round(), labels)


class TwoConv(nn.Module):
    """A user's CNN: conv-BN-ReLU twice (the second with stride 2), a linear head; input 0-16 ink."""

    def __init__(self, channels: int = 1, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * (SIZE // 2) ** 2, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x / 16)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.head(x.flatten(1))


def trained(data: torch.utils.data.TensorDataset, channels: int = 1, steps: int = 40) -> TwoConv:
    """TwoConv trained `steps` full-batch Adam steps (seeded): about 95% on `digits`, left in training mode."""
    torch.manual_seed(0)
    net = TwoConv(channels)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    x, y = data.tensors
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net


def write_folders(root: Path, n_train: int = 200, n_test: int = 100, channels: int = 1) -> Path:
    """train/ and test/ of 8x8 PNGs (greyscale "L", or "RGB"), pixel = 16 x ink (0-255), class folders 0-9."""
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = digits(n, seed, channels).tensors
        pixels = (images * 255 / 16).round().clamp(0, 255).to(torch.uint8).numpy()
        for i, (image, label) in enumerate(zip(pixels, labels.tolist())):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0] if channels == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))).save(
                folder / f"{i:04d}.png")
    return root


def export(module: nn.Module, path: Path, shape: tuple[int, ...] = (1, SIZE, SIZE)) -> Path:
    """`module` (eval mode) as an ONNX file with a dynamic batch, taking [N, *shape] floats."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(2, *shape),), str(path), input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    return path
