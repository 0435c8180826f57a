"""Which rows are worth shipping: "which to pick" from the confidence set for the best, and the accuracy-vs-size
(and vs-latency) fronts.

Everything is derived from a `summary.View`: the pick is `summary.choose`'s (the configs in the confidence set
for the best, then the best on the view's objective), latency columns appear when a benchmark has measured
them, and every accuracy carries its spread over seeds and every delta its interval. How they are written
(pareto.md, the page's tables) is the report's (`report.text`, `report.markdown`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bench_entry import WORDS
from . import fp32_rows
from .pick import choices
from .view import PooledRow, View


def speed_columns(rows: list[PooledRow]) -> list[str]:
    """The speeds tables and fronts show (`bench_entry.WORDS`) that any row has, latencies first, by batch size."""
    return [c for c in WORDS if any(isinstance(getattr(r.speed, c), (int, float)) for r in rows)]


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


@dataclass
class Front:
    """A view's record with its pareto flags: on the accuracy-vs-size front, on the accuracy-vs-latency front (None
    where not measured)."""

    row: PooledRow
    on_size: bool | None
    on_latency: bool | None


def pareto_table(rows: list[PooledRow]) -> list[Front]:
    """Each (model, config) with its pareto flags: vs size always, vs latency when measured."""
    latency = latency_column(rows)
    by_latency = _mark(rows, latency) if latency else [None] * len(rows)
    return [Front(*flags) for flags in zip(rows, _mark(rows, "size_bytes"), by_latency)]


@dataclass
class Pick:
    """A row of "which to pick": what it is (the pick, the smallest of the set, the FP32 reference) and why."""

    model: str
    criterion: str
    rule: str
    row: PooledRow


def picks(view: View) -> list[Pick]:
    """Per model: the pick (on the view's objective), the smallest of the confidence set, and the FP32 reference."""
    out = []
    fp32 = fp32_rows(view.rows)
    for model, choice in choices(view).items():
        if not choice or not choice.pick:
            continue
        by_name = {r.config_name: r for r in view.rows if r.model == model}
        members = [by_name[name] for name in choice.best_set_with_identical or choice.best_set]
        smallest = min(members, key=lambda r: (r.size_bytes, -r.accuracy))
        for criterion, row, rule in ((f"pick ({choice.objective})", by_name[choice.pick], choice.rule),
                                     ("smallest of the set", smallest, f"smallest file of the {len(members)} configs "
                                      "in the confidence set for the best"),
                                     ("reference", fp32.get(model), "the FP32 model every delta is measured against")):
            if row is not None:
                out.append(Pick(model, criterion, rule, row))
    return out
