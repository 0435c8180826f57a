"""Which rows are worth shipping: "which to pick" from the confidence set for the best, and the accuracy-vs-size
(and vs-latency) fronts.

Everything is derived from a `summary.View`: the pick is `summary.choose`'s (the configs in the confidence set
for the best, then the best on the view's objective), latency columns appear when a benchmark has measured
them, and every accuracy carries its spread over seeds and every delta its interval. How they are written
(pareto.md, the page's tables) is the report's (`report.text`, `report.markdown`).
"""

from __future__ import annotations

import re

from . import SPEED_PREFIXES, fp32_rows
from .pick import choices
from .rows import speedup
from .view import PooledRow, View

SPEED_FIELDS = ("latency_ms_b1_median", "latency_ms_b1_p90", "throughput_b256")  # the speeds tables and fronts show


def speed_columns(rows: list[PooledRow]) -> list[str]:
    """Latency and throughput fields present in any row, latencies first, by batch size."""
    found = {k for r in rows for k, v in r.speed.items() if k in SPEED_FIELDS and isinstance(v, (int, float))}

    def order(key: str) -> tuple:
        prefix = next(p for p in SPEED_PREFIXES if key.startswith(p))
        batch = re.match(r"b(\d+)", key[len(prefix):])
        return SPEED_PREFIXES.index(prefix), int(batch.group(1)) if batch else 10 ** 9, key

    return sorted(found, key=order)


def latency_column(rows: list[PooledRow]) -> str | None:
    """The latency the pareto front is drawn against: the smallest batch measured (its median before its p90)."""
    return next((c for c in speed_columns(rows) if c.startswith("latency_ms_")), None)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (accuracy, cost) points: True where no other point is at least as accurate and as cheap, and better in
    one."""
    return [not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for a2, c2 in points) for a, c in points]


def _mark(rows: list[PooledRow], cost: str) -> list[bool | None]:
    """Pareto flags per row, computed within each model; None where the row has no `cost`."""
    flags: list[bool | None] = [None] * len(rows)
    for model in {r.model for r in rows}:
        idx = [i for i, r in enumerate(rows) if r.model == model and isinstance(r.cost(cost), (int, float))]
        for i, flag in zip(idx, pareto_front([(rows[i].accuracy, rows[i].cost(cost)) for i in idx])):
            flags[i] = flag
    return flags


def pareto_table(rows: list[PooledRow]) -> list[dict]:
    """One record per (model, config) with its pareto flags: vs size always, vs latency when measured."""
    latency = latency_column(rows)
    by_size = _mark(rows, "size_bytes")
    by_latency = _mark(rows, latency) if latency else [None] * len(rows)
    out = []
    for row, on_size, on_latency in zip(rows, by_size, by_latency):
        out.append({"model": row.model, "config": row.config_name, "backend": row.config["backend"],
                    "accuracy": row.accuracy, "accuracy_std": row.accuracy_std, "seeds": row.seeds,
                    "runtime": row.runtime, "delta_pp": row.delta_pp,
                    "delta_pp_ci": row.delta_pp_ci, "delta_seed_part": (row.delta_stats or {}).get("seed_part"),
                    "in_best_set": row.in_best_set, "identical_to": row.identical_to,
                    "pick": row.pick,
                    "size_bytes": row.size_bytes, **{c: row.speed.get(c) for c in speed_columns(rows)},
                    "pareto_size": on_size, "pareto_latency": on_latency})
    return out


def picks(view: View) -> list[dict]:
    """Per model: the pick (on the view's objective), the smallest of the confidence set, and the FP32 reference."""
    out = []
    fp32 = fp32_rows(view.rows)
    for model, choice in choices(view).items():
        if not choice or not choice["pick"]:
            continue
        by_name = {r.config_name: r for r in view.rows if r.model == model}
        members = [by_name[name] for name in choice.get("best_set_with_identical") or choice["best_set"]]
        smallest = min(members, key=lambda r: (r.size_bytes, -r.accuracy))
        for criterion, row, rule in ((f"pick ({choice['objective']})", by_name[choice["pick"]], choice["rule"]),
                                     ("smallest of the set", smallest, f"smallest file of the {len(members)} configs "
                                      "in the confidence set for the best"),
                                     ("reference", fp32.get(model), "the FP32 model every delta is measured against")):
            if row is not None:
                out.append({"model": model, "criterion": criterion, "rule": rule, **_numbers(row)})
    return out


def _numbers(row: PooledRow) -> dict:
    return {"config": row.config_name, "runtime": row.runtime, "accuracy": row.accuracy,
            "accuracy_std": row.accuracy_std, "seeds": row.seeds, "delta_pp": row.delta_pp,
            "delta_pp_ci": row.delta_pp_ci, "delta_seed_part": (row.delta_stats or {}).get("seed_part"),
            "size_bytes": row.size_bytes,
            "throughput_b256": row.speed.get("throughput_b256"),
            "latency_ms_b1_median": row.speed.get("latency_ms_b1_median"),
            "speedup_b1": speedup(row, 1)[0], "speedup_b256": speedup(row, 256)[0]}
