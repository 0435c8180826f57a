"""The backend records and their registry, apart from the package so that backend modules import them without
importing the package that imports them.

`QuantizedModel` is what every backend returns: a runner the evaluator calls without knowing who made it, the
saved artifact, the sanity checks measured on it, and the runtimes it can be built in. `Backend.capabilities`
says which configs a backend takes; `register` hands them to `configs.CAPABILITIES`, where configs are checked.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from ..configs import CAPABILITIES, Capabilities, QuantConfig
from ..data import ImageSet
from ..evaluate import Runner
from ..models import LoadedModel, Preprocessing
from ..registry import Registry
from ..runtimes.records import Runtime


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
    capabilities: Capabilities = field(kw_only=True)  # which configs it takes: `configs.CAPABILITIES[name]`


# In registration order: comparisons take the first one as the reference.
BACKENDS: Registry[Backend] = Registry("backend", lambda r: f"known: {', '.join(r)}")
get_backend = BACKENDS.lookup


def register(backend: Backend) -> Backend:
    """Adds `backend`; a backend declared outside configs.py (a test's, a user's) adds its capabilities there too,
    before its configs are made."""
    declared = CAPABILITIES.get(backend.name, backend.capabilities)
    if declared != backend.capabilities or declared.name != backend.name:
        raise ValueError(f"backend {backend.name!r} declares other capabilities than configs.CAPABILITIES: {declared}")
    BACKENDS.register(backend)
    CAPABILITIES.setdefault(backend.name, backend.capabilities)
    return backend


def unregister(name: str) -> None:
    """For a test's own backend: both registries as they were before."""
    BACKENDS.unregister(name)
    CAPABILITIES.unregister(name)

