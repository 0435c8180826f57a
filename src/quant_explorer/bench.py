"""Speed in the runtime a model ships in: batch-1 latency, batch-256 throughput, size, and accuracy as run.

Every config is timed beside its FP32 model in one process, threads pinned (torch and ORT) and malloc keeping
freed memory (keep_freed_memory), in interleaved rounds (every target in turn, order rotating), so background
load lands on all alike and the ratios hold when absolute numbers drift. At batch 1 each target is timed with
every thread count of `BenchSettings.latency_threads` side by side (one thread often wins there: no pool to wake
and join per operator); its latency is that of the fastest, recorded with it (`latency_b1_threads`) and with the
run-to-run spread (the interquartile range of its per-round medians), and the entry says how to load the
artifact that way (`load`). Batch 256 runs with `threads`. Which runtimes a config ships in is its
backend's business (`QuantizedModel.runtimes`); each is timed against the FP32 model in the runtime its
`Runtime.baseline` names, and the entry's headline is the runtime a user ships (`QuantizedModel.headline`).
Accuracy is that of what runs; the recipe's float reference (as the sweep row scored it) is set beside it.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .backends import Calibration, QuantizedModel, quantize, runtime_info
from .bench_entry import HEADLINE, BenchDocument, BenchEntry, LoadRecord, RuntimeSpeed
from .configs import QuantConfig
from .data import EvalData
from .env import environment
from .errors import NotApplicable, one_line
from .evaluate import evaluate
from .experiment import FP32
from .identity import identity_hash
from .keys import is_finished, make_calibration, row_identity, row_key, workdir_for
from .models import LoadedModel
from .results import Results, decode_classes, update_rows, write_json_atomic
from .row import Row
from .stats import ALPHA, mcnemar
from .sweep import run_sweep
from .timing import (
    BenchSettings,
    Target,
    keep_freed_memory,
    loadavg,
    measure,
    numbers,
    pinned_threads,
    round_ratios,
)

SCHEMA_VERSION = 2  # 2: batch-1 latency at the fastest of several thread counts, with its spread and load code


def targets_for(config: QuantConfig, quantized: QuantizedModel, settings: BenchSettings) -> list[Target]:
    """Every runtime this config ships in, to be timed. Its float reference is not rebuilt: the sweep row scored it."""
    return [Target(config, name, runtime.build, artifact=runtime.artifact,
                   threads_at_build=getattr(runtime_info(name), "threads_at_build", False))
            for name, runtime in quantized.runtimes.items()
            if runtime.timed and (settings.compile or not runtime.compiles)]


def _build(target: Target, data: EvalData, model: LoadedModel, settings: BenchSettings,
           log: Callable[[str], None]) -> None:
    """Build the runner and score it on every test image (which also compiles and warms it), then the runners timed
    at batch 1: the same one for each thread count, unless the runtime fixes its threads when built."""
    started = time.perf_counter()
    try:
        target.runner = target.build(settings.threads)
        _, preds = evaluate(target.runner, data.test, model.preprocessing)
        target.b1_runners = {n: target.build(n) if target.threads_at_build and n != settings.threads else target.runner
                             for n in settings.latency_threads}
    except Exception as e:  # a runtime that cannot run this model is a finding, not a crash
        target.error, target.runner = one_line(e), None
        log(f"  {target.config.name} [{target.runtime}]: {target.error}")
        return
    target.correct = preds == data.test.labels.numpy()
    target.metrics = RuntimeSpeed(accuracy=float(target.correct.mean()), correct=int(target.correct.sum()),
                                  n_images=len(preds), build_and_eval_seconds=round(time.perf_counter() - started, 2))
    if target.artifact is not None:
        target.metrics = replace(target.metrics, artifact=str(target.artifact),
                                 artifact_bytes=target.artifact.stat().st_size)


def as_run_vs_reference(head: np.ndarray, reference: np.ndarray) -> dict:
    """The shipped runtime against the recipe's float reference on the same images (right or wrong per image): a
    loss the kernels add (u8s8 saturation without VNNI...) shows as a detectable difference (exact McNemar), not
    as a guess from two accuracies."""
    test = mcnemar(reference, head)
    return {"delta_pp": round(100 * float(head.mean() - reference.mean()), 4),
            "reference_right_as_run_wrong": test["fp32_right_quantized_wrong"],
            "reference_wrong_as_run_right": test["fp32_wrong_quantized_right"], "mcnemar_p": test["mcnemar_p"],
            "loses_detectably": bool(test["mcnemar_p"] < ALPHA and head.sum() < reference.sum())}


def summarize(targets: list[Target], quantized: dict[str, QuantizedModel], settings: BenchSettings,
              n_eval_images: int, references: dict[str, tuple] | None = None) -> dict[str, BenchEntry]:
    """config name -> its bench entry: per-runtime numbers and ratios, and the headline runtime's flat.

    `references`: config name -> its float reference as the sweep row scored it (`RuntimeScore`) and whether it got
    each test image right, set beside the runtime as run."""
    references = references or {}
    fp32_targets = {t.runtime: t for t in targets if t.config is FP32 and t.latencies}
    fp32 = {name: numbers(t, settings) for name, t in fp32_targets.items()}
    # The FP32 a user would otherwise ship: the fastest runtime at each batch size, which every speed-up answers to.
    fastest_b1 = min(fp32, key=lambda r: fp32[r].latency_ms_b1_median, default=None)
    fastest_b256 = max(fp32, key=lambda r: fp32[r].throughput_b256, default=None)
    by_config: dict[str, dict[str, RuntimeSpeed]] = {}
    for t in targets:
        speed = RuntimeSpeed(error=t.error) if t.error is not None else numbers(t, settings) if t.latencies \
            else t.metrics
        if t.latencies:
            baseline = runtime_info(t.runtime).baseline
            base = fp32.get(baseline)
            speed.baseline = f"{FP32.name}/{baseline}"
            if base:
                speed.speedup_vs_fp32_b256 = round(speed.throughput_b256 / base.throughput_b256, 3)
                speed.latency_speedup_vs_fp32_b1 = round(base.latency_ms_b1_median / speed.latency_ms_b1_median, 3)
            if fastest_b1:
                speed.latency_speedup_vs_fastest_fp32_b1 = round(
                    fp32[fastest_b1].latency_ms_b1_median / speed.latency_ms_b1_median, 3)
                speed.latency_speedup_vs_fastest_fp32_b1_iqr = round_ratios(fp32_targets[fastest_b1], t)
                speed.speedup_vs_fastest_fp32_b256 = round(
                    speed.throughput_b256 / fp32[fastest_b256].throughput_b256, 3)
            if t.eval_times:
                ips = n_eval_images / float(np.median(t.eval_times))
                speed.eval_images_per_second = round(ips, 1)
                speed.eval_fraction_of_b256 = round(ips / speed.throughput_b256, 3)
        by_config.setdefault(t.config.name, {})[t.runtime] = speed
    entries = {}
    for name, runtimes in by_config.items():
        model = quantized[name]
        headline, reference = model.headline or model.runtime, model.reference
        timed = [r for r, v in runtimes.items() if v.latency_ms_b1_median is not None]
        if headline not in timed:  # e.g. --no-compile: the first timed one
            headline = next(iter(timed), headline)
        head = runtimes.get(headline, RuntimeSpeed())
        scored = {t.runtime: t.correct for t in targets if t.config.name == name and t.correct is not None}
        if name in references:
            ref, correct = references[name]
            if ref.runtime == reference and reference not in runtimes:
                runtimes[reference] = RuntimeSpeed(accuracy=ref.accuracy, correct=int(correct.sum()),
                                                   n_images=len(correct), scored_by="the sweep row")
                scored.setdefault(reference, correct)
        entry = BenchEntry(config_name=name, runtime=headline, threads=settings.threads, size_bytes=model.size_bytes,
                           **{k: getattr(head, k) for k in HEADLINE}, fastest_fp32_b1=fastest_b1,
                           fastest_fp32_b256=fastest_b256, artifact=str(model.path), runtimes=runtimes)
        if fastest_b1:
            entry.fastest_fp32_b1_setting = runtime_info(fastest_b1).threads_text(fp32[fastest_b1].latency_b1_threads)
        if head.latency_b1_threads is not None:
            entry.load = load_record(headline, head.artifact or model.path, head.latency_b1_threads)
        if FP32.name in quantized:
            entry.size_ratio_vs_fp32 = round(model.size_bytes / quantized[FP32.name].size_bytes, 4)
        if reference in runtimes and runtimes[reference].accuracy is not None:
            entry.reference_runtime, entry.reference_accuracy = reference, runtimes[reference].accuracy
            if headline in scored and headline != reference:
                entry.as_run_vs_reference = as_run_vs_reference(scored[headline], scored[reference])
        entries[name] = entry
    return entries


def load_record(runtime: str, artifact, threads: int) -> LoadRecord:
    """How to load the shipped artifact as the bench timed it at batch 1: runtime, artifact, threads, the code."""
    info = runtime_info(runtime)
    return LoadRecord(runtime=runtime, artifact=str(artifact), threads=threads,
                      setting=info.threads_text(threads) if info else f"{threads} threads",
                      code=info.load_code(str(artifact), threads) if info else None)


def bench_inputs(model: LoadedModel, data: EvalData, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch-1 input and a full batch of real test images (tiled when the set is smaller than the batch)."""
    idx = torch.arange(batch) % len(data.test)
    xb = model.preprocessing(data.test.images[idx]).contiguous()
    return xb[:1].clone(), xb


def run_bench(model: LoadedModel, configs: list[QuantConfig], data: EvalData, rows: dict[str, tuple[str, Row]],
              calibration: Calibration, settings: BenchSettings,
              log: Callable[[str], None] = lambda s: None) -> BenchDocument:
    """Build each config's shipped runtimes (FP32 always included) and time them all side by side.

    `rows`: config name -> its row key and its sweep row, found by the row's identity (`bench_and_record`): the
    identity names the work directory (what the sweep compiled there is loaded, not rebuilt), the row gives the
    float reference. `calibration`: the rows' sample (static configs). Returns the bench document, by row key."""
    configs = [FP32, *[c for c in configs if c.name != FP32.name]]
    allocator = keep_freed_memory()
    labels = data.test.labels.numpy()
    with pinned_threads(settings.threads):
        targets, quantized, skipped, references = [], {}, {}, {}
        load_before = loadavg()
        for config in configs:
            cal = calibration if config.is_static else None
            _, row = rows[config.name]
            try:  # the row's identity names its work directory: what the sweep built there is loaded
                quantized[config.name] = quantize(model, config, cal, workdir_for(model, config, cal, row.identity))
            except NotApplicable as e:
                skipped[config.name] = BenchEntry(config_name=config.name, not_applicable=str(e))
                continue
            except Exception as e:
                skipped[config.name] = BenchEntry(config_name=config.name, error=one_line(e),
                                                  traceback=traceback.format_exc(limit=4))
                log(f"  {config.name}: {skipped[config.name].error}")
                continue
            if row.reference is not None and row.reference.predictions is not None:
                references[config.name] = (row.reference, decode_classes(row.reference.predictions) == labels)
            for target in targets_for(config, quantized[config.name], settings):
                _build(target, data, model, settings, log)
                targets.append(target)
                log(f"  built {config.name} [{target.runtime}]")
        x1, xb = bench_inputs(model, data, settings.batch)
        eval_fn = (lambda runner: evaluate(runner, data.test, model.preprocessing)) if settings.time_eval else None
        started = time.perf_counter()
        measure(targets, x1, xb, settings, eval_fn)
        log(f"  timed {sum(t.runner is not None for t in targets)} targets in "
            f"{time.perf_counter() - started:.0f} s")
        entries = summarize(targets, quantized, settings, len(data.test), references)
        entries.update(skipped)
        env = {**environment(settings.threads), "allocator": allocator, "load_average_before": load_before,
               "load_average_after": loadavg()}
    return BenchDocument(
        schema_version=SCHEMA_VERSION, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=model.name, model_weights_sha256=model.weights_sha256, environment=env, settings=settings.record(),
        entries={rows[c.name][0]: entries[c.name] for c in configs if c.name in entries})


def attach_to_results(path: Path, document: BenchDocument) -> list[str]:
    """Put each bench entry under `bench` in its sweep row, under the results lock (read, merge, write), so a
    sweep writing at the same time keeps its rows. Returns the keys that have no sweep row (not written)."""
    def attach(rows: dict[str, Row]) -> dict[str, Row]:
        return {key: replace(rows[key], bench=replace(entry, environment=document.environment,
                                                      created=document.created))
                for key, entry in document.entries.items() if key in rows}

    written = update_rows(path, attach)
    return [k for k in document.entries if k not in written]


def stored_bench(bench_path: Path, keys: list[str], settings: BenchSettings) -> BenchDocument | None:
    """The bench document at `bench_path` when it timed exactly these rows (their keys carry their identities: data,
    calibration sample, config, weights, CPU class, versions) with the same settings on the same CPU model, and
    nothing in it failed; else None. A rerun with nothing changed re-times nothing."""
    try:
        document = BenchDocument.from_dict(json.loads(bench_path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, or not a document of this shape
        return None
    here = environment(settings.threads)
    same_machine = all((document.environment or {}).get(k) == here[k] for k in ("cpu", "threads", "versions"))
    if (same_machine and document.schema_version == SCHEMA_VERSION and document.settings == settings.record()
            and sorted(document.entries) == sorted(keys) and not document.failures()):
        return document
    return None


def bench_and_record(model: LoadedModel, configs: list[QuantConfig], data: EvalData, calibration_n: int, seed: int,
                     settings: BenchSettings, results_path: Path, bench_path: Path,
                     log: Callable[[str], None] = lambda s: None, force: bool = False) -> BenchDocument:
    """The sweep rows of this seed first (resumable: only missing ones are computed), then the bench, attached
    to them (the speed of a config, whatever its calibration draw) and written whole to `bench_path`. A stored bench
    of the same rows, settings and CPU is reused (`force`: time again); it is then marked `reused`."""
    configs = [FP32, *[c for c in configs if c.name != FP32.name]]
    calibration = make_calibration(model, data, calibration_n, seed)  # drawn once, for every static config's row
    identities = {c.name: row_identity(model, c, data, calibration) for c in configs}  # once per row
    keys = {c.name: row_key(model, c, identities[c.name]) for c in configs}
    existing = Results.load(results_path).rows
    if not all(is_finished(existing.get(key)) for key in keys.values()):
        for key, _row, skipped in run_sweep([model], configs, data, calibration_n, [seed], results_path, notify=log):
            if not skipped:
                log(f"  sweep row {key}")
        existing = Results.load(results_path).rows
    stored = None if force else stored_bench(bench_path, list(keys.values()), settings)
    if stored is not None:
        if any(existing[key].bench is None for key in stored.entries if key in existing):
            attach_to_results(results_path, stored)
        return replace(stored, reused=True)
    # Each config's sweep row, found by its identity; one the sweep could not store is timed under that identity.
    rows = {c.name: (keys[c.name], _row_of(existing, identities[c.name], c.name)) for c in configs}
    document = run_bench(model, configs, data, rows, calibration, settings, log)
    attach_to_results(results_path, document)
    write_json_atomic(bench_path, document.to_dict())
    return document


def _row_of(rows: dict[str, Row], identity: dict, config_name: str) -> Row:
    """The stored row measured under `identity` (its hash, as the row records it), else a row of that identity
    without a score."""
    hashed = identity_hash(identity)
    found = next((r for r in rows.values() if r.identity_hash == hashed), None)
    return found or Row(config_name=config_name, identity=identity, identity_hash=hashed)
