"""Which rows are worth shipping: "which to pick" from the confidence set for the best, and the accuracy-vs-size
(and vs-latency) fronts.

Everything is derived from a `summary.View`: the pick is `summary.choose`'s (the configs in the confidence set
for the best, then the best on the view's objective), latency columns appear when a benchmark has measured
them, and every accuracy carries its spread over seeds and every delta its interval.
"""

from __future__ import annotations

import re

from . import SPEED_PREFIXES, fp32_rows
from ..stats import level_text
from .summary import View, choices, speedup

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
                    "runtime": row.get("runtime"), "delta_pp": row.get("delta_pp"), "delta_pp_ci": row.get("delta_pp_ci"),
                    "in_best_set": row.get("in_best_set"), "identical_to": row.get("identical_to"),
                    "pick": row.get("pick", False),
                    "size_bytes": row["size_bytes"], **{c: row.get(c) for c in speed_columns(rows)},
                    "pareto_size": on_size, "pareto_latency": on_latency})
    return out


def picks(view: View) -> list[dict]:
    """Per model: the pick (on the view's objective), the smallest of the confidence set, and the FP32 reference."""
    out = []
    fp32 = fp32_rows(view.rows)
    for model, choice in choices(view).items():
        if not choice or not choice["pick"]:
            continue
        by_name = {r["config_name"]: r for r in view.rows if r["model"] == model}
        members = [by_name[name] for name in choice["best_set"]]
        smallest = min(members, key=lambda r: (r["size_bytes"], -r["accuracy"]))
        for criterion, row, rule in ((f"pick ({choice['objective']})", by_name[choice["pick"]], choice["rule"]),
                                     ("smallest of the set", smallest, f"smallest file of the {len(members)} configs "
                                      "in the confidence set for the best"),
                                     ("reference", fp32.get(model), "the FP32 model every delta is measured against")):
            if row is not None:
                out.append({"model": model, "criterion": criterion, "rule": rule, **_numbers(row)})
    return out


def _numbers(row: dict) -> dict:
    return {"config": row["config_name"], "runtime": row.get("runtime"), "accuracy": row["accuracy"],
            "accuracy_std": row.get("accuracy_std", 0.0), "seeds": row.get("seeds", []), "delta_pp": row.get("delta_pp"),
            "delta_pp_ci": row.get("delta_pp_ci"), "size_bytes": row["size_bytes"],
            "throughput_b256": row.get("throughput_b256"), "latency_ms_b1_median": row.get("latency_ms_b1_median"),
            "speedup_b1": speedup(row, 1)[0], "speedup_b256": speedup(row, 256)[0]}


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
            + (f" (= {row['identical_to']})" if row.get("identical_to") else "") + (" (pick)" if row.get("pick") else ""))


def accuracy_text(row: dict) -> str:
    """'87.61% ± 0.32 (5 seeds)': the mean over calibration seeds and its standard deviation."""
    seeds = row.get("seeds") or []
    spread = f" ± {100 * row['accuracy_std']:.2f} ({len(seeds)} seeds)" if len(seeds) > 1 else ""
    return f"{100 * row['accuracy']:.2f}%{spread}"


def delta_text(row: dict) -> str:
    """'−0.59 [−1.28, +0.10]': the mean delta vs FP32 and its interval, in pp."""
    if row.get("delta_pp") is None:
        return "—"
    ci = row.get("delta_pp_ci")
    return f"{row['delta_pp']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " (no interval)")


def markdown(view: View, classes: dict | None = None) -> str:
    """pareto.md: what it was made on, per model the pick and the table of every config, all computed from the
    view, and the CPU-class matrix (`analysis.classes`) where the file holds several classes. It names no absolute
    path (the evaluation set by its last two parts)."""
    from .classes import table_rows
    from ..report.answer import dataset_label, made_on

    table = pareto_table(view.rows)
    speed = speed_columns(view.rows)
    picked = choices(view)
    lines = ["# Which recipe to ship: accuracy with intervals, size and speed", "",
             "Generated by `quant-explorer report` from full_results.json; never edited by hand.", "",
             f"**Made on {made_on(view)}; {view.n_images:,} test images ({dataset_label(view.dataset_name)}).** "
             f"Environment: {view.environment}.", "",
             "Accuracy is that of the runtime each config ships in, the mean over calibration seeds ± its standard "
             "deviation. Δ is the mean paired difference from the model's FP32 row in percentage points, with its "
             f"{level_text()} interval over test images and calibration seeds (Student's t, Welch-Satterthwaite "
             f"degrees of freedom). The {level_text()} confidence set for the best holds the configs no other config "
             "beats by more than the noise allows, family-wise over every pair (a bootstrap maximum over all "
             "configs); configs with identical predictions on every seed count once. The pick is the config of the "
             f"set best on the objective ({view.objective}) in the runtime it ships in; speed ratios are against the "
             "fastest FP32 runtime. ★ marks rows no other row of the model beats on both mean accuracy and size "
             "(★ size) or latency (★ latency); inside the confidence set such a front is within noise.", ""]
    lines += ["## Which to pick", "", f"| model | criterion | config | runtime | accuracy | Δ pp [{level_text()} interval] "
              "| size (KiB) | latency, batch 1 (ms) | × fastest FP32, batch 1 | throughput, batch 256 (images/s) | "
              "× fastest FP32, batch 256 | rule |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in picks(view):
        lines.append(f"| {p['model']} | {p['criterion']} | `{p['config']}` | {p['runtime'] or '—'} | {accuracy_text(p)} | "
                     f"{delta_text(p)} | {p['size_bytes'] / 1024:.1f} | {speed_text(p['latency_ms_b1_median'])} | "
                     f"{speedup_text(p, 1)} | {speed_text(p['throughput_b256'])} | {speedup_text(p)} | {p['rule']} |")
    lines.append("")
    for model, choice in picked.items():
        if choice.get("identical_text"):
            lines.append(f"- {model}: {choice['identical_text']}.")
        if choice.get("resolution"):
            lines.append(f"- {model}: {choice['resolution']['text'][0].lower()}{choice['resolution']['text'][1:]}.")
        if choice and not choice["pick"]:
            lines.append(f"- {model}: {choice['rule']}.")
    head = ["model", "config", "runtime", "accuracy", f"Δ pp [{level_text()} interval]", "in the set for the best",
            "size (KiB)",
            *(SPEED_WORDS[c] for c in speed), "★ size", "★ latency"]
    lines += ["", "## Every config", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in table:
        cells = [t["model"], f"`{t['config']}`", t["runtime"] or "—", accuracy_text(t), delta_text(t), in_set_text(t),
                 f"{t['size_bytes'] / 1024:.1f}",
                 *(speed_text(t[c]) for c in speed), "★" if t["pareto_size"] else "",
                 "★" if t["pareto_latency"] else ("—" if t["pareto_latency"] is None else "")]
        lines.append("| " + " | ".join(cells) + " |")
    for model, t in (classes or {}).items():
        lines += ["", f"## {model} on each CPU class: Δ pp vs FP32 [{level_text()} interval]", "",
                  "Each class in its own view (its own FP32 row and seeds); emulated classes cap oneDNN's kernels "
                  "(`sweep --isa`), whose speed is never reported; ONNX Runtime and the eager x86 engine cannot be "
                  "capped, so they are not measured there.", "",
                  "| config | " + " | ".join(t["classes"]) + " |", "|---|" + "---|" * len(t["classes"])]
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(t)]
    if view.notes or view.set_aside:
        lines += ["", "## What this view leaves out", ""] + [f"- {line}" for line in [*view.notes, *view.set_aside_lines()]]
    if view.problems:
        lines += ["", "## Rows without a score", ""]
        for p in view.problems:
            lines.append(f"- `{p['key']}`: {view.why_unscored(p)}")
    others = view.others
    if others:
        lines += ["", "## Other results in the file (not shown: `quant-explorer report --environment ... --dataset ...`)", ""]
        lines += [f"- {v['environment']} / {v['dataset_name']} ({v['n_images']} images): {v['rows']} rows" for v in others]
    return "\n".join(lines) + "\n"
