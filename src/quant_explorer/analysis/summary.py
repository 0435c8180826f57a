"""One view of the results: one environment, one evaluation set, one identity per config, seeds pooled, with
intervals, a confidence set for the best and the pick.

Every table, plot and `quant-explorer summary` reads a `View`. It holds only rows measured alike — the same
CPU class and library versions (the environment) and the same evaluation images (the dataset, matched by
fingerprint, never by path) — so no delta ever pairs rows of different data or machines. By default it is
the fullest current view (rows with per-image predictions) of this machine's CPU class, else the fullest
current view of another class, said in a note; a `quantize` of a few configs never replaces a full sweep.

Within the view, each (model, config) keeps the rows of one identity (everything but the calibration seed),
the newest; rows of other identities, other weights or another calibration size are set aside, each reason
said once. A model has one FP32 row. A config's rows are then its seeds, and its row in the view carries the
seed means and the statistics (`stats.py`): accuracy mean / sd / min-max over seeds, the delta vs FP32 with
its interval, McNemar per seed, per-class deltas with Holm-corrected "losing" flags. Configs whose per-image
predictions are identical on every seed are one finding. The pick: from the confidence set for the best, the
config best on the objective (batch-1 latency by default) in the runtime it ships in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..configs import REFERENCE
from ..errors import UserError, first_line
from ..identity import cpu_class, environment_id, legacy_identity, mismatch, versions
from ..results import decode_classes, load_labels
from ..stats import (ALPHA, CORRECTION_NAME, adjust, align, best_set, correct, level_text, paired_delta,
                     resolution)

SPEED_PREFIXES = ("latency_ms_", "throughput_")
PER_SEED_FIELDS = ("accuracy", "correct", "changed_predictions", "fp32_right_quantized_wrong",
                   "fp32_wrong_quantized_right", "mcnemar_p")
MEAN_FIELDS = ("accuracy", "correct", "delta_pp", "agreement_with_fp32", "changed_predictions")
MODEL_FIELDS = ("model_weights_sha256", "preprocessing")
SEED_FIELDS = ("calibration_sample",)  # identity fields that are the calibration draw (besides the seed itself)  # identity fields every row of a model shares with its FP32
# objective -> (row field, +1 when more is better, -1 when less is, words)
OBJECTIVES = {"latency": ("latency_ms_b1_median", -1, "the lowest batch-1 median latency"),
              "throughput": ("throughput_b256", 1, "the highest batch-256 throughput"),
              "size": ("size_bytes", -1, "the smallest file")}
# batch -> (ratio against the fastest FP32 runtime, that runtime's name, the older ratio against FP32 in the same runtime)
RATIOS = {1: ("latency_speedup_vs_fastest_fp32_b1", "fastest_fp32_b1", "latency_speedup_vs_fp32_b1"),
          256: ("speedup_vs_fastest_fp32_b256", "fastest_fp32_b256", "speedup_vs_fp32_b256")}


def row_environment(row: dict) -> str:
    return environment_id(row["identity"] if "identity" in row else legacy_identity(row))


def row_dataset(row: dict) -> str:
    """The evaluation set's fingerprint; schema-1 rows, which have none, go by name and size."""
    if "identity" in row:
        return row["identity"]["dataset"]["fingerprint"]
    return f"{row.get('dataset')} ({row.get('n_images')} images)"


def this_environment() -> str:
    return environment_id({"cpu_class": cpu_class(), "versions": versions()})


def is_current(row: dict) -> bool:
    """Measured by this quant-explorer: per-image predictions (what every tie and pick needs) of the runtime users
    ship, under an identity that names its recipe version. Older rows scored some configs in their float reference
    (PT2E in eager PyTorch, eager static on qnnpack): they are shown, never the basis of a set or a pick."""
    return "predictions" in row and "recipe" in row.get("identity", {})


def recipe_identity(row: dict) -> dict:
    """The row's identity without its calibration draw: rows that share it are seeds of one recipe."""
    identity = dict(row["identity"]) if "identity" in row else {**legacy_identity(row), "config": row["config_name"]}
    for name in SEED_FIELDS:
        identity.pop(name, None)
    calibration = identity.get("calibration")
    if isinstance(calibration, (list, tuple)):
        identity["calibration"] = calibration[:1]  # [n, seed, ...]: the size is the recipe, the rest the draw
    elif isinstance(calibration, dict):
        identity["calibration"] = calibration.get("calibration_n", calibration.get("n"))
    return identity


@dataclass
class View:
    environment: str
    dataset: str  # fingerprint (or a schema-1 row's dataset name)
    dataset_name: str
    n_images: int
    rows: list[dict]  # one per (model, config): seed means plus statistics, FP32 first per model
    problems: list[dict]  # rows without a score: failed, not applicable
    correct: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # [seeds, images] per row
    seeds: dict[tuple[str, str], list] = field(default_factory=dict)
    predictions: dict[tuple[str, str], dict] = field(default_factory=dict)  # {seed or None: encoded predictions}
    classes: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    available: list[dict] = field(default_factory=list)  # every (environment, dataset) in the file
    choices: dict[str, dict] = field(default_factory=dict)  # per model: the confidence set, the pick, the rule
    set_aside: list[dict] = field(default_factory=list)  # {key, model, config, reason}: scored rows not in the view
    notes: list[str] = field(default_factory=list)  # one line each: why this view, what it lacks
    objective: str = "latency"

    @property
    def this_machine(self) -> bool:
        return self.environment == this_environment()

    @property
    def others(self) -> list[dict]:
        """The other (environment, evaluation set) pairs in the file: listed, never mixed in."""
        return [v for v in self.available if (v["environment"], v["dataset"]) != (self.environment, self.dataset)]

    @staticmethod
    def why_unscored(problem: dict) -> str:
        """One line on a row the view has no score for: not applicable, or its error."""
        return problem.get("not_applicable") or first_line(problem.get("error") or "") or "no score"

    def banner(self) -> str:
        where = "this machine's" if self.this_machine else "not this machine's"
        return (f"Environment: {self.environment} ({where}); evaluation set: {self.dataset_name}, "
                f"{self.n_images:,} images (fingerprint {self.dataset})")

    def set_aside_lines(self) -> list[str]:
        """Each reason rows were set aside for, once, with how many and which configs."""
        by_reason: dict[str, list[dict]] = defaultdict(list)
        for s in self.set_aside:
            by_reason[s["reason"]].append(s)
        lines = []
        for reason, rows in by_reason.items():
            configs = sorted({f"{r['model']}/{r['config']}" for r in rows})
            shown = ", ".join(configs[:3]) + (f" and {len(configs) - 3} more" if len(configs) > 3 else "")
            lines.append(f"{len(rows)} row{'s' if len(rows) > 1 else ''} set aside, {reason}: {shown}")
        return lines


def _available(entries: dict[str, dict]) -> list[dict]:
    found: dict[tuple[str, str], dict] = {}
    for row in entries.values():
        if "accuracy" not in row or "config_name" not in row:
            continue
        key = (row_environment(row), row_dataset(row))
        info = found.setdefault(key, {"environment": key[0], "dataset": key[1], "dataset_name": row.get("dataset"),
                                      "n_images": row.get("n_images"), "rows": 0, "current": 0, "latest": ""})
        info["rows"] += 1
        info["current"] += is_current(row)
        info["latest"] = max(info["latest"], row.get("created", ""))
    return sorted(found.values(), key=lambda v: v["latest"], reverse=True)


def _cpu_class(view: dict) -> str:
    return view["environment"].split(",")[0]


def _choose(available: list[dict], environment: str | None, dataset: str | None) -> tuple[dict, list[str]]:
    """The (environment, dataset) to show and the notes on why: the fullest current view of this machine's CPU
    class, else of another class (said), else rows of an older quant-explorer (said)."""
    def matches(v: dict) -> bool:
        return ((environment is None or environment in v["environment"])
                and (dataset is None or dataset == v["dataset"] or dataset in str(v["dataset_name"])))

    chosen = [v for v in available if matches(v)]
    if not chosen:
        known = "; ".join(f"{v['environment']} / {v['dataset_name']} ({v['rows']} rows)" for v in available)
        raise UserError(f"no results for environment {environment!r} and dataset {dataset!r}; the file has: {known}")
    fullest = lambda views: max(views, key=lambda v: (v["current"], v["environment"] == this_environment(),  # noqa: E731
                                                      v["rows"], v["latest"]))
    current = [v for v in chosen if v["current"]]
    if environment is not None:
        return fullest(chosen), []
    here = cpu_class()
    mine = [v for v in current if _cpu_class(v) == here]
    if mine:
        return fullest(mine), []
    if current:
        view = fullest(current)
        return view, [f"no results computed on {here} yet; showing {_cpu_class(view)} from {view['latest'][:10]}; "
                      "`make run` computes them here"]
    return fullest(chosen), ["only rows of an older quant-explorer here (no per-image predictions): no intervals, no "
                             "confidence set and no pick; `make run` computes them"]


def _newest_identity(rows: list[dict], what: str) -> tuple[list[dict], list[dict]]:
    """The rows of the newest identity among `rows` (one seed each, the newest), and the others with a reason."""
    by_identity: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_identity[repr(sorted(recipe_identity(r).items()))].append(r)
    groups = sorted(by_identity.values(), key=lambda g: max(r.get("created", "") for r in g), reverse=True)
    keep, aside = [], []
    wanted = recipe_identity(groups[0][0])
    for group in groups[1:]:
        stored = recipe_identity(group[0])
        differs = mismatch(stored, wanted) or "of another identity (" + ", ".join(
            sorted(k for k in {*stored, *wanted} if stored.get(k) != wanted.get(k))) + ")"
        aside += [{**r, "stale": f"{what} {differs}; the newest identity is kept"} for r in group]
    seen = set()
    for r in sorted(groups[0], key=lambda r: r.get("created", ""), reverse=True):
        seed = (r.get("calibration") or {}).get("calibration_seed")
        (aside.append({**r, "stale": f"seed {seed} stored twice; the newer kept"}) if seed in seen else keep.append(r))
        seen.add(seed)
    return keep, aside


def _one_identity(rows: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """Per model: one FP32 row, the rows on its weights and preprocessing and the usual calibration size, and per
    config the rows of one identity; the rest set aside (`stale` says why), and notes for models without FP32."""
    keep, aside, notes = [], [], []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        fp32 = [r for r in mine if r["config_name"] == REFERENCE]
        reference = None
        if fp32:
            fp32, out = _newest_identity(fp32, "an FP32 row")
            keep.append(fp32[0])
            aside += out + [{**r, "stale": "an FP32 row of the same identity; the newest is kept"} for r in fp32[1:]]
            reference = recipe_identity(fp32[0])
        else:
            notes.append(f"{model}: no FP32 row in this view, so no deltas (`quant-explorer sweep --model {model}` "
                         "measures it)")
        others = []
        for r in (r for r in mine if r["config_name"] != REFERENCE):
            identity = recipe_identity(r)
            differs = reference and next((f for f in MODEL_FIELDS if identity.get(f) != reference.get(f)), None)
            if differs:
                aside.append({**r, "stale": f"measured {mismatch({differs: identity.get(differs)}, reference)} "
                                            "than its FP32 row"})
            else:
                others.append(r)
        sizes = Counter(r["calibration"]["calibration_n"] for r in others if r.get("calibration"))
        usual = sizes.most_common(1)[0][0] if sizes else None
        configs: dict[str, list[dict]] = defaultdict(list)
        for r in others:
            n = (r.get("calibration") or {}).get("calibration_n")
            if n is not None and n != usual:
                aside.append({**r, "stale": f"calibrated on {n} images (this view: {usual})"})
            else:
                configs[r["config_name"]].append(r)
        for config, group in configs.items():
            chosen, out = _newest_identity(group, "a row")
            keep += chosen
            aside += out
    return keep, aside, notes


def _labels(record: dict | None, fingerprint: str, rows: list[dict], data_dir: Path | None) -> tuple[np.ndarray | None, str | None]:
    """The evaluation set's labels: cached, else read from `data_dir` (without decoding images) and checked
    against every stored score; None and a one-line note where neither gives them."""
    if record is None:
        return None, None
    labels = load_labels(fingerprint)
    if labels is not None:
        return labels, None
    if data_dir is None:
        return None, (f"the labels of {record['name']} are not cached here and no data directory was given "
                      "(--data-dir): no intervals")
    from ..data import test_labels

    try:
        labels = test_labels(data_dir, tuple(record.get("classes") or ()))
    except UserError as e:
        return None, f"the labels of {record['name']} are not cached here and {e}: no intervals"
    scored = [r for r in rows if "predictions" in r and "correct" in r]
    if len(labels) != record["n_images"] or any(int((decode_classes(r["predictions"]) == labels).sum()) != r["correct"]
                                                for r in scored):
        return None, (f"the labels of {record['name']} are not cached here, and the test split in {data_dir} does not "
                      "score the stored predictions as stored (another evaluation set): no intervals; pass --data-dir")
    return labels, None


def _speed(row: dict) -> dict:
    bench = row.get("bench", {})
    return {k: v for k, v in bench.items() if (k.startswith(SPEED_PREFIXES) or k == "speedup_vs_fp32_b256")
            and isinstance(v, (int, float))}


def speedup(row: dict, batch: int) -> tuple[float | None, str]:
    """A config's speed ratio at batch 1 (latency) or 256 (throughput) and what it is against: the fastest FP32
    runtime where the bench recorded it, else FP32 in the same runtime."""
    fastest, name, same = RATIOS[batch]
    bench = row.get("bench", {})
    if isinstance(bench.get(fastest), (int, float)):
        return bench[fastest], f"the fastest FP32 ({bench.get(name, 'its runtime')})"
    if isinstance(bench.get(same), (int, float)):
        return bench[same], f"FP32 in {bench.get('runtime', 'the same runtime')}"
    return None, ""


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
    reference = [m["reference"]["accuracy"] for m in members if isinstance(m.get("reference"), dict)]
    row.update({"accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, "accuracy_min": float(acc.min()),
                "accuracy_max": float(acc.max()),
                "reference_accuracy": float(np.mean(reference)) if len(reference) == len(members) else None,
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
        row.update({"delta_pp": delta["mean_pp"], "delta_pp_ci": delta["ci_pp"], "delta_stats": delta})
    return row, matrix


def load_view(data: dict, environment: str | None = None, dataset: str | None = None,
              seeds: set[int] | None = None, objective: str = "latency", data_dir: Path | None = None) -> View:
    """The view of a results file's contents (`results.load_results`) for one environment and dataset;
    `seeds`: pool only these calibration seeds (e.g. to check that a pick survives another set of draws);
    `objective`: what the pick optimizes (`OBJECTIVES`); `data_dir`: where to read the evaluation set's labels
    when this machine has not cached them."""
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    available = _available(data["entries"])
    if not available:
        raise UserError("no scored rows in the results file: run `quant-explorer sweep` first")
    chosen, notes = _choose(available, environment, dataset)
    record = data.get("datasets", {}).get(chosen["dataset"])
    mine, problems = [], []
    for key, row in data["entries"].items():
        if "config_name" not in row or row_environment(row) != chosen["environment"]:
            continue
        if row_dataset(row) != chosen["dataset"]:
            continue
        (mine if "accuracy" in row else problems).append({"key": key, **row})
    mine, stale, missing_fp32 = _one_identity(mine)
    labels, label_note = _labels(record, chosen["dataset"], mine, data_dir)
    notes += missing_fp32 + ([label_note] if label_note else [])
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in mine:
        groups[(row["model"], row["config_name"])].append(row)
    view = View(chosen["environment"], chosen["dataset"], chosen["dataset_name"], chosen["n_images"], [], problems,
                labels=labels, available=available, classes=list(record["classes"]) if record else [],
                set_aside=[{"key": r["key"], "model": r["model"], "config": r["config_name"],
                            "seed": (r.get("calibration") or {}).get("calibration_seed"), "reason": r["stale"]}
                           for r in stale], notes=notes, objective=objective)
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
        view.predictions[(model, config)] = {(m.get("calibration") or {}).get("calibration_seed"): m["predictions"]
                                             for m in members if "predictions" in m}
        if matrix is not None:
            view.correct[(model, config)] = matrix
    view.choices = {model: choose(view, model) for model in sorted({r["model"] for r in view.rows})}
    return view


def delta(view: View, model: str, a: str, b: str, mask: np.ndarray | None = None) -> dict | None:
    """Config `a` minus config `b` on one model, paired on images and on their common calibration seeds."""
    ca, cb = view.correct.get((model, a)), view.correct.get((model, b))
    if ca is None or cb is None:
        return None
    return paired_delta(*align(ca, view.seeds[(model, a)], cb, view.seeds[(model, b)]), mask)


def per_class(view: View, row: dict) -> dict[str, dict]:
    """Each class's delta vs FP32 with its interval, and whether it loses detectably: below 0 with a p-value
    that survives the correction over the config's classes (`stats.CORRECTION`)."""
    out = {}
    if view.labels is None:
        return out
    for i, name in enumerate(view.classes):
        d = delta(view, row["model"], row["config_name"], REFERENCE, view.labels == i)
        if d is not None:
            out[name] = {"delta_pp": d["mean_pp"], "ci_pp": d["ci_pp"], "p": d["p"], "images": int((view.labels == i).sum())}
    for c, (reject, adjusted) in zip(out.values(), adjust([c["p"] for c in out.values()])):
        c.update({"p_adjusted": adjusted, "losing": reject and c["delta_pp"] < 0})
    return out


def is_quantized(row: dict) -> bool:
    return row["config_name"] != REFERENCE


def identical_groups(view: View, model: str) -> list[list[str]]:
    """Configs of `model` whose per-image predictions are identical on every common seed (at least one): one
    recipe under several names. Each group by name, the first standing for the rest."""
    groups: list[list[str]] = []
    for name in sorted(c for m, c in view.predictions if m == model and c != REFERENCE):
        mine = view.predictions[(model, name)]
        for group in groups:
            theirs = view.predictions[(model, group[0])]
            common = set(mine) & set(theirs)
            if common and all(mine[s] == theirs[s] for s in common):
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def _speed_words(row: dict, batch: int) -> str:
    """'0.37 ms in onnxruntime, 1.02x the fastest FP32 (onnxruntime)' (batch 1) or the images/s (batch 256)."""
    runtime = row.get("bench", {}).get("runtime", "its runtime")
    value = (f"{row['latency_ms_b1_median']:.3g} ms" if batch == 1 else f"{row['throughput_b256']:,.0f} images/s")
    ratio, against = speedup(row, batch)
    return f"{value} in {runtime}" + (f", {ratio:.2f}x {against}" if ratio else "")


def _pick(members: list[dict], objective: str, fp32: dict | None) -> tuple[dict, list[str]]:
    """The member best on the objective (then the smallest), and the sentences that say why and what else."""
    key, sign, words = OBJECTIVES[objective]
    timed = [r for r in members if isinstance(r.get(key), (int, float))]
    if not timed:
        pick = min(members, key=lambda r: (r["size_bytes"], -r["accuracy"]))
        return pick, [f"none has {words.removeprefix('the ')} measured (run `quant-explorer bench`), so the smallest: "
                      f"{pick['config_name']}, {pick['size_bytes'] / 1024:.0f} KiB"]
    pick = max(timed, key=lambda r: (sign * r[key], -r["size_bytes"]))
    if objective == "size":
        said = [f"of those {pick['config_name']} has the smallest file ({pick['size_bytes'] / 1024:.0f} KiB"
                + (f", {fp32['size_bytes'] / pick['size_bytes']:.1f}x smaller than FP32)" if fp32 else ")")]
        return pick, said
    batch, other = (1, 256) if objective == "latency" else (256, 1)
    said = [f"of those {pick['config_name']} has {words} ({_speed_words(pick, batch)})"]
    ratio, against = speedup(pick, batch)
    if ratio is not None and ratio <= 1:
        smaller = f", {fp32['size_bytes'] / pick['size_bytes']:.1f}x smaller than FP32" if fp32 else ""
        said.append(f"no int8 config in the set beats FP32 at batch {batch} ({against}): what int8 still buys here "
                    f"is size ({pick['size_bytes'] / 1024:.0f} KiB{smaller})")
    other_key = "latency_ms_b1_median" if other == 1 else "throughput_b256"
    other_sign = -1 if other == 1 else 1
    timed_other = [r for r in members if isinstance(r.get(other_key), (int, float))]
    if timed_other:
        fastest = max(timed_other, key=lambda r: (other_sign * r[other_key], -r["size_bytes"]))
        if fastest is not pick:
            said.append(f"at batch {other} the fastest of the set is {fastest['config_name']} "
                        f"({_speed_words(fastest, other)})")
    return pick, said


def choose(view: View, model: str) -> dict:
    """One model's confidence set for the best, its identical recipes, the pick on the view's objective and the
    rule in words."""
    rows = [r for r in view.rows if r["model"] == model and is_quantized(r)]
    if not rows:
        return {}
    groups = identical_groups(view, model)
    twin_of = {twin: g[0] for g in groups for twin in g[1:]}
    scored = [r for r in rows if (model, r["config_name"]) in view.correct and r["config_name"] not in twin_of]
    unscored = [r["config_name"] for r in rows if (model, r["config_name"]) not in view.correct]
    base = {"model": model, "alpha": ALPHA, "level": level_text(), "correction": CORRECTION_NAME,
            "objective": view.objective, "identical": groups,
            "identical_text": "; ".join(f"{', '.join(g)} give identical predictions on every seed: one recipe, "
                                        f"counted once (as {g[0]})" for g in groups),
            "not_candidates": unscored}
    if not scored:
        return {**base, "best": None, "best_set": [], "pick": None, "resolution": {},
                "rule": "no confidence set and no pick: no config of this model has per-image predictions scored "
                        "here (rows of an older quant-explorer, or no labels)"}
    found = best_set([view.correct[(model, r["config_name"])] for r in scored],
                     [view.seeds[(model, r["config_name"])] for r in scored])
    best = max(scored, key=lambda r: r["accuracy"])
    for r, inside, by, margin in zip(scored, found["members"], found["beaten_by"], found["margin_pp"]):
        r.update({"in_best_set": inside, "beaten_by": None if by is None else scored[by]["config_name"],
                  "best_set_margin_pp": margin, "vs_best": delta(view, model, r["config_name"], best["config_name"])})
    by_name = {r["config_name"]: r for r in rows}
    for twin, first in twin_of.items():
        by_name[twin].update({k: by_name[first].get(k) for k in ("in_best_set", "beaten_by", "best_set_margin_pp")},
                             identical_to=first)
    # Every accuracy here is the shipped runtime's, so kernels that lose against their own float reference (u8s8
    # saturation without VNNI) already fall out of the set: no separate rule for them.
    members = [r for r in scored if r["in_best_set"]]
    fp32 = next((r for r in view.rows if r["model"] == model and not is_quantized(r)), None)
    pick, said = _pick(members, view.objective, fp32)
    rule = [f"{len(members)} of {len(scored)} configs are in the {level_text()} confidence set for the best "
            f"(multiple comparisons with the best over all {len(scored)}: no other config beats them by more than "
            "the noise allows, family-wise)", *said]
    if unscored:
        rule.append(f"not candidates (no per-image predictions): {', '.join(unscored)}")
    for r in rows:
        r["pick"] = r is pick
    deltas = [r["delta_stats"] for r in rows if "delta_stats" in r]
    k = max((len(r["seeds"]) for r in rows), default=0) or 1
    return {**base, "best": best["config_name"], "best_set": [r["config_name"] for r in members],
            "best_set_with_identical": [r["config_name"] for r in rows if r.get("in_best_set")],
            "pick": pick["config_name"], "rule": "; ".join(rule), "critical": found["critical"],
            "resolution": resolution(deltas, view.n_images, k)}


def choices(view: View) -> dict[str, dict]:
    """Per model: `choose`'s answer (computed once, when the view is loaded)."""
    return view.choices


def summary_records(view: View) -> list[dict]:
    """One flat object per (model, config) in the view, as `summary --json` lists them."""
    picks = choices(view)
    out = []
    for r in view.rows:
        stats = r.get("delta_stats") or {}
        out.append({
            "model": r["model"], "config": r["config_name"], "backend": r["config"]["backend"],
            "runtime": r.get("runtime"), "dataset": view.dataset_name, "dataset_fingerprint": view.dataset,
            "n_images": view.n_images,
            "environment": {"id": view.environment, "cpu_class": view.environment.split(",")[0],
                            "cpu_model": r.get("environment", {}).get("cpu", {}).get("model"),
                            "versions": (r.get("identity") or {}).get("versions")},
            "seeds": r["seeds"], "accuracy_mean": r["accuracy"], "accuracy_std": r["accuracy_std"],
            "accuracy_min": r["accuracy_min"], "accuracy_max": r["accuracy_max"],
            "reference_accuracy": r.get("reference_accuracy"),
            "delta_pp_mean": r.get("delta_pp"), "delta_pp_ci": r.get("delta_pp_ci"), "delta_pp_se": stats.get("se_pp"),
            "delta_pp_image_se": stats.get("image_se_pp"), "delta_pp_seed_se": stats.get("seed_se_pp"),
            "delta_pp_df": stats.get("df"), "delta_pp_p": stats.get("p"),
            "changed_predictions_mean": r.get("changed_predictions"),
            "per_seed": r["per_seed"],
            "in_best_set": r.get("in_best_set") if is_quantized(r) else None, "beaten_by": r.get("beaten_by"),
            "identical_to": r.get("identical_to"),
            "pick": r.get("pick", False), "size_bytes": r["size_bytes"], "bench_runtime": r.get("bench", {}).get("runtime"),
            "throughput_b256": r.get("throughput_b256"), "latency_ms_b1": r.get("latency_ms_b1_median"),
            "speedup_b1": speedup(r, 1)[0], "speedup_b256": speedup(r, 256)[0],
            "resolution_pp": picks.get(r["model"], {}).get("resolution", {}).get("resolution_pp"),
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
                                "identical_recipes": choice.get("identical", []), "resolution": choice.get("resolution"),
                                "set_aside": [s for s in view.set_aside if s["model"] == model]}
    return {"environment": view.environment, "this_machine": view.this_machine, "dataset": view.dataset_name,
            "dataset_fingerprint": view.dataset, "n_images": view.n_images, "notes": view.notes,
            "alpha": ALPHA, "correction": CORRECTION_NAME, "objective": view.objective, "models": per_model,
            "rows": [r for r in summary_records(view) if keep(r["model"])]}


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
