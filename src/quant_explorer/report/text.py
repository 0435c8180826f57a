"""How the report writes a number: accuracy with its spread, a delta with its interval, a speed, a speed-up,
membership of the confidence set. One place, so pareto.md, the HTML page and the study tables say it alike.
"""

from __future__ import annotations

from ..analysis.view import scope

SPEED_WORDS = {"latency_ms_b1_median": "latency, batch 1, median (ms)",
               "latency_ms_b1_p90": "latency, batch 1, p90 (ms)",
               "throughput_b256": "throughput, batch 256 (images/s)"}  # `analysis.pareto.SPEED_FIELDS`, in words


def speed_text(value: float | None) -> str:
    """Latency (ms) and throughput (images/s) alike: three significant digits, no exponent."""
    return "—" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def speedup_text(row: dict, batch: int = 256) -> str:
    """'1.53x': against the fastest FP32 runtime (`summary.speedup`), where benchmarked."""
    ratio = row.get(f"speedup_b{batch}")
    return f"{ratio:.2f}x" if ratio else "—"


def in_set_text(row: dict) -> str:
    """'yes (pick)', 'no', 'yes (= twin)', or '' for the FP32 reference, which is not a candidate."""
    return ({True: "yes", False: "no", None: ""}[row.get("in_best_set")]
            + (f" (= {row['identical_to']})" if row.get("identical_to") else "")
            + (" (pick)" if row.get("pick") else ""))


def accuracy_text(row: dict) -> str:
    """'87.61% ± 0.32 (5 seeds)': the mean over calibration seeds and its standard deviation."""
    seeds = row.get("seeds") or []
    spread = f" ± {100 * row['accuracy_std']:.2f} ({len(seeds)} seeds)" if len(seeds) > 1 else ""
    return f"{100 * row['accuracy']:.2f}%{spread}"


def delta_text(row: dict) -> str:
    """'−0.59 [−1.28, +0.10]': the mean delta vs FP32 and its interval, in pp ('images only' after an interval
    without the calibration draw's noise)."""
    if row.get("delta_pp") is None:
        return "—"
    ci = row.get("delta_pp_ci")
    return f"{row['delta_pp']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]{scope(row.get('delta_seed_part'))}" if ci
                                        else " (no interval)")


def bench_table_rows(document: dict) -> list[list[str]]:
    """One printable row per config and timed runtime: batch-1 latency (median, run-to-run spread) at the thread
    count that was fastest, throughput, speed-up, size on disk of what that runtime loads (a compiled package,
    else the model file), accuracy."""
    def pct(v):
        return f"{100 * v:.2f}%" if v is not None else ""

    rows = []
    for entry in document["entries"].values():
        if "runtimes" not in entry:
            rows.append([entry["config_name"], "", "", "", "", "", "", "",
                         entry.get("not_applicable") or entry.get("error", ""), ""])
            continue
        for runtime, r in entry["runtimes"].items():
            if "latency_ms_b1_median" not in r and "error" not in r:
                continue  # accuracy-only references show in the reference column
            shipped = r.get("artifact_bytes") or entry.get("size_bytes")  # a compiled package, else the model file
            size = f"{shipped / 1024:.0f}" if shipped else ""
            if "error" in r:
                rows.append([entry["config_name"], runtime, "", "", "", "", "", size, r["error"][:60], ""])
                continue
            reference = entry.get("reference_accuracy") if runtime == entry["runtime"] else None
            spread = f" ({r['latency_ms_b1_spread']:.3f})" if "latency_ms_b1_spread" in r else ""
            rows.append([entry["config_name"], runtime, f"{r['latency_ms_b1_median']:.3f}{spread}",
                         str(r.get("latency_b1_threads", entry.get("threads", ""))),
                         f"{r['latency_ms_b1_p90']:.3f}", f"{r['throughput_b256']:,.0f}",
                         f"{r.get('speedup_vs_fp32_b256', float('nan')):.2f}", size,
                         pct(r.get("accuracy")), pct(reference)])
    return rows
