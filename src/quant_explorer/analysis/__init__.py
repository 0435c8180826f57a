"""Read-only views of what quantization cost, computed from the results files (summary, pareto, comparisons,
explanations); nothing here runs a model (the studies that do are `studies/`, the wording is `report/`'s).

`summary.load_view` is the one view of full_results.json that every table and plot reads: one environment,
one evaluation set, one pooled row per (model, config) with its seeds' statistics.
"""

from __future__ import annotations

from ..configs import REFERENCE
from ..row import Row
from .rows import is_quantized  # noqa: F401  (the name every analysis uses)


def fp32_rows(records: list[Row]) -> dict[str, Row]:
    """Each model's FP32 reference record in a view (`View.rows`)."""
    return {r.model: r for r in records if r.config_name == REFERENCE}


def current_studies(entries: dict, records: list[Row]) -> dict:
    """The study entries (`studies.StudyEntry`: calibration size, per layer) measured alike to the view's records: a
    model of the view, its current weights, the same environment and the same evaluation set. (A study entry carries
    a row's model, weights, identity and evaluation-set fields, so it is told apart as a row is.)"""
    from .rows import row_dataset, row_environment

    def measured(row) -> tuple:
        return row.model_weights_sha256, row_environment(row), row_dataset(row)

    current = {model: measured(record) for model, record in fp32_rows(records).items()}
    return {key: e for key, e in entries.items() if current.get(e.model) and measured(e) == current[e.model]}
