"""Run configs on models and record one flat result row each; resumable, one results file.

A row that fails records its error and the sweep goes on; each finished row is saved as it arrives, so a
killed sweep loses at most the rows in flight, and a rerun skips what is already there. A recomputed row that
fails never replaces the stored answer of the same key (`results.save_entries`): the failure is told, not saved.
Where the rows are computed (here, a process pool, a Ray cluster) is the executor's business (`executors.py`);
the results file is written by this process alone.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .backends import Calibration
from .configs import QuantConfig
from .data import EvalData
from .errors import first_line
from .executors import Executor, LocalExecutor, TaskFailed
from .experiment import FP32, Baseline, fp32_baseline, run_config
from .identity import differences, legacy_identity
from .keys import is_finished, make_calibration, row_identity, row_key
from .models import LoadedModel
from .paths import ARTIFACTS_ENV, artifacts_dir
from .results import Results, decode_classes, save_labels, save_rows
from .row import Row


def stage_seconds(rows: list[Row]) -> dict[str, float]:
    """Wall seconds per backend over the rows computed in this run (pass only those: reused rows cost nothing)."""
    spent: Counter = Counter()
    for row in rows:
        if row.seconds is not None:
            spent[row.config["backend"]] += row.seconds
    return {backend: round(seconds, 1) for backend, seconds in spent.items()}


def reuse_notices(existing: dict[str, Row], wanted: list[tuple[tuple, dict]]) -> list[str]:
    """Why stored rows of the same (model, config, n, seed) are not reused, one line per reason with its count.

    `wanted`: (model, config, n, seed) and the identity each row to compute will have.
    """
    stored: dict[tuple, list[dict]] = {}
    for row in existing.values():
        if row.scored:
            base = (row.model, row.config_name, row.calibration_n, row.seed)
            stored.setdefault(base, []).append(legacy_identity(row.to_dict()) if row.schema else row.identity or {})
    reasons: Counter = Counter()
    for base, identity in wanted:
        # the nearest stored row (fewest fields apart) says why: the one change that made this row new
        nearest = min((differences(other, identity) for other in stored.get(base, [])), key=len, default=[])
        reasons[next(iter(nearest), None)] += 1
    return [f"{count} row{'s were' if count > 1 else ' was'} computed {reason}; computing "
            f"{'them' if count > 1 else 'it'} here" for reason, count in reasons.most_common() if reason]


@dataclass(frozen=True)
class ConfigTask:
    """One row for a worker to compute; the models, data and baselines come from the sweep's `SweepShared`."""

    key: str
    model: str
    config: QuantConfig
    calibration: Calibration | None  # the sample, drawn once by the driver (its hash is in the key); None: dynamic
    identity: dict  # computed once, by the driver, for the row's key
    first_seed: bool = True  # the row that also runs the cross-check runtimes


@dataclass
class SweepShared:
    """What every task needs, sent to each worker once: data, models, FP32 baselines, where artifacts go."""

    data: EvalData
    models: dict[str, LoadedModel]
    baselines: dict[str, Baseline]
    artifacts: Path  # absolute: workers write quantized models here, whatever their working directory


def run_task(task: ConfigTask, shared: SweepShared) -> Row:
    """A worker's job: one config on one model, compared with the baseline the driver computed."""
    if artifacts_dir().resolve() != shared.artifacts:
        os.environ[ARTIFACTS_ENV] = str(shared.artifacts)
    # The cross-checks (onnx2torch simulation...) describe the recipe, not the draw: the first seed has them.
    row, _ = run_config(shared.models[task.model], task.config, shared.data, task.calibration,
                        shared.baselines[task.model], task.first_seed, task.identity)
    return row


def run_sweep(models: list[LoadedModel], configs: list[QuantConfig], data: EvalData, calibration_n: int,
              seeds: list[int], results_path: Path, force: bool = False, executor: Executor | None = None,
              notify: Callable[[str], None] = lambda _: None) -> Iterator[tuple[str, Row, bool]]:
    """Yield (key, row, skipped) per model x config x seed as each finishes, saving each row as it arrives.

    Static configs run once per calibration seed, the others once. A stored row is reused only where its
    identity (data, sample, config record, weights, CPU class, versions) is this run's; `notify` is told
    in one line per reason why other stored rows of the same config are not. The driver (this process)
    computes each model's FP32 baseline, draws each calibration sample once (for the key, and for the task that
    computes the row) and alone writes the results file; the executor runs the rest.
    """
    executor = executor or LocalExecutor()
    existing = Results.load(results_path).rows
    datasets = {data.test.fingerprint: data.test.record()}
    save_labels(data.test.fingerprint, data.test.labels.numpy())
    baselines, tasks, wanted = {}, [], []
    for model in models:
        fp32_key = row_key(model, FP32, row_identity(model, FP32, data))
        fp32_reused = not force and is_finished(existing.get(fp32_key))
        if fp32_reused:  # its stored predictions are the baseline: same identity, same numbers
            fp32_row = existing[fp32_key]
            baseline = Baseline(fp32_row, decode_classes(fp32_row.predictions), fp32_row.size_bytes)
        else:
            baseline, fp32_row = fp32_baseline(model, data)
            save_rows(results_path, {fp32_key: fp32_row}, datasets)
        baselines[model.name] = baseline
        draws = {seed: make_calibration(model, data, calibration_n, seed) for seed in seeds} if any(
            c.is_static for c in configs) else {}  # every static config of a model calibrates on the same draws
        for config in configs:
            for seed in seeds if config.is_static else seeds[:1]:
                calibration = draws[seed] if config.is_static else None
                identity = row_identity(model, config, data, calibration)  # once per row
                key = row_key(model, config, identity)
                if config is FP32:
                    yield key, fp32_row, fp32_reused
                elif not force and is_finished(existing.get(key)):
                    yield key, existing[key], True
                else:
                    n = calibration_n if config.is_static else None
                    wanted.append(((model.name, config.name, n, seed if config.is_static else None), identity))
                    tasks.append(ConfigTask(key, model.name, config, calibration, identity, seed == seeds[0]))
    for line in reuse_notices(existing, wanted):
        notify(line)
    shared = SweepShared(data, {m.name: m for m in models}, baselines, artifacts_dir().resolve())
    for i, row in executor.map_unordered(run_task, tasks, shared):
        task = tasks[i]
        if isinstance(row, TaskFailed):  # its worker died on every attempt: a failed row, rerun next time
            model = shared.models[task.model]
            row = Row(model=model.name, model_weights_sha256=model.weights_sha256, config_name=task.config.name,
                      config=task.config.to_dict(), error=f"TaskFailed: {row}")
        row.executor = executor.name
        if save_rows(results_path, {task.key: row}, datasets):  # a recompute (--force) that failed
            notify(f"{task.key.rsplit('|', 1)[0]} failed ({first_line(row.error)}); the stored row measured alike "
                   "is kept")
        yield task.key, row, False
