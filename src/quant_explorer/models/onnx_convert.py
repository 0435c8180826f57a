"""A normalized ONNX graph as a PyTorch module, for the PyTorch configs (PT2E, eager dynamic) and `fresh()`.

onnx2torch's output runs, but its wrappers keep shapes as tensors, pick the division by dtype and name
layers after ONNX nodes ('/'), which torch.export, FX and TorchScript each refuse; the module is tidied into
plain torch ops and identifier-named layers. A conversion that disagrees with ONNX Runtime is not used: the
PyTorch configs would otherwise measure another model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .onnx_normalize import close, ort_logits, probe_images
from .preprocessing import Preprocessing


class OnnxModule(nn.Module):
    """A converted graph behind `forward(x)`, fed `fixed_batch` images at a time when the graph hard-codes it."""

    def __init__(self, net: nn.Module, fixed_batch: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.fixed_batch = fixed_batch

    def forward(self, x):
        if self.fixed_batch is None:
            return self.net(x)
        return torch.cat([self.net(x[i:i + self.fixed_batch]) for i in range(0, len(x), self.fixed_batch)])


class StaticReshape(nn.Module):
    """onnx2torch's Reshape takes its shape as a tensor, which torch.export (PT2E) cannot trace; a constant
    shape becomes Python ints (0 still copies the input's dim)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])


class Div(nn.Module):
    """onnx2torch's Div chooses float or integer division by dtype, which FX cannot trace: a leaf instead."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.is_floating_point() or b.is_floating_point():
            return torch.div(a, b)
        return torch.div(a, b, rounding_mode="trunc")


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, Div) or super().is_leaf_module(module, name)


def convert(model, fixed_batch: int | None) -> nn.Module:
    """onnx2torch's conversion made plain for the PyTorch configs: forward(x) and identifier layer names (for
    torch.export, i.e. PT2E), flattened to torch ops and nn layers when it traces (for TorchScript)."""
    from onnx2torch import convert as onnx2torch_convert

    from ..runtimes import onnx2torch_ops  # noqa: F401  (registers ReduceMean-18 and Pad-18: what torch.onnx writes)

    graph = _tidy(onnx2torch_convert(model))
    try:
        graph = torch.fx.GraphModule(graph, _Tracer().trace(graph))
    except Exception:  # an onnx2torch op that branches on values: torch.export still takes it, TorchScript not
        pass
    return (graph if fixed_batch is None else OnnxModule(graph, fixed_batch)).eval()


def convert_file(path: Path, fixed_batch: int | None) -> nn.Module:
    """A new conversion of a normalized file (quantization mutates modules, so each config gets its own)."""
    import onnx

    return convert(onnx.load(str(path)), fixed_batch)


def _tidy(graph):
    """Constant Reshape shapes as Python ints (onnx2torch keeps a tensor, which neither FX nor torch.export
    traces), Div as a leaf, layers named as identifiers (ONNX names hold '/', which torch.export cannot
    resolve), and the input named x, as our own models name it."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation
    from onnx2torch.node_converters.constant import OnnxConstant
    from onnx2torch.node_converters.reshape import OnnxReshape

    names = {node.name for node in graph.graph.nodes}
    for node in list(graph.graph.nodes):
        if node.op == "placeholder" and "x" not in names:
            node.target = node.name = "x"
        if node.op != "call_module":
            continue
        module = graph.get_submodule(node.target)
        if isinstance(module, OnnxReshape):
            source = node.args[1]
            shape = (graph.get_buffer(source.target) if source.op == "get_attr" else
                     graph.get_submodule(source.target).value if source.op == "call_module"
                     and isinstance(graph.get_submodule(source.target), OnnxConstant) else None)
            if shape is not None:
                module = StaticReshape(tuple(int(s) for s in shape.tolist()))
                node.args = (node.args[0],)
        elif (isinstance(module, OnnxBinaryMathOperation) and module.math_op_function.__name__ == "_onnx_div"
              and module.broadcast != 1):
            module = Div()
        name = base = re.sub(r"\W", "_", node.target).strip("_") or "layer"
        suffix = 0
        while name != node.target and hasattr(graph, name):
            suffix += 1
            name = f"{base}_{suffix}"
        graph.add_submodule(name, module)
        node.target = name
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def torch_disagreement(module: nn.Module, model, preprocessing: Preprocessing,
                       chw: tuple[int, ...] = (3, 32, 32)) -> str | None:
    """Why onnx2torch's conversion cannot stand for the model (it disagrees with ONNX Runtime) on images of `chw`,
    or None: else the PyTorch configs would measure another model."""
    x = probe_images(preprocessing, 1, chw)
    with torch.inference_mode():
        got = module(x).numpy()
    want = ort_logits(model, x.numpy(), 1)
    if close(got, want):
        return None
    return (f"onnx2torch converts it into a model that disagrees with ONNX Runtime (max difference "
            f"{np.abs(got - want).max():.3g}); ONNX Runtime configs still run it")
