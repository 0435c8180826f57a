"""The backend registry: one `Backend` record per way of quantizing, one module per backend.

A backend module owns everything about its backend and registers it here: how it quantizes, the runtimes its
artifacts run in (for evaluation, cross-checks and speed), which one a user ships, how per-layer sensitivity
selects its layers, and how plots draw it. Everything else — sweep, bench, analyses, report, CLI — asks this
registry (`get_backend`, `quantize`, `runtime_info`) and never compares backend names.

`QuantizedModel` is what every backend returns: a runner the evaluator calls without knowing who made it, the
saved artifact, the sanity checks measured on it, and the runtimes it can be built in.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from ..configs import QuantConfig
from ..data import ImageSet
from ..errors import NotApplicable
from ..evaluate import Runner
from ..identity import emulated_class
from ..models import LoadedModel, Preprocessing
from ..registry import Registry
from ..runtimes import Runtime


@dataclass(frozen=True)
class Calibration:
    """The one calibration protocol: preprocessed float32 batches of unaugmented training images."""

    images: ImageSet
    preprocessing: Preprocessing
    seed: int
    batch_size: int = 64
    pool_fingerprint: str | None = None  # the training split it was drawn from (`ImageSet.fingerprint`)

    def batches(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.images), self.batch_size):
            yield self.preprocessing(self.images.images[start:start + self.batch_size])

    def describe(self) -> dict:
        """Which images calibrated: same seed and pool give the same images, hence the same content hash."""
        return {"calibration_n": len(self.images), "calibration_seed": self.seed,
                "calibration_dataset": self.images.dataset, "pool_fingerprint": self.pool_fingerprint,
                "calibration_images_sha256": hashlib.sha256(self.images.images.numpy().tobytes()).hexdigest()[:16]}


@dataclass(frozen=True)
class RuntimeBuild:
    """One runtime a quantized artifact runs in, built on demand."""

    build: Callable[[int], Runner]  # threads -> runner
    timed: bool = True  # False: built for its accuracy only (a float reference), never timed
    compiles: bool = False  # a compiler builds it (about a minute): `bench --no-compile` leaves it out
    cross_check: bool = False  # also scored by the sweep (first seed) beside the main run
    every_seed: bool = False  # a reference cheap enough to score beside every seed's run, not only the first
    artifact: Path | None = None  # what building it writes, where that is not the saved model (a compiled package)


@dataclass
class QuantizedModel:
    """A quantized artifact and the runtimes it runs in. Every stored accuracy is `runtime`'s: the runtime users
    ship it in, or one that runs exactly its kernels (Inductor for an AOTInductor package); `reference`, the
    recipe's float simulation, is a diagnostic beside it, never the headline."""

    path: Path  # the saved artifact; its size is the model size we report
    runtime: str  # the runtime every stored accuracy, per-class score and prediction comes from
    runtimes: dict[str, RuntimeBuild]  # every runtime it runs in, `runtime` included
    checks: dict = field(default_factory=dict)  # quantization sanity checks measured on the artifact
    headline: str | None = None  # the runtime a user ships it in: the bench's headline speed (default: `runtime`)
    reference: str | None = None  # the runtime whose accuracy is the recipe's float reference, if any
    warnings: list[str] = field(default_factory=list)  # what the user should know about these kernels here

    @functools.cached_property
    def runner(self) -> Runner:
        """`runtime` built (compiled, where it compiles) on first use."""
        return self.runtimes[self.runtime].build(torch.get_num_threads())

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


class LayerVariants(Protocol):
    """Per-layer sensitivity for one backend: the same recipe with one layer alone quantized, or kept FP32."""

    layers: list[dict]  # {"layer", "node", "op_type"} per weighted layer, in graph order
    method: str  # how layers are selected, for the record

    def build(self, only: str | None = None, skip: str | None = None) -> Runner: ...

    def sqnr(self, images: torch.Tensor) -> dict: ...  # {"activations", "weights", "method"}


Quantize = Callable[[LoadedModel, QuantConfig, "Calibration | None", Path], QuantizedModel]


@dataclass(frozen=True)
class Backend:
    name: str  # what `QuantConfig.backend` says
    description: str
    quantize: Quantize  # raises NotApplicable with a one-line why
    runtimes: tuple[Runtime, ...]  # the runtimes its artifacts can run in
    color: str = "tab:gray"  # how plots draw its configs
    layer_variants: Callable[[LoadedModel, QuantConfig, Calibration, Path], LayerVariants] | None = None
    # Bumped whenever a change to the backend's code can change a number: part of every row's identity, so old
    # rows are never reused for a recipe that would compute them differently. tests/test_recipes.py fails when
    # the source of the backend's module, its `recipe` modules or the shared ones changes without a decision.
    recipe_version: int = 1
    recipe: tuple[str, ...] = ()  # modules beside the backend's own whose code makes its numbers


# In registration order: comparisons take the first one as the reference.
BACKENDS: Registry[Backend] = Registry("backend", lambda r: f"known: {', '.join(r)}")
register, unregister, get_backend = BACKENDS.register, BACKENDS.unregister, BACKENDS.lookup


SHARED_RECIPE = ("quant_explorer.runtimes", "quant_explorer.evaluate", "quant_explorer.models.preprocessing")


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


from . import fp32, ort, pt2e, eager  # noqa: E402,F401  (each registers its backend; this order is the registry's)
