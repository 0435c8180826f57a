"""Why a config loses points, in sentences built from its own row: simulation vs kernels, warnings, one-field twins.

The key evidence is the row's float `reference` and `alternates` (and runtimes a benchmark scored): the same
quantized model run another way. onnx2torch runs an ORT QDQ model as exact simulated quantization (float
arithmetic on the dequantized values), so "simulation fine, ORT loses" points at the int8 kernels, and "both
lose" at the recipe.
"""

from __future__ import annotations

from ..backends import Runtime, runtime_info
from ..row import RuntimeScore
from ..stats import level_text
from . import fp32_rows, is_quantized
from .comparisons import confusion_comparison, losers_text, pairs
from .view import PooledRow, View, per_class

LOSS_PP = 2.0  # a config losing more than this gets explained


def _pp(accuracy: float, reference: float) -> float:
    return 100 * (accuracy - reference)


def _alternates(row: PooledRow) -> dict[str, tuple[Runtime, RuntimeScore]]:
    """The other runs of this model: the sweep's cross-checks, plus runtimes a benchmark scored (`bench`), each
    with what its backend says that runtime is."""
    benched = {n: RuntimeScore(accuracy=r.accuracy) for n, r in ((row.bench and row.bench.runtimes) or {}).items()
               if r.accuracy is not None}
    reference = {row.reference.runtime: row.reference} if row.reference is not None else {}
    runs = {n: (runtime_info(n), a) for n, a in {**benched, **(row.alternates or {}), **reference}.items()
            if n != row.runtime}
    return {n: run for n, run in runs.items() if run[0] is not None}


def _split(row: PooledRow, fp32_acc: float, simulated: float, source: str) -> str:
    """Split a loss into the recipe's share (exact simulation vs FP32) and the kernels' (main run vs simulation)."""
    main = row.first_seed_accuracy  # the cross-checks ran on the first seed's model
    recipe, kernels = _pp(simulated, fp32_acc), _pp(main, simulated)
    runtime = f"{row.runtime or 'the runtime'}'s int8 kernels"
    verdict = (f"the loss is mostly in {runtime}" if kernels < recipe
               else "the loss is mostly in the recipe (its scales and zero points), not in the kernels")
    return (f"{source} scores {100 * simulated:.2f}%: of the {_pp(main, fp32_acc):+.2f} pp (first seed), the recipe "
            f"accounts for {recipe:+.2f} pp and {runtime} for {kernels:+.2f} pp, so {verdict}.")


def _alternate_sentences(row: PooledRow, fp32_acc: float, main_loses: bool, twins: list[dict],
                         rows: list[PooledRow]) -> list[str]:
    """What the same model scored when run another way, and what that says about where the loss is."""
    out = []
    for runtime, alt in _alternates(row).values():
        what, exact = runtime.description, runtime.exact
        if alt.accuracy is None:
            if main_loses:  # a missing cross-check is worth saying only where it would have explained something
                out.append(f"Run as {what} it could not be measured ({alt.error or 'no result'}).")
            continue
        gap = _pp(row.first_seed_accuracy, alt.accuracy)  # main run minus this run
        said = f"Run as {what} it scores {100 * alt.accuracy:.2f}% ({_pp(alt.accuracy, fp32_acc):+.2f} pp vs FP32)"
        if exact and main_loses:
            out.append(_split(row, fp32_acc, alt.accuracy, f"Run as {what} it"))
        elif not exact and gap > LOSS_PP:
            out.append(f"{said}: the recipe is fine ({100 * row.accuracy:.2f}% computed exactly), those kernels "
                       f"lose {gap:.2f} pp.")
        elif abs(gap) > LOSS_PP:
            out.append(f"{said}.")
    simulated = any(runtime.exact and a.accuracy is not None for runtime, a in _alternates(row).values())
    if main_loses and not simulated:
        by_name = {r.config_name: r for r in rows if r.model == row.model}
        for p in twins:  # no simulation of its own (QOperator): its QDQ twin has the same scales
            other = p["reference_config"] if p["config"] == row.config_name else p["config"]
            if p["field"] == "format" and row.config_name in (p["config"], p["reference_config"]):
                sim = next((a for runtime, a in _alternates(by_name[other]).values() if runtime.exact), None)
                if sim is not None and sim.accuracy is not None:
                    out.append(_split(row, fp32_acc, sim.accuracy, f"Its QDQ twin `{other}` (same recipe and "
                                      "scales) run as exact simulated quantization"))
    return out


def _twin_sentences(row: PooledRow, twins: list[dict]) -> list[str]:
    """Single-field changes of this config that score more than LOSS_PP better, best first."""
    better = []
    for p in twins:
        if row.config_name not in (p["config"], p["reference_config"]):
            continue
        mine_is_ref = p["reference_config"] == row.config_name
        other, other_acc = ((p["config"], p["accuracy"]) if mine_is_ref
                             else (p["reference_config"], p["reference_accuracy"]))
        value = p["value"] if mine_is_ref else p["reference_value"]
        gain = _pp(other_acc, row.accuracy)
        if gain > LOSS_PP:
            better.append((gain, f"changing only {p['field']} to {value!r} (`{other}`) scores "
                                 f"{100 * other_acc:.2f}% ({gain:+.2f} pp)"))
    if not better:
        return []
    return ["Holding everything else fixed, " + "; ".join(s for _, s in sorted(better, reverse=True)) + "."]


def explain(view: View) -> list[dict]:
    """One record per quantized row losing more than LOSS_PP, or whose alternate runtime does: the evidence, in
    sentences."""
    rows = view.rows
    fp32 = fp32_rows(rows)
    twins = pairs(view)
    out = []
    for row in rows:
        if not is_quantized(row) or row.model not in fp32:
            continue
        ref = fp32[row.model]
        delta = _pp(row.accuracy, ref.accuracy)
        main_loses = delta < -LOSS_PP
        mine = [p for p in twins if p["model"] == row.model]  # its own model's one-field twins
        alternates = _alternate_sentences(row, ref.accuracy, main_loses, mine, rows)
        if not main_loses and not alternates:
            continue
        cpu = (row.environment or {}).get("cpu", {})
        ci = row.delta_pp_ci
        interval = f", {level_text()} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
        seeds = f", mean of {len(row.seeds)} calibration seeds" if len(row.seeds) > 1 else ""
        sentences = [f"`{row.config_name}` on {row.model} scores {100 * row.accuracy:.2f}% "
                     f"({delta:+.2f} pp{interval} vs FP32 {100 * ref.accuracy:.2f}%{seeds}) in "
                     f"{row.runtime or '?'}."]
        sentences += alternates
        for warning in row.warnings or []:
            where = f" ({cpu['model']}, VNNI: {'yes' if cpu.get('vnni') else 'no'})" if cpu else ""
            sentences.append(f"The sweep warned{where}: {warning}.")
        checks = row.checks or {}
        if checks.get("zero_point_exact_zero") is False:
            sentences.append(f"Zero does not map exactly to a zero point in {checks.get('zero_point_failures')}.")
        if main_loses:
            sentences += _twin_sentences(row, mine)
            losers = losers_text(confusion_comparison(row, ref, per_class(view, row)))
            sentences.append(f"Classes losing most: {losers}.")
        out.append({"model": row.model, "config": row.config_name, "delta_pp": round(delta, 4),
                    "loses": main_loses, "sentences": sentences})
    return sorted(out, key=lambda e: (e["model"], e["delta_pp"]))
