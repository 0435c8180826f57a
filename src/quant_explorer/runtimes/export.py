"""Exporting a module for the runtimes: torch.export's dynamic batch, and the FP32 ONNX export every ONNX path
starts from (`models.exported_onnx` caches it under a name keyed by this module's code)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ONNX_OPSET = 18
INPUT_NAME = "input"
DYNAMIC_BATCH = ({0: torch.export.Dim("batch")},)  # so every exported model runs at any batch size


def export_onnx(module: nn.Module, path: Path, example: torch.Tensor, opset: int = ONNX_OPSET) -> Path:
    """Export with a dynamic batch dimension (`example`: a batch of 2, `LoadedModel.example`), check with
    onnx.checker, write atomically."""
    import onnx

    from ..files import atomic_path

    with atomic_path(path, ".onnx") as tmp:
        torch.onnx.export(module.eval(), (example,), str(tmp), input_names=[INPUT_NAME], output_names=["logits"],
                          opset_version=opset, dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True,
                          external_data=False, verbose=False)
        model = onnx.load(str(tmp))
        # The exporter marks Flatten's Reshape allowzero=1, which onnx2torch rejects; with no literal 0 in a
        # CIFAR model's target shapes both settings compute the same thing.
        for node in model.graph.node:
            for attr in node.attribute:
                if node.op_type == "Reshape" and attr.name == "allowzero":
                    attr.i = 0
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
    return path


def onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
