"""PyTorch as a runtime: a module run eagerly, or compiled by Inductor with freezing (oneDNN int8 kernels for a
PT2E graph)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .inductor_patches import pad_uint8_in_aten, per_channel_weight_dequantize, qconv_output_channels_last


def torch_runner(module: nn.Module):
    if module.training:  # an exported graph is marked eval instead (backends.pt2e.in_eval_mode): it refuses .eval()
        module.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def torchscript_runner(path: Path, threads: int | None = None, engine: str = "x86"):
    """A saved TorchScript module of packed int8 weights, loaded as a user's program loads it: the weights are packed
    again for `engine`, the quantized engine of the CPU it runs on."""
    from ..errors import NotApplicable

    if engine not in torch.backends.quantized.supported_engines:
        raise NotApplicable(f"PyTorch's {engine} quantized engine does not run on this CPU (it has "
                            f"{', '.join(torch.backends.quantized.supported_engines)})")
    if threads:
        torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
    return torch_runner(torch.jit.load(str(path)))


def qnnpack_runner(path: Path, threads: int | None = None):
    """The saved TorchScript as an ARM user's program runs it: its weights packed again for qnnpack, ARM's engine
    (`aarch64.qnnpack_runner` is its twin in the arm64 process)."""
    return torchscript_runner(path, threads, engine="qnnpack")


def inductor_runner(module: nn.Module):
    """torch.compile (Inductor) with torch._inductor.config.freezing on, run under no_grad; compiles on the
    first call of each new shape. Freezing is what makes PT2E fast: constant weights let Inductor swap
    dequantize -> conv -> quantize for oneDNN int8 convolutions; without it the model computes in float.
    On torch 2.14, with freezing passed as `options={"freezing": True}` instead, or under inference_mode,
    tracing reaches oneDNN's int8 weight prepack with fake tensors and fails (onednn.qconv_prepack).
    A PT2E graph is compiled from a copy whose per-tensor weights read as per-channel ones (inductor_patches)."""
    from torch._inductor import config

    pad_uint8_in_aten()
    qconv_output_channels_last()
    if isinstance(module, torch.fx.GraphModule):
        module = per_channel_weight_dequantize(copy.deepcopy(module))
    compiled = torch.compile(module, dynamic=True)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), config.patch(freezing=True):
            return compiled(x)

    return run
