"""How the report writes a number: accuracy with its spread, a delta with its interval, a speed, a speed-up,
membership of the confidence set. One place, so pareto.md, the HTML page and the study tables say it alike.
"""

from __future__ import annotations

from ..analysis.rows import speedup
from ..analysis.view import PooledRow, scope
from ..bench_entry import BenchDocument


def speed_text(value: float | None) -> str:
    """Latency (ms) and throughput (images/s) alike: three significant digits, no exponent."""
    return "—" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def speedup_text(row: PooledRow, batch: int = 256) -> str:
    """'1.53x': against the fastest FP32 runtime (`analysis.rows.speedup`), where benchmarked."""
    ratio = speedup(row, batch)[0]
    return f"{ratio:.2f}x" if ratio else "—"


def in_set_text(row: PooledRow) -> str:
    """'yes (pick)', 'no', 'yes (= twin)', or '' for the FP32 reference, which is not a candidate."""
    return ({True: "yes", False: "no", None: ""}[row.in_best_set]
            + (f" (= {row.identical_to})" if row.identical_to else "")
            + (" (pick)" if row.pick else ""))


def accuracy_text(row: PooledRow) -> str:
    """'87.61% ± 0.32 (5 seeds)': the mean over calibration seeds and its standard deviation."""
    spread = f" ± {100 * row.accuracy_std:.2f} ({len(row.seeds)} seeds)" if len(row.seeds) > 1 else ""
    return f"{100 * row.accuracy:.2f}%{spread}"


def delta_text(row: PooledRow) -> str:
    """'−0.59 [−1.28, +0.10]': the mean delta vs FP32 and its interval, in pp ('images only' after an interval
    without the calibration draw's noise)."""
    if row.delta_pp is None:
        return "—"
    ci = row.delta_pp_ci
    return f"{row.delta_pp:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]{scope((row.delta_stats or {}).get('seed_part'))}"
                                     if ci else " (no interval)")


def bench_table_rows(document: BenchDocument) -> list[list[str]]:
    """One printable row per config and timed runtime: batch-1 latency (median, run-to-run spread) at the thread
    count that was fastest, throughput, speed-up, size on disk of what that runtime loads (a compiled package,
    else the model file), accuracy."""
    def pct(v):
        return f"{100 * v:.2f}%" if v is not None else ""

    rows = []
    for entry in document.entries.values():
        if entry.runtimes is None:
            rows.append([entry.config_name, "", "", "", "", "", "", "", entry.not_applicable or entry.error or "", ""])
            continue
        for runtime, r in entry.runtimes.items():
            if r.latency_ms_b1_median is None and r.error is None:
                continue  # accuracy-only references show in the reference column
            shipped = r.artifact_bytes or entry.size_bytes  # a compiled package, else the model file
            size = f"{shipped / 1024:.0f}" if shipped else ""
            if r.error is not None:
                rows.append([entry.config_name, runtime, "", "", "", "", "", size, r.error[:60], ""])
                continue
            reference = entry.reference_accuracy if runtime == entry.runtime else None
            spread = f" ({r.latency_ms_b1_spread:.3f})" if r.latency_ms_b1_spread is not None else ""
            ratio = r.speedup_vs_fp32_b256 if r.speedup_vs_fp32_b256 is not None else float("nan")
            threads = r.latency_b1_threads if r.latency_b1_threads is not None else entry.threads
            rows.append([entry.config_name, runtime, f"{r.latency_ms_b1_median:.3f}{spread}",
                         "" if threads is None else str(threads), f"{r.latency_ms_b1_p90:.3f}",
                         f"{r.throughput_b256:,.0f}", f"{ratio:.2f}", size, pct(r.accuracy), pct(reference)])
    return rows
