"""PT2E static quantization (torch.export + torchao): export, prepare, calibrate, convert.

X86InductorQuantizer picks what to quantize (its Conv/Linear fusion patterns), with our changes in
x86_quantizer.py that keep residual blocks in uint8 between convolutions. The config picks how, through our
own QuantizationSpecs: activation dtype and symmetry, observer, weight granularity. The converted model
is the reference Q/DQ graph (int8 weights, float compute) and is what we score; `alternates["inductor"]`
compiles it with freezing so Inductor replaces the Q/DQ patterns with oneDNN int8 kernels.
"""

from __future__ import annotations

import copy
import operator
from pathlib import Path

import torch

from ..configs import QuantConfig
from ..files import atomic_path
from ..models import LoadedModel
from ..runtimes import inductor_runner, torch_runner
from . import Calibration, QuantizedModel

EXAMPLE = torch.zeros(2, 3, 32, 32)
DYNAMIC_BATCH = ({0: torch.export.Dim("batch")},)  # the quantized model runs at any batch size
EPS = 2 ** -12  # the floor X86InductorQuantizer's own default config puts under every scale
QDQ_OPS = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")


def quantization_config(config: QuantConfig):
    """The torchao QuantizationConfig a config names: activation dtype/symmetry/observer, weight granularity."""
    from torchao.quantization.pt2e import (HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver,
                                           PerChannelMinMaxObserver)
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    observers = {"minmax": MinMaxObserver, "moving_average_minmax": MovingAverageMinMaxObserver,
                 "histogram": HistogramObserver}
    signed = config.activation_dtype == "int8"
    activation = QuantizationSpec(
        dtype=torch.int8 if signed else torch.uint8, quant_min=-128 if signed else 0, quant_max=127 if signed else 255,
        qscheme=torch.per_tensor_symmetric if config.symmetric_activations else torch.per_tensor_affine,
        is_dynamic=False, observer_or_fake_quant_ctr=observers[config.calibration].with_args(eps=EPS))
    per_channel = config.granularity == "per_channel"
    weight = QuantizationSpec(
        dtype=torch.int8, quant_min=-128, quant_max=127, ch_axis=0 if per_channel else None, is_dynamic=False,
        qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
        observer_or_fake_quant_ctr=(PerChannelMinMaxObserver if per_channel else MinMaxObserver).with_args(eps=EPS))
    return QuantizationConfig(activation, activation, weight, None, is_qat=False)


def export_fp32(model: LoadedModel) -> torch.fx.GraphModule:
    """A fresh copy of the model's exported FP32 graph: every config and seed starts from one export, kept
    with the loaded model (prepare_pt2e inserts its observers in place, hence the copy)."""
    if "fp32_export" not in model.derived:
        exported = torch.export.export(model.fresh(), (EXAMPLE,), dynamic_shapes=DYNAMIC_BATCH)
        model.derived["fp32_export"] = exported.module()
    return copy.deepcopy(model.derived["fp32_export"])


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .x86_quantizer import SharedOutputX86InductorQuantizer, fold_quantized_pads

    prepared = prepare_pt2e(export_fp32(model), SharedOutputX86InductorQuantizer().set_global(quantization_config(config)))
    with torch.no_grad():
        for batch in calibration.batches():
            prepared(batch)
    converted = convert_pt2e(prepared)
    fold_quantized_pads(converted)
    converted = in_eval_mode(_drop_unused(converted))
    path = workdir / "model.pt2"
    with atomic_path(path) as tmp:
        torch.export.save(torch.export.export(converted, (EXAMPLE,), dynamic_shapes=DYNAMIC_BATCH), tmp)
    # oneDNN's int8 convolutions take uint8 activations only: with int8 ones the compiled model fails at run time.
    alternates = {"inductor": lambda: inductor_runner(converted)} if config.activation_dtype == "uint8" else {}
    return QuantizedModel(torch_runner(converted), path, "torch", checks=graph_checks(converted), alternates=alternates)


def in_eval_mode(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Mark a converted graph as evaluating, so runners need not call .eval() (which an exported graph refuses).
    It was exported from an eval-mode module: its batch norms already use running statistics. torchao's
    `allow_exported_model_train_eval` would do the same by re-exporting its dropout and batch-norm patterns
    on every .eval(), 2.4 s per model, which was 40% of a PT2E row's time."""
    for module in gm.modules():
        module.training = False
    return gm


def _drop_unused(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete the float weights convert_pt2e leaves behind beside their int8 copies, so the artifact holds only int8."""
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for name in [n for n in gm.state_dict() if n not in used]:
        owner, _, leaf = name.rpartition(".")
        delattr(gm.get_submodule(owner), leaf)
    return gm


def graph_checks(gm: torch.fx.GraphModule) -> dict:
    """What the converted graph holds, and whether every activation zero point represents 0.0 exactly.

    Weights are folded to int8 constants, so each quantize node left in the graph is an activation's.
    """
    ops: dict[str, int] = {}
    dtypes, checked, bad = set(), 0, []
    for node in gm.graph.nodes:
        name = getattr(node.target, "__name__", "").split(".")[0]
        if node.op != "call_function" or name not in QDQ_OPS:
            continue
        ops[name] = ops.get(name, 0) + 1
        if name != "quantize_per_tensor":
            continue
        scale, zp, qmin, qmax, dtype = (_value(gm, a) for a in node.args[1:6])
        info = torch.iinfo(dtype)
        dtypes.add(str(dtype).removeprefix("torch."))
        checked += 1
        if not (float(zp).is_integer() and max(qmin, info.min) <= zp <= min(qmax, info.max) and 0 < scale < float("inf")):
            bad.append(node.name)
    return {"quantized_ops": dict(sorted(ops.items())), "activation_dtypes": sorted(dtypes),
            "activation_tensors_checked": checked, "zero_point_exact_zero": not bad, "zero_point_failures": bad}


def _value(gm: torch.fx.GraphModule, arg):
    """A Q/DQ argument's value: a literal, or the scalar tensor behind a get_attr node."""
    return operator.attrgetter(arg.target)(gm).item() if isinstance(arg, torch.fx.Node) else arg
