"""The FP32 reference: the exported ONNX model run in ONNX Runtime, the baseline every delta uses; also the FP32
speed every runtime's speed-up is measured against (eager PyTorch, Inductor, an AOTInductor package, ONNX
Runtime), so each int8 model is compared like with like."""

from __future__ import annotations

from pathlib import Path

from ..aot import aot_runner, compile_package
from ..configs import CAPABILITIES, QuantConfig
from ..models import LoadedModel, exported_onnx
from ..provenance import reuse_or_build
from ..runtimes import (
    AOTINDUCTOR,
    INDUCTOR,
    ONNX2TORCH,
    ONNXRUNTIME,
    TORCH,
    inductor_runner,
    onnx2torch_runner,
    ort_runner,
    torch_runner,
)
from .base import Backend, Calibration, QuantizedModel, RuntimeBuild, register


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    path, package = exported_onnx(model), workdir / "model.aoti.pt2"
    runtimes = {ONNXRUNTIME.name: RuntimeBuild(lambda threads: ort_runner(path, threads))}
    if model.module is not None:  # an imported graph onnx2torch cannot convert runs in ONNX Runtime only
        runtimes.update({
            TORCH.name: RuntimeBuild(lambda _: torch_runner(model.module), cross_check=True),
            INDUCTOR.name: RuntimeBuild(lambda _: inductor_runner(model.fresh()), compiles=True),
            AOTINDUCTOR.name: RuntimeBuild(lambda _: aot_runner(compiled(model, package)), compiles=True,
                                           artifact=package),
            ONNX2TORCH.name: RuntimeBuild(lambda _: onnx2torch_runner(path), timed=False, cross_check=True),
        })
    return QuantizedModel(path, ONNXRUNTIME.name, runtimes)


def compiled(model: LoadedModel, package: Path) -> Path:
    """The FP32 model's AOTInductor package: compiled once per workdir (one row identity), then reused while its
    record proves it (`provenance`)."""
    return reuse_or_build(package, {"row": package.parent.name, "weights_sha256": model.weights_sha256},
                          lambda out: compile_package(model.fresh(), out, model.example), "compiled FP32 package")


BACKEND = register(Backend("fp32", "no quantization: the FP32 reference", quantize,
                           (ONNXRUNTIME, TORCH, INDUCTOR, AOTINDUCTOR, ONNX2TORCH), color="black",
                           recipe=("quant_explorer.aot", "quant_explorer.onnx2torch_ops"),
                           capabilities=CAPABILITIES["fp32"]))
