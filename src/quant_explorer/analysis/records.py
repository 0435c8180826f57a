"""The view as flat JSON: one record per (model, config), the document `quant-explorer summary --json` prints
(the view, per model its confidence set, pick and rows set aside, and the records), and the rows `explore` returns,
read off the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bench_entry import LoadRecord
from ..configs import REFERENCE, QuantConfig
from ..errors import first_line
from ..record import document
from ..stats import ALPHA, CORRECTION_NAME
from .pick import choices
from .rows import is_quantized, speedup
from .view import Choice, View

PER_SEED_FIELDS = ("accuracy", "correct", "changed_predictions", "fp32_right_quantized_wrong",
                   "fp32_wrong_quantized_right", "mcnemar_p")  # of each seed's row, as `per_seed` lists them
SPEED_FIELDS = ("bench_runtime", "latency_ms_b1", "latency_ms_b1_spread", "throughput_b256", "speedup_b1",
                "speedup_b256", "load")  # a summary record's, in an explored row where benchmarked


def _json(name: str):
    """A field stored under another key in the JSON (`summary --json`'s names for the means over seeds)."""
    return field(default=None, metadata={"json": name})


@dataclass
class SummaryRecord:
    """One (model, config) of the view, flat, as `summary --json` lists it (`record.document`): the means over
    seeds, the delta with its interval and its parts, the set and the pick, size and speed."""

    model: str
    config: str
    backend: str
    runtime: str | None
    dataset: str
    dataset_fingerprint: str
    n_images: int
    environment: dict  # id, cpu_class, cpu_model, versions
    seeds: list
    accuracy: float | None = _json("accuracy_mean")
    accuracy_std: float = 0.0
    accuracy_min: float | None = None
    accuracy_max: float | None = None
    reference_accuracy: float | None = None
    delta_pp: float | None = _json("delta_pp_mean")
    delta_pp_ci: list[float] | None = None
    delta_pp_se: float | None = None
    delta_pp_image_se: float | None = None
    delta_pp_seed_se: float | None = None
    delta_pp_df: float | None = None
    delta_pp_p: float | None = None
    delta_pp_seed_part: str | None = None  # "own", "pooled", "none" (one draw: the images only), None
    changed_predictions: float | None = _json("changed_predictions_mean")
    per_seed: list[dict] = field(default_factory=list)  # PER_SEED_FIELDS of each seed's row
    in_best_set: bool | None = None  # None for FP32, which is not a candidate
    beaten_by: str | None = None
    identical_to: str | None = None
    pick: bool = False
    size_bytes: int | None = None
    bench_runtime: str | None = None
    throughput_b256: float | None = None
    latency_ms_b1: float | None = None  # median
    latency_ms_b1_spread: float | None = None
    load: LoadRecord | None = None  # how to load it as timed at batch 1 (`bench.load_record`)
    speedup_b1: float | None = None
    speedup_b256: float | None = None
    resolution_pp: float | None = None


def summary_records(view: View) -> list[SummaryRecord]:
    """One flat record per (model, config) in the view, as `summary --json` lists them."""
    picks = choices(view)
    out = []
    for r in view.rows:
        stats = r.delta_stats or {}
        choice = picks.get(r.model)
        out.append(SummaryRecord(
            model=r.model, config=r.config_name, backend=r.config["backend"], runtime=r.runtime,
            dataset=view.dataset_name, dataset_fingerprint=view.dataset, n_images=view.n_images,
            environment={"id": view.environment, "cpu_class": view.environment.split(",")[0],
                         "cpu_model": (r.environment or {}).get("cpu", {}).get("model"),
                         "versions": (r.identity or {}).get("versions")},
            seeds=r.seeds, accuracy=r.accuracy, accuracy_std=r.accuracy_std, accuracy_min=r.accuracy_min,
            accuracy_max=r.accuracy_max, reference_accuracy=r.reference_accuracy,
            delta_pp=r.delta_pp, delta_pp_ci=r.delta_pp_ci, delta_pp_se=stats.get("se_pp"),
            delta_pp_image_se=stats.get("image_se_pp"), delta_pp_seed_se=stats.get("seed_se_pp"),
            delta_pp_df=stats.get("df"), delta_pp_p=stats.get("p"), delta_pp_seed_part=stats.get("seed_part"),
            changed_predictions=r.changed_predictions,
            per_seed=[{k: getattr(m, k) for k in PER_SEED_FIELDS} for m in r.per_seed],
            in_best_set=r.in_best_set if is_quantized(r) else None, beaten_by=r.beaten_by, identical_to=r.identical_to,
            pick=r.pick, size_bytes=r.size_bytes, bench_runtime=r.bench.runtime if r.bench else None,
            throughput_b256=r.speed.throughput_b256, latency_ms_b1=r.speed.latency_ms_b1_median,
            latency_ms_b1_spread=r.speed.latency_ms_b1_spread, load=r.bench.load if r.bench else None,
            speedup_b1=speedup(r, 1)[0], speedup_b256=speedup(r, 256)[0],
            resolution_pp=choice.resolution.get("resolution_pp") if choice else None))
    return out


def _choice_json(choice: Choice | None) -> dict:
    """A model's confidence set, pick and rule as `summary --json` shows them; nulls for a model without a quantized
    config."""
    if choice is None:
        return {**dict.fromkeys(("best_set", "best_set_with_identical", "best", "pick", "rule", "alpha", "correction",
                                 "objective")), "identical_recipes": [], "resolution": None}
    return {"best_set": choice.best_set, "best_set_with_identical": choice.best_set_with_identical,
            "best": choice.best, "pick": choice.pick, "rule": choice.rule, "alpha": ALPHA,
            "correction": CORRECTION_NAME, "objective": choice.objective, "identical_recipes": choice.identical,
            "resolution": choice.resolution}


def summary_json(view: View, models: list[str] | None = None) -> dict:
    """`quant-explorer summary --json`: the view, per model its confidence set, pick and rows set aside, and
    the rows."""
    keep = lambda m: not models or m in models  # noqa: E731
    per_model = {}
    for model, choice in choices(view).items():
        if keep(model):
            per_model[model] = {**_choice_json(choice), "set_aside": [s for s in view.set_aside if s["model"] == model]}
    return {"environment": view.environment, "this_machine": view.this_machine, "dataset": view.dataset_name,
            "dataset_fingerprint": view.dataset, "n_images": view.n_images, "notes": view.notes,
            "alpha": ALPHA, "correction": CORRECTION_NAME, "objective": view.objective, "models": per_model,
            "rows": [document(r) for r in summary_records(view) if keep(r.model)]}


def explore_rows(view: View, model: str, configs: list[QuantConfig]) -> list[dict]:
    """`api.explore`'s rows: one flat dict per config (FP32 first), from the summary records; a config without a
    score says why."""
    scored = {r.config: r for r in summary_records(view) if r.model == model}
    problems = {p.config_name: p for p in view.problems if p.model == model}
    out = []
    for config in configs:
        r = scored.get(config.name)
        if r is None:
            p = problems.get(config.name)
            out.append({"config": config.name, "backend": config.backend, "runtime": None, "accuracy": None,
                        "delta_pp": None, "ci95": None, "seeds": [], "size_bytes": None, "pick": False,
                        **({"not_applicable": p.not_applicable} if p and p.not_applicable is not None else
                           {"error": first_line(p and p.error or "no row")})})
            continue
        fp32 = config.name == REFERENCE
        row = {"config": config.name, "backend": r.backend, "runtime": r.runtime, "accuracy": r.accuracy,
               "accuracy_std": r.accuracy_std, "accuracy_min": r.accuracy_min, "accuracy_max": r.accuracy_max,
               "delta_pp": 0.0 if fp32 else r.delta_pp, "ci95": None if fp32 else r.delta_pp_ci,
               "p": None if fp32 else r.delta_pp_p, "seeds": r.seeds, "size_bytes": r.size_bytes,
               # where ci95's calibration-draw part comes from: "own" seeds, "pooled" over the model's other draws,
               # "none" (one draw: it covers the test images only), None (nothing calibrated)
               "ci95_seed_part": None if fp32 else r.delta_pp_seed_part,
               "reference_accuracy": r.reference_accuracy, "in_best_set": r.in_best_set,
               "identical_to": r.identical_to, "pick": r.pick, "n_images": r.n_images}
        shown = document(r)
        row.update({k: shown[k] for k in SPEED_FIELDS if shown[k] is not None})
        out.append(row)
    return out
