"""Analyses of what quantization cost: over the results file (pareto, comparisons, explanations) or as targeted
experiments of their own (calibration size, per layer).

`scored_rows` is the one view of full_results.json that every table and plot reads: one finished row per
(model, config), measured on the model's current weights.
"""

from __future__ import annotations

from collections import Counter


def _calibration(row: dict) -> tuple | None:
    cal = row.get("calibration")
    return (cal["calibration_n"], cal["calibration_seed"]) if cal else None


SPEED_PREFIXES = ("latency_ms_", "throughput_")


def _speed(bench: dict) -> dict:
    """The benchmark's headline numbers (`latency_ms_b1_median`, `throughput_b256`...), lifted to the row."""
    return {k: v for k, v in bench.items() if k.startswith(SPEED_PREFIXES) and isinstance(v, (int, float))}


def scored_rows(entries: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """(rows, problems): one scored row per (model, config); failed, not-applicable and stale rows go to problems.

    A row is stale when its weights hash differs from its model's FP32 row (the model was retrained since).
    Speed numbers a benchmark attached under `bench` are lifted to the row. Where a config was measured
    with several calibration samples, the model's most common sample wins
    (the sweep's), so every row of a model is calibrated alike.
    """
    fp32_sha = {r["model"]: r.get("model_weights_sha256") for r in entries.values()
                if r.get("config_name") == "fp32_baseline" and "accuracy" in r}
    rows, problems = [], []
    for key, row in entries.items():
        if "accuracy" not in row:
            problems.append({"key": key, **row})
        elif fp32_sha.get(row["model"], row.get("model_weights_sha256")) != row.get("model_weights_sha256"):
            problems.append({"key": key, **row, "stale": "measured on older weights of this model"})
        else:
            rows.append({"key": key, **_speed(row.get("bench", {})), **row})
    usual = {model: Counter(_calibration(r) for r in rows if r["model"] == model and _calibration(r)).most_common(1)
             for model in {r["model"] for r in rows}}
    chosen: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["model"], row["config_name"])
        if key not in chosen or (_calibration(row) is not None and usual[row["model"]]
                                 and _calibration(row) == usual[row["model"]][0][0]):
            chosen[key] = row
    return sorted(chosen.values(), key=lambda r: (r["model"], r["config_name"] != "fp32_baseline", r["config_name"])), problems


def fp32_rows(rows: list[dict]) -> dict[str, dict]:
    """Each model's FP32 reference row."""
    return {r["model"]: r for r in rows if r["config_name"] == "fp32_baseline"}


def is_quantized(row: dict) -> bool:
    return row["config"]["backend"] != "fp32"


def current_studies(entries: dict[str, dict], rows: list[dict]) -> dict[str, dict]:
    """The study entries (calibration size, per layer) measured on the weights each model's FP32 row has now."""
    sha = {model: row.get("model_weights_sha256") for model, row in fp32_rows(rows).items()}
    return {key: e for key, e in entries.items() if sha.get(e["model"], e.get("model_weights_sha256"))
            == e.get("model_weights_sha256")}
