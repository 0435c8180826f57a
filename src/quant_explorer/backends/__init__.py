"""The backend registry: one `Backend` record per way of quantizing, one module per backend.

A backend module owns everything about its backend and registers it (`base.register`): how it quantizes, which
configs it takes, the runtimes its artifacts run in (for evaluation, cross-checks and speed), which one a user
ships, how per-layer sensitivity selects its layers, and how plots draw it. Everything else — sweep, bench,
analyses, report, CLI — asks this registry (`get_backend`, `quantize`, `runtime_info`) and never compares backend
names. The records live in `base`, which the backend modules import; this package imports them to register them.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ..configs import QuantConfig
from ..errors import NotApplicable
from ..identity import emulated_class
from ..models import LoadedModel
from ..runtimes import Runtime
from . import eager, fp32, ort, pt2e  # noqa: F401  (each registers its backend; this order is the registry's)
from .base import (
    BACKENDS,
    Backend,
    Calibration,
    LayerVariants,
    QuantizedModel,
    RuntimeBuild,
    get_backend,
    register,
    unregister,
)

__all__ = ["BACKENDS", "Backend", "Calibration", "LayerVariants", "QuantizedModel", "RuntimeBuild", "emulated_runtime",
           "get_backend", "quantize", "recipe", "recipe_source", "register", "runtime_info", "unregister"]

# The modules every backend's numbers go through: the runtimes' code (not their records) and the evaluator.
SHARED_RECIPE = ("quant_explorer.runtimes.export", "quant_explorer.runtimes.inductor_patches",
                 "quant_explorer.runtimes.onnx_runners", "quant_explorer.runtimes.torch_runners",
                 "quant_explorer.evaluate", "quant_explorer.models.preprocessing")


def recipe(name: str) -> str:
    """What a row's identity says of its backend's code: 'pt2e v1'."""
    return f"{name} v{get_backend(name).recipe_version}"


def recipe_source(name: str) -> str:
    """sha256 (12 hex digits) of the source of a backend's module, its `recipe` modules and the shared ones:
    tests/test_recipes.py holds it against the recorded one, so no change to them goes without a decision on
    `recipe_version`."""
    backend = get_backend(name)
    digest = hashlib.sha256()
    for module in sorted({backend.quantize.__module__, *backend.recipe, *SHARED_RECIPE}):
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    return digest.hexdigest()[:12]


def runtime_info(name: str) -> Runtime | None:
    """A runtime by name, from whichever backend declares it."""
    return next((r for b in BACKENDS.values() for r in b.runtimes if r.name == name), None)


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    """Apply `config` to `model`; `workdir` receives the artifact. Raises NotApplicable with a one-line why."""
    backend = get_backend(config.backend)
    if emulated_class() and not any(r.isa_capped for r in backend.runtimes):
        raise NotApplicable(_not_measured(", ".join(r.name for r in backend.runtimes)))
    workdir.mkdir(parents=True, exist_ok=True)
    quantized = backend.quantize(model, config, calibration, workdir)
    if emulated_class():
        quantized.runtime = emulated_runtime(quantized)
    return quantized


def _not_measured(runtimes: str) -> str:
    return (f"not measured on {emulated_class()}: {runtimes} pick their int8 kernels by CPUID with no runtime cap, so "
            "this class cannot be emulated for them (never guessed)")


def emulated_runtime(quantized: QuantizedModel) -> str:
    """Under an emulated CPU class, the runtime scored: the shipped one where its kernels obey the ISA cap, else the
    first other shipped-kind (timed) runtime that does (FP32: eager PyTorch on oneDNN); none: not measured."""
    capped = [name for name, build in quantized.runtimes.items()
              if build.timed and getattr(runtime_info(name), "isa_capped", False)]
    if not capped:
        raise NotApplicable(_not_measured(quantized.runtime))
    return quantized.runtime if quantized.runtime in capped else capped[0]

