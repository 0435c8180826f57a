"""Foreign ONNX files built here the ways real ones differ from our exports: wrappers that change a graph's
interface (layout, batch, normalization), not what it computes, and how to export and compare them. Shared by
the ONNX import tests on tiny models and on the MLPerf ResNet8."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quant_explorer.models import CIFAR_MEAN, CIFAR_STD, Preprocessing, exported_onnx
from quant_explorer.runtimes import ort_runner, torch_runner

RAW = Preprocessing("raw255")
NORMALIZED = Preprocessing("unit", CIFAR_MEAN, CIFAR_STD)
MEAN, STD = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)


# --- foreign forms: wrappers that change the graph's interface, not what it computes ----------------------


class NHWC(nn.Module):
    """Takes [N, 32, 32, 3], as tf2onnx writes Keras models."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2))


class ExpectsNormalized(nn.Module):
    """Takes unit-scale, mean/std-normalized input (undone inside, so raw-pixel weights still apply)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z):
        return self.net((z * STD + MEAN) * 255)


class BakedNormalization(nn.Module):
    """Takes raw 0-255 pixels and normalizes inside the graph (Div, Sub, Div nodes)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = ExpectsNormalized(net)

    def forward(self, x):
        return self.net((x / 255 - MEAN) / STD)


class ViewBatchOne(nn.Module):
    """Hard-codes batch 1 in a Reshape, as `x.view(1, -1)` heads do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).view(1, 10)


class Tiny(nn.Module):
    """A random Conv-BN-ReLU CNN with a Flatten + Linear head: fast, and every number is checkable."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.features[1].running_mean.uniform_(-1, 1)
        self.features[1].running_var.uniform_(0.5, 2)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.features(x / 64).flatten(1))


class FlattenByReshape(Tiny):
    """Flattens with a Reshape to a constant [-1, 512] instead of a Flatten node."""

    def forward(self, x):
        return self.head(self.features(x / 64).reshape(-1, 512))


class FoldsTheBatch(nn.Module):
    """Reshapes [1, 8, 8, 8] to [8, 64]: batch 1 is baked into the arithmetic, not just a shape constant."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, 4, 1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x / 64)).reshape(8, 64)).mean(0, keepdim=True)


def export(module: nn.Module, path: Path, opset: int = 13, nhwc: bool = False, dynamic: bool = True,
           n_inputs: int = 1, classes: int = 10) -> Path:
    """The legacy TorchScript exporter: any opset, fixed or dynamic batch, Flatten + Gemm heads."""
    shape = (1, 32, 32, 3) if nhwc else (1, 3, 32, 32)
    names = ["x", "y"][:n_inputs]
    axes = {name: {0: "batch"} for name in [*names, "logits"]} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(torch.zeros(shape) for _ in names), str(path), opset_version=opset,
                          dynamo=False, input_names=names, output_names=["logits"], dynamic_axes=axes)
    return path


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def assert_same_model(loaded, reference: nn.Module, preprocessing: Preprocessing, nhwc: bool = False) -> None:
    """The normalized file in ORT and the onnx2torch module both give the original module's logits, taken
    one image at a time, on a batch of 5 (so a batch still fixed at 1 or mixing images would show)."""
    x = preprocessing(images(5))
    with torch.inference_mode():
        want = torch.cat([reference.eval()(x[i:i + 1].permute(0, 2, 3, 1) if nhwc else x[i:i + 1])
                          for i in range(len(x))]).numpy()
    for got in (ort_runner(exported_onnx(loaded))(x), torch_runner(loaded.module)(x).numpy()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


