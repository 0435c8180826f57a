"""The MLPerf Tiny image-classification ResNet8, laid out so the reference Keras weights load exactly.

Two details decide whether the port reproduces the reference (895/1,017 on the CIFAR-10 test subset):
Keras "same" padding on a stride-2 3x3 conv pads only bottom/right (hence `ZeroPad2d((0, 1, 0, 1))`
instead of `padding=1`), and Keras BatchNormalization uses epsilon 1e-3.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub

KERAS_BN_EPS = 1e-3


class ResidualStack(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, plus an identity or 1x1-conv shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        downsample = stride != 1
        self.pad = nn.ZeroPad2d((0, 1, 0, 1)) if downsample else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=0 if downsample else 1)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=KERAS_BN_EPS)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=KERAS_BN_EPS)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride) if downsample else nn.Identity()
        # FloatFunctional so eager quantization can swap the residual add for a quantized add_relu.
        self.add_relu = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(self.pad(x))))
        y = self.bn2(self.conv2(y))
        return self.add_relu.add_relu(y, self.shortcut(x))


class ResNet8(nn.Module):
    """Input: float32 NCHW raw 0-255 pixels (no normalization), as the MLPerf reference expects."""

    def __init__(self, num_classes: int = 10, quantizable: bool = False) -> None:
        super().__init__()
        self.quant = QuantStub() if quantizable else nn.Identity()
        self.conv = nn.Conv2d(3, 16, 3, 1, padding=1)
        self.bn = nn.BatchNorm2d(16, eps=KERAS_BN_EPS)
        self.relu = nn.ReLU()
        self.stack1 = ResidualStack(16, 16, 1)
        self.stack2 = ResidualStack(16, 32, 2)
        self.stack3 = ResidualStack(32, 64, 2)
        self.pool = nn.AvgPool2d(8)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        self.dequant = DeQuantStub() if quantizable else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(self.quant(x))))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.dequant(self.fc(self.flatten(self.pool(x))))

    def fusion_groups(self) -> list[list[str]]:
        """Module names eager quantization fuses (Conv-BN-ReLU, Conv-BN)."""
        groups = [["conv", "bn", "relu"]]
        for stack in ("stack1", "stack2", "stack3"):
            groups += [[f"{stack}.conv1", f"{stack}.bn1", f"{stack}.relu1"], [f"{stack}.conv2", f"{stack}.bn2"]]
        return groups


# Keras layer name -> our module name, in the reference model's layer order.
KERAS_CONV_NAMES = {
    "conv2d": "conv", "conv2d_1": "stack1.conv1", "conv2d_2": "stack1.conv2",
    "conv2d_3": "stack2.conv1", "conv2d_4": "stack2.conv2", "conv2d_5": "stack2.shortcut",
    "conv2d_6": "stack3.conv1", "conv2d_7": "stack3.conv2", "conv2d_8": "stack3.shortcut",
}
KERAS_BN_NAMES = {
    "batch_normalization": "bn", "batch_normalization_1": "stack1.bn1", "batch_normalization_2": "stack1.bn2",
    "batch_normalization_3": "stack2.bn1", "batch_normalization_4": "stack2.bn2",
    "batch_normalization_5": "stack3.bn1", "batch_normalization_6": "stack3.bn2",
}


def keras_state_dict(h5_path) -> dict[str, torch.Tensor]:
    """Read the MLPerf Tiny `pretrainedResnet.h5` into a ResNet8 state dict (HWIO -> OIHW)."""
    import h5py

    def tensor(group, layer: str, name: str) -> torch.Tensor:
        return torch.from_numpy(group[layer][layer][f"{name}:0"][()].astype("float32"))

    state: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        weights = f["model_weights"]
        for keras, ours in KERAS_CONV_NAMES.items():
            state[f"{ours}.weight"] = tensor(weights, keras, "kernel").permute(3, 2, 0, 1).contiguous()
            state[f"{ours}.bias"] = tensor(weights, keras, "bias")
        for keras, ours in KERAS_BN_NAMES.items():
            state[f"{ours}.weight"] = tensor(weights, keras, "gamma")
            state[f"{ours}.bias"] = tensor(weights, keras, "beta")
            state[f"{ours}.running_mean"] = tensor(weights, keras, "moving_mean")
            state[f"{ours}.running_var"] = tensor(weights, keras, "moving_variance")
            state[f"{ours}.num_batches_tracked"] = torch.tensor(0)
        state["fc.weight"] = tensor(weights, "dense", "kernel").t().contiguous()
        state["fc.bias"] = tensor(weights, "dense", "bias")
    return state
