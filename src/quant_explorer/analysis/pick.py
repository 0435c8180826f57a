"""The pick: per model, the confidence set for the best (multiple comparisons with the best, `stats.best_set`),
configs with identical predictions counted once, and from the set the config best on the view's objective
(batch-1 latency by default) in the runtime it ships in, with the rule in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..bench_entry import BenchEntry
from ..configs import REFERENCE
from ..data import CIFAR10_CLASSES
from ..stats import CORRECTION_NAME, FULL_CIFAR10_TEST, best_set, level_text, resolution
from .rows import is_quantized, size_vs_fp32, speedup
from .view import Choice, PooledRow, View, per_class


@dataclass(frozen=True)
class Objective:
    """What the pick optimizes among the set: a cost read off a view's record, +1 when more is better (-1 when less
    is), in words; a speed also has its batch size and the bench's run-to-run spread of it (medians closer than
    that are a tie: `speed_ties`)."""

    cost: Callable[[PooledRow], float | None]
    sign: int
    words: str
    batch: int | None = None
    spread: Callable[[PooledRow], float | None] = lambda row: None


OBJECTIVES = {"latency": Objective(lambda r: r.speed.latency_ms_b1_median, -1, "the lowest batch-1 median latency", 1,
                                   lambda r: r.speed.latency_ms_b1_spread),
              "throughput": Objective(lambda r: r.speed.throughput_b256, 1, "the highest batch-256 throughput", 256,
                                      lambda r: r.speed.throughput_b256_spread),
              "size": Objective(lambda r: r.size_bytes, -1, "the smallest file")}
AT_BATCH = {1: OBJECTIVES["latency"], 256: OBJECTIVES["throughput"]}  # the speed at each batch size


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


def _speed_words(row: PooledRow, batch: int) -> str:
    """'0.073 ms (run-to-run spread 0.002 ms) in onnxruntime with 1 intra-op thread, 1.71x (1.65-1.76 over rounds)
    the fastest FP32 (onnxruntime with 2 intra-op threads)' (batch 1), or the images/s (batch 256). A bench
    entry of the older shape (one thread count, no spread) says only what it has."""
    bench = row.bench or BenchEntry()
    runtime = bench.runtime or "its runtime"
    if batch == 1:
        value = f"{row.speed.latency_ms_b1_median:.3g} ms"
        if isinstance(row.speed.latency_ms_b1_spread, (int, float)):
            value += f" (run-to-run spread {row.speed.latency_ms_b1_spread:.2g} ms)"
        setting = (bench.load.setting if bench.load else None) or (
            f"{bench.threads} threads" if bench.threads is not None else None)
        runtime += f" with {setting}" if setting else ""
    else:
        value = f"{row.speed.throughput_b256:,.0f} images/s"
    ratio, against = speedup(row, batch)
    iqr = bench.latency_speedup_vs_fastest_fp32_b1_iqr if batch == 1 else None
    spread = f" ({iqr[0]:.2f}-{iqr[1]:.2f} over rounds)" if iqr and "fastest" in against else ""
    if batch == 1 and bench.fastest_fp32_b1_setting and "fastest" in against:
        against = against.removesuffix(")") + f" with {bench.fastest_fp32_b1_setting})"
    return f"{value} in {runtime}" + (f", {ratio:.2f}x{spread} {against}" if ratio else "")


def speed_ties(timed: list[PooledRow], objective: Objective) -> list[PooledRow]:
    """The members tied on the objective's speed with the fastest (fastest first): their medians differ by less than
    the run-to-run spread the bench measured on each of the two (the smaller: a noisy, slow measurement ties with
    nothing). Without a recorded spread nothing ties."""
    cost = objective.cost
    fastest = max(timed, key=lambda r: (objective.sign * cost(r), -r.size_bytes))

    def spread(r: PooledRow) -> float:
        value = objective.spread(r)
        return value if isinstance(value, (int, float)) and value == value else 0.0

    return [fastest, *(r for r in timed if r is not fastest
                       and abs(cost(r) - cost(fastest)) < min(spread(r), spread(fastest)))]


def _pick(members: list[PooledRow], objective: str, fp32: PooledRow | None) -> tuple[PooledRow, list[str]]:
    """The member best on the objective (then the smallest), and the sentences that say why and what else."""
    goal = OBJECTIVES[objective]
    words = goal.words
    timed = [r for r in members if isinstance(goal.cost(r), (int, float))]
    if not timed:
        pick = min(members, key=lambda r: (r.size_bytes, -r.accuracy))
        return pick, [f"none has {words.removeprefix('the ')} measured (run `quant-explorer bench`), so the smallest: "
                      f"{pick.config_name}, {pick.size_bytes / 1024:.0f} KiB"]
    if goal.batch is None:
        pick = max(timed, key=lambda r: (goal.sign * goal.cost(r), -r.size_bytes))
        said = [f"of those {pick.config_name} has the smallest file ({pick.size_bytes / 1024:.0f} KiB"
                + (f", {size_vs_fp32(pick.size_bytes, fp32.size_bytes)})" if fp32 else ")")]
        return pick, said
    batch, other = (1, 256) if goal.batch == 1 else (256, 1)
    tied = speed_ties(timed, goal)
    pick = max(tied, key=lambda r: (r.accuracy, -r.size_bytes))  # the more accurate, then the smaller
    if len(tied) == 1:
        said = [f"of those {pick.config_name} has {words} ({_speed_words(pick, batch)})"]
    else:
        why = ("the most accurate" if sum(r.accuracy == pick.accuracy for r in tied) == 1
               else "of the most accurate, the smallest")
        said = [f"of those {', '.join(r.config_name for r in tied)} tie on {words.removeprefix('the ')} (their "
                f"medians differ by less than the bench's run-to-run spread): a tie on speed, so {pick.config_name}, "
                f"{why} of them ({100 * pick.accuracy:.2f}%; {_speed_words(pick, batch)})"]
    ratio, against = speedup(pick, batch)
    if ratio is not None and ratio <= 1:
        smaller = f", {size_vs_fp32(pick.size_bytes, fp32.size_bytes)}" if fp32 else ""
        said.append(f"no int8 config in the set beats FP32 at batch {batch} ({against}): what int8 still buys here "
                    f"is size ({pick.size_bytes / 1024:.0f} KiB{smaller})")
    there = AT_BATCH[other]
    timed_other = [r for r in members if isinstance(there.cost(r), (int, float))]
    if timed_other:
        fastest = max(timed_other, key=lambda r: (there.sign * there.cost(r), -r.size_bytes))
        if fastest is not pick:
            said.append(f"at batch {other} the fastest of the set is {fastest.config_name} "
                        f"({_speed_words(fastest, other)})")
    return pick, said


def pick_among(view: View, members: list[PooledRow]) -> tuple[PooledRow, list[str]]:
    """The pick among `members` (one model's, in the confidence set), and the sentences that say why: a member that
    loses a class detectably is a worse thing to ship than its mean says, picked only if all do; then the best on
    the view's objective. `choose` calls it on the set, `deploy.py` on the members that hold on every class."""
    model = members[0].model
    fp32 = next((r for r in view.rows if r.model == model and not is_quantized(r)), None)
    losing = {r.config_name: [c for c, v in per_class(view, r).items() if v["losing"]] for r in members}
    whole = [r for r in members if not losing[r.config_name]] or members
    pick, said = _pick(whole, view.objective, fp32)
    set_aside = [f"{r.config_name} ({', '.join(losing[r.config_name])})" for r in members if r not in whole]
    return pick, [*([f"{len(set_aside)} of them {'loses' if len(set_aside) == 1 else 'lose'} a class detectably "
                     f"({CORRECTION_NAME} over the classes) and {'is' if len(set_aside) == 1 else 'are'} not picked: "
                     f"{'; '.join(set_aside)}"] if set_aside else []), *said]


def choose(view: View, model: str) -> Choice | None:
    """One model's confidence set for the best, its identical recipes, the pick on the view's objective and the
    rule in words; None for a model without a quantized config."""
    rows = [r for r in view.rows if r.model == model and is_quantized(r)]
    if not rows:
        return None
    groups = identical_groups(view, model)
    twin_of = {twin: g[0] for g in groups for twin in g[1:]}
    scored = [r for r in rows if (model, r.config_name) in view.correct and r.config_name not in twin_of]
    unscored = [r.config_name for r in rows if (model, r.config_name) not in view.correct]
    choice = Choice(model, view.objective, groups, unscored)
    if not scored:
        choice.rule = ("no confidence set and no pick: no config of this model has per-image predictions scored "
                       "here (rows of an older quant-explorer, or no labels)")
        return choice
    found = best_set([view.correct[(model, r.config_name)] for r in scored],
                     [view.seeds[(model, r.config_name)] for r in scored])
    best = max(scored, key=lambda r: r.accuracy)
    for r, inside, by, margin in zip(scored, found["members"], found["beaten_by"], found["margin_pp"]):
        r.in_best_set, r.best_set_margin_pp = inside, margin
        r.beaten_by = None if by is None else scored[by].config_name
    by_name = {r.config_name: r for r in rows}
    for twin, first in twin_of.items():
        mine, theirs = by_name[twin], by_name[first]
        mine.in_best_set, mine.beaten_by, mine.best_set_margin_pp = (theirs.in_best_set, theirs.beaten_by,
                                                                    theirs.best_set_margin_pp)
        mine.identical_to = first
    # Every accuracy here is the shipped runtime's, so kernels that lose against their own float reference (u8s8
    # saturation without VNNI) already fall out of the set: no separate rule for them.
    members = [r for r in scored if r.in_best_set]
    # Every config of the set is a candidate, a recipe's twins included: a twin can be the smaller or faster file.
    candidates = [r for r in rows if r.in_best_set]
    pick, said = pick_among(view, candidates)
    counted = (f"{len(members)} of {len(scored)} configs" if not twin_of else
               f"{len(members)} of {len(scored)} recipes ({len(candidates)} of {len(scored) + len(twin_of)} configs, "
               "those with identical predictions counted as one recipe)")
    rule = [f"{counted} are in the {level_text()} confidence set for the best "
            f"(multiple comparisons with the best over all {len(scored)}: no other config beats them by more than "
            "the noise allows, family-wise)", *said]
    if unscored:
        rule.append(f"not candidates (no per-image predictions): {', '.join(unscored)}")
    failed = not_scored(view, model)
    if failed:
        rule.append(f"not scored, so not candidates: {'; '.join(failed)}")
    for r in rows:
        r.pick = r is pick
    deltas = [r.delta_stats for r in rows if r.delta_stats is not None]
    k = max((len(r.seeds) for r in rows), default=0) or 1
    cifar10 = tuple(view.classes or CIFAR10_CLASSES) == CIFAR10_CLASSES  # older files named no classes: all CIFAR-10
    choice.best, choice.best_set, choice.pick = best.config_name, [r.config_name for r in members], pick.config_name
    choice.best_set_with_identical = [r.config_name for r in rows if r.in_best_set]
    choice.rule = "; ".join(rule)
    choice.resolution = resolution(deltas, view.n_images, k, FULL_CIFAR10_TEST if cifar10 else None)
    return choice


def not_scored(view: View, model: str) -> list[str]:
    """'config (why)' for each config of `model` whose row failed in this view: said beside the pick, never only in
    the report's unscored rows."""
    return [f"{p.config_name} ({p.why})" for p in view.problems if p.model == model and p.error]


def choices(view: View) -> dict[str, Choice | None]:
    """Per model: `choose`'s answer (computed once, when the view is loaded)."""
    return view.choices
