"""Converters onnx2torch lacks: QuantizeLinear / DequantizeLinear, and ReduceMean and Pad from opset 18.

ReduceMean-18 (axes as an input) is what torch.onnx writes for global average pooling; Pad-18 is what the
ORT backend inserts before an RGB stem (backends/ort.py, pad_narrow_conv_inputs).

With them a QDQ model from ORT's quantize_static converts to PyTorch and runs as simulated quantization
(float arithmetic between exact Q/DQ steps), so ORT's int8 kernels can be compared with the reference math.
onnx2torch's Conv/Gemm converters need their weights as initializers, so `fold_weight_dequantize` first
replaces each DequantizeLinear of a constant (int8 weights, int32 biases) with its float result: the same
numbers the QDQ graph computes at run time. Importing this module registers the converters once.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx2torch.node_converters.registry import add_converter, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value
from torch import nn

QDQ_OPSETS = (10, 13, 19, 21)


class _Affine(nn.Module):
    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> None:
        super().__init__()
        self.register_buffer("scale", scale.float())
        self.register_buffer("zero_point", zero_point)
        self.axis = axis

    def _shape(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        if t.ndim == 0:
            return t
        shape = [1] * ndim
        shape[self.axis % ndim] = -1
        return t.view(shape)


class QuantizeLinear(_Affine):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        info = torch.iinfo(self.zero_point.dtype)
        zp = self._shape(self.zero_point, x.ndim).float()
        q = torch.round(x / self._shape(self.scale, x.ndim)) + zp  # round half to even, as ONNX specifies
        return q.clamp(info.min, info.max).to(self.zero_point.dtype)


class DequantizeLinear(_Affine):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zp = self._shape(self.zero_point, x.ndim).float()
        return (x.float() - zp) * self._shape(self.scale, x.ndim)


def _converter(module_type):
    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        scale = get_const_value(node.input_values[1], graph)
        if len(node.input_values) > 2 and node.input_values[2]:
            zero_point = get_const_value(node.input_values[2], graph)
        else:
            zero_point = torch.tensor(0, dtype=torch.uint8)
        module = module_type(torch.as_tensor(scale), torch.as_tensor(zero_point), node.attributes.get("axis", 1))
        return OperationConverterResult(torch_module=module,
                                        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],),
                                                                 outputs=node.output_values))

    return convert


for _version in QDQ_OPSETS:
    add_converter(operation_type="QuantizeLinear", version=_version)(_converter(QuantizeLinear))
    add_converter(operation_type="DequantizeLinear", version=_version)(_converter(DequantizeLinear))


def fold_weight_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace DequantizeLinear nodes whose inputs are all initializers by float initializers."""
    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(name in init for name in node.input if name):
            q, scale = (numpy_helper.to_array(init[n]) for n in node.input[:2])
            zp = numpy_helper.to_array(init[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[axis % q.ndim] = -1
                scale, zp = scale.reshape(shape), np.reshape(zp, shape) if np.ndim(zp) else zp
            value = ((q.astype(np.float32) - np.asarray(zp, dtype=np.float32)) * scale).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return model


class ReduceMean(nn.Module):
    def __init__(self, axes: list[int] | None, keepdims: bool) -> None:
        super().__init__()
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.axes if self.axes else list(range(x.ndim)), keepdim=self.keepdims)


@add_converter(operation_type="ReduceMean", version=18)
def _reduce_mean(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    has_axes = len(node.input_values) > 1 and node.input_values[1]
    axes = get_const_value(node.input_values[1], graph).tolist() if has_axes else None
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        raise NotImplementedError("ReduceMean with noop_with_empty_axes")
    module = ReduceMean(axes, bool(node.attributes.get("keepdims", 1)))
    mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping)


@add_converter(operation_type="Pad", version=18)
def _pad(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Pad-18 is Pad-13 plus an optional `axes` input."""
    if len(node.input_values) > 3 and node.input_values[3]:
        raise NotImplementedError("Pad with axes")
    return get_converter(operation_type="Pad", version=13)(node, graph)
