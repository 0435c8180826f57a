"""How the bench times: settings, threads pinned, malloc keeping freed memory, interleaved rounds, and the numbers
(medians, their run-to-run spread, the thread count that was fastest) taken from them."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .bench_entry import RuntimeSpeed
from .configs import REFERENCE, QuantConfig
from .evaluate import Runner

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
    b1_threads: tuple[int, ...] = ()  # thread counts tried at batch 1; empty: 1 and `threads`

    def __post_init__(self) -> None:
        if (min(self.threads, self.runs, self.batch_runs, self.rounds, self.batch, *self.b1_threads) < 1
                or self.warmup < 0):
            raise ValueError(f"bench settings must be positive: {self}")

    @property
    def latency_threads(self) -> list[int]:
        return sorted(set(self.b1_threads or (1, self.threads)))

    def record(self) -> dict:
        """As stored in a bench document (JSON: tuples read back as lists)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Target:
    """One model in one runtime, built, scored on every test image and timed."""

    config: QuantConfig
    runtime: str
    build: Callable[[int], Runner]  # threads -> runner
    artifact: Path | None = None  # what building it writes (a compiled package): its size is recorded
    threads_at_build: bool = False  # `Runtime.threads_at_build`: one runner per thread count tried at batch 1
    runner: Runner | None = None  # built with `BenchSettings.threads`: scored, and timed at batch 256
    b1_runners: dict[int, Runner] = field(default_factory=dict)  # thread count -> runner timed at batch 1
    correct: np.ndarray | None = None  # per test image, as this runtime ran it: paired against the reference
    error: str | None = None
    metrics: RuntimeSpeed = field(default_factory=RuntimeSpeed)  # scored on every test image as built
    latencies: dict[int, list[float]] = field(default_factory=dict)  # per thread count
    round_medians: dict[int, list[float]] = field(default_factory=dict)  # per thread count, one per round (nan: none)
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



def loadavg() -> list[float] | None:
    """Other work on the machine while we time: absolute numbers mean little when this is high."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None



def timed(runner: Runner, x: torch.Tensor, n: int) -> list[float]:
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
        for threads, runner in t.b1_runners.items():
            with pinned_threads(threads):
                timed(runner, x1, settings.warmup)
        t.runner(xb)
        t.latencies = {n: [] for n in t.b1_runners}
        t.round_medians = {n: [] for n in t.b1_runners}
    per_round = -(-settings.runs // settings.rounds)
    batch_per_round = -(-settings.batch_runs // settings.rounds)
    gc.collect()
    gc.disable()
    try:
        for r in range(settings.rounds):
            for t in live[r % len(live):] + live[:r % len(live)] if live else []:
                # Let the previous target's thread pool go idle (ORT workers and OpenMP threads spin for a while
                # after each run, taking a core from whoever runs next), then wake this target's pool. Its thread
                # counts run fewest first: one thread leaves no pool spinning behind it.
                time.sleep(SETTLE_SECONDS)
                for threads, runner in sorted(t.b1_runners.items()):
                    with pinned_threads(threads):  # torch's threads; an ORT session has its own pool
                        timed(runner, x1, 3)
                        times = timed(runner, x1, min(per_round, settings.runs - len(t.latencies[threads])))
                    t.latencies[threads] += times
                    t.round_medians[threads].append(float(np.median(times)) if times else float("nan"))
                t.batch_times += timed(t.runner, xb, min(batch_per_round, settings.batch_runs - len(t.batch_times)))
                if eval_fn is not None and t.config.name == REFERENCE:
                    t0 = time.perf_counter()
                    eval_fn(t.runner)
                    t.eval_times.append(time.perf_counter() - t0)
    finally:
        gc.enable()


def spread(values) -> float:
    """The run-to-run spread of a timing: the interquartile range of its per-round medians (rounds without runs
    left out). Two medians closer than this are a tie (`analysis.pick`)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(np.percentile(values, 75) - np.percentile(values, 25)) if len(values) else float("nan")


def fastest_threads(t: Target) -> int:
    """The thread count with the lowest batch-1 median (the fewer threads on a tie of medians)."""
    return min(t.latencies, key=lambda n: (float(np.median(t.latencies[n])), n))


def numbers(t: Target, settings: BenchSettings) -> RuntimeSpeed:
    """A target's numbers beside its scores: batch 1 at its fastest thread count (each count tried beside it), batch
    256 at `settings.threads` (its spread: the interquartile range of the runs' images/s)."""
    by_threads = {n: np.array(v) * 1e3 for n, v in t.latencies.items()}
    best = fastest_threads(t)
    lat, ms = by_threads[best], 1e3 * np.array(t.round_medians[best])
    throughput = settings.batch / np.array(t.batch_times)
    return replace(t.metrics, latency_ms_b1_median=round(float(np.median(lat)), 4),
                   latency_ms_b1_p90=round(float(np.percentile(lat, 90)), 4),
                   latency_ms_b1_spread=round(spread(ms), 4), latency_b1_threads=best,
                   latency_ms_b1_by_threads={str(n): {"median": round(float(np.median(v)), 4),
                                                      "spread": round(spread(1e3 * np.array(t.round_medians[n])), 4)}
                                             for n, v in by_threads.items()},
                   throughput_b256=round(float(np.median(throughput)), 1),
                   throughput_b256_best=round(float(throughput.max()), 1),  # the least disturbed run
                   throughput_b256_spread=round(float(np.subtract(*np.percentile(throughput, [75, 25]))), 1),
                   throughput_threads=settings.threads, latency_runs=len(lat), batch_runs=len(t.batch_times))


def round_ratios(baseline: Target, target: Target) -> list[float]:
    """Interquartile range of the per-round ratios of two targets' batch-1 medians (each at its fastest thread
    count; a round times both within seconds): the spread of a speed-up."""
    a, b = (np.array(t.round_medians[fastest_threads(t)]) for t in (baseline, target))
    ratios = (a / b)[~np.isnan(a / b)]
    return [round(float(np.percentile(ratios, q)), 3) for q in (25, 75)] if len(ratios) else []
