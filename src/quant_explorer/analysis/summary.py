"""One view of the results: one environment and one evaluation set, each config's seeds pooled, with intervals.

Every table, plot and `quant-explorer summary` reads a `View`. It holds only rows measured alike — the same
CPU class and library versions (the environment) and the same evaluation images (the dataset) — so no delta
ever pairs rows of different data or machines. By default it is this machine's environment when the file has
rows of it, else the most recent one, and that environment's most recent dataset.

Within the view, a config's rows are its calibration seeds. Its row in the view carries the seed means (what
the older single-seed tables showed) and the statistics: accuracy mean / std / min-max over seeds, the delta
vs FP32 with a 95% interval over test images and seeds (`stats.paired_delta`), McNemar per seed, per-class
deltas with intervals. The pick: the configs whose interval against the best config includes 0 tie with it;
of those, the fastest in the runtime it ships in (benchmarked on this machine), then the smallest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..configs import REFERENCE
from ..errors import UserError, first_line
from ..identity import cpu_class, environment_id, legacy_identity, versions
from ..results import decode_classes, load_labels
from ..stats import ALPHA, correct, excludes_zero, paired_delta, resolution

SPEED_PREFIXES = ("latency_ms_", "throughput_")
PER_SEED_FIELDS = ("accuracy", "correct", "changed_predictions", "fp32_right_quantized_wrong",
                   "fp32_wrong_quantized_right", "mcnemar_p")
MEAN_FIELDS = ("accuracy", "correct", "delta_pp", "agreement_with_fp32", "changed_predictions")


def row_environment(row: dict) -> str:
    return environment_id(row["identity"] if "identity" in row else legacy_identity(row))


def row_dataset(row: dict) -> str:
    """The evaluation set's fingerprint; schema-1 rows, which have none, go by name and size."""
    if "identity" in row:
        return row["identity"]["dataset"]["fingerprint"]
    return f"{row.get('dataset')} ({row.get('n_images')} images)"


def this_environment() -> str:
    return environment_id({"cpu_class": cpu_class(), "versions": versions()})


@dataclass
class View:
    environment: str
    dataset: str  # fingerprint (or a schema-1 row's dataset name)
    dataset_name: str
    n_images: int
    rows: list[dict]  # one per (model, config): seed means plus statistics, FP32 first per model
    problems: list[dict]
    correct: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # [seeds, images] per row
    seeds: dict[tuple[str, str], list] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    available: list[dict] = field(default_factory=list)  # every (environment, dataset) in the file
    choices: dict[str, dict] = field(default_factory=dict)  # per model: best, tie set, pick, rule, resolution

    @property
    def this_machine(self) -> bool:
        return self.environment == this_environment()

    @property
    def others(self) -> list[dict]:
        """The other (environment, evaluation set) pairs in the file: listed, never mixed in."""
        return [v for v in self.available if (v["environment"], v["dataset"]) != (self.environment, self.dataset)]

    @staticmethod
    def why_unscored(problem: dict) -> str:
        """One line on a row the view has no score for: set aside as stale, not applicable, or its error."""
        return (problem.get("stale") or problem.get("not_applicable") or first_line(problem.get("error") or "")
                or "no score")

    def banner(self) -> str:
        where = "this machine's" if self.this_machine else "not this machine's"
        return (f"Environment: {self.environment} ({where}); evaluation set: {self.dataset_name}, "
                f"{self.n_images:,} images (fingerprint {self.dataset})")


def _available(entries: dict[str, dict]) -> list[dict]:
    found: dict[tuple[str, str], dict] = {}
    for row in entries.values():
        if "accuracy" not in row or "config_name" not in row:
            continue
        key = (row_environment(row), row_dataset(row))
        info = found.setdefault(key, {"environment": key[0], "dataset": key[1], "dataset_name": row.get("dataset"),
                                      "n_images": row.get("n_images"), "rows": 0, "latest": ""})
        info["rows"] += 1
        info["latest"] = max(info["latest"], row.get("created", ""))
    return sorted(found.values(), key=lambda v: v["latest"], reverse=True)


def _choose(available: list[dict], environment: str | None, dataset: str | None) -> dict:
    def matches(v: dict) -> bool:
        return ((environment is None or environment in v["environment"])
                and (dataset is None or dataset == v["dataset"] or dataset in str(v["dataset_name"])))

    chosen = [v for v in available if matches(v)]
    if not chosen:
        known = "; ".join(f"{v['environment']} / {v['dataset_name']} ({v['rows']} rows)" for v in available)
        raise UserError(f"no results for environment {environment!r} and dataset {dataset!r}; the file has: {known}")
    if environment is None:
        here = [v for v in chosen if v["environment"] == this_environment()]
        chosen = here or chosen
    return chosen[0]


def _speed(row: dict) -> dict:
    bench = row.get("bench", {})
    return {k: v for k, v in bench.items() if (k.startswith(SPEED_PREFIXES) or k == "speedup_vs_fp32_b256")
            and isinstance(v, (int, float))}


def _pool(members: list[dict], labels: np.ndarray | None, fp32: np.ndarray | None,
          benched: list[dict]) -> tuple[dict, np.ndarray | None]:
    """The config's row in the view: its first seed's row with seed means, spreads and the per-seed record;
    speed from any of `benched` (a config's speed does not depend on its calibration draw)."""
    members = sorted(members, key=lambda r: (r.get("calibration") or {}).get("calibration_seed") or 0)
    row = {**members[0], "first_seed_accuracy": members[0]["accuracy"]}
    for name in MEAN_FIELDS:
        values = [m[name] for m in members if isinstance(m.get(name), (int, float))]
        if values:
            row[name] = float(np.mean(values))
    acc = np.array([m["accuracy"] for m in members])
    row.update({"accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, "accuracy_min": float(acc.min()),
                "accuracy_max": float(acc.max()),
                "seeds": [m["calibration"]["calibration_seed"] for m in members if m.get("calibration")],
                "per_seed": [{k: m.get(k) for k in PER_SEED_FIELDS} for m in members],
                "confusion_matrix": np.mean([m["confusion_matrix"] for m in members], axis=0).round(2).tolist(),
                "per_class_accuracy": {c: float(np.mean([m["per_class_accuracy"][c] for m in members]))
                                       for c in members[0]["per_class_accuracy"]}})
    for m in benched:
        row.update({k: v for k, v in _speed(m).items() if k not in row})
        if "bench" in m:  # how it ran there (runtime, accuracy as run), whichever seed was benched
            row.setdefault("bench", m["bench"])
    matrix = None
    if labels is not None and all("predictions" in m for m in members):
        matrix = correct([decode_classes(m["predictions"]) for m in members], labels)
    if matrix is not None and fp32 is not None:
        delta = paired_delta(matrix, fp32)
        row.update({"delta_pp": delta["mean_pp"], "delta_pp_ci95": delta["ci95_pp"], "delta_stats": delta})
    return row, matrix


def load_view(data: dict, environment: str | None = None, dataset: str | None = None,
              seeds: set[int] | None = None) -> View:
    """The view of a results file's contents (`results.load_results`) for one environment and dataset;
    `seeds`: pool only these calibration seeds (e.g. to check that a pick survives another set of draws)."""
    available = _available(data["entries"])
    if not available:
        raise UserError("no scored rows in the results file: run `quant-explorer sweep` first")
    chosen = _choose(available, environment, dataset)
    record = data.get("datasets", {}).get(chosen["dataset"])
    labels = load_labels(chosen["dataset"]) if record else None
    mine, problems = [], []
    for key, row in data["entries"].items():
        if "config_name" not in row or row_environment(row) != chosen["environment"]:
            continue
        if row_dataset(row) != chosen["dataset"]:
            continue
        (mine if "accuracy" in row else problems).append({"key": key, **row})
    mine, stale = _current(mine)
    problems += stale
    if record and labels is None:
        problems.append({"key": "evaluation set", "stale": f"the labels of {chosen['dataset_name']} are not cached "
                         "here, so no intervals: run `quant-explorer sweep` once on that data"})
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in mine:
        groups.setdefault((row["model"], row["config_name"]), []).append(row)
    view = View(chosen["environment"], chosen["dataset"], chosen["dataset_name"], chosen["n_images"], [], problems,
                labels=labels, available=available, classes=list(record["classes"]) if record else [])
    order = sorted(groups, key=lambda k: (k[0], k[1] != REFERENCE, k[1]))
    for model, config in order:
        fp32 = view.correct.get((model, REFERENCE))
        members = [r for r in groups[(model, config)] if seeds is None or not r.get("calibration")
                   or r["calibration"]["calibration_seed"] in seeds]
        if not members:
            continue
        row, matrix = _pool(members, labels, fp32, groups[(model, config)])
        view.rows.append(row)
        view.seeds[(model, config)] = row["seeds"]
        if matrix is not None:
            view.correct[(model, config)] = matrix
    view.choices = {model: choose(view, model) for model in sorted({r["model"] for r in view.rows})}
    return view


def _current(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Rows on each model's latest weights (its newest FP32 row's) and usual calibration size; the rest, and why."""
    fp32 = {}
    for r in sorted(rows, key=lambda r: r.get("created", "")):
        if r["config_name"] == REFERENCE:
            fp32[r["model"]] = r.get("model_weights_sha256")
    sizes = Counter((r["model"], r["calibration"]["calibration_n"]) for r in rows if r.get("calibration"))
    usual = {}
    for (model, n), count in sizes.most_common():
        usual.setdefault(model, n)
    keep, out = [], []
    for r in rows:
        n = (r.get("calibration") or {}).get("calibration_n")
        if fp32.get(r["model"], r.get("model_weights_sha256")) != r.get("model_weights_sha256"):
            out.append({**r, "stale": "measured on older weights of this model"})
        elif n is not None and n != usual[r["model"]]:
            out.append({**r, "stale": f"calibrated on {n} images (this view: {usual[r['model']]})"})
        else:
            keep.append(r)
    return keep, out


def delta(view: View, model: str, a: str, b: str, mask: np.ndarray | None = None) -> dict | None:
    """Config `a` minus config `b` on one model, paired on images and on their common calibration seeds."""
    ca, cb = view.correct.get((model, a)), view.correct.get((model, b))
    if ca is None or cb is None:
        return None
    sa, sb = view.seeds[(model, a)], view.seeds[(model, b)]
    if sa and sb:  # both calibrated: pair seed s with seed s (the same calibration images)
        common = [s for s in sa if s in sb]
        if common:
            ca, cb = ca[[sa.index(s) for s in common]], cb[[sb.index(s) for s in common]]
        else:  # no shared sample: each averaged over its own seeds, paired on images only
            ca, cb = ca.mean(axis=0, keepdims=True), cb.mean(axis=0, keepdims=True)
    return paired_delta(ca, cb, mask)


def per_class(view: View, row: dict) -> dict[str, dict]:
    """Each class's delta vs FP32 with its interval, and whether it loses detectably (interval below 0)."""
    out = {}
    if view.labels is None:
        return out
    for i, name in enumerate(view.classes):
        d = delta(view, row["model"], row["config_name"], REFERENCE, view.labels == i)
        if d is not None:
            out[name] = {"delta_pp": d["mean_pp"], "ci95_pp": d["ci95_pp"],
                         "losing": d["ci95_pp"][1] < 0, "images": int((view.labels == i).sum())}
    return out


def is_quantized(row: dict) -> bool:
    return row["config_name"] != REFERENCE


def choose(view: View, model: str) -> dict:
    """Best config, the configs tied with it, the pick among them and the rule, for one model."""
    rows = [r for r in view.rows if r["model"] == model and is_quantized(r)]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r["accuracy"])
    tied = []
    for r in rows:
        d = delta(view, model, r["config_name"], best["config_name"])
        r["vs_best"] = d
        if r is best or (d is not None and not excludes_zero(d["ci95_pp"])):
            tied.append(r)
    # A config whose shipped runtime loses detectably against its own float reference (the kernels, not the
    # recipe: u8s8 saturation without VNNI) is not shipped on the strength of the reference's accuracy.
    shipped_loses = [r["config_name"] for r in tied
                     if r.get("bench", {}).get("as_run_vs_reference", {}).get("loses_detectably")]
    timed = [r for r in tied if isinstance(r.get("throughput_b256"), (int, float))
             and r["config_name"] not in shipped_loses]
    if timed:
        pick = max(timed, key=lambda r: (r["throughput_b256"], -r.get("latency_ms_b1_median", 0), -r["size_bytes"]))
        speed = f", {pick['speedup_vs_fp32_b256']:.2f}x FP32" if pick.get("speedup_vs_fp32_b256") else ""
        rule = (f"{len(tied)} of {len(rows)} configs tie with the best on accuracy (their 95% interval against "
                f"{best['config_name']} includes 0); of those {pick['config_name']} is fastest at batch 256 "
                f"({pick['throughput_b256']:,.0f} images/s in {pick.get('bench', {}).get('runtime', 'its runtime')}{speed})")
        if shipped_loses:
            rule += (f"; not picked: {', '.join(shipped_loses)}, whose shipped runtime loses detectably against the "
                     f"recipe's float reference (exact McNemar, p < {ALPHA})")
        if len(timed) + len(shipped_loses) < len(tied):
            rule += f"; {len(tied) - len(timed) - len(shipped_loses)} tied configs have no speed measured"
    else:
        pick = min(tied, key=lambda r: (r["size_bytes"], -r["accuracy"]))
        rule = (f"{len(tied)} of {len(rows)} configs tie with the best on accuracy; none has a speed measured "
                f"(run `quant-explorer bench`), so the smallest: {pick['config_name']}, {pick['size_bytes'] / 1024:.0f} KiB")
    for r in rows:
        r["tied_with_best"] = r in tied
        r["pick"] = r is pick
    deltas = [r["delta_stats"] for r in rows if "delta_stats" in r]
    k = max((len(r["seeds"]) for r in rows), default=0) or 1
    return {"model": model, "best": best["config_name"], "tied": [r["config_name"] for r in tied],
            "pick": pick["config_name"], "rule": rule, "resolution": resolution(deltas, view.n_images, k)}


def choices(view: View) -> dict[str, dict]:
    """Per model: `choose`'s answer (computed once, when the view is loaded)."""
    return view.choices


def summary_records(view: View) -> list[dict]:
    """`quant-explorer summary --json`: one flat object per (model, config) in the view."""
    picks = choices(view)
    out = []
    for r in view.rows:
        stats = r.get("delta_stats") or {}
        out.append({
            "model": r["model"], "config": r["config_name"], "backend": r["config"]["backend"],
            "dataset": view.dataset_name, "dataset_fingerprint": view.dataset, "n_images": view.n_images,
            "environment": {"id": view.environment, "cpu_class": view.environment.split(",")[0],
                            "cpu_model": r.get("environment", {}).get("cpu", {}).get("model"),
                            "versions": (r.get("identity") or {}).get("versions")},
            "seeds": r["seeds"], "accuracy_mean": r["accuracy"], "accuracy_std": r["accuracy_std"],
            "accuracy_min": r["accuracy_min"], "accuracy_max": r["accuracy_max"],
            "delta_pp_mean": r.get("delta_pp"), "delta_pp_ci95": r.get("delta_pp_ci95"),
            "delta_pp_image_sd": stats.get("image_sd_pp"), "delta_pp_seed_sd": stats.get("seed_sd_pp"),
            "changed_predictions_mean": r.get("changed_predictions"),
            "per_seed": r["per_seed"],
            "tied_with_best": r.get("tied_with_best") if is_quantized(r) else None,
            "pick": r.get("pick", False), "size_bytes": r["size_bytes"], "runtime": r.get("bench", {}).get("runtime"),
            "throughput_b256": r.get("throughput_b256"), "latency_ms_b1": r.get("latency_ms_b1_median"),
            "speedup_vs_fp32_b256": r.get("speedup_vs_fp32_b256"),
            "resolution_pp": picks.get(r["model"], {}).get("resolution", {}).get("resolution_pp"),
        })
    return out


def parse_seeds(text: str | None) -> set[int] | None:
    """'5-9' or '0,2,4' (as `summary --seeds` takes them) -> a set of seeds; None: every stored seed."""
    if not text:
        return None
    try:
        out = set()
        for part in text.split(","):
            low, _, high = part.partition("-")
            out.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise UserError(f"--seeds takes seeds like 0-4 or 0,2,4, got {text!r}") from None
    if not out or min(out) < 0:
        raise UserError(f"--seeds takes non-negative seeds like 0-4 or 0,2,4, got {text!r}")
    return out
