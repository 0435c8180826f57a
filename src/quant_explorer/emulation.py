"""Lower x86 CPU classes in a CPU emulator: a shipped artifact evaluated by its own runtime under qemu-user.

Why: ONNX Runtime (MLAS) and the eager x86 engine (FBGEMM) pick their int8 kernels by CPUID, with no runtime cap
like oneDNN's. qemu-user runs this very interpreter and virtual environment as an older CPU model, and every
library in that process reads the model's CPUID: MLAS, FBGEMM and oneDNN all dispatch as on that CPU (avx2:
`Haswell-v4`, AVX2 and FMA without AVX-512 or VNNI; sse4: `Nehalem`). Neither qemu 7.2 nor 10 emulates AVX-512 or
VNNI, so those classes stay with oneDNN's cap (`identity.ONEDNN_ISA`). ARM classes run the same way in an arm64
interpreter under qemu-aarch64 (`aarch64.py`), with numpy, ONNX Runtime and torch's aarch64 CPU build.

How: one emulated process per worker and class (`Server`), started on first use, serves every row that worker
computes. It loads torch and the runtimes once; each row hands it the artifact (the Runtime record's `loader` says
how it loads) and the evaluation batches, and gets the logits back, so `evaluate` scores them unchanged. Logits are
kept on disk by the artifact's bytes and all else they depend on (`_memo`): an artifact two configs write alike is
evaluated once. Before anything is trusted it says which class it is, as its libraries see CPUID (numpy's
detection, torch's ATen capability): a process that is not the class claimed is refused in one line. Under qemu-user
/proc/cpuinfo is still the host's, so that is never asked.

Calibration stays native: the calibration of ORT's u8 and s8 MinMax configs under `qemu -cpu Haswell-v4` wrote
byte-identical models, and the scales of eager and PT2E configs differ by at most 3e-7 (relative, one ulp);
evaluated emulated, natively calibrated rows reproduce the stored rows of a real AVX2 CPU image for image
(`tools/emulated_vs_native.py`).

Run as `python -m quant_explorer.emulation FD` (by `Server`, under qemu), it is that emulated process.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from . import aarch64
from .errors import NotApplicable, UserError, one_line

QEMU = "qemu-x86_64"
INSTALL = "apt-get install qemu-user"  # Debian and Ubuntu; `make install` does it where apt can run as root
QEMU_CPU = {"avx2": "Haswell-v4", "sse4": "Nehalem",  # class -> the qemu CPU model that is one (and nothing more)
            **aarch64.CLASSES}
# OpenBLAS (numpy's) reads qemu's Nehalem as a newer core and takes AVX kernels (SIGILL); a real Nehalem is found.
QEMU_ENV = {"sse4": {"OPENBLAS_CORETYPE": "Nehalem"}}
# numpy's name of the feature that makes each class, highest first (it has none for AVX-VNNI or AMX: qemu emulates
# neither, so no emulated process can be them); and torch's ATen capability on a CPU of the class.
NUMPY_FEATURES = (("avx512-vnni", "AVX512VNNI"), ("avx512", "AVX512BW"), ("avx2", "AVX2"), ("sse4", "SSE42"),
                  ("arm64-dotprod", "ASIMDDP"), ("arm64", "ASIMD"))
ATEN_CAPABILITY = {"avx2": "AVX2", "sse4": "DEFAULT"}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class EmulationError(UserError):
    """The emulated process cannot be started, died, or is not the class it claims: one line, nothing trusted."""


def qemu_path() -> str | None:
    return shutil.which(QEMU)


def available(isa: str) -> str | None:
    """The qemu that runs class `isa` here (for ARM: where `make arm` built its environment), else None."""
    return aarch64.ready() if isa in aarch64.CLASSES else qemu_path()


def missing(isa: str) -> str:
    """Why `available(isa)` is None, and the one command that changes it."""
    return aarch64.missing() if isa in aarch64.CLASSES else f"qemu-user is not installed ({INSTALL})"


def loader(isa: str, runtime) -> str | None:
    """How a Runtime record's artifact loads in the emulated process of class `isa` (None: it does not load there):
    its `loader`, or on ARM that loader's twin in the arm64 process (`aarch64.twin`: ONNX Runtime, qnnpack)."""
    if runtime is None or runtime.loader is None:
        return None
    return aarch64.twin(runtime.loader) if isa in aarch64.CLASSES else runtime.loader


def method(isa: str, load: str | None = None) -> str:
    """How a row says it ran: 'qemu Haswell-v4', 'qemu-aarch64 neoverse-n1'; with the arm64 process's torch where
    `load` (its loader there) needs it, as that is not this venv's torch: 'qemu-aarch64 cortex-a53, torch 2.9.1'."""
    how = f"{'qemu-aarch64' if isa in aarch64.CLASSES else 'qemu'} {QEMU_CPU[isa]}"
    return f"{how}, torch {aarch64.versions()['torch']}" if load in aarch64.NEEDS_TORCH else how


def _command(isa: str) -> list[str]:
    """The interpreter as a CPU of class `isa`: this one under qemu-x86_64, or the arm64 one under qemu-aarch64."""
    if isa in aarch64.CLASSES:
        return aarch64.command(QEMU_CPU[isa])
    return [qemu_path() or QEMU, "-cpu", QEMU_CPU[isa], sys.executable]


def cpuid_class(features: dict[str, bool] | None = None) -> str:
    """This process's class as numpy read it from CPUID (`features`: numpy's `__cpu_features__`)."""
    if features is None:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # numpy >= 2
    return next((name for name, flag in NUMPY_FEATURES if features.get(flag)), "baseline")


def probe(isa: str) -> None:
    """Start the interpreter under qemu as class `isa` and check it is that class (about a second): the pre-flight of
    `--isa`, before any model work. An EmulationError in one line otherwise."""
    command = [*_command(isa), "-c", "from quant_explorer.emulation import cpuid_class; print(cpuid_class())"]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env(isa))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EmulationError(f"{method(isa)} could not run Python: {e}") from None
    found = run.stdout.strip().splitlines()[-1:] or [f"nothing (exit {run.returncode}: {_last(run.stderr)})"]
    _check(isa, "numpy", found[0])


def _check(isa: str, who: str, found: str) -> None:
    if found != (ATEN_CAPABILITY[isa] if who == "torch" else isa):
        qemu = f"qemu-aarch64 -cpu {QEMU_CPU[isa]}" if isa in aarch64.CLASSES else f"{QEMU} -cpu {QEMU_CPU[isa]}"
        raise EmulationError(f"{qemu} runs as {found} ({who}'s CPUID detection), not {isa}: "
                             "its rows would not be that class's, so none is computed")


def _env(isa: str) -> dict[str, str]:
    return aarch64.environ() if isa in aarch64.CLASSES else {**os.environ, **QEMU_ENV.get(isa, {})}


def _last(log: str) -> str:
    """The last line of an emulated process's stderr that is not qemu's notice of CPUID bits its TCG lacks."""
    lines = [line for line in log.splitlines() if line.strip() and "TCG doesn't support" not in line]
    return lines[-1].strip() if lines else "no message"


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Server:
    """One emulated process of class `isa`: loads artifacts in their runtimes and runs batches through them."""

    def __init__(self, isa: str):
        if available(isa) is None:
            raise EmulationError(f"{missing(isa)}: class {isa} cannot be emulated here")
        self.isa, self.log = isa, tempfile.TemporaryFile(mode="w+")
        ours, theirs = socket.socketpair()
        command = [*_command(isa), "-m", "quant_explorer.emulation", str(theirs.fileno())]
        self.process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=self.log, env=_env(isa), preexec_fn=_die_with_parent)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.loaded: str | None = None
        hello = self._receive()
        _check(isa, "numpy", hello["numpy"])
        if isa in ATEN_CAPABILITY:
            _check(isa, "torch", hello["torch"])
        _same_versions(isa, hello["versions"])

    def _receive(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.wait()
            self.log.seek(0)
            raise EmulationError(f"the emulated {self.isa} process ({method(self.isa)}) died "
                                 f"(exit {self.process.returncode}): {_last(self.log.read())}") from None

    def call(self, *request):
        self.conn.send(request)
        status, value = self._receive()
        if status == "not_applicable":
            raise NotApplicable(f"{value} (on {self.isa}, emulated by {method(self.isa)})")
        if status == "error":
            raise RuntimeError(f"in the emulated {self.isa} process: {value}")
        return value

    def run(self, load: str, artifact: Path, threads: int, x: np.ndarray) -> np.ndarray:
        """Logits of batch `x` by `artifact`, loaded by `load` ('module:function', called with the path and a thread
        count) in the emulated process: loaded once, and again where another artifact was loaded since."""
        key = f"{load}|{Path(artifact).resolve()}|{threads}"
        if self.loaded != key:
            self.call("load", load, str(Path(artifact).resolve()), threads)
            self.loaded = key
        return self.call("run", x)

    def close(self) -> None:
        self.conn.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _same_versions(isa: str, found: dict) -> None:
    """The emulated process's numpy and onnxruntime are the ones a row's identity records (this process's): else its
    rows would be another version's, so none is computed."""
    from .env import library_versions

    ours = library_versions()
    differ = [f"{name} {found[name]} (here {ours.get(name)})" for name in found if found[name] != ours.get(name)]
    if differ:
        raise EmulationError(f"the emulated {isa} process has {', '.join(differ)}: its rows would not be this "
                             f"environment's{f'; rebuild it: {aarch64.BUILD}' if isa in aarch64.CLASSES else ''}")


def _memo(isa: str, load: str, artifact: Path, threads: int) -> Path:
    """The folder of an emulated artifact's logits, keyed by all they depend on: the artifact's bytes, how it loads,
    the class and its CPU model, the thread count and the library versions. Two configs that write the same bytes
    (ORT's `distribution` ranges are symmetric, so `ort_s8asym_distribution_qdq_per_channel` writes what
    `ort_s8_minmax_qdq_per_channel` does) are evaluated once, and a rerun with --force reads them back."""
    from .env import library_versions
    from .paths import cache_dir

    digest = hashlib.sha256(Path(artifact).read_bytes())
    versions = {**library_versions(), **(aarch64.versions() if isa in aarch64.CLASSES else {})}
    digest.update(json.dumps([isa, QEMU_CPU[isa], load, threads, versions], sort_keys=True).encode())
    return cache_dir() / "emulated" / digest.hexdigest()[:24]


def _keep(path: Path, logits: np.ndarray) -> None:
    """Written whole or not at all; a cache that cannot be written costs a recomputation, nothing else."""
    from .files import atomic_path

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits)
    except (OSError, UserError):
        pass


_SERVERS: dict[str, Server] = {}


def emulated_runner(isa: str, load: str, artifact: Path, threads: int):
    """A Runner of `artifact` as class `isa`: its logits kept on disk (`_memo`), else computed in this process's
    emulated process of that class, started (and its class checked) on first need."""
    memo = _memo(isa, load, artifact, threads)

    def run(x) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        kept = memo / f"{hashlib.sha256(x.tobytes()).hexdigest()[:24]}-{len(x)}.npy"
        if kept.exists():
            return np.load(kept)
        server = _SERVERS.get(isa)
        if server is None or server.process.poll() is not None:
            server = _SERVERS[isa] = Server(isa)
        logits = server.run(load, artifact, threads, x)
        _keep(kept, logits)
        return logits

    return run


@atexit.register
def _close_servers() -> None:
    for server in _SERVERS.values():
        server.close()


def _serve(fd: int) -> None:
    """The emulated process: say what CPUID makes it and its runtimes' versions, then load and run what the driver
    asks, one reply each. Without torch (the arm64 environment) batches reach the runner as numpy arrays."""
    from importlib import metadata

    try:
        import torch
    except ImportError:
        torch = None
    conn = Connection(fd)
    found = {name: metadata.version(name) for name in ("numpy", "onnxruntime")}
    conn.send({"numpy": cpuid_class(), "torch": torch and torch.backends.cpu.get_cpu_capability(), "versions": found})
    runner = None
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        try:
            if request[0] == "load":
                _, load, path, threads = request
                module, _, name = load.partition(":")
                runner = None  # the previous model's memory goes first
                runner = getattr(importlib.import_module(module), name)(Path(path), threads)
                reply = ("ok", None)
            else:
                reply = ("ok", np.asarray(runner(torch.from_numpy(request[1]) if torch else request[1])))
        except NotApplicable as e:
            reply = ("not_applicable", str(e))
        except Exception as e:  # the driver makes it the row's error
            reply = ("error", one_line(e))
        conn.send(reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
