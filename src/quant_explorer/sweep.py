"""Run configs on models and record one flat result row each; resumable, one results file.

A row that fails records its error and the sweep goes on; each finished row is saved as it arrives, so a
killed sweep loses at most the rows in flight, and a rerun skips what is already there. Where the rows are
computed (here, a process pool, a Ray cluster) is the executor's business (`executors.py`); the results
file is written by this process alone.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .backends import Calibration, NotApplicable, QuantizedModel, quantize
from .configs import CONFIGS, QuantConfig
from .data import ImageSet, calibration_indices, load_split
from .env import environment, u8s8_saturation_warning
from .evaluate import evaluate
from .executors import Executor, LocalExecutor, TaskFailed
from .models import LoadedModel
from .paths import ARTIFACTS_ENV, artifacts_dir, models_dir
from .results import entry_key, load_results, save_entries

FP32 = CONFIGS["fp32_baseline"]


@dataclass(frozen=True)
class EvalData:
    """Loaded once per sweep: the evaluation set and the calibration pool (the training split)."""

    test: ImageSet
    train: ImageSet

    @classmethod
    def load(cls, data_dir: Path) -> "EvalData":
        return cls(load_split(data_dir, "test"), load_split(data_dir, "train"))


@dataclass
class Baseline:
    """A model's FP32 reference on the evaluation set: every delta is paired against these predictions."""

    metrics: dict
    preds: np.ndarray
    size_bytes: int


def make_calibration(model: LoadedModel, data: EvalData, n: int, seed: int) -> Calibration:
    indices = calibration_indices(data.train.labels, n, seed)
    # An imported graph that only runs at batch 1 must be calibrated one image at a time.
    return Calibration(data.train.subset(indices), model.preprocessing, seed,
                       batch_size=model.import_info.get("fixed_batch") or 64)


def _key(model: LoadedModel, config: QuantConfig, calibration_n: int, seed: int) -> str:
    return entry_key(model.name, config.name, *((calibration_n, seed) if config.is_static else ()))


def _workdir(model: LoadedModel, config: QuantConfig, calibration: Calibration | None) -> Path:
    tag = f"n{len(calibration.images)}-s{calibration.seed}" if calibration else "nocal"
    return models_dir() / f"{model.name}-{model.weights_sha256[:12]}" / config.name / tag


def _alternate_rows(quantized: QuantizedModel, data: EvalData, model: LoadedModel, preds: np.ndarray,
                    names: set[str]) -> dict:
    """Accuracy of the same model run another way (onnx2torch, inductor...), and agreement with the main run."""
    rows = {}
    for name, build in quantized.alternates.items():
        if name not in names:
            continue
        try:
            metrics, alt_preds = evaluate(build(), data.test, model.preprocessing)
        except Exception as e:  # an alternate that cannot run is a finding, not a failed row
            rows[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            continue
        rows[name] = {"accuracy": metrics["accuracy"], "correct": metrics["correct"],
                      "agreement": float((alt_preds == preds).mean()), "images_per_second": metrics["images_per_second"]}
    return rows


def run_config(model: LoadedModel, config: QuantConfig, data: EvalData, calibration: Calibration | None,
               baseline: Baseline | None, alternates: set[str] = frozenset({"torch", "onnx2torch"})) -> tuple[dict, np.ndarray | None]:
    """Quantize, evaluate on every test image and compare with the FP32 baseline: one result row."""
    row = {"model": model.name, "model_weights_sha256": model.weights_sha256, "config_name": config.name,
           "config": config.to_dict(), "environment": environment(torch.get_num_threads())}
    if config.is_static:
        row["calibration"] = calibration.describe()
    warning = u8s8_saturation_warning(config.activation_dtype, config.weight_dtype, config.reduce_range)
    # Only ORT runs u8s8 integer kernels as its main runtime; PT2E (float reference) and eager (qnnpack) do not.
    row["warnings"] = [warning] if warning and config.backend == "ort" else []
    started = time.perf_counter()
    try:
        quantized = quantize(model, config, calibration if config.is_static else None,
                             _workdir(model, config, calibration if config.is_static else None))
    except NotApplicable as e:
        return {**row, "not_applicable": str(e)}, None
    except Exception as e:
        return {**row, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=4)}, None
    row["quantize_seconds"] = round(time.perf_counter() - started, 3)
    metrics, preds = evaluate(quantized.runner, data.test, model.preprocessing)
    row.update(metrics)
    row.update({"runtime": quantized.runtime, "size_bytes": quantized.size_bytes, "checks": quantized.checks})
    if baseline is not None:
        fp32 = baseline.metrics
        row["delta_pp"] = round(100 * (metrics["accuracy"] - fp32["accuracy"]), 4)
        row["per_class_delta_pp"] = {c: round(100 * (metrics["per_class_accuracy"][c] - fp32["per_class_accuracy"][c]), 4)
                                     for c in metrics["per_class_accuracy"]}
        row["agreement_with_fp32"] = float((preds == baseline.preds).mean())
        row["size_ratio_vs_fp32"] = round(quantized.size_bytes / baseline.size_bytes, 4)
    row["alternates"] = _alternate_rows(quantized, data, model, preds, set(alternates))
    row["seconds"] = round(time.perf_counter() - started, 3)  # the whole row: quantize, evaluate, alternates
    return row, preds


def fp32_baseline(model: LoadedModel, data: EvalData) -> tuple[Baseline, dict]:
    row, preds = run_config(model, FP32, data, None, None)
    if "error" in row:
        raise RuntimeError(f"FP32 evaluation of {model.name} failed: {row['error']}")
    baseline = Baseline(row, preds, row["size_bytes"])
    row.update({"delta_pp": 0.0, "agreement_with_fp32": 1.0, "size_ratio_vs_fp32": 1.0,
                "per_class_delta_pp": {c: 0.0 for c in row["per_class_accuracy"]}})
    return baseline, row


def _finished(entry: dict | None, model: LoadedModel) -> bool:
    return bool(entry) and entry.get("model_weights_sha256") == model.weights_sha256 and "error" not in entry


@dataclass(frozen=True)
class ConfigTask:
    """One row for a worker to compute; the models, data and baselines come from the sweep's `SweepShared`."""

    key: str
    model: str
    config: QuantConfig
    calibration_n: int
    seed: int


@dataclass
class SweepShared:
    """What every task needs, sent to each worker once: data, models, FP32 baselines, where artifacts go."""

    data: EvalData
    models: dict[str, LoadedModel]
    baselines: dict[str, Baseline]
    artifacts: Path  # absolute: workers write quantized models here, whatever their working directory


def run_task(task: ConfigTask, shared: SweepShared) -> dict:
    """A worker's job: one config on one model, compared with the baseline the driver computed."""
    if artifacts_dir().resolve() != shared.artifacts:
        os.environ[ARTIFACTS_ENV] = str(shared.artifacts)
    model = shared.models[task.model]
    calibration = make_calibration(model, shared.data, task.calibration_n, task.seed)
    row, _ = run_config(model, task.config, shared.data, calibration, shared.baselines[task.model])
    return row


def run_sweep(models: list[LoadedModel], configs: list[QuantConfig], data: EvalData, calibration_n: int, seed: int,
              results_path: Path, force: bool = False, executor: Executor | None = None) -> Iterator[tuple[str, dict, bool]]:
    """Yield (key, row, skipped) per model x config as each finishes, saving each row as it arrives.

    The driver (this process) computes each model's FP32 baseline and alone writes the results file; the
    executor (default: this process, in order) runs the other configs wherever it runs them.
    """
    executor = executor or LocalExecutor()
    existing = load_results(results_path)["entries"]
    baselines, tasks = {}, []
    for model in models:
        baseline, fp32_row = fp32_baseline(model, data)
        baselines[model.name] = baseline
        fp32_key = _key(model, FP32, calibration_n, seed)
        if force or not _finished(existing.get(fp32_key), model):
            save_entries(results_path, {fp32_key: fp32_row})
        for config in configs:
            key = _key(model, config, calibration_n, seed)
            if config is FP32:
                yield key, fp32_row, False
            elif not force and _finished(existing.get(key), model):
                yield key, existing[key], True
            else:
                tasks.append(ConfigTask(key, model.name, config, calibration_n, seed))
    shared = SweepShared(data, {m.name: m for m in models}, baselines, artifacts_dir().resolve())
    for i, row in executor.map_unordered(run_task, tasks, shared):
        task = tasks[i]
        if isinstance(row, TaskFailed):  # its worker died on every attempt: a failed row, rerun next time
            model = shared.models[task.model]
            row = {"model": model.name, "model_weights_sha256": model.weights_sha256, "config_name": task.config.name,
                   "config": task.config.to_dict(), "error": f"TaskFailed: {row}"}
        row["executor"] = executor.name
        save_entries(results_path, {task.key: row})
        yield task.key, row, False
