"""One experiment, one result row: quantize, evaluate on every test image, compare with FP32 on the same images,
and score the same model in its other runtimes. Whatever fails becomes the row's error, and the sweep goes on. What
names a row (its sample, identity, key and work directory) is `keys.py`'s; what is checked before any model work,
`preflight.py`'s."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import torch

from .backends import Calibration, QuantizedModel, RuntimeBuild, get_config, quantize, recipe
from .configs import REFERENCE, QuantConfig
from .data import EvalData
from .env import environment
from .errors import NotApplicable, UserError, first_line, one_line
from .evaluate import evaluate
from .identity import identity_hash
from .keys import row_identity, workdir_for
from .preflight import check_fp32_runtime
from .results import encode_classes
from .row import Row
from .stats import mcnemar

if TYPE_CHECKING:
    from .models import LoadedModel

FP32 = get_config(REFERENCE)


@dataclass
class Baseline:
    """A model's FP32 reference on the evaluation set: every delta is paired against these predictions."""

    row: Row  # the FP32 row: accuracy and per-class accuracy
    preds: np.ndarray
    size_bytes: int


def cross_checks(quantized: QuantizedModel, data: EvalData, model: LoadedModel, preds: np.ndarray) -> dict:
    """Accuracy of the same model run another way (an AOTInductor package, eager torch...), and agreement with
    the stored run."""
    return {name: _scored_elsewhere(runtime, data, model, preds) for name, runtime in quantized.runtimes.items()
            if runtime.cross_check and name != quantized.runtime}


def _scored_elsewhere(runtime: RuntimeBuild, data: EvalData, model: LoadedModel, preds: np.ndarray) -> dict:
    """One other runtime on every test image: accuracy and agreement with `preds`; its error, if it cannot run."""
    try:
        metrics, other = evaluate(runtime.build(torch.get_num_threads()), data.test, model.preprocessing)
    except Exception as e:  # a runtime that cannot run is a finding, not a failed row
        return {"error": one_line(e)}
    return {"accuracy": metrics["accuracy"], "correct": metrics["correct"],
            "agreement": float((other == preds).mean()), "images_per_second": metrics["images_per_second"],
            "predictions": encode_classes(other)}


def compare_with_fp32(preds: np.ndarray, labels: np.ndarray, baseline: Baseline, row: Row) -> Row:
    """`row` paired against the FP32 predictions on the same images: delta, discordant counts and exact McNemar p."""
    fp32 = baseline.row
    return replace(row, delta_pp=round(100 * (row.accuracy - fp32.accuracy), 4),
                   per_class_delta_pp={c: round(100 * (row.per_class_accuracy[c] - fp32.per_class_accuracy[c]), 4)
                                       for c in row.per_class_accuracy},
                   agreement_with_fp32=float((preds == baseline.preds).mean()),
                   changed_predictions=int((preds != baseline.preds).sum()),
                   **mcnemar(baseline.preds == labels, preds == labels))


def run_config(model: LoadedModel, config: QuantConfig, data: EvalData, calibration: Calibration | None,
               baseline: Baseline | None, with_cross_checks: bool = True,
               identity: dict | None = None) -> tuple[Row, np.ndarray | None]:
    """Quantize, evaluate on every test image and compare with the FP32 baseline: one result row (`identity`: the
    row's, when the caller computed it for its key).

    Whatever fails — quantizing, or running the quantized model — becomes the row's `error`; the sweep goes on.
    """
    calibration = calibration if config.is_static else None
    identity = identity or row_identity(model, config, data, calibration)
    hashed = identity_hash(identity)
    row = Row(model=model.name, model_weights_sha256=model.weights_sha256, config_name=config.name,
              config=config.to_dict(), identity=identity, identity_hash=hashed,
              environment=environment(torch.get_num_threads()),
              created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
              calibration=calibration.describe() if calibration else None)
    started = time.perf_counter()
    try:
        quantized = quantize(model, config, calibration, workdir_for(model, config, calibration, identity))
        row.quantize_seconds = round(time.perf_counter() - started, 3)
        metrics, preds = evaluate(quantized.runner, data.test, model.preprocessing)
    except NotApplicable as e:
        return replace(row, warnings=[], not_applicable=str(e)), None
    except Exception as e:
        return replace(row, warnings=[], error=one_line(e), traceback=traceback.format_exc(limit=4)), None
    row = replace(row, **metrics, warnings=quantized.warnings, predictions=encode_classes(preds),
                  runtime=quantized.runtime, size_bytes=quantized.size_bytes, checks=quantized.checks)
    if baseline is not None:
        row = compare_with_fp32(preds, data.test.labels.numpy(), baseline, row)
        row.size_ratio_vs_fp32 = round(quantized.size_bytes / baseline.size_bytes, 4)
    reference = quantized.runtimes.get(quantized.reference)
    if reference and (with_cross_checks or reference.every_seed):  # the recipe's float simulation, same images
        row.reference = {"runtime": quantized.reference,
                         **_scored_elsewhere(quantized.runtimes[quantized.reference], data, model, preds)}
    row.alternates = cross_checks(quantized, data, model, preds) if with_cross_checks else {}
    row.seconds = round(time.perf_counter() - started, 3)  # the whole row: quantize, evaluate, cross-checks
    return row, preds


def fp32_baseline(model: LoadedModel, data: EvalData) -> tuple[Baseline, Row]:
    row, preds = run_config(model, FP32, data, None, None)
    if row.error is not None:  # nothing can be compared without it: the whole run stops, in one line
        raise UserError(f"FP32 evaluation of {model.name} failed: {first_line(row.error)}")
    baseline = Baseline(row, preds, row.size_bytes)
    row = replace(compare_with_fp32(preds, data.test.labels.numpy(), baseline, row), size_ratio_vs_fp32=1.0)
    return baseline, row


def fp32_runner(model: LoadedModel, name: str):
    """The FP32 model in one of its runtimes (ONNX Runtime on its export, eager PyTorch, onnx2torch...)."""
    check_fp32_runtime(name)
    workdir = workdir_for(model, FP32, None, recipe(FP32.backend).replace(' ', '-'))
    runtimes = quantize(model, FP32, None, workdir).runtimes
    if name not in runtimes:
        raise UserError(f"--runtime {name} cannot run {model.name}: {model.torch_unavailable or 'not built'}; "
                        f"choose one of {', '.join(runtimes)}")
    return runtimes[name].build(torch.get_num_threads())
