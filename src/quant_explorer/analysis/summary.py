"""One view of the results: one environment, one evaluation set, one identity per config, seeds pooled, with
intervals, a confidence set for the best and the pick.

`load_view` builds the `View` (`view.py`) every table, plot and `quant-explorer summary` reads: it chooses the
rows (`selection.py`: which environment and evaluation set, one identity per config), pools each config's seeds
into one row carrying the seed means and the statistics (`stats.py`: accuracy mean / sd / min-max over seeds,
the delta vs FP32 with its interval, McNemar per seed), and makes each model's pick (`pick.py`: the confidence
set for the best, configs with identical predictions counted once). Per-class deltas with Holm-corrected
"losing" flags: `view.per_class`; the JSON shape: `records.py`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..configs import REFERENCE
from ..errors import UserError
from ..results import Results, decode_classes
from ..row import Row
from ..stats import correct, paired_delta
from .pick import OBJECTIVES, choose
from .rows import SPEED_PREFIXES, row_dataset, row_environment
from .selection import available_views, choose_view, evaluation_labels, one_identity
from .view import PooledRow, Problem, View

PER_SEED_FIELDS = ("accuracy", "correct", "changed_predictions", "fp32_right_quantized_wrong",
                   "fp32_wrong_quantized_right", "mcnemar_p")
MEAN_FIELDS = ("accuracy", "correct", "delta_pp", "agreement_with_fp32", "changed_predictions")


def _speed(row: Row) -> dict:
    return {k: v for k, v in (row.bench or {}).items()
            if (k.startswith(SPEED_PREFIXES) or k == "speedup_vs_fp32_b256") and isinstance(v, (int, float))}


def _pool(key: str, members: list[Row], labels: np.ndarray | None, fp32: np.ndarray | None,
          benched: list[Row]) -> tuple[PooledRow, np.ndarray | None]:
    """The config's record in the view (`View.rows`): its first seed's row with seed means, spreads and the
    per-seed record; speed from any of `benched` (a config's speed does not depend on its calibration draw)."""
    members = sorted(members, key=lambda r: r.seed or 0)
    first = members[0]
    acc = np.array([m.accuracy for m in members])
    reference = [m.reference["accuracy"] for m in members if isinstance(m.reference, dict)]
    row = PooledRow(**vars(first), key=key, first_seed_accuracy=first.accuracy,
                    accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, accuracy_min=float(acc.min()),
                    accuracy_max=float(acc.max()),
                    reference_accuracy=float(np.mean(reference)) if len(reference) == len(members) else None,
                    seeds=[m.seed for m in members if m.calibration],
                    per_seed=[{k: getattr(m, k) for k in PER_SEED_FIELDS} for m in members])
    for name in MEAN_FIELDS:
        values = [v for m in members if isinstance(v := getattr(m, name), (int, float))]
        if values:
            setattr(row, name, float(np.mean(values)))
    row.confusion_matrix = np.mean([m.confusion_matrix for m in members], axis=0).round(2).tolist()
    row.per_class_accuracy = {c: float(np.mean([m.per_class_accuracy[c] for m in members]))
                              for c in first.per_class_accuracy}
    for m in benched:
        row.speed.update({k: v for k, v in _speed(m).items() if k not in row.speed})
        if row.bench is None:  # how it ran there (runtime, accuracy as run), whichever seed was benched
            row.bench = m.bench
    matrix = None
    if labels is not None and all(m.predictions is not None for m in members):
        matrix = correct([decode_classes(m.predictions) for m in members], labels)
    if matrix is not None and fp32 is not None:
        delta = paired_delta(matrix, fp32)
        row.delta_pp, row.delta_pp_ci, row.delta_stats = delta["mean_pp"], delta["ci_pp"], delta
    return row, matrix


def superseded_out(problems: list[Problem], scored: dict[str, Row]) -> list[Problem]:
    """The unscored rows (failed, not applicable) that still say something: not those of a (model, config, seed)
    that a newer row scored, or a newer unscored row speaks for (a class not measured before, measured now)."""
    newest: dict[tuple, str] = {}
    for row in [*scored.values(), *problems]:
        draw = (row.model, row.config_name, row.seed)
        newest[draw] = max(newest.get(draw, ""), row.created or "")
    return [p for p in problems if (p.created or "") >= newest[(p.model, p.config_name, p.seed)]]


def load_view(results: Results | dict, environment: str | None = None, dataset: str | None = None,
              seeds: set[int] | None = None, objective: str = "latency", data_dir: Path | None = None) -> View:
    """The view of a results file's rows (`results.Results`, or a document from `results.load_results`, read as
    its rows) for one environment and dataset;
    `seeds`: pool only these calibration seeds (e.g. to check that a pick survives another set of draws);
    `objective`: what the pick optimizes (`OBJECTIVES`); `data_dir`: where to read the evaluation set's labels
    when this machine has not cached them."""
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    results = Results.of(results) if isinstance(results, dict) else results
    available = available_views(results.rows)
    if not available:
        raise UserError("no scored rows in the results file: run `quant-explorer sweep` first")
    chosen, notes = choose_view(available, environment, dataset)
    record = results.datasets.get(chosen["dataset"])
    mine, problems = {}, []
    for key, row in results.rows.items():
        if row.config_name is None or row_environment(row) != chosen["environment"]:
            continue
        if row_dataset(row) != chosen["dataset"]:
            continue
        if row.scored:
            mine[key] = row
        else:
            problems.append(Problem(**vars(row), key=key))
    mine, stale, missing_fp32 = one_identity(mine)
    problems = superseded_out(problems, mine)
    labels, label_note = evaluation_labels(record, chosen["dataset"], list(mine.values()), data_dir)
    notes += missing_fp32 + ([label_note] if label_note else [])
    groups: dict[tuple[str, str], dict[str, Row]] = defaultdict(dict)
    for key, row in mine.items():
        groups[(row.model, row.config_name)][key] = row
    view = View(chosen["environment"], chosen["dataset"], chosen["dataset_name"], chosen["n_images"], [], problems,
                labels=labels, available=available, classes=list(record["classes"]) if record else [],
                set_aside=stale, notes=notes, objective=objective)
    order = sorted(groups, key=lambda k: (k[0], k[1] != REFERENCE, k[1]))
    for model, config in order:
        fp32 = view.correct.get((model, REFERENCE))
        members = {k: r for k, r in groups[(model, config)].items()
                   if seeds is None or not r.calibration or r.seed in seeds}
        if not members:
            continue
        first = min(members, key=lambda k: members[k].seed or 0)
        row, matrix = _pool(first, list(members.values()), labels, fp32, list(groups[(model, config)].values()))
        view.rows.append(row)
        view.seeds[(model, config)] = row.seeds
        view.predictions[(model, config)] = {m.seed: m.predictions for m in members.values()
                                             if m.predictions is not None}
        if matrix is not None:
            view.correct[(model, config)] = matrix
    view.choices = {model: choose(view, model) for model in sorted({r.model for r in view.rows})}
    return view


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
