"""The backend records and their registry, apart from the package so that backend modules import them without
importing the package that imports them.

A `Backend` declares everything about itself: how it quantizes, the configs it offers and what it takes in them
(`Capabilities`), the libraries whose versions make its numbers, the runtimes its artifacts run in (`Runtime`: what
each is, how a user loads it, how the FP32 reference runs in it) and its recipe version. `register` hands what the
rest of the package looks up to where it is looked up: capabilities and configs to `configs`, libraries to `env`.
`QuantizedModel` is what every backend returns: a runner the evaluator calls without knowing who made it, the
saved artifact, the sanity checks measured on it, and the runtimes it can be built in. Importing this imports no
torch: listing configs and backends stays instant.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence

from .. import env
from ..configs import CAPABILITIES, CONFIGS, Capabilities, QuantConfig
from ..registry import Registry

if TYPE_CHECKING:
    import torch

    from ..data import ImageSet
    from ..evaluate import Runner
    from ..models import LoadedModel, Preprocessing


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


@dataclass(frozen=True)
class Runtime:
    """What is known of a runtime whatever model runs in it, declared by the backend whose artifacts run in it: the
    bench measures its speed-ups against its baseline, the explanations name it, a user is told how to load it."""

    name: str
    description: str  # completes "run as ..." in an explanation
    baseline: str | None  # the runtime whose FP32 model its speed-ups are measured against (None: never timed)
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
    # How the FP32 reference runs in it: (model, FP32's work directory) -> its build, None where this model cannot
    # run there. The FP32 backend runs in every registered runtime that says how (`backends.fp32`).
    fp32: Callable[[LoadedModel, Path], RuntimeBuild | None] | None = None
    scores_fp32: bool = False  # FP32's accuracy, which every delta is paired against, is this runtime's (one says so)
    libraries: tuple[str, ...] = ()  # what it alone needs: recorded in each row's environment, not its identity

    def threads_text(self, threads: int) -> str:
        return f"{threads} {self.threads_word}{'s' if threads != 1 else ''}"

    def load_code(self, artifact: str, threads: int) -> str | None:
        """Python that loads `artifact` in this runtime with `threads`, as the bench timed it; None where the
        runtime is not one a user ships."""
        return self.load.format(artifact=str(artifact), threads=threads, engine=self.name) if self.load else None


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
        import torch

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


Quantize = Callable[["LoadedModel", QuantConfig, "Calibration | None", Path], QuantizedModel]


@dataclass(frozen=True)
class Backend:
    name: str  # what `QuantConfig.backend` says
    description: str
    quantize: Quantize  # raises NotApplicable with a one-line why
    runtimes: Sequence[Runtime]  # the runtimes its artifacts can run in
    color: str = "tab:gray"  # how plots draw its configs
    layer_variants: Callable[[LoadedModel, QuantConfig, Calibration, Path], LayerVariants] | None = None
    # Bumped whenever a change to the backend's code can change a number: part of every row's identity, so old
    # rows are never reused for a recipe that would compute them differently. tests/test_recipes.py fails when
    # the source of the backend's module, its `recipe` modules or the shared ones changes without a decision.
    recipe_version: int = 1
    recipe: tuple[str, ...] = ()  # modules beside the backend's own whose code makes its numbers
    capabilities: Capabilities = field(kw_only=True)  # which configs it takes
    configs: Callable[[], Iterable[QuantConfig]] = field(kw_only=True, default=tuple)  # made once it is registered
    libraries: tuple[str, ...] = field(kw_only=True, default=())  # whose versions make its numbers (its identity)


# In registration order: comparisons take the first one as the reference.
BACKENDS: Registry[Backend] = Registry("backend", lambda r: f"known: {', '.join(r)}")
get_backend = BACKENDS.lookup


def register(backend: Backend) -> Backend:
    """Adds `backend` and what it declares: its capabilities (its configs are checked against them as they are
    made), its configs, and its libraries (`env.declare`). A taken backend or config name is refused, and then
    nothing of it is added."""
    if backend.capabilities.name != backend.name:
        raise ValueError(f"backend {backend.name!r} declares the capabilities of {backend.capabilities.name!r}")
    CAPABILITIES.register(backend.capabilities)  # refuses a taken name
    try:
        configs = list(backend.configs())  # each checked against the capabilities as it is made
        for config in configs:
            if config.name in CONFIGS:
                raise ValueError(f"config {config.name!r} is already registered")
            if config.backend != backend.name:
                raise ValueError(f"config {config.name!r} is {config.backend}'s, not {backend.name}'s")
    except BaseException:
        CAPABILITIES.unregister(backend.name)
        raise
    BACKENDS.register(backend)
    for config in configs:
        CONFIGS.register(config)
    env.declare(backend.name, backend.libraries, tuple(lib for r in backend.runtimes for lib in r.libraries))
    return backend


def unregister(name: str) -> None:
    """For a test's own backend: every registry as it was before."""
    for config in [c for c in CONFIGS.values() if c.backend == name]:
        CONFIGS.unregister(config.name)
    BACKENDS.unregister(name)
    CAPABILITIES.unregister(name)
    env.withdraw(name)
