"""The backend registry: one `Backend` record per way of quantizing, one module per backend.

A backend module owns everything about its backend and registers it here: how it quantizes, the runtimes its
artifacts run in (for evaluation, cross-checks and speed), which one a user ships, how per-layer sensitivity
selects its layers, and how plots draw it. Everything else — sweep, bench, analyses, report, CLI — asks this
registry (`get_backend`, `quantize`, `runtime_info`) and never compares backend names.

`QuantizedModel` is what every backend returns: a runner the evaluator calls without knowing who made it, the
saved artifact, the sanity checks measured on it, and the runtimes it can be built in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from ..configs import QuantConfig
from ..data import ImageSet
from ..evaluate import Runner
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
    artifact: Path | None = None  # what building it writes, where that is not the saved model (a compiled package)


@dataclass
class QuantizedModel:
    runner: Runner  # the run every accuracy in the results file comes from
    path: Path  # the saved artifact; its size is the model size we report
    runtime: str  # the runtime `runner` runs in
    checks: dict = field(default_factory=dict)  # quantization sanity checks measured on the artifact
    runtimes: dict[str, RuntimeBuild] = field(default_factory=dict)  # every runtime it ships in, the main one too
    headline: str | None = None  # the runtime a user ships it in: the bench's headline speed (default: `runtime`)
    reference: str | None = None  # the runtime whose accuracy is the recipe's float reference, if any
    warnings: list[str] = field(default_factory=list)  # what the user should know about these kernels here

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


# In registration order: comparisons take the first one as the reference.
BACKENDS: Registry[Backend] = Registry("backend", lambda r: f"known: {', '.join(r)}")
register, unregister, get_backend = BACKENDS.register, BACKENDS.unregister, BACKENDS.lookup


def runtime_info(name: str) -> Runtime | None:
    """A runtime by name, from whichever backend declares it."""
    return next((r for b in BACKENDS.values() for r in b.runtimes if r.name == name), None)


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    """Apply `config` to `model`; `workdir` receives the artifact. Raises NotApplicable with a one-line why."""
    backend = get_backend(config.backend)
    workdir.mkdir(parents=True, exist_ok=True)
    return backend.quantize(model, config, calibration, workdir)


from . import fp32, ort, pt2e, eager  # noqa: E402,F401  (each registers its backend; this order is the registry's)
