"""The FP32 reference: the model unquantized, its ONNX export the artifact (its size is FP32's), run in every
runtime a registered backend says it runs in (`Runtime.fp32`): scored in the one that says so (every delta is paired
against those predictions), timed in each other runtime's baseline, so each int8 model is compared like with like,
and cross-checked in the rest. This module names none of them: a backend registered later brings its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..configs import REFERENCE, Capabilities, QuantConfig
from ..models import exported_onnx
from .base import BACKENDS, Backend, Calibration, QuantizedModel, Runtime, register

if TYPE_CHECKING:
    from ..models import LoadedModel


class References(Sequence[Runtime]):
    """The runtimes FP32 runs in, read from the registry when asked: the one it is scored in first, then the others
    in registration order."""

    def _now(self) -> tuple[Runtime, ...]:
        found = dict.fromkeys(r for b in BACKENDS.values() if b.runtimes is not self for r in b.runtimes if r.fp32)
        return tuple(sorted(found, key=lambda r: not r.scores_fp32))

    def __getitem__(self, index):
        return self._now()[index]

    def __len__(self) -> int:
        return len(self._now())


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    references = BACKEND.runtimes[:]
    runtimes = {r.name: build for r in references if (build := r.fp32(model, workdir)) is not None}
    return QuantizedModel(exported_onnx(model), next(r.name for r in references if r.scores_fp32), runtimes)


def configs() -> list[QuantConfig]:
    return [QuantConfig(REFERENCE, "fp32", "no quantization: the reference every delta is computed against",
                        default=True)]


BACKEND = register(Backend("fp32", "no quantization: the FP32 reference", quantize, References(), color="black",
                           capabilities=Capabilities("fp32"), configs=configs))
