"""The runtimes models run in, as records: the bench measures each one's speed-ups against its baseline and the
explanations name them. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

# How a user loads each shipped kind of artifact with the thread count the bench found fastest ({artifact} and
# {threads} filled in by `Runtime.load_code`).
ORT_LOAD = """import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = {threads}
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession({artifact!r}, options, providers=["CPUExecutionProvider"])
logits = session.run(None, {{session.get_inputs()[0].name: images}})[0]  # float32 NCHW numpy"""
AOTI_LOAD = """import torch
torch.set_num_threads({threads})
runner = torch._inductor.aoti_load_package({artifact!r}).loader
logits = runner.run([images.contiguous()])[0]  # float32 NCHW tensor; as timed (model(images) adds ~0.02 ms)"""
TORCHSCRIPT_LOAD = """import torch
torch.backends.quantized.engine = {engine!r}
torch.set_num_threads({threads})
model = torch.jit.load({artifact!r})
with torch.inference_mode():
    logits = model(images)  # float32 NCHW tensor"""


@dataclass(frozen=True)
class Runtime:
    """What is known of a runtime whatever model runs in it; backends declare the runtimes their artifacts run in."""

    name: str
    description: str  # completes "run as ..." in an explanation
    baseline: str | None  # the FP32 runtime its speed-ups are measured against (None: never timed)
    exact: bool = False  # computes the recipe's arithmetic exactly: a float simulation of the integer model
    isa_capped: bool = False  # its kernels obey oneDNN's ISA cap, so it can run as an emulated lower CPU class
    # Its thread count is fixed when its runner is built (an ORT session's intra-op pool); else the runner follows
    # torch.set_num_threads at call time. The bench builds one runner per thread count it tries only for the former.
    threads_at_build: bool = False
    threads_word: str = "thread"  # "0.07 ms with 1 intra-op thread"
    load: str = ""  # how a user loads its artifact (a template for `load_code`); empty: not a shipped form
    # 'module:function' that loads a saved artifact as a runner (path, threads): how it runs in an emulated process
    # (`emulation.py`) as a lower CPU class, kernels picked by that CPU's CPUID
    loader: str | None = None

    def threads_text(self, threads: int) -> str:
        return f"{threads} {self.threads_word}{'s' if threads != 1 else ''}"

    def load_code(self, artifact: str, threads: int) -> str | None:
        """Python that loads `artifact` in this runtime with `threads`, as the bench timed it; None where the
        runtime is not one a user ships."""
        return self.load.format(artifact=str(artifact), threads=threads, engine=self.name) if self.load else None


ONNXRUNTIME = Runtime("onnxruntime", "ONNX Runtime's kernels", "onnxruntime", threads_at_build=True,
                      threads_word="intra-op thread", load=ORT_LOAD,
                      loader="quant_explorer.runtimes.onnx_runners:ort_runner")
TORCH = Runtime("torch", "PyTorch eager (for PT2E, the converted Q/DQ reference in float)", "torch", isa_capped=True)
INDUCTOR = Runtime("inductor", "Inductor-compiled oneDNN int8 kernels", "inductor", isa_capped=True)
AOTINDUCTOR = Runtime("aotinductor", "an AOTInductor package (Inductor's kernels, oneDNN int8, called from C++)",
                      "aotinductor", isa_capped=True, load=AOTI_LOAD)
ONNX2TORCH = Runtime("onnx2torch", "exact simulated quantization (the same QDQ model converted to PyTorch)", None,
                     exact=True)
