"""Analyses of what quantization cost: over the results file (summary, pareto, comparisons, explanations) or as
targeted experiments of their own (calibration size, per layer).

`summary.load_view` is the one view of full_results.json that every table and plot reads: one environment,
one evaluation set, one pooled row per (model, config) with its seeds' statistics.
"""

from __future__ import annotations

from ..configs import REFERENCE
from .summary import SPEED_PREFIXES, is_quantized  # noqa: F401  (the names every analysis uses)


def fp32_rows(rows: list[dict]) -> dict[str, dict]:
    """Each model's FP32 reference row."""
    return {r["model"]: r for r in rows if r["config_name"] == REFERENCE}


def current_studies(entries: dict[str, dict], rows: list[dict]) -> dict[str, dict]:
    """The study entries (calibration size, per layer) measured alike to the view's rows: a model of the view,
    its current weights, the same environment and the same evaluation set."""
    from .summary import row_dataset, row_environment

    current = {model: (row.get("model_weights_sha256"), row_environment(row), row_dataset(row))
               for model, row in fp32_rows(rows).items()}
    out = {}
    for key, e in entries.items():
        if e.get("model") not in current:
            continue
        sha, env, dataset = current[e["model"]]
        if e.get("model_weights_sha256") != sha:
            continue
        if row_environment(e) != env or row_dataset(e) != dataset:
            continue
        out[key] = e
    return out
