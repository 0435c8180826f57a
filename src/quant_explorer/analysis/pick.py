"""The pick: per model, the confidence set for the best (multiple comparisons with the best, `stats.best_set`),
configs with identical predictions counted once, and from the set the config best on the view's objective
(batch-1 latency by default) in the runtime it ships in, with the rule in words.
"""

from __future__ import annotations

from ..configs import REFERENCE
from ..stats import ALPHA, CORRECTION_NAME, best_set, level_text, resolution
from .rows import is_quantized, speedup
from .view import PooledRow, View, delta, per_class

# objective -> (row field, +1 when more is better, -1 when less is, words)
OBJECTIVES = {"latency": ("latency_ms_b1_median", -1, "the lowest batch-1 median latency"),
              "throughput": ("throughput_b256", 1, "the highest batch-256 throughput"),
              "size": ("size_bytes", -1, "the smallest file")}


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
    """'0.37 ms in onnxruntime, 1.02x the fastest FP32 (onnxruntime)' (batch 1) or the images/s (batch 256)."""
    runtime = (row.bench or {}).get("runtime", "its runtime")
    value = (f"{row.speed['latency_ms_b1_median']:.3g} ms" if batch == 1
             else f"{row.speed['throughput_b256']:,.0f} images/s")
    ratio, against = speedup(row, batch)
    return f"{value} in {runtime}" + (f", {ratio:.2f}x {against}" if ratio else "")


def _pick(members: list[PooledRow], objective: str, fp32: PooledRow | None) -> tuple[PooledRow, list[str]]:
    """The member best on the objective (then the smallest), and the sentences that say why and what else."""
    key, sign, words = OBJECTIVES[objective]
    timed = [r for r in members if isinstance(r.cost(key), (int, float))]
    if not timed:
        pick = min(members, key=lambda r: (r.size_bytes, -r.accuracy))
        return pick, [f"none has {words.removeprefix('the ')} measured (run `quant-explorer bench`), so the smallest: "
                      f"{pick.config_name}, {pick.size_bytes / 1024:.0f} KiB"]
    pick = max(timed, key=lambda r: (sign * r.cost(key), -r.size_bytes))
    if objective == "size":
        said = [f"of those {pick.config_name} has the smallest file ({pick.size_bytes / 1024:.0f} KiB"
                + (f", {fp32.size_bytes / pick.size_bytes:.1f}x smaller than FP32)" if fp32 else ")")]
        return pick, said
    batch, other = (1, 256) if objective == "latency" else (256, 1)
    said = [f"of those {pick.config_name} has {words} ({_speed_words(pick, batch)})"]
    ratio, against = speedup(pick, batch)
    if ratio is not None and ratio <= 1:
        smaller = f", {fp32.size_bytes / pick.size_bytes:.1f}x smaller than FP32" if fp32 else ""
        said.append(f"no int8 config in the set beats FP32 at batch {batch} ({against}): what int8 still buys here "
                    f"is size ({pick.size_bytes / 1024:.0f} KiB{smaller})")
    other_key = "latency_ms_b1_median" if other == 1 else "throughput_b256"
    other_sign = -1 if other == 1 else 1
    timed_other = [r for r in members if isinstance(r.speed.get(other_key), (int, float))]
    if timed_other:
        fastest = max(timed_other, key=lambda r: (other_sign * r.speed[other_key], -r.size_bytes))
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


def choose(view: View, model: str) -> dict:
    """One model's confidence set for the best, its identical recipes, the pick on the view's objective and the
    rule in words."""
    rows = [r for r in view.rows if r.model == model and is_quantized(r)]
    if not rows:
        return {}
    groups = identical_groups(view, model)
    twin_of = {twin: g[0] for g in groups for twin in g[1:]}
    scored = [r for r in rows if (model, r.config_name) in view.correct and r.config_name not in twin_of]
    unscored = [r.config_name for r in rows if (model, r.config_name) not in view.correct]
    base = {"model": model, "alpha": ALPHA, "level": level_text(), "correction": CORRECTION_NAME,
            "objective": view.objective, "identical": groups,
            "identical_text": "; ".join(f"{', '.join(g)} give identical predictions on every seed: one recipe, "
                                        f"counted once (as {g[0]})" for g in groups),
            "not_candidates": unscored}
    if not scored:
        return {**base, "best": None, "best_set": [], "pick": None, "resolution": {},
                "rule": "no confidence set and no pick: no config of this model has per-image predictions scored "
                        "here (rows of an older quant-explorer, or no labels)"}
    found = best_set([view.correct[(model, r.config_name)] for r in scored],
                     [view.seeds[(model, r.config_name)] for r in scored])
    best = max(scored, key=lambda r: r.accuracy)
    for r, inside, by, margin in zip(scored, found["members"], found["beaten_by"], found["margin_pp"]):
        r.in_best_set, r.best_set_margin_pp = inside, margin
        r.beaten_by = None if by is None else scored[by].config_name
        r.vs_best = delta(view, model, r.config_name, best.config_name)
    by_name = {r.config_name: r for r in rows}
    for twin, first in twin_of.items():
        mine, theirs = by_name[twin], by_name[first]
        mine.in_best_set, mine.beaten_by, mine.best_set_margin_pp = (theirs.in_best_set, theirs.beaten_by,
                                                                    theirs.best_set_margin_pp)
        mine.identical_to = first
    # Every accuracy here is the shipped runtime's, so kernels that lose against their own float reference (u8s8
    # saturation without VNNI) already fall out of the set: no separate rule for them.
    members = [r for r in scored if r.in_best_set]
    pick, said = pick_among(view, members)
    rule = [f"{len(members)} of {len(scored)} configs are in the {level_text()} confidence set for the best "
            f"(multiple comparisons with the best over all {len(scored)}: no other config beats them by more than "
            "the noise allows, family-wise)", *said]
    if unscored:
        rule.append(f"not candidates (no per-image predictions): {', '.join(unscored)}")
    for r in rows:
        r.pick = r is pick
    deltas = [r.delta_stats for r in rows if r.delta_stats is not None]
    k = max((len(r.seeds) for r in rows), default=0) or 1
    return {**base, "best": best.config_name, "best_set": [r.config_name for r in members],
            "best_set_with_identical": [r.config_name for r in rows if r.in_best_set],
            "pick": pick.config_name, "rule": "; ".join(rule), "critical": found["critical"],
            "resolution": resolution(deltas, view.n_images, k)}


def choices(view: View) -> dict[str, dict]:
    """Per model: `choose`'s answer (computed once, when the view is loaded)."""
    return view.choices
