"""The ways an FP32 or quantized model runs: PyTorch (eager or compiled by Inductor), ONNX Runtime, and
PyTorch via onnx2torch.

Each `*_runner` returns a callable from a float32 NCHW batch to logits, which is all `evaluate` needs; each
`Runtime` record says what a runtime is, for the bench's baselines and the explanations.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserError

ONNX_OPSET = 18
INPUT_NAME = "input"
DYNAMIC_BATCH = ({0: torch.export.Dim("batch")},)  # so every exported model runs at any batch size


@dataclass(frozen=True)
class Runtime:
    """What is known of a runtime whatever model runs in it; backends declare the runtimes their artifacts run in."""

    name: str
    description: str  # completes "run as ..." in an explanation
    baseline: str | None  # the FP32 runtime its speed-ups are measured against (None: never timed)
    exact: bool = False  # computes the recipe's arithmetic exactly: a float simulation of the integer model
    isa_capped: bool = False  # its kernels obey oneDNN's ISA cap, so it can run as an emulated lower CPU class


ONNXRUNTIME = Runtime("onnxruntime", "ONNX Runtime's kernels", "onnxruntime")
TORCH = Runtime("torch", "PyTorch eager (for PT2E, the converted Q/DQ reference in float)", "torch", isa_capped=True)
INDUCTOR = Runtime("inductor", "Inductor-compiled oneDNN int8 kernels", "inductor", isa_capped=True)
AOTINDUCTOR = Runtime("aotinductor", "an AOTInductor package (Inductor's kernels, oneDNN int8, called from C++)",
                      "aotinductor", isa_capped=True)
ONNX2TORCH = Runtime("onnx2torch", "exact simulated quantization (the same QDQ model converted to PyTorch)", None,
                     exact=True)


def torch_runner(module: nn.Module):
    if module.training:  # an exported graph is marked eval instead (backends.pt2e.in_eval_mode): it refuses .eval()
        module.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def inductor_runner(module: nn.Module):
    """torch.compile (Inductor) with torch._inductor.config.freezing on, run under no_grad; compiles on the
    first call of each new shape. Freezing is what makes PT2E fast: constant weights let Inductor swap
    dequantize -> conv -> quantize for oneDNN int8 convolutions; without it the model computes in float.
    On torch 2.14, with freezing passed as `options={"freezing": True}` instead, or under inference_mode,
    tracing reaches oneDNN's int8 weight prepack with fake tensors and fails (onednn.qconv_prepack).
    A PT2E graph is compiled from a copy whose per-tensor weights read as per-channel ones (below)."""
    from torch._inductor import config

    pad_uint8_in_aten()
    if isinstance(module, torch.fx.GraphModule):
        module = per_channel_weight_dequantize(copy.deepcopy(module))
    compiled = torch.compile(module, dynamic=True)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), config.patch(freezing=True):
            return compiled(x)

    return run


def pad_uint8_in_aten() -> None:
    """Have Inductor call ATen's constant_pad_nd for uint8 tensors; every other dtype keeps Inductor's lowering.

    A PT2E ResNet pads uint8 activations before each stride-2 conv (x86_quantizer.fold_quantized_pads).
    Inductor's generated pad steps through them 8 bytes at a time behind a mask: 3.1 ms for a 4 MB
    channels-last tensor on 2 cores, against 0.25 ms in ATen, with the same bytes out. Installed once per process.
    """
    from torch._inductor import lowering

    target = torch.ops.aten.constant_pad_nd.default
    inductor_pad = lowering.lowerings[target]
    if getattr(inductor_pad, "uint8_in_aten", False):
        return
    aten_pad = lowering.fallback_handler(target, add_to_fallback_set=False)

    def pad(x, padding, value=0):
        return (aten_pad if x.get_dtype() == torch.uint8 else inductor_pad)(x, padding, value)

    pad.uint8_in_aten = True
    lowering.lowerings[target] = pad


def per_channel_weight_dequantize(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A PT2E graph's dequantize_per_tensor of each constant weight as dequantize_per_channel, its one scale
    repeated per output channel: the same numbers, but Inductor's int8 conv and linear lowerings match only
    per-channel weights, so per-tensor ones stayed float convolutions (resnet8-mlperf: 0.94x FP32, not 3.0x)."""
    decomposed = torch.ops.quantized_decomposed
    for dq in list(gm.graph.nodes):
        weight = dq.args[0] if dq.target == decomposed.dequantize_per_tensor.default else None
        if getattr(weight, "op", None) != "get_attr" or not all(isinstance(a, (int, float)) for a in dq.args[1:3]):
            continue
        channels = operator.attrgetter(weight.target)(gm).shape[0]
        prefix = weight.target.replace(".", "_")
        gm.register_buffer(f"{prefix}_scales", torch.full((channels,), float(dq.args[1])))
        gm.register_buffer(f"{prefix}_zero_points", torch.full((channels,), int(dq.args[2]), dtype=torch.int64))
        with gm.graph.inserting_before(dq):
            scales, zero_points = gm.graph.get_attr(f"{prefix}_scales"), gm.graph.get_attr(f"{prefix}_zero_points")
            per_channel = gm.graph.call_function(decomposed.dequantize_per_channel.default,
                                                 (weight, scales, zero_points, 0, *dq.args[3:]))
        per_channel.meta = dict(dq.meta)
        dq.replace_all_uses_with(per_channel)
        gm.graph.erase_node(dq)
    gm.recompile()
    return gm


def ort_session(path: Path, threads: int | None = None, profile_prefix: str | None = None):
    """An InferenceSession with full graph optimisation and a pinned intra-op thread count; with
    `profile_prefix`, ORT's per-node profiling on (session.end_profiling() returns the trace file)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def in_batches_of(run, size: int | None):
    """`run` fed `size` images at a time: imported graphs may hard-code batch 1 (None: any batch, as is)."""
    if size is None:
        return run

    def run_chunked(x: torch.Tensor) -> np.ndarray:
        return np.concatenate([np.asarray(run(x[i:i + size])) for i in range(0, len(x), size)])

    return run_chunked


def ort_runner(path: Path, threads: int | None = None):
    session = ort_session(path, threads)
    image = session.get_inputs()[0]

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {image.name: np.ascontiguousarray(x.numpy())})[0]

    return in_batches_of(run, image.shape[0] if isinstance(image.shape[0], int) else None)


def onnx2torch_runner(path: Path):
    from onnx2torch import convert

    import onnx

    from .onnx2torch_ops import fold_weight_dequantize  # also registers the missing converters

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return in_batches_of(torch_runner(convert(fold_weight_dequantize(model))),
                         dims[0].dim_value if dims and dims[0].dim_value else None)


def export_onnx(module: nn.Module, path: Path, example: torch.Tensor, opset: int = ONNX_OPSET) -> Path:
    """Export with a dynamic batch dimension (`example`: a batch of 2, `LoadedModel.example`), check with
    onnx.checker, write atomically."""
    import onnx

    from .files import atomic_path

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


def check_onnx_file(path: Path) -> None:
    if not Path(path).is_file():
        raise UserError(f"{path} is not a file")
