"""The backend registry: one `Backend` record per way of quantizing, one module per backend.

A backend module declares everything about its backend and registers it (`base.register`): how it quantizes, the
configs it offers and what it takes, the libraries whose versions make its numbers, the runtimes its artifacts run in
(for evaluation, cross-checks and speed; how each loads, and how the FP32 reference runs in it), which one a user
ships, how per-layer sensitivity selects its layers, how plots draw it, and its recipe version. Everything else —
sweep, bench, analyses, report, CLI — asks this registry (`get_backend`, `get_config`, `select_configs`, `quantize`,
`runtime_info`) and never names a backend. The records live in `base`, which the backend modules import; this
package imports them to register them, and so is where configs are looked up: every backend is registered by then.
Importing it imports no torch (each backend imports its libraries when it runs).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import os
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

from .. import aarch64
from .. import emulation as emulator
from ..configs import CONFIGS, QuantConfig
from ..emulation import QEMU_CPU, emulated_runner, method
from ..errors import NotApplicable
from ..identity import CAP, ONEDNN_ISA, emulated_class
from .base import (
    BACKENDS,
    Backend,
    Calibration,
    LayerVariants,
    QuantizedModel,
    Runtime,
    RuntimeBuild,
    get_backend,
    register,
    unregister,
)

# The registration line: importing a backend module registers its backends, in this order (the registry's).
from . import fp32, eager, pt2e, ort  # noqa: F401  isort: skip

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = ["BACKENDS", "CONFIGS", "Backend", "Calibration", "LayerVariants", "QuantizedModel", "Runtime",
           "RuntimeBuild", "emulated_runtime", "emulation", "get_backend", "get_config", "quantize", "recipe",
           "recipe_source", "register", "runtime_info", "select_configs", "unregister"]

# The modules every backend's numbers go through: the runtimes' code (each module of this package) and the evaluator.
RUNTIMES_PACKAGE = "quant_explorer.runtimes"
SHARED_RECIPE = ("quant_explorer.evaluate", "quant_explorer.models.preprocessing")


def get_config(name: str) -> QuantConfig:
    return CONFIGS.lookup(name)


def select_configs(patterns: list[str] | None = None, all_configs: bool = False) -> list[QuantConfig]:
    """Configs by name or glob (`*_u8_*`), else the full grid with `all_configs`, else the default sweep."""
    if patterns:
        chosen: dict[str, QuantConfig] = {}
        for pattern in patterns:
            matches = [c for n, c in CONFIGS.items() if fnmatch.fnmatchcase(n, pattern)]
            for c in matches or [get_config(pattern)]:
                chosen[c.name] = c
        return list(chosen.values())
    return [c for c in CONFIGS.values() if all_configs or c.default]


def recipe(name: str) -> str:
    """What a row's identity says of its backend's code: 'pt2e v1'."""
    return f"{name} v{get_backend(name).recipe_version}"


def recipe_source(name: str) -> str:
    """sha256 (12 hex digits) of the source of a backend's module, its `recipe` modules, the modules that say how the
    FP32 reference runs in its runtimes, and the shared ones: tests/test_recipes.py holds it against the recorded one,
    so no change to them goes without a decision on `recipe_version`."""
    backend = get_backend(name)
    digest = hashlib.sha256()
    runs_fp32 = (r.fp32.__module__ for r in backend.runtimes if r.fp32)
    runtimes = importlib.util.find_spec(RUNTIMES_PACKAGE).submodule_search_locations  # not imported: torch
    runtime_code = (f"{RUNTIMES_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(runtimes))
    for module in sorted({backend.quantize.__module__, *backend.recipe, *runs_fp32, *runtime_code, *SHARED_RECIPE}):
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    return digest.hexdigest()[:12]


def runtime_info(name: str) -> Runtime | None:
    """A runtime by name, from whichever backend declares it."""
    return next((r for b in BACKENDS.values() for r in b.runtimes if r.name == name), None)


def emulation(name: str) -> str | None:
    """How backend `name`'s shipped kernels run as the emulated CPU class, None where they cannot (then its rows say
    "not measured", never a guess): oneDNN's cap where its runtimes obey it and it was set before oneDNN ran (PT2E;
    FP32 in eager PyTorch, whose predictions no class changes: 0 of 1,017 differ between AVX2, AVX-512 VNNI and the
    capped run on each shipped model), which needs no emulator; else qemu's CPU model of the class, where it has one,
    qemu-user is installed and a runtime of the backend loads its artifact there (`Runtime.loader`: ONNX Runtime, the
    eager x86 engine; FP32 on sse4, which oneDNN's cap has no level for; on ARM, ONNX Runtime, FP32 in it and the
    eager qnnpack engine, with the arm64 process's torch named)."""
    isa, runtimes = emulated_class(), get_backend(name).runtimes
    if isa in ONEDNN_ISA and os.environ.get("ONEDNN_MAX_CPU_ISA") == ONEDNN_ISA[isa] and any(
            r.isa_capped for r in runtimes):  # set by `identity.emulate` before oneDNN ran, or by whoever started us
        return CAP
    load = next((found for r in runtimes if (found := emulator.loader(isa, r))), None) if isa in QEMU_CPU else None
    return method(isa, load) if load and emulator.available(isa) else None


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    """Apply `config` to `model`; `workdir` receives the artifact. Raises NotApplicable with a one-line why. As an
    emulated class, calibration stays native (it builds the same artifact) and the shipped runtime is the emulated
    one (`emulated_runtime`)."""
    backend = get_backend(config.backend)
    how = emulation(backend.name) if emulated_class() else None
    if emulated_class() and how is None:
        raise NotApplicable(_not_measured(backend))
    workdir.mkdir(parents=True, exist_ok=True)
    quantized = backend.quantize(model, config, calibration, workdir)
    if how:
        quantized.runtime = emulated_runtime(quantized, how)
    return quantized


def _not_measured(backend: Backend) -> str:
    isa, runtimes = emulated_class(), ", ".join(r.name for r in backend.runtimes)
    if isa in QEMU_CPU and any(emulator.loader(isa, r) for r in backend.runtimes):
        return f"not measured: {emulator.missing(isa)}, and {runtimes} run as {isa} only in it"
    if (isa in aarch64.CLASSES and not aarch64.has_torch()
            and any(aarch64.LOADERS.get(r.loader) in aarch64.NEEDS_TORCH for r in backend.runtimes)):
        return (f"not measured on {isa}: {runtimes} need torch, which the aarch64 environment does not have (rebuild "
                f"it: {aarch64.BUILD}; never guessed)")
    if isa in aarch64.CLASSES:
        return (f"not measured on {isa}: {runtimes} load in no arm64 process (an AOTInductor package is an x86 "
                "program; never guessed)")
    if isa in QEMU_CPU and isa not in ONEDNN_ISA:
        return (f"not measured on {isa}: {runtimes} load in no emulated process, and oneDNN's cap has no {isa} level "
                "(never guessed)")
    if any(r.isa_capped for r in backend.runtimes):
        return (f"not measured on {isa}: oneDNN's cap ({runtimes}) must be set before PyTorch starts "
                f"(ONEDNN_MAX_CPU_ISA={ONEDNN_ISA[isa]}, as `quant-explorer sweep --isa {isa}` does)")
    return (f"not measured on {isa}: {runtimes} pick their int8 kernels by CPUID with no runtime cap, and qemu "
            "emulates no AVX-512 or VNNI CPU, so this class cannot be emulated for them (never guessed)")


def emulated_runtime(quantized: QuantizedModel, how: str) -> str:
    """Under an emulated CPU class, the runtime scored. qemu: the shipped one, else the first other that loads in the
    emulated process (on ARM, the eager engine ships as qnnpack), its evaluation run there
    (`emulation.emulated_runner`, never timed). oneDNN's cap: the shipped one where its kernels obey the cap, else the
    first other shipped-kind (timed) runtime that does (FP32: eager PyTorch); none: not measured."""
    isa = emulated_class()
    if how != CAP:
        loads = {name: emulator.loader(isa, runtime_info(name)) for name in (quantized.runtime, *quantized.runtimes)}
        name = next((name for name, load in loads.items() if load), None)
        if name is None:
            raise NotApplicable(f"not measured on {isa}: {quantized.runtime} does not load in an emulated process")
        artifact, load = quantized.runtimes[name].artifact or quantized.path, loads[name]
        quantized.runtimes[name] = RuntimeBuild(lambda threads: emulated_runner(isa, load, artifact, threads),
                                                timed=False)
        return name
    capped = [name for name, build in quantized.runtimes.items()
              if build.timed and getattr(runtime_info(name), "isa_capped", False)]
    if not capped:
        raise NotApplicable(f"not measured on {isa}: {quantized.runtime} picks its int8 kernels by CPUID with no "
                            "runtime cap (never guessed)")
    return quantized.runtime if quantized.runtime in capped else capped[0]
