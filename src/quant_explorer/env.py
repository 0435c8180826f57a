"""The environment a number was measured in: CPU model and SIMD flags, threads, library versions."""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from pathlib import Path

SIMD_FLAGS = ("sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8",
              "amx_bf16")
LIBRARIES = ("torch", "torchvision", "torchao", "onnx", "onnxruntime", "onnx2torch", "numpy")


@functools.cache
def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    present = {flag: flag in flags for flag in SIMD_FLAGS}
    return {"model": model, "machine": platform.machine(), "flags": present,
            "vnni": present["avx512_vnni"] or present["avx_vnni"]}


@functools.cache
def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


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
