"""ARM (aarch64) CPU classes, emulated on an x86 machine: qemu 10's `qemu-aarch64` runs an arm64 Python whose only
libraries are numpy and ONNX Runtime (their aarch64 wheels), built by `make arm` into a git-ignored folder.

Why: ResNet8-class models ship on ARM boards and servers, where ONNX Runtime's int8 kernels (MLAS) are not x86's.
MLAS picks them by the CPU's feature bits (HWCAP, and the /proc/cpuinfo qemu 10 writes for its CPU model): on a CPU
with the dot-product extension (Armv8.2 `asimddp`: Neoverse N1, Cortex-A76 and later) its convolutions and GEMMs use
SDOT/UDOT; without it (Cortex-A53, A72) widening multiplies (SMULL/SMLAL, SADALP). Both sum in exact int32. That is
what names the two classes; which instructions ran was established from qemu's log of the guest code it translated
inside onnxruntime's library (`-d in_asm`: SDOT/UDOT under neoverse-n1, none under cortex-a53), not assumed.

ONNX Runtime rows, FP32 (in ONNX Runtime) and the eager engine run there. The eager engine an ARM user ships is
qnnpack: the saved TorchScript loaded with it packs its weights again for it, as on a board. Its torch is 2.9.1, the
newest whose aarch64 wheel on PyPI is a CPU build, not this venv's: the row's emulation method names it. The saved
int8 model's logits there equal, bit for bit, qnnpack's on x86 (the eager rows' exact reference), while torch's
default engine on aarch64 (oneDNN) differs from them. PT2E is "not measured" on ARM, in one line: its artifact is an
x86 program (an AOTInductor package of X86InductorQuantizer's recipe). qemu 7.2's `qemu-aarch64` crashes on
`import onnxruntime`, so the environment brings qemu 10 (Debian's bookworm-backports) unless the system's is 10+.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from .paths import env_path

CLASSES = {"arm64-dotprod": "neoverse-n1", "arm64": "cortex-a53"}  # class -> the qemu CPU model that is one
ENV = "QUANT_EXPLORER_AARCH64"  # where `make arm` built the environment (default: .arm in this checkout)
BUILD = "make arm"
PYTHON = "usr/bin/python3.11"  # inside the arm64 root
# The loaders (`Runtime.loader`) that have a twin in the arm64 process, which has none of this package's runtimes:
# ONNX Runtime's (torch-free) and the qnnpack engine's (torch, where `make arm` installed it).
LOADERS = {"quant_explorer.runtimes.onnx_runners:ort_runner": "quant_explorer.aarch64:ort_runner",
           "quant_explorer.runtimes.torch_runners:qnnpack_runner": "quant_explorer.aarch64:qnnpack_runner"}
NEEDS_TORCH = {"quant_explorer.aarch64:qnnpack_runner"}
QEMU_MIN = 10  # qemu 7.2's qemu-aarch64 segfaults in `import onnxruntime`


def root() -> Path:
    return env_path(ENV, Path(__file__).resolve().parents[2] / ".arm")


def qemu() -> str | None:
    """The qemu-aarch64 the environment runs under: the one `make arm` unpacked, else the system's if it is 10+."""
    built = root() / "qemu" / "qemu-aarch64"
    if built.exists():
        return str(built)
    found = shutil.which("qemu-aarch64")
    return found if found and _major(found) >= QEMU_MIN else None


@functools.cache
def _major(qemu_path: str) -> int:
    found = re.search(r"version (\d+)", subprocess.run([qemu_path, "--version"], capture_output=True, text=True).stdout)
    return int(found.group(1)) if found else 0


def ready() -> str | None:
    """qemu-aarch64's path where the environment is built (qemu 10+, the arm64 Python, ONNX Runtime), else None."""
    base = root()
    if not ((base / "root" / PYTHON).exists() and (base / "site" / "onnxruntime").is_dir()):
        return None
    return qemu()


def has_torch() -> bool:
    return (root() / "torch" / "torch").is_dir()


def twin(load: str | None) -> str | None:
    """The arm64 process's loader of a Runtime's `load`, where the environment has what it needs, else None."""
    found = LOADERS.get(load)
    return None if found in NEEDS_TORCH and not has_torch() else found


def missing() -> str:
    return f"the aarch64 environment is not built here ({BUILD}: an arm64 Python with ONNX Runtime under qemu 10)"


def command(cpu: str) -> list[str]:
    """The arm64 interpreter as qemu's CPU model `cpu` (then its arguments)."""
    base = root()
    return [ready() or "qemu-aarch64", "-L", str(base / "root"), "-cpu", cpu, str(base / "root" / PYTHON)]


def environ() -> dict[str, str]:
    """The host's environment, but its Python path only the aarch64 wheels, then this package's folder (which may be
    an x86 site-packages: the wheels come first, or its numpy would be imported and fail)."""
    source = str(Path(__file__).resolve().parents[1])
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if k not in drop},
            "PYTHONPATH": os.pathsep.join([str(root() / "site"), str(root() / "torch"), source]),
            "PYTHONNOUSERSITE": "1"}


def versions() -> dict[str, str | None]:
    """numpy's, onnxruntime's and torch's versions in the environment, from their wheels' metadata folders."""
    found = {}
    for name, folder in (("numpy", "site"), ("onnxruntime", "site"), ("torch", "torch")):
        info = sorted((root() / folder).glob(f"{name}-*.dist-info"))
        found[name] = info[-1].name[len(name) + 1:-len(".dist-info")] if info else None
    return found


def ort_session(path: Path, threads: int | None = None):
    """ONNX Runtime's session as `runtimes.onnx_runners.ort_session` builds it (the options a user ships: `ORT_LOAD`),
    without torch, which the arm64 process does not have (tests/test_aarch64.py holds the two alike)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(path: Path, threads: int | None = None):
    """`runtimes.onnx_runners.ort_runner` on numpy batches; a graph with a fixed batch size is fed that many at a
    time."""
    import numpy as np

    session = ort_session(path, threads)
    image = session.get_inputs()[0]
    size = image.shape[0] if isinstance(image.shape[0], int) else None

    def run(x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = size or max(len(x), 1)
        return np.concatenate([session.run(None, {image.name: x[i:i + step]})[0] for i in range(0, len(x), step)])

    return run


def qnnpack_runner(path: Path, threads: int | None = None):
    """`runtimes.torch_runners.qnnpack_runner` in the arm64 process (whose torch has no Inductor patches to import):
    the saved TorchScript, its weights packed again for qnnpack, on numpy or torch batches."""
    import numpy as np
    import torch

    torch.backends.quantized.engine = "qnnpack"
    torch.set_num_threads(threads or 1)
    module = torch.jit.load(str(path))

    def run(x) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run
