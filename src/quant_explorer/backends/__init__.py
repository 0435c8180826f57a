"""One verb, `quantize(model, config, calibration, workdir)`, for every backend; one file per backend.

Every backend returns a `QuantizedModel`: a runner the evaluator calls without knowing who made it, the
saved artifact, and the sanity checks measured on it.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..configs import QuantConfig
from ..data import ImageSet
from ..errors import NotApplicable  # noqa: F401  (backends raise it from here)
from ..evaluate import Runner
from ..models import LoadedModel, Preprocessing

# config.backend -> module under quant_explorer.backends holding `quantize`
BACKEND_MODULES = {"fp32": "fp32", "ort": "ort", "pt2e": "pt2e", "eager_static": "eager", "eager_dynamic": "eager"}


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


@dataclass
class QuantizedModel:
    runner: Runner
    path: Path  # the saved artifact; its size is the model size we report
    runtime: str  # "onnxruntime" | "torch"
    checks: dict = field(default_factory=dict)  # quantization sanity checks measured on the artifact
    # Other ways to run the same model, built on demand: e.g. "onnx2torch" for ORT QDQ, "inductor" for PT2E.
    alternates: dict[str, Callable[[], Runner]] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    """Apply `config` to `model`; `workdir` receives the artifact. Raises NotApplicable with a one-line why."""
    backend = importlib.import_module(f"{__name__}.{BACKEND_MODULES[config.backend]}")
    workdir.mkdir(parents=True, exist_ok=True)
    return backend.quantize(model, config, calibration, workdir)

