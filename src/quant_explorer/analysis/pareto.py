"""Which rows are worth shipping: "which to pick" by the tie rule, and the accuracy-vs-size (and vs-latency) fronts.

Everything is derived from a `summary.View`: the pick is `summary.choose`'s (configs tied with the best on
accuracy, then the fastest, then the smallest), latency columns appear when a benchmark has measured them,
and every accuracy carries its spread over seeds and every delta its 95% interval.
"""

from __future__ import annotations

import re

from . import SPEED_PREFIXES, fp32_rows
from .summary import View, choices

SPEED_WORDS = {"latency_ms_b1_median": "latency, batch 1, median (ms)", "latency_ms_b1_p90": "latency, batch 1, p90 (ms)",
               "throughput_b256": "throughput, batch 256 (images/s)"}


def speed_columns(rows: list[dict]) -> list[str]:
    """Latency and throughput fields present in any row, latencies first, by batch size."""
    found = {k for r in rows for k in r if k.startswith(SPEED_PREFIXES) and k in SPEED_WORDS
             and isinstance(r[k], (int, float))}

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
                    "accuracy": row["accuracy"], "accuracy_std": row.get("accuracy_std"), "seeds": row.get("seeds"),
                    "delta_pp": row.get("delta_pp"), "delta_pp_ci95": row.get("delta_pp_ci95"),
                    "tied_with_best": row.get("tied_with_best"), "pick": row.get("pick", False),
                    "size_bytes": row["size_bytes"], **{c: row.get(c) for c in speed_columns(rows)},
                    "pareto_size": on_size, "pareto_latency": on_latency})
    return out


def picks(view: View) -> list[dict]:
    """Per model: the pick (tie rule), the smallest of the tied configs, and the FP32 reference."""
    out = []
    fp32 = fp32_rows(view.rows)
    for model, choice in choices(view).items():
        if not choice:
            continue
        by_name = {r["config_name"]: r for r in view.rows if r["model"] == model}
        tied = [by_name[name] for name in choice["tied"]]
        smallest = min(tied, key=lambda r: (r["size_bytes"], -r["accuracy"]))
        for criterion, row, rule in (("pick", by_name[choice["pick"]], choice["rule"]),
                                     ("smallest of the tied", smallest, f"smallest file of the {len(tied)} configs "
                                      "tied with the best"),
                                     ("reference", fp32.get(model), "the FP32 model every delta is measured against")):
            if row is not None:
                out.append({"model": model, "criterion": criterion, "rule": rule, **_numbers(row)})
    return out


def _numbers(row: dict) -> dict:
    return {"config": row["config_name"], "accuracy": row["accuracy"], "accuracy_std": row.get("accuracy_std", 0.0),
            "seeds": row.get("seeds", []), "delta_pp": row.get("delta_pp"), "delta_pp_ci95": row.get("delta_pp_ci95"),
            "size_bytes": row["size_bytes"], "throughput_b256": row.get("throughput_b256"),
            "latency_ms_b1_median": row.get("latency_ms_b1_median"), "speedup_vs_fp32_b256": row.get("speedup_vs_fp32_b256")}


def speed_text(value: float | None) -> str:
    """Latency (ms) and throughput (images/s) alike: three significant digits, no exponent."""
    return "—" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def speedup_text(row: dict) -> str:
    """'1.53x': batch-256 throughput against FP32 in the same runtime, where benchmarked."""
    return f"{row['speedup_vs_fp32_b256']:.2f}x" if row.get("speedup_vs_fp32_b256") else "—"


def tied_text(row: dict) -> str:
    """'yes (pick)', 'no', or '' for the FP32 reference, which is not a candidate."""
    return {True: "yes", False: "no", None: ""}[row.get("tied_with_best")] + (" (pick)" if row.get("pick") else "")


def accuracy_text(row: dict) -> str:
    """'87.61% ± 0.32 (5 seeds)': the mean over calibration seeds and its standard deviation."""
    seeds = row.get("seeds") or []
    spread = f" ± {100 * row['accuracy_std']:.2f} ({len(seeds)} seeds)" if len(seeds) > 1 else ""
    return f"{100 * row['accuracy']:.2f}%{spread}"


def delta_text(row: dict) -> str:
    """'−0.59 [−1.28, +0.10]': the mean delta vs FP32 and its 95% interval, in pp."""
    if row.get("delta_pp") is None:
        return "—"
    ci = row.get("delta_pp_ci95")
    return f"{row['delta_pp']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " (no interval)")


def markdown(view: View) -> str:
    """pareto.md: the banner, per model the pick and the table of every config, all computed from the view."""
    table = pareto_table(view.rows)
    speed = speed_columns(view.rows)
    picked = choices(view)
    lines = ["# Which recipe to ship: accuracy with intervals, size and speed", "",
             "Generated by `quant-explorer report` from full_results.json; never edited by hand.", "",
             f"**{view.banner()}.**", "",
             "Accuracy is the mean over calibration seeds ± its standard deviation. Δ is the mean paired difference "
             "from the model's FP32 row in percentage points, with its 95% interval from a bootstrap over test "
             "images and calibration seeds. Configs whose interval against the best config includes 0 are tied "
             "with it; the pick is the fastest of those in the runtime it ships in, then the smallest. ★ marks rows "
             "no other row of the model beats on both mean accuracy and size (★ size) or latency (★ latency); "
             "inside the tie set such a front is within noise.", ""]
    lines += ["## Which to pick", "", "| model | criterion | config | accuracy | Δ pp [95% interval] | size (KiB) | "
              "throughput, batch 256 (images/s) | × FP32 | rule |", "|---|---|---|---|---|---|---|---|---|"]
    for p in picks(view):
        lines.append(f"| {p['model']} | {p['criterion']} | `{p['config']}` | {accuracy_text(p)} | {delta_text(p)} | "
                     f"{p['size_bytes'] / 1024:.1f} | {speed_text(p['throughput_b256'])} | {speedup_text(p)} | "
                     f"{p['rule']} |")
    lines.append("")
    for model, choice in picked.items():
        if choice.get("resolution"):
            lines.append(f"- {model}: {choice['resolution']['text'][0].lower()}{choice['resolution']['text'][1:]}.")
    head = ["model", "config", "accuracy", "Δ pp [95% interval]", "tied with best", "size (KiB)",
            *(SPEED_WORDS[c] for c in speed), "★ size", "★ latency"]
    lines += ["", "## Every config", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in table:
        cells = [t["model"], f"`{t['config']}`", accuracy_text(t), delta_text(t), tied_text(t),
                 f"{t['size_bytes'] / 1024:.1f}",
                 *(speed_text(t[c]) for c in speed), "★" if t["pareto_size"] else "",
                 "★" if t["pareto_latency"] else ("—" if t["pareto_latency"] is None else "")]
        lines.append("| " + " | ".join(cells) + " |")
    if view.problems:
        lines += ["", "## Rows without a score", ""]
        for p in view.problems:
            lines.append(f"- `{p['key']}`: {view.why_unscored(p)}")
    others = view.others
    if others:
        lines += ["", "## Other results in the file (not shown: `quant-explorer report --environment ... --dataset ...`)", ""]
        lines += [f"- {v['environment']} / {v['dataset_name']} ({v['n_images']} images): {v['rows']} rows" for v in others]
    return "\n".join(lines) + "\n"
