"""Eager-mode quantization (torch.ao.quantization): static PTQ with fused modules, or dynamic on nn.Linear.

Static: fuse Conv-BN(-ReLU), attach a QConfig, prepare, calibrate, convert to quantized modules.
Dynamic: int8 weights for nn.Linear only, activations quantized on the fly; needs no calibration.

Kernels: the quantized engine packs the weights at convert time. A user ships the engine of their CPU: x86
(fbgemm/oneDNN) on x86, qnnpack on ARM. That one scores every stored row. On x86 CPUs without VNNI the x86 engine
sums uint8 x int8 products pairwise in saturating int16 (AVX2 vpmaddubsw), and full-range activations lose
accuracy; qnnpack's int32 accumulation is exact on every CPU, so on x86 it is the recipe's reference. Both
engines are timed against the FP32 model in eager PyTorch (the "torch" runtime). Two backends, two configs of static
(per-tensor and per-channel weights) and one of dynamic, under the names users know.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..configs import GRANULARITIES, Capabilities, QuantConfig
from ..errors import NotApplicable
from ..files import atomic_path
from .base import Backend, Calibration, Quantize, QuantizedModel, Runtime, RuntimeBuild, register

if TYPE_CHECKING:
    from torch import nn

    from ..models import LoadedModel

EXACT_ENGINE = "qnnpack"
X86_ENGINE = "x86"
# How a user loads the saved TorchScript as the bench timed it ({artifact}, {threads}, {engine}: `load_code`).
LOAD = """import torch
torch.backends.quantized.engine = {engine!r}
torch.set_num_threads({threads})
model = torch.jit.load({artifact!r})
with torch.inference_mode():
    logits = model(images)  # float32 NCHW tensor"""
RUNTIMES = (Runtime(EXACT_ENGINE, "the qnnpack quantized engine (exact int32 accumulation)", "torch", load=LOAD,
                    loader="quant_explorer.runtimes.torch_runners:qnnpack_runner"),
            Runtime(X86_ENGINE, "the x86 (fbgemm/oneDNN) quantized engine", "torch", load=LOAD,
                    loader="quant_explorer.runtimes.torch_runners:torchscript_runner"))
# The engine a user of this machine ships: x86's where the CPU is x86, qnnpack (ARM's) elsewhere.
SHIPPED_ENGINE = X86_ENGINE if platform.machine().lower() in ("x86_64", "amd64", "i686") else EXACT_ENGINE
QUANT_RANGES = {"quint8": (0, 255), "qint8": (-128, 127)}  # torch dtype name -> its integer range


def qconfig(config: QuantConfig):
    """MinMax uint8 activations (7-bit with reduce_range) and symmetric int8 weights at the config's granularity."""
    from torch.ao.quantization import (
        MinMaxObserver,
        QConfig,
        default_per_channel_weight_observer,
        default_weight_observer,
    )

    weight = default_per_channel_weight_observer if config.granularity == "per_channel" else default_weight_observer
    return QConfig(activation=MinMaxObserver.with_args(reduce_range=config.reduce_range), weight=weight)


def static_module(model: LoadedModel, config: QuantConfig, calibration: Calibration | None) -> nn.Module:
    """Fused Conv-BN(-ReLU), observed over the calibration batches, converted to quantized modules."""
    import torch
    from torch.ao.quantization import convert, fuse_modules, prepare

    if model.is_imported:
        raise NotApplicable(f"{model.name} is an imported ONNX graph: eager static quantization needs our module's "
                            "QuantStub/DeQuantStub and fusion groups")
    module = model.fresh(quantizable=True)
    module = fuse_modules(module, module.fusion_groups())
    module.qconfig = qconfig(config)
    prepare(module, inplace=True)
    with torch.no_grad():
        for batch in calibration.batches():
            module(batch)
    return convert(module)


def dynamic_module(model: LoadedModel, config: QuantConfig, calibration: Calibration | None) -> nn.Module:
    """int8 weights for nn.Linear, activations quantized on the fly: no calibration."""
    import torch
    from torch import nn
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.fresh(), {nn.Linear}, dtype=torch.qint8)


ModuleMaker = Callable[["LoadedModel", QuantConfig, "Calibration | None"], "nn.Module"]


def quantized_module(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, engine: str,
                     make: ModuleMaker = static_module) -> nn.Module:
    """The module `make` converts, its weights packed for `engine`; the global engine is restored afterwards."""
    import torch

    previous, torch.backends.quantized.engine = torch.backends.quantized.engine, engine
    try:
        return make(model, config, calibration)
    finally:
        torch.backends.quantized.engine = previous


def quantizer(make: ModuleMaker) -> Quantize:
    """A backend's `quantize` by `make`: the module packed for the shipped engine (saved, scored) and the exact one."""

    def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None,
                 workdir: Path) -> QuantizedModel:
        import torch

        from ..runtimes.torch_runners import torch_runner

        engines = {name: quantized_module(model, config, calibration, name, make)
                   for name in (SHIPPED_ENGINE, EXACT_ENGINE)}
        path = workdir / "model.pt"  # TorchScript: int8 packed weights plus the code to run them
        with atomic_path(path) as tmp:
            torch.jit.save(torch.jit.script(engines[SHIPPED_ENGINE]), str(tmp))
        runtimes = {name: RuntimeBuild(lambda _, module=module: torch_runner(module), timed=name == SHIPPED_ENGINE,
                                       every_seed=True) for name, module in engines.items()}
        return QuantizedModel(path, SHIPPED_ENGINE, runtimes, checks=module_checks(engines[SHIPPED_ENGINE]),
                              reference=EXACT_ENGINE if EXACT_ENGINE != SHIPPED_ENGINE else None)

    return quantize


def module_checks(module: nn.Module) -> dict:
    """Which quantized module types the model holds, and whether every activation zero point represents 0.0.

    Each static quantized module (Quantize stub, conv, linear, QFunctional) writes its output with its own
    (scale, zero_point), in uint8 except the stub, which says its dtype; dynamic modules carry none.
    """
    import torch
    from torch.ao.nn.quantized import Quantize
    from torch.ao.quantization.quantization_mappings import (
        get_default_dynamic_quant_module_mappings,
        get_default_static_quant_module_mappings,
    )

    static = set(get_default_static_quant_module_mappings().values())
    quantized = static | set(get_default_dynamic_quant_module_mappings().values())
    types: dict[str, int] = {}
    checked, bad = 0, []
    for name, sub in module.named_modules():
        kind = type(sub)
        if kind not in quantized:
            continue
        key = f"{kind.__module__.removeprefix('torch.ao.nn.').split('.modules')[0]}.{kind.__name__}"
        types[key] = types.get(key, 0) + 1
        if kind not in static or not hasattr(sub, "zero_point"):
            continue
        checked += 1
        low, high = QUANT_RANGES[str(sub.dtype if isinstance(sub, Quantize) else torch.quint8).removeprefix("torch.")]
        scale, zp = float(sub.scale), float(sub.zero_point)
        if not (zp.is_integer() and low <= zp <= high and 0 < scale < float("inf")):
            bad.append(name)
    return {"quantized_modules": dict(sorted(types.items())), "torch_quantized_engine": SHIPPED_ENGINE,
            "activation_tensors_checked": checked, "zero_point_exact_zero": not bad, "zero_point_failures": bad}


def dynamic_configs() -> list[QuantConfig]:
    return [QuantConfig("dynamic_int8", "eager_dynamic",
                        "torch quantize_dynamic on nn.Linear only: a control that barely touches a conv net",
                        weight_dtype="int8", granularity="per_tensor", default=True)]


def static_configs() -> list[QuantConfig]:
    return [QuantConfig(f"static_int8_{granularity}", "eager_static", "eager static PTQ: fused Conv-BN-ReLU, MinMax "
                        f"activations, {granularity.replace('_', '-')} int8 weights", activation_dtype="uint8",
                        weight_dtype="int8", granularity=granularity, calibration="minmax", default=True)
            for granularity in GRANULARITIES]


DYNAMIC = register(Backend("eager_dynamic", "eager-mode dynamic quantization of nn.Linear", quantizer(dynamic_module),
                           RUNTIMES, color="tab:purple", capabilities=Capabilities("eager_dynamic", calibrated=False),
                           configs=dynamic_configs, libraries=("torch",)))
STATIC = register(Backend("eager_static", "eager-mode static PTQ (torch.ao.quantization)", quantizer(static_module),
                          RUNTIMES, color="tab:green", configs=static_configs, libraries=("torch",),
                          capabilities=Capabilities("eager_static", calibrations=("minmax",))))  # `qconfig`: MinMax
