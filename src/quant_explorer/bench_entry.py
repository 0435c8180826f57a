"""The bench document (bench_<model>.json) typed: per config its entry, per runtime its numbers.

A `BenchEntry` is what `bench.summarize` measures for one config: the numbers of each runtime it ships in
(`runtimes`, each a `RuntimeSpeed`) and the headline runtime's copied flat beside them (what a sweep row's
`bench` holds, and what the pick and the report read). Documents of every schema read back as they were written
(`record.Record`: unknown keys kept), so older bench files stay readable. Which numbers a speed field is (the
headline's, a view's, a table column) is said once, on the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .record import Record


def _number(words: str | None = None, headline: bool = True, pooled: bool = False):
    """A speed field: copied flat into its entry (`headline`), kept in a view's record from any seed's bench
    (`pooled`), a table column with these `words`."""
    return field(default=None, metadata={"headline": headline, "pooled": pooled, "words": words})


@dataclass
class LoadRecord(Record):
    """How to load the shipped artifact as the bench timed it at batch 1 (`bench.load_record`)."""

    runtime: str | None = None
    artifact: str | None = None
    threads: int | None = None
    setting: str | None = None  # '1 intra-op thread'
    code: str | None = None  # the Python that loads and runs it so


@dataclass
class RuntimeSpeed(Record):
    """One runtime of one config as the bench built, scored and timed it (`bench.summarize`)."""

    # scored on every test image as run (`bench._build`), or by the sweep row (`scored_by`)
    accuracy: float | None = _number()
    correct: int | None = None
    n_images: int | None = None
    build_and_eval_seconds: float | None = None
    artifact: str | None = None  # what it loads (a compiled package) and its size
    artifact_bytes: int | None = None
    scored_by: str | None = None
    # timed (`timing.numbers`): batch 1 at its fastest thread count, batch 256 at the bench's
    latency_ms_b1_median: float | None = _number("latency, batch 1, median (ms)", pooled=True)
    latency_ms_b1_p90: float | None = _number("latency, batch 1, p90 (ms)", pooled=True)
    latency_ms_b1_spread: float | None = _number(pooled=True)  # run-to-run: IQR of per-round medians
    latency_b1_threads: int | None = _number()
    latency_ms_b1_by_threads: dict | None = None  # thread count -> {median, spread}
    throughput_b256: float | None = _number("throughput, batch 256 (images/s)", pooled=True)
    throughput_b256_best: float | None = None
    throughput_b256_spread: float | None = _number(pooled=True)
    throughput_threads: int | None = _number()
    latency_runs: int | None = None
    batch_runs: int | None = None
    # against FP32: in the runtime `baseline` names, and the fastest FP32 runtime
    baseline: str | None = None
    speedup_vs_fp32_b256: float | None = _number()
    latency_speedup_vs_fp32_b1: float | None = _number()
    latency_speedup_vs_fastest_fp32_b1: float | None = _number()
    latency_speedup_vs_fastest_fp32_b1_iqr: list[float] | None = _number()  # over rounds
    speedup_vs_fastest_fp32_b256: float | None = _number()
    eval_images_per_second: float | None = None
    eval_fraction_of_b256: float | None = None
    error: str | None = _number()  # it could not be built or run


@dataclass
class BenchEntry(RuntimeSpeed):
    """One config's entry: the headline runtime's numbers flat (the runtime a user ships), every runtime's under
    `runtimes`; or why there are none (`not_applicable`, `error`). Attached to a sweep row, with the document's
    `environment` and `created`."""

    config_name: str | None = None
    runtime: str | None = None  # the headline runtime
    threads: int | None = None  # batch 256's (an older entry's only thread count)
    size_bytes: int | None = None
    fastest_fp32_b1: str | None = None  # the FP32 runtime every batch-1 speed-up answers to
    fastest_fp32_b256: str | None = None
    fastest_fp32_b1_setting: str | None = None
    load: LoadRecord | None = None
    size_ratio_vs_fp32: float | None = None
    reference_runtime: str | None = None  # the recipe's float reference, as the sweep row scored it
    reference_accuracy: float | None = None
    as_run_vs_reference: dict | None = None  # `bench.as_run_vs_reference`
    runtimes: dict[str, RuntimeSpeed] | None = None
    not_applicable: str | None = None
    traceback: str | None = None
    environment: dict | None = None  # where it was timed, once attached to a row (`bench.attach_to_results`)
    created: str | None = None

    NESTED = {"load": LoadRecord, "runtimes": (dict, RuntimeSpeed)}

    def failures(self) -> list[str]:
        """'config: error' and 'config [runtime]: error' for what failed here (not a config that does not apply)."""
        out = [f"{self.config_name}: {self.error}"] if self.error else []
        return out + [f"{self.config_name} [{name}]: {r.error}" for name, r in (self.runtimes or {}).items()
                      if r.error]


@dataclass
class BenchDocument(Record):
    """bench_<model>.json: every config timed side by side in one process, by row key."""

    schema_version: int | None = None
    created: str | None = None
    model: str | None = None
    model_weights_sha256: str | None = None
    environment: dict | None = None
    settings: dict | None = None  # `BenchSettings.record`
    entries: dict[str, BenchEntry] = field(default_factory=dict)
    reused: bool | None = None  # returned as stored, not timed again (never written)

    NESTED = {"entries": (dict, BenchEntry)}

    def failures(self) -> list[str]:
        """What failed in it: failed work, never reused as a stored bench."""
        return [line for entry in self.entries.values() for line in entry.failures()]


def _flagged(flag: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(RuntimeSpeed) if f.metadata.get(flag))


HEADLINE = _flagged("headline")  # the headline runtime's numbers, copied flat into its entry
POOLED = _flagged("pooled")  # the speed a view's record keeps, from whichever seed was benched
WORDS = {f.name: f.metadata["words"] for f in fields(RuntimeSpeed) if f.metadata.get("words")}  # table columns
