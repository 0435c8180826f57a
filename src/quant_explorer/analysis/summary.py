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

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bench_entry import POOLED
from ..configs import MAX_SEED, REFERENCE
from ..errors import UserError
from ..results import Results, decode_classes
from ..row import Row
from ..stats import correct, paired_delta, seed_variance
from .pick import OBJECTIVES, choose
from .rows import row_dataset, row_environment
from .selection import available_views, choose_view, evaluation_labels, one_identity
from .view import IMAGES_ONLY, PooledRow, Problem, View

MEAN_FIELDS = ("accuracy", "correct", "delta_pp", "agreement_with_fp32", "changed_predictions")


def _pool(key: str, members: list[Row], labels: np.ndarray | None, fp32: np.ndarray | None,
          benched: list[Row], pooled: tuple[float, int] | None = None) -> tuple[PooledRow, np.ndarray | None]:
    """The config's record in the view (`View.rows`): its first seed's row with seed means, spreads and the
    per-seed record; speed from any of `benched` (a config's speed does not depend on its calibration draw);
    `pooled`: the model's calibration-draw variance (`seed_prior`), for the delta's seed part."""
    members = sorted(members, key=lambda r: r.seed or 0)
    first = members[0]
    acc = np.array([m.accuracy for m in members])
    # A float reference that could not run (e.g. onnx2torch lacks an op) has an error instead of an accuracy.
    reference = [m.reference.accuracy for m in members if m.reference and m.reference.accuracy is not None]
    row = PooledRow(**vars(first), key=key, first_seed_accuracy=first.accuracy,
                    accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, accuracy_min=float(acc.min()),
                    accuracy_max=float(acc.max()),
                    reference_accuracy=float(np.mean(reference)) if len(reference) == len(members) else None,
                    seeds=[m.seed for m in members if m.calibration], per_seed=members)
    for name in MEAN_FIELDS:
        values = [v for m in members if isinstance(v := getattr(m, name), (int, float))]
        if values:
            setattr(row, name, float(np.mean(values)))
    row.confusion_matrix = np.mean([m.confusion_matrix for m in members], axis=0).round(2).tolist()
    row.per_class_accuracy = {c: float(np.mean([m.per_class_accuracy[c] for m in members]))
                              for c in first.per_class_accuracy}
    for m in (m for m in benched if m.bench is not None):
        for name in POOLED:  # the first benched seed's number, where it has one
            value = getattr(m.bench, name)
            if getattr(row.speed, name) is None and isinstance(value, (int, float)):
                setattr(row.speed, name, value)
        if row.bench is None:  # how it ran there (runtime, accuracy as run), whichever seed was benched
            row.bench = m.bench
    matrix = None
    if labels is not None and all(m.predictions is not None for m in members):
        matrix = correct([decode_classes(m.predictions) for m in members], labels)
    if matrix is not None and fp32 is not None:
        delta = paired_delta(matrix, fp32, pooled=pooled if row.seeds else None)
        if not row.seeds:  # nothing calibrated: no draw to vary, the images are the whole noise
            delta["seed_part"] = None
        row.delta_pp, row.delta_pp_ci, row.delta_stats = delta["mean_pp"], delta["ci_pp"], delta
    return row, matrix


def seed_prior(rows: list[Row], labels: np.ndarray, fp32: np.ndarray) -> tuple[float, int] | None:
    """One model's calibration-draw variance: the seed variance of its calibrated configs' deltas vs FP32, pooled
    over every stored seed of each (`stats.seed_variance`), whichever seeds the view shows. What the delta of a
    config with one draw borrows, and one with a few draws that happen to agree."""
    by_config: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.calibration and r.predictions is not None:
            by_config[r.config_name].append(r)
    return seed_variance([correct([decode_classes(r.predictions) for r in found], labels) - fp32
                          for found in by_config.values() if len(found) > 1])


def superseded_out(problems: list[Problem], scored: dict[str, Row]) -> list[Problem]:
    """The unscored rows (failed, not applicable) that still say something: not those of a (model, config, seed)
    that a newer row scored, or a newer unscored row speaks for (a class not measured before, measured now)."""
    newest: dict[tuple, str] = {}
    for row in [*scored.values(), *problems]:
        draw = (row.model, row.config_name, row.seed)
        newest[draw] = max(newest.get(draw, ""), row.created or "")
    return [p for p in problems if (p.created or "") >= newest[(p.model, p.config_name, p.seed)]]


def load_view(results: Results, environment: str | None = None, dataset: str | None = None,
              seeds: Seeds | set[int] | None = None, objective: str = "latency",
              data_dir: Path | None = None) -> View:
    """The view of a results file's rows (`results.Results`) for one environment and dataset;
    `seeds`: pool only these calibration seeds (e.g. to check that a pick survives another set of draws; none of
    them stored is a UserError, none of some configs' a note);
    `objective`: what the pick optimizes (`OBJECTIVES`); `data_dir`: where to read the evaluation set's labels
    when this machine has not cached them."""
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
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
    left_out = []  # configs with calibration seeds, none of them among `seeds`
    priors: dict[str, tuple[float, int] | None] = {}
    for model, config in order:
        fp32 = view.correct.get((model, REFERENCE))
        if model not in priors and fp32 is not None and labels is not None and config != REFERENCE:
            priors[model] = seed_prior([r for (m, _), g in groups.items() if m == model for r in g.values()],
                                       labels, fp32)
        members = {k: r for k, r in groups[(model, config)].items()
                   if seeds is None or not r.calibration or r.seed in seeds}
        if not members:
            left_out.append(f"{model}/{config}")
            continue
        first = min(members, key=lambda k: members[k].seed or 0)
        row, matrix = _pool(first, list(members.values()), labels, fp32, list(groups[(model, config)].values()),
                            priors.get(model))
        view.rows.append(row)
        view.seeds[(model, config)] = row.seeds
        view.predictions[(model, config)] = {m.seed: m.predictions for m in members.values()
                                             if m.predictions is not None}
        if matrix is not None:
            view.correct[(model, config)] = matrix
    if left_out:
        _say_seeds_left_out(view, seeds, left_out, mine.values())
    view.notes += draw_notes(view.rows)
    view.choices = {model: choose(view, model) for model in sorted({r.model for r in view.rows})}
    return view


def _say_seeds_left_out(view: View, seeds, left_out: list[str], rows) -> None:
    """--seeds that match no stored seed of some configs: a note naming them; of any config, one line refusing."""
    stored = seeds_text({r.seed for r in rows if r.calibration and r.seed is not None})
    asked = seeds.text if isinstance(seeds, Seeds) else seeds_text(seeds)
    if not any(r.calibration for r in view.rows):
        raise UserError(f"--seeds {asked} matches none of the stored calibration seeds ({stored}) in "
                        f"{view.environment} / {view.dataset_name}: pick seeds among them, or sweep these first")
    shown = ", ".join(left_out[:3]) + (f" and {len(left_out) - 3} more" if len(left_out) > 3 else "")
    view.notes.append(f"--seeds {asked}: no stored seed for {len(left_out)} configs, left out: {shown}")


@dataclass(frozen=True)
class Seeds:
    """Calibration seeds as `summary --seeds` takes them ('5-9', '0,2,4'): ranges kept as ranges, never listed
    seed by seed (0-1000000000 costs nothing), each seed within 0..MAX_SEED."""

    text: str
    ranges: tuple[range, ...]

    def __contains__(self, seed) -> bool:
        return isinstance(seed, int) and any(seed in r for r in self.ranges)


def draw_notes(rows: list[PooledRow]) -> list[str]:
    """Per model, what the intervals of its configs calibrated on one draw cover: the model's pooled
    calibration-draw variance, or the test images only (one draw moves a recipe by up to ~2 points)."""
    notes = []
    for model in sorted({r.model for r in rows}):
        one = [r for r in rows if r.model == model and len(r.seeds) == 1 and r.delta_stats]
        alone = [r.config_name for r in one if r.delta_stats.get("seed_part") == "none"]
        pooled = [r.config_name for r in one if r.delta_stats.get("seed_part") == "pooled"]
        if alone:
            notes.append(f"{model}: {len(alone)} config{'s' * (len(alone) > 1)} calibrated on one draw, and no other "
                         f"stored draw of the model to estimate that noise from: {'their' if len(alone) > 1 else 'its'}"
                         f" intervals cover the test images only (marked \"{IMAGES_ONLY}\"), not the calibration draw, "
                         "which moves a recipe by up to ~2 points; more seeds measure it (--seeds 5, or seeds=5 from "
                         "Python)")
        if pooled:
            notes.append(f"{model}: {len(pooled)} config{'s' * (len(pooled) > 1)} calibrated on one draw: "
                         f"{'their' if len(pooled) > 1 else 'its'} intervals take the calibration-draw variance "
                         "pooled over the model's other stored draws")
    return notes


def parse_seeds(text: str | None) -> Seeds | None:
    """'5-9' or '0,2,4' (as `summary --seeds` takes them) -> `Seeds`; None: every stored seed."""
    if not text:
        return None
    ranges = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part, re.ASCII)
        if not match:
            raise UserError(f"--seeds takes seeds like 0-4 or 0,2,4, got {text!r}")
        digits = [g.lstrip("0") for g in match.groups("0")]  # int() of 5,000 digits is refused: length first
        if max(map(len, digits)) > len(str(MAX_SEED)) or max(int(d or 0) for d in digits) > MAX_SEED:
            raise UserError(f"--seeds {text[:40]}: {part.strip()[:40]} goes above the largest seed, {MAX_SEED:,}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise UserError(f"--seeds {text}: the range {part.strip()} runs backwards; write it {last}-{first}")
        ranges.append(range(first, last + 1))
    return Seeds(text, tuple(ranges))


def seeds_text(seeds) -> str:
    """'0-4, 7': a set of seeds as ranges."""
    ordered, out = sorted(seeds), []
    for seed in ordered:
        if out and out[-1][1] == seed - 1:
            out[-1][1] = seed
        else:
            out.append([seed, seed])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)
