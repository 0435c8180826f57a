"""Speed in the runtime a model ships in: batch-1 latency, batch-256 throughput, size, and accuracy as run.

Every config is timed beside its FP32 model in one process, threads pinned (torch and ORT) and malloc keeping
freed memory (keep_freed_memory), in interleaved rounds (every target in turn, order rotating), so background
load lands on all alike and the ratios hold when absolute numbers drift. Which runtimes a config ships in is its
backend's business (`QuantizedModel.runtimes`); each is timed against the FP32 model in the runtime its
`Runtime.baseline` names, and the entry's headline is the runtime a user ships (`QuantizedModel.headline`).
Accuracy is that of what runs; the recipe's float reference (as the sweep row scored it) is set beside it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .backends import QuantizedModel, quantize, runtime_info
from .configs import QuantConfig
from .data import EvalData
from .env import environment
from .errors import NotApplicable, one_line
from .evaluate import Runner, evaluate
from .experiment import FP32, is_finished, make_calibration, row_key, workdir_for
from .models import LoadedModel
from .results import Results, decode_classes, update_rows, write_json_atomic
from .row import Row
from .stats import ALPHA, mcnemar
from .sweep import run_sweep

SCHEMA_VERSION = 1
MALLOC_KEEP_BYTES = 1 << 30  # see keep_freed_memory
SETTLE_SECONDS = 0.1  # pause between targets: measured, ORT's spinning workers slow torch run right after by ~20%


@dataclass(frozen=True)
class BenchSettings:
    threads: int = field(default_factory=torch.get_num_threads)  # pinned for torch and ORT, recorded
    runs: int = 200  # timed batch-1 runs per target: median and p90 over these
    batch_runs: int = 20  # timed full-batch runs per target: images/s from their median
    rounds: int = 20  # the runs are spread over this many interleaved rounds
    warmup: int = 10  # untimed batch-1 runs per target before the rounds (plus one full batch)
    batch: int = 256  # throughput batch; the row keys say b256 (only tests shrink it)
    compile: bool = True  # build inductor targets (a compile takes about a minute on 2 busy cores)
    time_eval: bool = False  # also time evaluate() on the FP32 targets: the tool's own throughput

    def __post_init__(self) -> None:
        if min(self.threads, self.runs, self.batch_runs, self.rounds, self.batch) < 1 or self.warmup < 0:
            raise ValueError(f"bench settings must be positive: {self}")


@dataclass
class Target:
    """One model in one runtime, built, scored on every test image and timed."""

    config: QuantConfig
    runtime: str
    build: Callable[[], Runner]
    artifact: Path | None = None  # what building it writes (a compiled package): its size is recorded
    runner: Runner | None = None
    correct: np.ndarray | None = None  # per test image, as this runtime ran it: paired against the reference
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    batch_times: list[float] = field(default_factory=list)
    eval_times: list[float] = field(default_factory=list)


@contextlib.contextmanager
def pinned_threads(threads: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def keep_freed_memory() -> str:
    """Have glibc malloc keep freed blocks rather than hand them back to the OS; says what the allocator does.

    PyTorch allocates every batch's activations afresh. A ResNet8 activation at batch 256 is 16 MB, above
    glibc's mmap threshold, so by default each run maps new pages and page-faults through them. FP32 inductor
    took 59-80 ms per batch that way, varying run to run, and 52-54 ms with this setting. The int8 model's
    tensors are 4x smaller and lose less, so the default allocator inflated the int8 speed-up. ORT has its own
    arena and is unaffected. This is mallopt(M_MMAP_THRESHOLD and M_TRIM_THRESHOLD, 1 GiB), the effect of
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_, set from inside the process.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system default (no glibc mallopt)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    if mallopt(m_mmap_threshold, MALLOC_KEEP_BYTES) == 1 and mallopt(m_trim_threshold, MALLOC_KEEP_BYTES) == 1:
        return f"glibc, freed memory kept (mmap and trim thresholds {MALLOC_KEEP_BYTES >> 20} MiB)"
    return "glibc default (mallopt refused)"


def targets_for(config: QuantConfig, quantized: QuantizedModel, settings: BenchSettings) -> list[Target]:
    """Every runtime this config ships in, to be timed. Its float reference is not rebuilt: the sweep row scored it."""
    return [Target(config, name, lambda runtime=runtime: runtime.build(settings.threads), artifact=runtime.artifact)
            for name, runtime in quantized.runtimes.items()
            if runtime.timed and (settings.compile or not runtime.compiles)]


def _loadavg() -> list[float] | None:
    """Other work on the machine while we time: absolute numbers mean little when this is high."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _build(target: Target, data: EvalData, model: LoadedModel, log: Callable[[str], None]) -> None:
    """Build the runner and score it on every test image (which also compiles and warms it)."""
    started = time.perf_counter()
    try:
        target.runner = target.build()
        metrics, preds = evaluate(target.runner, data.test, model.preprocessing)
    except Exception as e:  # a runtime that cannot run this model is a finding, not a crash
        target.error, target.runner = one_line(e), None
        log(f"  {target.config.name} [{target.runtime}]: {target.error}")
        return
    target.correct = preds == data.test.labels.numpy()
    target.metrics = {"accuracy": metrics["accuracy"], "correct": metrics["correct"], "n_images": metrics["n_images"],
                      "build_and_eval_seconds": round(time.perf_counter() - started, 2)}
    if target.artifact is not None:
        target.metrics.update(artifact=str(target.artifact), artifact_bytes=target.artifact.stat().st_size)


def _timed(runner: Runner, x: torch.Tensor, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - t0)
    return times


def measure(targets: list[Target], x1: torch.Tensor, xb: torch.Tensor, settings: BenchSettings,
            eval_fn: Callable[[Runner], None] | None = None) -> None:
    """Warm every target up, then time them in interleaved rounds (order rotating each round)."""
    live = [t for t in targets if t.runner is not None]
    for t in live:
        _timed(t.runner, x1, settings.warmup)
        t.runner(xb)
    per_round = -(-settings.runs // settings.rounds)
    batch_per_round = -(-settings.batch_runs // settings.rounds)
    gc.collect()
    gc.disable()
    try:
        for r in range(settings.rounds):
            for t in live[r % len(live):] + live[:r % len(live)] if live else []:
                # Let the previous target's thread pool go idle (ORT workers and OpenMP threads spin for a while
                # after each run, taking a core from whoever runs next), then wake this target's pool.
                time.sleep(SETTLE_SECONDS)
                _timed(t.runner, x1, 3)
                t.latencies += _timed(t.runner, x1, min(per_round, settings.runs - len(t.latencies)))
                t.batch_times += _timed(t.runner, xb, min(batch_per_round, settings.batch_runs - len(t.batch_times)))
                if eval_fn is not None and t.config is FP32:
                    t0 = time.perf_counter()
                    eval_fn(t.runner)
                    t.eval_times.append(time.perf_counter() - t0)
    finally:
        gc.enable()


def _numbers(t: Target, batch: int) -> dict:
    lat = np.array(t.latencies) * 1e3
    return {"latency_ms_b1_median": round(float(np.median(lat)), 4),
            "latency_ms_b1_p90": round(float(np.percentile(lat, 90)), 4),
            "throughput_b256": round(batch / float(np.median(t.batch_times)), 1),
            "throughput_b256_best": round(batch / min(t.batch_times), 1),  # the least disturbed run
            "latency_runs": len(t.latencies), "batch_runs": len(t.batch_times)}


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
              n_eval_images: int, references: dict[str, dict] | None = None) -> dict[str, dict]:
    """config name -> its bench entry: per-runtime numbers and ratios, and the headline runtime's flat.

    `references`: config name -> its float reference as the sweep row scored it (runtime, accuracy, correct
    per test image), set beside the runtime as run."""
    references = references or {}
    fp32 = {t.runtime: _numbers(t, settings.batch) for t in targets
            if t.config is FP32 and t.latencies}
    # The FP32 a user would otherwise ship: the fastest runtime at each batch size, which every speed-up answers to.
    fastest_b1 = min(fp32, key=lambda r: fp32[r]["latency_ms_b1_median"], default=None)
    fastest_b256 = max(fp32, key=lambda r: fp32[r]["throughput_b256"], default=None)
    by_config: dict[str, dict] = {}
    for t in targets:
        entry = by_config.setdefault(t.config.name, {"runtimes": {}})
        row: dict = {**t.metrics} if t.error is None else {"error": t.error}
        if t.latencies:
            row.update(_numbers(t, settings.batch))
            baseline = runtime_info(t.runtime).baseline
            base = fp32.get(baseline)
            row["baseline"] = f"{FP32.name}/{baseline}"
            if base:
                row["speedup_vs_fp32_b256"] = round(row["throughput_b256"] / base["throughput_b256"], 3)
                row["latency_speedup_vs_fp32_b1"] = round(base["latency_ms_b1_median"] / row["latency_ms_b1_median"], 3)
            if fastest_b1:
                row["latency_speedup_vs_fastest_fp32_b1"] = round(
                    fp32[fastest_b1]["latency_ms_b1_median"] / row["latency_ms_b1_median"], 3)
                row["speedup_vs_fastest_fp32_b256"] = round(
                    row["throughput_b256"] / fp32[fastest_b256]["throughput_b256"], 3)
            if t.eval_times:
                ips = n_eval_images / float(np.median(t.eval_times))
                row["eval_images_per_second"] = round(ips, 1)
                row["eval_fraction_of_b256"] = round(ips / row["throughput_b256"], 3)
        entry["runtimes"][t.runtime] = row
    for name, entry in by_config.items():
        model = quantized[name]
        headline, reference = model.headline or model.runtime, model.reference
        runtimes = entry["runtimes"]
        if "latency_ms_b1_median" not in runtimes.get(headline, {}):  # e.g. --no-compile: the first timed one
            headline = next((r for r, v in runtimes.items() if "latency_ms_b1_median" in v), headline)
        head = runtimes.get(headline, {})
        entry.update({"runtime": headline, "threads": settings.threads, "size_bytes": model.size_bytes,
                      **{k: head[k] for k in ("latency_ms_b1_median", "latency_ms_b1_p90", "throughput_b256",
                                              "speedup_vs_fp32_b256", "latency_speedup_vs_fp32_b1", "accuracy",
                                              "latency_speedup_vs_fastest_fp32_b1", "speedup_vs_fastest_fp32_b256",
                                              "error") if k in head},
                      "fastest_fp32_b1": fastest_b1, "fastest_fp32_b256": fastest_b256})
        if FP32.name in quantized:
            entry["size_ratio_vs_fp32"] = round(model.size_bytes / quantized[FP32.name].size_bytes, 4)
        scored = {t.runtime: t.correct for t in targets if t.config.name == name and t.correct is not None}
        ref = references.get(name)
        if ref and ref["runtime"] == reference and reference not in runtimes:
            runtimes[reference] = {"accuracy": ref["accuracy"], "correct": int(ref["correct"].sum()),
                                   "n_images": len(ref["correct"]), "scored_by": "the sweep row"}
            scored.setdefault(reference, ref["correct"])
        if reference and "accuracy" in runtimes.get(reference, {}):
            entry["reference_runtime"] = reference
            entry["reference_accuracy"] = runtimes[reference]["accuracy"]
            if headline in scored and headline != reference:
                entry["as_run_vs_reference"] = as_run_vs_reference(scored[headline], scored[reference])
        entry["artifact"] = str(model.path)
        entry["runtimes"] = entry.pop("runtimes")  # after the headline fields, for reading
    return by_config


def bench_inputs(model: LoadedModel, data: EvalData, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch-1 input and a full batch of real test images (tiled when the set is smaller than the batch)."""
    idx = torch.arange(batch) % len(data.test)
    xb = model.preprocessing(data.test.images[idx]).contiguous()
    return xb[:1].clone(), xb


def run_bench(model: LoadedModel, configs: list[QuantConfig], data: EvalData, rows: dict[str, tuple[str, Row]],
              calibration_n: int, seed: int, settings: BenchSettings,
              log: Callable[[str], None] = lambda s: None) -> dict:
    """Build each config's shipped runtimes (FP32 always included) and time them all side by side.

    `rows`: config name -> (its row key, its sweep row): the key's identity hash names the work directory (what the
    sweep compiled there is loaded, not rebuilt); the row gives the float reference. Returns the bench document."""
    configs = [FP32, *[c for c in configs if c.name != FP32.name]]
    allocator = keep_freed_memory()
    labels = data.test.labels.numpy()
    with pinned_threads(settings.threads):
        calibration = make_calibration(model, data, calibration_n, seed)
        targets, quantized, skipped, references = [], {}, {}, {}
        load_before = _loadavg()
        for config in configs:
            cal = calibration if config.is_static else None
            _, row = rows[config.name]
            try:  # the row's identity names its work directory: what the sweep built there is loaded
                quantized[config.name] = quantize(model, config, cal, workdir_for(model, config, cal, row.identity))
            except NotApplicable as e:
                skipped[config.name] = {"not_applicable": str(e)}
                continue
            except Exception as e:
                skipped[config.name] = {"error": one_line(e), "traceback": traceback.format_exc(limit=4)}
                log(f"  {config.name}: {skipped[config.name]['error']}")
                continue
            if "predictions" in (row.reference or {}):
                references[config.name] = {**row.reference,
                                           "correct": decode_classes(row.reference["predictions"]) == labels}
            for target in targets_for(config, quantized[config.name], settings):
                _build(target, data, model, log)
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
               "load_average_after": _loadavg()}
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.name, "model_weights_sha256": model.weights_sha256,
        "environment": env, "settings": asdict(settings),
        "entries": {rows[c.name][0]: {"config_name": c.name, **entries[c.name]} for c in configs if c.name in entries},
    }


def attach_to_results(path: Path, document: dict) -> list[str]:
    """Put each bench entry under `bench` in its sweep row, under the results lock (read, merge, write), so a
    sweep writing at the same time keeps its rows. Returns the keys that have no sweep row (not written)."""
    env = {"environment": document["environment"], "created": document["created"]}

    def attach(rows: dict[str, Row]) -> dict[str, Row]:
        return {key: replace(rows[key], bench={**entry, **env}) for key, entry in document["entries"].items()
                if key in rows}

    written = update_rows(path, attach)
    return [k for k in document["entries"] if k not in written]


def failures(document: dict) -> list[str]:
    """'config [runtime]: error' for each config or runtime of a bench document that failed (not a config that does
    not apply): failed work, never reused as a stored bench."""
    out = []
    for entry in document.get("entries", {}).values():
        if entry.get("error"):
            out.append(f"{entry.get('config_name')}: {entry['error']}")
        out += [f"{entry.get('config_name')} [{runtime}]: {r['error']}"
                for runtime, r in (entry.get("runtimes") or {}).items() if r.get("error")]
    return out


def stored_bench(bench_path: Path, keys: list[str], settings: BenchSettings) -> dict | None:
    """The bench document at `bench_path` when it timed exactly these rows (their keys carry their identities: data,
    calibration sample, config, weights, CPU class, versions) with the same settings on the same CPU model, and
    nothing in it failed; else None. A rerun with nothing changed re-times nothing."""
    try:
        document = json.loads(bench_path.read_text())
    except (OSError, ValueError):
        return None
    here = environment(settings.threads)
    same_machine = all(document.get("environment", {}).get(k) == here[k] for k in ("cpu", "threads", "versions"))
    if (same_machine and document.get("settings") == asdict(settings)
            and sorted(document.get("entries", {})) == sorted(keys) and not failures(document)):
        return document
    return None


def bench_and_record(model: LoadedModel, configs: list[QuantConfig], data: EvalData, calibration_n: int, seed: int,
                     settings: BenchSettings, results_path: Path, bench_path: Path,
                     log: Callable[[str], None] = lambda s: None, force: bool = False) -> dict:
    """The sweep rows of this seed first (resumable: only missing ones are computed), then the bench, attached
    to them (the speed of a config, whatever its calibration draw) and written whole to `bench_path`. A stored bench
    of the same rows, settings and CPU is reused (`force`: time again); its document then says `"reused": true`."""
    configs = [FP32, *[c for c in configs if c.name != FP32.name]]
    keys = {c.name: row_key(model, c, data, calibration_n, seed) for c in configs}  # once per row
    existing = Results.load(results_path).rows
    if not all(is_finished(existing.get(key)) for key in keys.values()):
        for key, _row, skipped in run_sweep([model], configs, data, calibration_n, [seed], results_path, notify=log):
            if not skipped:
                log(f"  sweep row {key}")
        existing = Results.load(results_path).rows
    stored = None if force else stored_bench(bench_path, list(keys.values()), settings)
    if stored is not None:
        if any(existing[key].bench is None for key in stored["entries"] if key in existing):
            attach_to_results(results_path, stored)
        return {**stored, "reused": True}
    rows = {c.name: (keys[c.name], existing.get(keys[c.name], Row())) for c in configs}
    document = run_bench(model, configs, data, rows, calibration_n, seed, settings, log)
    attach_to_results(results_path, document)
    write_json_atomic(bench_path, document)
    return document
