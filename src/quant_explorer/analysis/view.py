"""The `View` every table, plot and `quant-explorer summary` reads, and the paired statistics taken on it.

A view holds only rows measured alike — the same CPU class and library versions (the environment) and the same
evaluation images (the dataset, matched by fingerprint, never by path) — so no delta ever pairs rows of
different data or machines. `summary.load_view` builds it; `delta` and `per_class` pair its rows on images and
on their common calibration seeds (`stats.py`). It also holds each model's pick (`Choice`, made by `pick.choose`)
and how the pick holds on the deployment classes (`Deployment`, made by `deploy.apply`): records only, here so the
modules that make them import the view, never each other in a loop.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..bench_entry import POOLED, RuntimeSpeed
from ..configs import REFERENCE
from ..errors import first_line
from ..row import Row
from ..stats import adjust, align, paired_delta
from .rows import this_environment


@dataclass
class PooledRow(Row):
    """A config's record in the view (`summary._pool`): its first seed's row, with the seed means (accuracy,
    correct, delta_pp, ...) in the row's own fields and the statistics over seeds beside them; the pick fields
    are `pick.choose`'s. Computed, never stored."""
    key: str = ""  # the first seed's row
    first_seed_accuracy: float | None = None  # the cross-checks (alternates, reference) ran on the first seed
    accuracy_std: float = 0.0
    accuracy_min: float | None = None
    accuracy_max: float | None = None
    reference_accuracy: float | None = None  # the float reference's, over seeds; None unless every seed has one
    seeds: list = field(default_factory=list)
    per_seed: list[Row] = field(default_factory=list)  # each seed's row, in seed order
    delta_pp_ci: list[float] | None = None
    delta_stats: dict | None = None  # `stats.paired_delta`
    speed: RuntimeSpeed = field(default_factory=RuntimeSpeed)  # the bench's `bench_entry.POOLED`, any seed's
    in_best_set: bool | None = None
    beaten_by: str | None = None
    best_set_margin_pp: float | None = None
    identical_to: str | None = None  # the config whose predictions it repeats on every seed
    pick: bool = False

    def cost(self, name: str) -> float | None:
        """A speed field (`speed`) or the size, by name: what the fronts and their plots compare."""
        return getattr(self.speed, name) if name in POOLED else getattr(self, name, None)


IMAGES_ONLY = "images only"  # said beside an interval that leaves out the calibration draw's noise


def scope(seed_part: str | None) -> str:
    """' images only' after the interval of a config calibrated on one draw with no other stored draw of its model
    to estimate that noise from (`stats.paired_delta`'s seed_part "none"), else ''."""
    return f" {IMAGES_ONLY}" if seed_part == "none" else ""


@dataclass
class Problem(Row):
    """A row of the view's environment and evaluation set without a score: failed, or not applicable."""
    key: str = ""

    @property
    def why(self) -> str:
        """One line: not applicable, or its error."""
        return self.not_applicable or first_line(self.error or "") or "no score"


@dataclass
class Deployment:
    """How a model's pick holds on the deployment classes (`deploy.apply`): the classes, the pick made here first, the
    sentences said, and the pick's cell on each class (`classes.matrix`; None where not measured)."""

    classes: list[str]
    first: str
    said: list[str]
    cells: dict[str, dict | None]
    here: str  # the class of the view the pick was made in


@dataclass
class Choice:
    """One model's answer to "which config" (`pick.choose`): the confidence set for the best, the recipes with identical
    predictions, the pick on the view's objective and the rule that picked it, in words."""

    model: str
    objective: str
    identical: list[list[str]]  # configs giving identical predictions on every seed, the first standing for the rest
    not_candidates: list[str]  # configs without per-image predictions
    rule: str = ""
    best: str | None = None  # the most accurate
    best_set: list[str] = field(default_factory=list)  # one config per recipe
    best_set_with_identical: list[str] | None = None  # every config of the set, twins included
    pick: str | None = None
    resolution: dict = field(default_factory=dict)  # `stats.resolution`
    deploy: Deployment | None = None  # how the pick holds on each deployment class (`deploy.apply`)

    @property
    def identical_text(self) -> str:
        return "; ".join(f"{', '.join(g)} give identical predictions on every seed: one recipe, counted once (as "
                         f"{g[0]})" for g in self.identical)


@dataclass
class View:
    environment: str
    dataset: str  # fingerprint (or a schema-1 row's dataset name)
    dataset_name: str
    n_images: int
    rows: list[PooledRow]  # one per (model, config), FP32 first per model
    problems: list[Problem]  # rows without a score: failed, not applicable
    correct: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # [seeds, images] per row
    seeds: dict[tuple[str, str], list] = field(default_factory=dict)
    predictions: dict[tuple[str, str], dict] = field(default_factory=dict)  # {seed or None: encoded predictions}
    classes: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    available: list[dict] = field(default_factory=list)  # every (environment, dataset) in the file
    choices: dict[str, Choice | None] = field(default_factory=dict)  # per model (None: no quantized config)
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


def delta(view: View, model: str, a: str, b: str, mask: np.ndarray | None = None) -> dict | None:
    """Config `a` minus config `b` on one model, paired on images and on their common calibration seeds."""
    ca, cb = view.correct.get((model, a)), view.correct.get((model, b))
    if ca is None or cb is None:
        return None
    return paired_delta(*align(ca, view.seeds[(model, a)], cb, view.seeds[(model, b)]), mask)


def per_class(view: View, row: PooledRow) -> dict[str, dict]:
    """Each class's delta vs FP32 with its interval, and whether it loses detectably: below 0 with a p-value
    that survives the correction over the config's classes (`stats.CORRECTION`)."""
    out = {}
    if view.labels is None:
        return out
    for i, name in enumerate(view.classes):
        d = delta(view, row.model, row.config_name, REFERENCE, view.labels == i)
        if d is not None:
            out[name] = {"delta_pp": d["mean_pp"], "ci_pp": d["ci_pp"], "p": d["p"],
                         "images": int((view.labels == i).sum())}
    for c, (reject, adjusted) in zip(out.values(), adjust([c["p"] for c in out.values()])):
        c.update({"p_adjusted": adjusted, "losing": reject and c["delta_pp"] < 0})
    return out
