"""CifarCNN: a small VGG-style Conv-BN-ReLU network, about 20 M multiply-adds per image."""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class CifarCNN(nn.Module):
    """Input: float32 NCHW, pixels scaled to [0, 1] and normalized with the CIFAR-10 mean/std."""

    def __init__(self, num_classes: int = 10, quantizable: bool = False) -> None:
        super().__init__()
        self.quant = QuantStub() if quantizable else nn.Identity()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 32), nn.MaxPool2d(2),      # 16x16
            _conv_bn_relu(32, 64), nn.MaxPool2d(2),     # 8x8
            _conv_bn_relu(64, 128), _conv_bn_relu(128, 128), nn.MaxPool2d(2),  # 4x4
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, num_classes)
        self.dequant = DeQuantStub() if quantizable else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.quant(x))
        return self.dequant(self.fc(self.flatten(self.pool(x))))

    def fusion_groups(self) -> list[list[str]]:
        return [[f"features.{i}.0", f"features.{i}.1", f"features.{i}.2"] for i in (0, 2, 4, 5)]
