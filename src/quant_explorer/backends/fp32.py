"""The FP32 reference: the exported ONNX model run in ONNX Runtime, the baseline every delta uses."""

from __future__ import annotations

from pathlib import Path

from ..configs import QuantConfig
from ..models import LoadedModel, exported_onnx
from ..runtimes import onnx2torch_runner, ort_runner, torch_runner
from . import Calibration, QuantizedModel


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    path = exported_onnx(model)
    alternates = {"torch": lambda: torch_runner(model.module), "onnx2torch": lambda: onnx2torch_runner(path)}
    return QuantizedModel(ort_runner(path), path, "onnxruntime", alternates=alternates if model.module else {})
