"""The environment a number was measured in: CPU model and SIMD flags, threads, library versions."""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from pathlib import Path

SIMD_FLAGS = ("sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8",
              "amx_bf16")
ARM_FLAGS = ("asimd", "asimddp")  # Advanced SIMD, and its dot product (Armv8.2): identity.CPU_CLASSES
# The libraries every row goes through whatever its backend: its numbers (decoding, preprocessing, evaluation), then
# what only reads the data. Each backend adds its own when it is registered (`declare`).
CORE = ("torch", "numpy")
CORE_RECORDED = ("torchvision",)
_DECLARED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # backend -> (its versioned, its recorded)


@functools.cache
def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model and the SIMD flags that make its int8 class (x86's "flags", or ARM's "Features" line)."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    present = {flag: flag in flags for flag in SIMD_FLAGS}
    present.update({flag: True for flag in ARM_FLAGS if flag in flags})  # only where present: x86 records stay as were
    return {"model": model, "machine": platform.machine(), "flags": present,
            "vnni": present["avx512_vnni"] or present["avx_vnni"]}


def declare(owner: str, versioned: tuple[str, ...] = (), recorded: tuple[str, ...] = ()) -> None:
    """The libraries backend `owner` adds: `versioned`, whose versions make its numbers (every row's identity holds
    them: `identity.versions`), and `recorded`, which only a diagnostic of its rows depends on (kept in each row's
    environment, never in its identity)."""
    _DECLARED[owner] = (tuple(versioned), tuple(recorded))


def withdraw(owner: str) -> None:
    """For a test's own backend: the libraries as they were before it was declared."""
    _DECLARED.pop(owner, None)


def versioned_libraries() -> tuple[str, ...]:
    """Every library whose version is part of a row's identity: the core's and every registered backend's."""
    return tuple(dict.fromkeys([*CORE, *(name for names, _ in _DECLARED.values() for name in names)]))


def libraries() -> tuple[str, ...]:
    """Every library a row's environment records: those in its identity, then those only read or diagnosed with."""
    recorded = [*CORE_RECORDED, *(name for _, names in _DECLARED.values() for name in names)]
    return tuple(dict.fromkeys([*versioned_libraries(), *recorded]))


def library_versions() -> dict:
    """Python's version and each library's a row's environment records (None where it is not installed)."""
    return {"python": platform.python_version(), **{name: _version(name) for name in libraries()}}


@functools.cache
def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(threads: int) -> dict:
    return {"cpu": cpu_info(), "threads": threads, "versions": library_versions()}


def u8s8_saturation_warning(activation_dtype: str | None, weight_dtype: str | None, reduce_range: bool) -> str | None:
    """x86 u8s8 kernels without VNNI sum pairs of u8*s8 products in int16 (vpmaddubsw), which saturates: on this CPU,
    or on the class this process emulates (`identity.ISA_ENV`)."""
    import os

    emulated = os.environ.get("QUANT_EXPLORER_ISA")
    vnni = emulated not in ("avx2", "avx512") if emulated else cpu_info()["vnni"]  # sse4's MLAS kernels widen: exact
    if activation_dtype == "uint8" and weight_dtype == "int8" and not reduce_range and not vnni:
        return ("uint8 activations x int8 weights without reduce_range on a CPU without VNNI: int8 kernels can "
                "saturate (expect a loss of points); prefer the _rr variant or int8 activations")
    return None
