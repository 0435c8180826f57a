"""The runtimes models run in, as records: the bench measures each one's speed-ups against its baseline and the
explanations name them. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    """What is known of a runtime whatever model runs in it; backends declare the runtimes their artifacts run in."""

    name: str
    description: str  # completes "run as ..." in an explanation
    baseline: str | None  # the FP32 runtime its speed-ups are measured against (None: never timed)
    exact: bool = False  # computes the recipe's arithmetic exactly: a float simulation of the integer model
    isa_capped: bool = False  # its kernels obey oneDNN's ISA cap, so it can run as an emulated lower CPU class
    # 'module:function' that loads a saved artifact as a runner (path, threads): how it runs in an emulated process
    # (`emulation.py`) as a lower CPU class, kernels picked by that CPU's CPUID
    load: str | None = None


ONNXRUNTIME = Runtime("onnxruntime", "ONNX Runtime's kernels", "onnxruntime",
                      load="quant_explorer.runtimes.onnx_runners:ort_runner")
TORCH = Runtime("torch", "PyTorch eager (for PT2E, the converted Q/DQ reference in float)", "torch", isa_capped=True)
INDUCTOR = Runtime("inductor", "Inductor-compiled oneDNN int8 kernels", "inductor", isa_capped=True)
AOTINDUCTOR = Runtime("aotinductor", "an AOTInductor package (Inductor's kernels, oneDNN int8, called from C++)",
                      "aotinductor", isa_capped=True)
ONNX2TORCH = Runtime("onnx2torch", "exact simulated quantization (the same QDQ model converted to PyTorch)", None,
                     exact=True)
