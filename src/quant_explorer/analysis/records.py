"""The view as flat JSON: one record per (model, config), and the document `quant-explorer summary --json` prints
(the view, per model its confidence set, pick and rows set aside, and the records). `explore` returns the same
records, so scripts read one shape.
"""

from __future__ import annotations

from ..stats import ALPHA, CORRECTION_NAME
from .pick import choices
from .rows import is_quantized, speedup
from .view import View


def summary_records(view: View) -> list[dict]:
    """One flat object per (model, config) in the view, as `summary --json` lists them."""
    picks = choices(view)
    out = []
    for r in view.rows:
        stats = r.delta_stats or {}
        out.append({
            "model": r.model, "config": r.config_name, "backend": r.config["backend"],
            "runtime": r.runtime, "dataset": view.dataset_name, "dataset_fingerprint": view.dataset,
            "n_images": view.n_images,
            "environment": {"id": view.environment, "cpu_class": view.environment.split(",")[0],
                            "cpu_model": (r.environment or {}).get("cpu", {}).get("model"),
                            "versions": (r.identity or {}).get("versions")},
            "seeds": r.seeds, "accuracy_mean": r.accuracy, "accuracy_std": r.accuracy_std,
            "accuracy_min": r.accuracy_min, "accuracy_max": r.accuracy_max,
            "reference_accuracy": r.reference_accuracy,
            "delta_pp_mean": r.delta_pp, "delta_pp_ci": r.delta_pp_ci, "delta_pp_se": stats.get("se_pp"),
            "delta_pp_image_se": stats.get("image_se_pp"), "delta_pp_seed_se": stats.get("seed_se_pp"),
            "delta_pp_df": stats.get("df"), "delta_pp_p": stats.get("p"), "delta_pp_seed_part": stats.get("seed_part"),
            "changed_predictions_mean": r.changed_predictions,
            "per_seed": r.per_seed,
            "in_best_set": r.in_best_set if is_quantized(r) else None, "beaten_by": r.beaten_by,
            "identical_to": r.identical_to,
            "pick": r.pick, "size_bytes": r.size_bytes,
            "bench_runtime": (r.bench or {}).get("runtime"),
            "throughput_b256": r.speed.get("throughput_b256"), "latency_ms_b1": r.speed.get("latency_ms_b1_median"),
            "latency_ms_b1_spread": r.speed.get("latency_ms_b1_spread"),
            "load": (r.bench or {}).get("load"),  # how to load it as timed at batch 1 (`bench.load_record`)
            "speedup_b1": speedup(r, 1)[0], "speedup_b256": speedup(r, 256)[0],
            "resolution_pp": picks.get(r.model, {}).get("resolution", {}).get("resolution_pp"),
        })
    return out


def summary_json(view: View, models: list[str] | None = None) -> dict:
    """`quant-explorer summary --json`: the view, per model its confidence set, pick and rows set aside, and
    the rows."""
    keep = lambda m: not models or m in models  # noqa: E731
    per_model = {}
    for model, choice in choices(view).items():
        if keep(model):
            per_model[model] = {**{k: choice.get(k) for k in ("best_set", "best_set_with_identical", "best", "pick",
                                                              "rule", "alpha", "correction", "objective")},
                                "identical_recipes": choice.get("identical", []),
                                "resolution": choice.get("resolution"),
                                "set_aside": [s for s in view.set_aside if s["model"] == model]}
    return {"environment": view.environment, "this_machine": view.this_machine, "dataset": view.dataset_name,
            "dataset_fingerprint": view.dataset, "n_images": view.n_images, "notes": view.notes,
            "alpha": ALPHA, "correction": CORRECTION_NAME, "objective": view.objective, "models": per_model,
            "rows": [r for r in summary_records(view) if keep(r["model"])]}
