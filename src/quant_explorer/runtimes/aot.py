"""AOTInductor: a model compiled ahead of time into a .pt2 package (a shared library holding its weights) and
run from C++, as a deployment runs it: no Dynamo guards and no Inductor Python wrapper on each call.

`compile_package` exports the module with a dynamic batch dimension, so one package serves batch 1 and 256 (as
fast as a package per batch size, which also would not check its input: fed another size it reads past it), and
compiles it with freezing, as `runtimes.inductor_runner` does, and a PT2E graph gets that runner's two
rewrites (per-channel weight dequantize, uint8 pads in ATen), so both run the same kernels. The compile runs
under no_grad: without it freezing fires no oneDNN pass, and the package computes PT2E convolutions in float
(aoti_torch_cpu_convolution, not _qconv_pointwise) and FP32 ones unpacked. `package_info` reads which kernels
a package calls, so a silent fallback to float shows.
"""

from __future__ import annotations

import collections
import copy
import io
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_path
from .export import DYNAMIC_BATCH
from .inductor_patches import pad_uint8_in_aten, per_channel_weight_dequantize, qconv_output_channels_last

PROXY_CALL = "proxy_executor_call_function"  # an op with no C shim, run through the proxy executor
INDUCTOR_CONFIGS = {"freezing": True, "aot_inductor.enable_line_tables": False}  # a copy per call: it adds its keys
SHIM_CALL = re.compile(r"aoti_torch_cpu_(\w+?)\(")


def compile_package(module: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """Compile `module` (a PT2E graph or an FP32 nn.Module) into the AOTInductor package `path`, written
    atomically. Line tables (g++ -g1, Inductor's default) are off: they were 1.2 MB of ResNet8's 1.9 MB."""
    pad_uint8_in_aten()
    qconv_output_channels_last()
    if isinstance(module, torch.fx.GraphModule):
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  (registers the int8 passes)

        module = per_channel_weight_dequantize(copy.deepcopy(module))
    elif module.training:
        module.eval()
    with torch.no_grad():
        exported = torch.export.export(module, (example,), dynamic_shapes=DYNAMIC_BATCH)
        package = io.BytesIO()  # a file path would name the archive's root folder after the temporary file
        torch._inductor.aoti_compile_and_package(exported, package_path=package,
                                                 inductor_configs=dict(INDUCTOR_CONFIGS))
    with atomic_path(path, ".pt2") as tmp:
        tmp.write_bytes(package.getvalue())
    return Path(path)


def aot_runner(path: Path):
    """The package as a runner: (float32 NCHW batch) -> logits. It calls the C++ loader directly
    (AOTICompiledModel.__call__ re-parses the input and output tree specs from JSON on every call, 0.1 ms), on a
    contiguous copy when needed: the package assumes the example's strides unchecked, and a strided or
    channels-last batch gives wrong logits without an error."""
    loader = torch._inductor.aoti_load_package(str(path)).loader

    def run(x: torch.Tensor) -> torch.Tensor:
        return loader.run([x.contiguous()])[0]

    return run


def package_info(path: Path) -> dict:
    """Size on disk, the shared library's size, and the ATen kernels the package calls by C shim (e.g.
    _qconv_pointwise_tensor: oneDNN int8; convolution: float) or through the proxy executor."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        wrapper = next(m for m in members if m.filename.endswith("wrapper.cpp"))
        source = archive.read(wrapper).decode()
    shims = collections.Counter(SHIM_CALL.findall(source))
    return {"size_bytes": Path(path).stat().st_size,
            "library_bytes": sum(m.file_size for m in members if m.filename.endswith(".so")),
            "shim_calls": dict(sorted(shims.items())), "proxy_executor_calls": source.count(PROXY_CALL)}
