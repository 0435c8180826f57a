"""PT2E static quantization (torch.export + torchao): export, prepare, calibrate, convert.

X86InductorQuantizer picks what to quantize (its Conv/Linear fusion patterns), with our changes in
x86_quantizer.py that keep residual blocks in uint8 between convolutions. The config picks how, through our
own QuantizationSpecs: activation dtype and symmetry, observer, weight granularity. The converted model
is the reference Q/DQ graph (int8 weights, float compute): the recipe's float simulation, a diagnostic. The
compiled runtimes start from the saved artifact with freezing, so Inductor replaces the Q/DQ patterns with oneDNN
int8 kernels: "inductor" through torch.compile's Python wrapper (every stored accuracy), and "aotinductor" as a
package compiled ahead of time and called from C++ (`runtimes/aot.py`), which is what a user deploys and so the
bench's headline; the FP32 reference runs in all three (eager PyTorch as a cross-check). Per-layer sensitivity
configures the same quantizer per module (set_module_name_qconfig) and measures SQNR with torchao's numeric debugger.
Its configs are named pt2e_<act>_<granularity>_<observer>[_rr], e.g. pt2e_u8_per_channel_histogram.
"""

from __future__ import annotations

import copy
import operator
from pathlib import Path
from typing import TYPE_CHECKING

from ..configs import ACTIVATIONS, GRANULARITIES, Capabilities, QuantConfig
from ..errors import NotApplicable
from ..files import atomic_path
from ..provenance import reuse_or_build
from .base import Backend, Calibration, QuantizedModel, Runtime, RuntimeBuild, register

if TYPE_CHECKING:
    import torch

    from ..evaluate import Runner
    from ..models import LoadedModel

EPS = 2 ** -12  # the floor X86InductorQuantizer's own default config puts under every scale
QDQ_OPS = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")
OBSERVERS = {"minmax": "minmax", "movavg": "moving_average_minmax", "histogram": "histogram"}  # name token -> observer
DEFAULTS = {"pt2e_u8_per_channel_histogram", "pt2e_u8_per_channel_minmax", "pt2e_u8_per_tensor_minmax",
            "pt2e_u8_per_channel_movavg", "pt2e_u8_per_channel_minmax_rr"}  # the default sweep's
# How a user loads the shipped package as the bench timed it ({artifact} and {threads} filled in by `load_code`).
AOTI_LOAD = """import torch
torch.set_num_threads({threads})
runner = torch._inductor.aoti_load_package({artifact!r}).loader
logits = runner.run([images.contiguous()])[0]  # float32 NCHW tensor; as timed (model(images) adds ~0.02 ms)"""


def _fp32_in_torch(model: LoadedModel, workdir: Path) -> RuntimeBuild | None:
    from ..runtimes.torch_runners import torch_runner

    return None if model.module is None else RuntimeBuild(lambda _: torch_runner(model.module), cross_check=True)


def _fp32_in_inductor(model: LoadedModel, workdir: Path) -> RuntimeBuild | None:
    from ..runtimes.torch_runners import inductor_runner

    return None if model.module is None else RuntimeBuild(lambda _: inductor_runner(model.fresh()), compiles=True)


def _fp32_in_aotinductor(model: LoadedModel, workdir: Path) -> RuntimeBuild | None:
    from ..runtimes.aot import aot_runner

    package = workdir / "model.aoti.pt2"
    return None if model.module is None else RuntimeBuild(lambda _: aot_runner(compiled(model, package)),
                                                          compiles=True, artifact=package)


TORCH = Runtime("torch", "PyTorch eager (for PT2E, the converted Q/DQ reference in float)", "torch", isa_capped=True,
                fp32=_fp32_in_torch)
INDUCTOR = Runtime("inductor", "Inductor-compiled oneDNN int8 kernels", "inductor", isa_capped=True,
                   fp32=_fp32_in_inductor)
AOTINDUCTOR = Runtime("aotinductor", "an AOTInductor package (Inductor's kernels, oneDNN int8, called from C++)",
                      "aotinductor", isa_capped=True, load=AOTI_LOAD, fp32=_fp32_in_aotinductor)


def configs() -> list[QuantConfig]:
    """Every activation dtype x granularity x observer; reduce_range (7-bit uint8 activations, X86InductorQuantizer's
    remedy for CPUs without VNNI) for uint8 activations."""
    out = []
    for act, (dtype, symmetric) in ACTIVATIONS.items():
        for granularity in GRANULARITIES:
            for token, observer in OBSERVERS.items():
                for rr in (False, True) if act == "u8" else (False,):
                    name = f"pt2e_{act}_{granularity}_{token}" + ("_rr" if rr else "")
                    out.append(QuantConfig(
                        name, "pt2e",
                        f"PT2E (torch.export + torchao): {dtype} {'symmetric' if symmetric else 'asymmetric'} "
                        f"activations ({observer} observer), int8 {granularity.replace('_', '-')} weights"
                        + (", reduce_range (7-bit activations)" if rr else ""),
                        activation_dtype=dtype, symmetric_activations=symmetric, weight_dtype="int8",
                        granularity=granularity, calibration=observer, reduce_range=rr, default=name in DEFAULTS))
    return out


def quantization_config(config: QuantConfig):
    """The torchao QuantizationConfig a config names: activation dtype/symmetry/observer, weight granularity."""
    import torch
    from torchao.quantization.pt2e import (
        HistogramObserver,
        MinMaxObserver,
        MovingAverageMinMaxObserver,
        PerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    observers = {"minmax": MinMaxObserver, "moving_average_minmax": MovingAverageMinMaxObserver,
                 "histogram": HistogramObserver}
    signed = config.activation_dtype == "int8"
    top = 127 if signed or config.reduce_range else 255  # reduce_range: uint8 activations in 0..127, as torchao's
    activation = QuantizationSpec(
        dtype=torch.int8 if signed else torch.uint8, quant_min=-128 if signed else 0, quant_max=top,
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
    import torch

    from ..runtimes.export import DYNAMIC_BATCH

    if "fp32_export" not in model.derived:
        exported = torch.export.export(model.fresh(), (model.example,), dynamic_shapes=DYNAMIC_BATCH)
        model.derived["fp32_export"] = exported.module()
    return copy.deepcopy(model.derived["fp32_export"])


def convert(model: LoadedModel, quantizer, calibration: Calibration,
            exported: torch.fx.GraphModule | None = None) -> torch.fx.GraphModule:
    """prepare_pt2e with `quantizer` on the FP32 export (or `exported`), calibrate, convert, then our clean-ups:
    stride-2 pads folded into the uint8 domain, float weights dropped, marked eval. Every PT2E model is made here."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .x86_quantizer import fold_quantized_pads

    prepared = prepare_pt2e(exported if exported is not None else export_fp32(model), quantizer)
    with torch.no_grad():
        for batch in calibration.batches():
            prepared(batch)
    converted = convert_pt2e(prepared)
    fold_quantized_pads(converted)
    return in_eval_mode(_drop_unused(converted))


def quantizer_for(config: QuantConfig):
    from .x86_quantizer import SharedOutputX86InductorQuantizer

    return SharedOutputX86InductorQuantizer().set_global(quantization_config(config))


def load_pt2(path: Path) -> torch.nn.Module:
    """The saved PT2E artifact as a module. Importing torchao's X86InductorQuantizer module matters twice: it
    registers the quantized_decomposed ops the file names, and the Inductor passes that turn Q/DQ + conv into
    oneDNN int8 kernels; without them the compiled model silently stays in float."""
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

    return torch.export.load(str(path)).module()


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    import torch

    from ..runtimes.aot import aot_runner
    from ..runtimes.export import DYNAMIC_BATCH
    from ..runtimes.torch_runners import inductor_runner, torch_runner

    if config.activation_dtype != "uint8":
        raise NotApplicable("oneDNN's int8 convolutions, which Inductor and AOTInductor compile PT2E models to, take "
                            "uint8 activations only: an int8-activation PT2E model has no int8 CPU kernels to ship "
                            "(only its float simulation runs)")
    converted = convert(model, quantizer_for(config), calibration)
    path, package = workdir / "model.pt2", workdir / "model.aoti.pt2"
    with atomic_path(path) as tmp:
        torch.export.save(torch.export.export(converted, (model.example,), dynamic_shapes=DYNAMIC_BATCH), tmp)
    # The compiled runtimes start from the saved artifact, as a user's deployment would. The AOTInductor package
    # is what one ships (no Python on the call path): the bench's headline. Inductor runs the same oneDNN kernels
    # (the sweep's first seed checks the two agree image for image) and compiles in 3 s where a package takes 10,
    # so it scores every seed. The package is compiled once per workdir (one row identity) and reused.
    runtimes = {INDUCTOR.name: RuntimeBuild(lambda _: inductor_runner(load_pt2(path)), compiles=True),
                AOTINDUCTOR.name: RuntimeBuild(lambda _: aot_runner(compiled(model, package, path)), compiles=True,
                                               cross_check=True, artifact=package),
                TORCH.name: RuntimeBuild(lambda _: torch_runner(converted), timed=False, every_seed=True)}
    return QuantizedModel(path, INDUCTOR.name, runtimes, checks=graph_checks(converted), headline=AOTINDUCTOR.name,
                          reference=TORCH.name)


def compiled(model: LoadedModel, package: Path, pt2: Path | None = None) -> Path:
    """The AOTInductor package of the saved PT2E artifact `pt2`, or of the FP32 model (None): compiled once per
    workdir (one row identity), then reused while its record proves it (`provenance`)."""
    from ..runtimes.aot import compile_package

    source = {"from": pt2.name} if pt2 else {"weights_sha256": model.weights_sha256}
    made_from = {"row": package.parent.name, **source}
    return reuse_or_build(package, made_from,
                          lambda out: compile_package(load_pt2(pt2) if pt2 else model.fresh(), out, model.example),
                          f"compiled {'PT2E' if pt2 else 'FP32'} package")


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
    import torch

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
        in_range = max(qmin, info.min) <= zp <= min(qmax, info.max)
        if not (float(zp).is_integer() and in_range and 0 < scale < float("inf")):
            bad.append(node.name)
    return {"quantized_ops": dict(sorted(ops.items())), "activation_dtypes": sorted(dtypes),
            "activation_tensors_checked": checked, "zero_point_exact_zero": not bad, "zero_point_failures": bad}


def _value(gm: torch.fx.GraphModule, arg):
    """A Q/DQ argument's value: a literal, or the scalar tensor behind a get_attr node."""
    import torch

    return operator.attrgetter(arg.target)(gm).item() if isinstance(arg, torch.fx.Node) else arg


class Pt2eLayerVariants:
    """The PT2E recipe with X86InductorQuantizer configured per module; SQNR from torchao's numeric debugger."""

    method = "PT2E X86InductorQuantizer.set_module_name_qconfig"

    def __init__(self, model: LoadedModel, config: QuantConfig, calibration: Calibration, workdir: Path) -> None:
        import torch

        self.model, self.calibration = model, calibration
        self.qconfig = quantization_config(config)
        kinds = (torch.nn.Conv2d, torch.nn.Linear)
        self.layers = [{"layer": name, "node": name, "op_type": type(m).__name__}
                       for name, m in model.fresh().named_modules() if isinstance(m, kinds)]

    def _convert(self, only: str | None = None, skip: str | None = None,
                 exported: torch.fx.GraphModule | None = None) -> torch.fx.GraphModule:
        from .x86_quantizer import SharedOutputX86InductorQuantizer

        quantizer = SharedOutputX86InductorQuantizer()
        if only:
            quantizer.set_module_name_qconfig(only, self.qconfig)
        else:
            quantizer.set_global(self.qconfig)
            if skip:
                quantizer.set_module_name_qconfig(skip, None)
        return convert(self.model, quantizer, self.calibration, exported)

    def build(self, only: str | None = None, skip: str | None = None) -> Runner:
        from ..runtimes.torch_runners import torch_runner

        return torch_runner(self._convert(only, skip))

    def sqnr(self, images: torch.Tensor) -> dict:
        import torch
        from torchao.quantization.pt2e import (
            compare_results,
            extract_results_from_loggers,
            prepare_for_propagation_comparison,
        )

        exported = export_fp32(self.model)
        # A conv followed by BatchNorm computes something else once the BN is folded into it: not comparable.
        folded = {n.name for n in exported.graph.nodes if any("batch_norm" in str(u.target) for u in n.users)}
        reference = prepare_for_propagation_comparison(exported)  # a copy, before prepare_pt2e changes the graph
        actual = prepare_for_propagation_comparison(self._convert(exported=exported))
        with torch.no_grad():
            reference(images)
            actual(images)
        results = compare_results(extract_results_from_loggers(reference), extract_results_from_loggers(actual))
        activations = [{"tensor": s.ref_node_name, "label": f"{s.ref_module_stack} ({s.ref_node_name})",
                        "sqnr_db": round(float(s.results[0].sqnr), 3)}
                       for info, s in results.items() if s.results and info.name not in folded]
        return {"activations": activations, "weights": {}, "method": "torchao.quantization.pt2e numeric debugger"}


BACKEND = register(Backend("pt2e", "PT2E: torch.export + torchao X86InductorQuantizer", quantize,
                           (TORCH, INDUCTOR, AOTINDUCTOR), color="tab:orange", layer_variants=Pt2eLayerVariants,
                           recipe=("quant_explorer.backends.x86_quantizer",),
                           capabilities=Capabilities("pt2e", calibrations=tuple(OBSERVERS.values())),
                           configs=configs, libraries=("torch", "torchao")))
