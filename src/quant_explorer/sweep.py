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
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .backends import Calibration, NotApplicable, QuantizedModel, quantize
from .configs import CONFIGS, QuantConfig
from .data import ImageSet, calibration_indices, load_split
from .env import environment, u8s8_saturation_warning
from .errors import UserError
from .evaluate import evaluate
from .executors import Executor, LocalExecutor, TaskFailed
from .identity import identity_hash, legacy_identity, make_identity, mismatch
from .models import LoadedModel
from .paths import ARTIFACTS_ENV, artifacts_dir, models_dir
from .results import decode_classes, encode_classes, entry_key, load_results, save_entries, save_labels
from .stats import mcnemar

FP32 = CONFIGS["fp32_baseline"]
DEFAULT_SEEDS = 5  # calibration samples per static config: one draw moves a recipe by up to ~2 points
DEFAULT_ALTERNATES = frozenset({"torch", "onnx2torch"})


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
                       batch_size=model.import_info.get("fixed_batch") or 64, pool_fingerprint=data.train.fingerprint)


def row_identity(model: LoadedModel, config: QuantConfig, data: EvalData, calibration_n: int, seed: int) -> dict:
    """Everything that can change this row's numbers (`identity.py`), with the model's preprocessing."""
    sample = ({"pool_fingerprint": data.train.fingerprint, "calibration_n": calibration_n, "calibration_seed": seed}
              if config.is_static else None)
    return {**make_identity(model.name, model.weights_sha256, data.test.describe(), config.to_dict(), sample),
            "preprocessing": model.preprocessing.to_dict()}


def study_identity(model: LoadedModel, config: QuantConfig, data: EvalData) -> dict:
    """A study's identity: a row's, less the one calibration sample (a study draws many, by its own settings)."""
    return {**row_identity(model, config, data, 0, 0), "calibration": None}


def row_key(model: LoadedModel, config: QuantConfig, data: EvalData, calibration_n: int, seed: int) -> str:
    """model|config[|n=|seed=]|identity hash: a result of other data, CPU class or versions has another key."""
    identity = row_identity(model, config, data, calibration_n, seed)
    return entry_key(model.name, config.name, *((calibration_n, seed) if config.is_static else ()),
                     identity_hash=identity_hash(identity))


def workdir_for(model: LoadedModel, config: QuantConfig, calibration: Calibration | None) -> Path:
    tag = f"n{len(calibration.images)}-s{calibration.seed}" if calibration else "nocal"
    return models_dir() / f"{model.name}-{model.weights_sha256[:12]}" / config.name / tag


def _error(e: Exception) -> dict:
    return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=4)}


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


def compare_with_fp32(preds: np.ndarray, labels: np.ndarray, baseline: Baseline, metrics: dict) -> dict:
    """Paired against the FP32 predictions on the same images: delta, discordant counts and exact McNemar p."""
    fp32 = baseline.metrics
    return {"delta_pp": round(100 * (metrics["accuracy"] - fp32["accuracy"]), 4),
            "per_class_delta_pp": {c: round(100 * (metrics["per_class_accuracy"][c] - fp32["per_class_accuracy"][c]), 4)
                                   for c in metrics["per_class_accuracy"]},
            "agreement_with_fp32": float((preds == baseline.preds).mean()),
            "changed_predictions": int((preds != baseline.preds).sum()),
            **mcnemar(baseline.preds == labels, preds == labels)}


def run_config(model: LoadedModel, config: QuantConfig, data: EvalData, calibration: Calibration | None,
               baseline: Baseline | None, alternates: set[str] = DEFAULT_ALTERNATES) -> tuple[dict, np.ndarray | None]:
    """Quantize, evaluate on every test image and compare with the FP32 baseline: one result row.

    Whatever fails — quantizing, or running the quantized model — becomes the row's `error`; the sweep goes on.
    """
    calibration = calibration if config.is_static else None
    n, seed = (len(calibration.images), calibration.seed) if calibration else (None, None)
    identity = row_identity(model, config, data, n, seed)
    row = {"model": model.name, "model_weights_sha256": model.weights_sha256, "config_name": config.name,
           "config": config.to_dict(), "identity": identity, "identity_hash": identity_hash(identity),
           "environment": environment(torch.get_num_threads()),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if calibration:
        row["calibration"] = calibration.describe()
    warning = u8s8_saturation_warning(config.activation_dtype, config.weight_dtype, config.reduce_range)
    # Only ORT runs u8s8 integer kernels as its main runtime; PT2E (float reference) and eager (qnnpack) do not.
    row["warnings"] = [warning] if warning and config.backend == "ort" else []
    started = time.perf_counter()
    try:
        quantized = quantize(model, config, calibration, workdir_for(model, config, calibration))
        row["quantize_seconds"] = round(time.perf_counter() - started, 3)
        metrics, preds = evaluate(quantized.runner, data.test, model.preprocessing)
    except NotApplicable as e:
        return {**row, "not_applicable": str(e)}, None
    except Exception as e:
        return {**row, **_error(e)}, None
    row.update(metrics)
    row.update({"predictions": encode_classes(preds), "runtime": quantized.runtime, "size_bytes": quantized.size_bytes,
                "checks": quantized.checks})
    if baseline is not None:
        row.update(compare_with_fp32(preds, data.test.labels.numpy(), baseline, metrics))
        row["size_ratio_vs_fp32"] = round(quantized.size_bytes / baseline.size_bytes, 4)
    row["alternates"] = _alternate_rows(quantized, data, model, preds, set(alternates))
    row["seconds"] = round(time.perf_counter() - started, 3)  # the whole row: quantize, evaluate, alternates
    return row, preds


def fp32_baseline(model: LoadedModel, data: EvalData) -> tuple[Baseline, dict]:
    row, preds = run_config(model, FP32, data, None, None)
    if "error" in row:  # nothing can be compared without it: the whole run stops, in one line
        raise UserError(f"FP32 evaluation of {model.name} failed: {row['error'].splitlines()[0]}")
    baseline = Baseline(row, preds, row["size_bytes"])
    row.update({**compare_with_fp32(preds, data.test.labels.numpy(), baseline, row), "size_ratio_vs_fp32": 1.0})
    return baseline, row


def stage_seconds(rows: list[dict]) -> dict[str, float]:
    """Wall seconds per backend over the rows computed in this run (reused rows cost nothing)."""
    spent: Counter = Counter()
    for row in rows:
        if not row.get("skipped") and "seconds" in row:
            spent[row["config"]["backend"]] += row["seconds"]
    return {backend: round(seconds, 1) for backend, seconds in spent.items()}


def is_finished(entry: dict | None) -> bool:
    """A stored row that can be reused as it is (its key already says it was measured alike)."""
    return bool(entry) and "error" not in entry and "predictions" in entry


def reuse_notices(existing: dict[str, dict], wanted: list[tuple[tuple, dict]]) -> list[str]:
    """Why stored rows of the same (model, config, n, seed) are not reused, one line per reason with its count.

    `wanted`: (model, config, n, seed) and the identity each row to compute will have.
    """
    stored: dict[tuple, dict] = {}
    for entry in existing.values():
        if "config_name" in entry and "accuracy" in entry:
            cal = entry.get("calibration") or {}
            stored[(entry["model"], entry["config_name"], cal.get("calibration_n"), cal.get("calibration_seed"))] = entry
    reasons: Counter = Counter()
    for base, identity in wanted:
        if base in stored:
            other = stored[base]
            reasons[mismatch(legacy_identity(other) if "schema" in other else other.get("identity", {}), identity)] += 1
    return [f"{count} row{'s were' if count > 1 else ' was'} computed {reason}; computing "
            f"{'them' if count > 1 else 'it'} here" for reason, count in reasons.most_common() if reason]


@dataclass(frozen=True)
class ConfigTask:
    """One row for a worker to compute; the models, data and baselines come from the sweep's `SweepShared`."""

    key: str
    model: str
    config: QuantConfig
    calibration_n: int
    seed: int
    first_seed: bool = True  # the row that also runs the cross-check runtimes


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
    calibration = make_calibration(model, shared.data, task.calibration_n, task.seed) if task.config.is_static else None
    # The cross-checks (onnx2torch simulation...) describe the recipe, not the draw: the first seed has them.
    alternates = DEFAULT_ALTERNATES if task.first_seed else frozenset()
    row, _ = run_config(model, task.config, shared.data, calibration, shared.baselines[task.model], alternates)
    return row


def run_sweep(models: list[LoadedModel], configs: list[QuantConfig], data: EvalData, calibration_n: int,
              seeds: list[int], results_path: Path, force: bool = False, executor: Executor | None = None,
              notify: Callable[[str], None] = lambda _: None) -> Iterator[tuple[str, dict, bool]]:
    """Yield (key, row, skipped) per model x config x seed as each finishes, saving each row as it arrives.

    Static configs run once per calibration seed, the others once. A stored row is reused only where its
    identity (data, sample, config record, weights, CPU class, versions) is this run's; `notify` is told
    in one line per reason why other stored rows of the same config are not. The driver (this process)
    computes each model's FP32 baseline and alone writes the results file; the executor runs the rest.
    """
    executor = executor or LocalExecutor()
    existing = load_results(results_path)["entries"]
    datasets = {data.test.fingerprint: data.test.record()}
    save_labels(data.test.fingerprint, data.test.labels.numpy())
    baselines, tasks, wanted = {}, [], []
    for model in models:
        fp32_key = row_key(model, FP32, data, calibration_n, 0)
        fp32_reused = not force and is_finished(existing.get(fp32_key))
        if fp32_reused:  # its stored predictions are the baseline: same identity, same numbers
            fp32_row = existing[fp32_key]
            baseline = Baseline(fp32_row, decode_classes(fp32_row["predictions"]), fp32_row["size_bytes"])
        else:
            baseline, fp32_row = fp32_baseline(model, data)
            save_entries(results_path, {fp32_key: fp32_row}, datasets)
        baselines[model.name] = baseline
        for config in configs:
            for seed in seeds if config.is_static else seeds[:1]:
                key = row_key(model, config, data, calibration_n, seed)
                if config is FP32:
                    yield key, fp32_row, fp32_reused
                elif not force and is_finished(existing.get(key)):
                    yield key, existing[key], True
                else:
                    n = calibration_n if config.is_static else None
                    wanted.append(((model.name, config.name, n, seed if config.is_static else None),
                                   row_identity(model, config, data, calibration_n, seed)))
                    tasks.append(ConfigTask(key, model.name, config, calibration_n, seed, seed == seeds[0]))
    for line in reuse_notices(existing, wanted):
        notify(line)
    shared = SweepShared(data, {m.name: m for m in models}, baselines, artifacts_dir().resolve())
    for i, row in executor.map_unordered(run_task, tasks, shared):
        task = tasks[i]
        if isinstance(row, TaskFailed):  # its worker died on every attempt: a failed row, rerun next time
            model = shared.models[task.model]
            row = {"model": model.name, "model_weights_sha256": model.weights_sha256, "config_name": task.config.name,
                   "config": task.config.to_dict(), "error": f"TaskFailed: {row}"}
        row["executor"] = executor.name
        save_entries(results_path, {task.key: row}, datasets)
        yield task.key, row, False
