"""Which rows are worth shipping: the accuracy-vs-size (and vs-latency) pareto fronts and a "which to pick" table.

Everything is derived from the rows: latency columns appear when a benchmark has added them (`latency_ms_*`,
`throughput_*` fields, at the top of a row or under its `bench`), and each pick names the rule that chose it.
"""

from __future__ import annotations

import re

from . import SPEED_PREFIXES, fp32_rows, is_quantized

NEAR_FP32_PP = 1.0  # "smallest within this many points of FP32" is a pick of its own
SIZE_TIE = 0.01  # files within 1% of the smallest count as equally small; the most accurate of them wins


def speed_columns(rows: list[dict]) -> list[str]:
    """Latency and throughput fields present in any row, latencies first, by batch size."""
    found = {k for r in rows for k in r if k.startswith(SPEED_PREFIXES) and isinstance(r[k], (int, float))}

    def order(key: str) -> tuple:
        prefix = next(p for p in SPEED_PREFIXES if key.startswith(p))
        batch = re.match(r"b(\d+)", key[len(prefix):])
        return SPEED_PREFIXES.index(prefix), int(batch.group(1)) if batch else 10 ** 9, key

    return sorted(found, key=order)


def latency_column(rows: list[dict]) -> str | None:
    """The latency the pareto front is drawn against: the smallest batch measured (its median before its p90)."""
    return next((c for c in speed_columns(rows) if c.startswith("latency_ms_")), None)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (accuracy, cost) points: True where no other point is at least as accurate and as cheap, and better in one."""
    return [not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for a2, c2 in points) for a, c in points]


def _mark(rows: list[dict], cost: str) -> list[bool | None]:
    """Pareto flags per row, computed within each model; None where the row has no `cost`."""
    flags: list[bool | None] = [None] * len(rows)
    for model in {r["model"] for r in rows}:
        idx = [i for i, r in enumerate(rows) if r["model"] == model and isinstance(r.get(cost), (int, float))]
        for i, flag in zip(idx, pareto_front([(rows[i]["accuracy"], rows[i][cost]) for i in idx])):
            flags[i] = flag
    return flags


def pareto_table(rows: list[dict]) -> list[dict]:
    """One record per (model, config) with its pareto flags: vs size always, vs latency when measured."""
    latency = latency_column(rows)
    by_size = _mark(rows, "size_bytes")
    by_latency = _mark(rows, latency) if latency else [None] * len(rows)
    out = []
    for row, on_size, on_latency in zip(rows, by_size, by_latency):
        out.append({"model": row["model"], "config": row["config_name"], "backend": row["config"]["backend"],
                    "accuracy": row["accuracy"], "delta_pp": row.get("delta_pp"), "size_bytes": row["size_bytes"],
                    **{c: row.get(c) for c in speed_columns(rows)},
                    "pareto_size": on_size, "pareto_latency": on_latency})
    return out


def _pick(criterion: str, rule: str, row: dict | None, latency: str | None) -> dict | None:
    if row is None:
        return None
    return {"model": row["model"], "criterion": criterion, "rule": rule, "config": row["config_name"],
            "accuracy": row["accuracy"], "delta_pp": row.get("delta_pp"), "size_bytes": row["size_bytes"],
            "latency": row.get(latency) if latency else None}


def _smallest(rows: list[dict]) -> dict | None:
    """The most accurate of the files within SIZE_TIE of the smallest: a few hundred bytes should not pick a
    less accurate (or 5x slower) recipe."""
    if not rows:
        return None
    limit = min(r["size_bytes"] for r in rows) * (1 + SIZE_TIE)
    return max((r for r in rows if r["size_bytes"] <= limit), key=lambda r: (r["accuracy"], -r["size_bytes"]))


def picks(rows: list[dict]) -> list[dict]:
    """Per model: best accuracy retention, smallest artifact, smallest near FP32, fastest, and the reference."""
    latency = latency_column(rows)
    out = []
    for model, fp32 in sorted(fp32_rows(rows).items()):
        mine = [r for r in rows if r["model"] == model]
        quantized = [r for r in mine if is_quantized(r)]
        near = [r for r in quantized if (r.get("delta_pp") or 0) >= -NEAR_FP32_PP]
        timed = [r for r in mine if isinstance(r.get(latency), (int, float))] if latency else []
        candidates = [
            _pick("best accuracy retention", f"highest accuracy of {len(quantized)} quantized configs",
                  max(quantized, key=lambda r: (r["accuracy"], -r["size_bytes"]), default=None), latency),
            _pick("smallest artifact", f"smallest file (to {SIZE_TIE:.0%}, then most accurate) of all quantized configs",
                  _smallest(quantized), latency),
            _pick(f"smallest within {NEAR_FP32_PP:g} pp of FP32",
                  f"smallest file (to {SIZE_TIE:.0%}, then most accurate) among the {len(near)} configs losing at "
                  f"most {NEAR_FP32_PP:g} pp", _smallest(near), latency),
            _pick("fastest", f"lowest {latency} of {len(timed)} timed rows (FP32 included)",
                  min(timed, key=lambda r: (r[latency], -r["accuracy"]), default=None), latency) if latency else None,
            _pick("reference", "the FP32 model every delta is measured against", fp32, latency),
        ]
        out.extend(p for p in candidates if p)
    return out


def _cell(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def speed_text(value: float | None) -> str:
    """Latency (ms) and throughput (images/s) alike: three significant digits, no exponent."""
    return "—" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown(rows: list[dict], problems: list[dict] = ()) -> str:
    """pareto.md: the pareto table and the picks, all computed from the results file."""
    table = pareto_table(rows)
    speed = speed_columns(rows)
    latency = latency_column(rows)
    lines = ["# Pareto: accuracy vs size" + (f" and {latency}" if latency else ""), "",
             "Generated by `quant-explorer report` from full_results.json. ★ marks rows no other row of the same "
             "model beats on both accuracy and size (★ size) or accuracy and latency (★ latency). "
             "Δ is in percentage points against the model's FP32 row.", ""]
    head = ["model", "config", "accuracy", "Δ pp", "size KiB", *speed, "★ size", "★ latency"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in table:
        cells = [t["model"], f"`{t['config']}`", f"{100 * t['accuracy']:.2f}%", _cell(t["delta_pp"], "+.2f"),
                 f"{t['size_bytes'] / 1024:.1f}", *(speed_text(t[c]) for c in speed),
                 "★" if t["pareto_size"] else "", "★" if t["pareto_latency"] else ("—" if t["pareto_latency"] is None else "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Which to pick", "", "| model | criterion | config | accuracy | Δ pp | size KiB | "
              f"{latency or 'latency'} | rule |", "|---|---|---|---|---|---|---|---|"]
    for p in picks(rows):
        lines.append(f"| {p['model']} | {p['criterion']} | `{p['config']}` | {100 * p['accuracy']:.2f}% | "
                     f"{_cell(p['delta_pp'], '+.2f')} | {p['size_bytes'] / 1024:.1f} | {speed_text(p['latency'])} | "
                     f"{p['rule']} |")
    if problems:
        lines += ["", "## Rows without a score", ""]
        for p in problems:
            why = p.get("stale") or p.get("not_applicable") or (p.get("error") or "no score").splitlines()[0]
            lines.append(f"- `{p['key']}`: {why}")
    return "\n".join(lines) + "\n"
