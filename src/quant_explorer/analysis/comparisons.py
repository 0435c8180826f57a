"""Scheme comparisons: pairs of rows whose configs differ in exactly one field, everything else held fixed.

Pairs are derived from the config records, not from names: two rows of the same model pair up when their
config dicts differ in one field only. The field's reference value (uint8, per-tensor, minmax, QDQ, no
reduce_range...) is the left side; the delta is variant minus reference, paired on the same test images and
the same calibration seeds (`view.delta`), with its interval; a pair "differs" only where its p-value
survives the correction over every pair of the view (`stats.CORRECTION`): with ~50 pairs, some would cross an
uncorrected 5% line by chance.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..backends import BACKENDS
from ..row import Row
from ..stats import CORRECTION_NAME, adjust, level_text
from . import fp32_rows, is_quantized
from .view import PooledRow, View, delta, per_class

IDENTITY_FIELDS = ("name", "description", "default")  # differ between any two configs; not a scheme choice
# field -> (what the comparison is about, its reference value)
FIELDS = {
    "activation_dtype": ("int8 vs uint8 activations", "uint8"),
    "symmetric_activations": ("symmetric vs asymmetric activations", False),
    "granularity": ("per-tensor vs per-channel weights", "per_tensor"),
    "calibration": ("calibration method / activation observer", "minmax"),
    "format": ("QDQ vs QOperator", "qdq"),
    "reduce_range": ("with vs without reduce_range (7-bit)", False),
    "backend": ("same recipe, another backend", None),  # the reference: the backend registered first
}
VALUE_NAMES = {"symmetric_activations": {False: "asymmetric", True: "symmetric"},
               "reduce_range": {False: "8-bit", True: "reduce_range"}}


def verdict(delta_pp: float, detected: bool | None) -> str:
    if detected is None:
        return "no interval (no per-image predictions stored)"
    if not detected:
        return "no detectable difference"
    return "variant better" if delta_pp > 0 else "variant worse"


def _scheme(row: PooledRow, without: str) -> tuple:
    return tuple(sorted((k, v) for k, v in row.config.items() if k not in IDENTITY_FIELDS and k != without))


def _reference_value(field: str, reference, values: set):
    """The field's reference value where present; backends in registry order; else the first value."""
    if field == "backend":
        order = list(BACKENDS)
        return min(values, key=lambda v: (order.index(v) if v in order else len(order), v))
    return reference if reference in values else sorted(values, key=str)[0]


def pairs(view: View | list[PooledRow]) -> list[dict]:
    """Every (reference, variant) pair of quantized rows differing in exactly one config field."""
    rows = view.rows if isinstance(view, View) else view
    out = []
    quantized = [r for r in rows if is_quantized(r)]
    for field, (_, reference) in FIELDS.items():
        groups: dict[tuple, list[PooledRow]] = defaultdict(list)
        for row in quantized:
            groups[(row.model, _scheme(row, field))].append(row)
        for members in groups.values():
            values = {r.config[field] for r in members}
            if len(values) < 2:
                continue
            ref_value = _reference_value(field, reference, values)
            ref = next(r for r in members if r.config[field] == ref_value)
            for row in members:
                if row is ref:
                    continue
                out.append({"field": field, "model": row.model, "backend": row.config["backend"],
                            "reference_value": ref_value, "value": row.config[field],
                            "reference_config": ref.config_name, "config": row.config_name,
                            "reference_accuracy": ref.accuracy, "accuracy": row.accuracy,
                            "delta_pp": round(100 * (row.accuracy - ref.accuracy), 4),
                            "n_images": row.n_images})
            if isinstance(view, View):
                for p in out[-(len(members) - 1):]:
                    d = delta(view, p["model"], p["config"], p["reference_config"])
                    p.update({"delta_pp": d["mean_pp"], "ci_pp": d["ci_pp"], "p": d["p"]} if d else {"ci_pp": None})
    if isinstance(view, View):
        tested = [p for p in out if p["ci_pp"] is not None]
        for p, (reject, adjusted) in zip(tested, adjust([p["p"] for p in tested])):
            p.update({"p_adjusted": adjusted, "detected": reject})
        for p in out:
            p["verdict"] = verdict(p["delta_pp"], p.get("detected"))
    return out


def comparisons(view: View) -> list[dict]:
    """Pairs grouped into one small table per (field, backend), with the mean delta and how many pairs differ."""
    tables: dict[tuple, list[dict]] = defaultdict(list)
    for p in pairs(view):
        backend = "any" if p["field"] == "backend" else p["backend"]
        names = VALUE_NAMES.get(p["field"], {})
        tables[(p["field"], backend, names.get(p["reference_value"], str(p["reference_value"])),
                names.get(p["value"], str(p["value"])))].append(p)
    out = []
    for (field, backend, ref_value, value), members in tables.items():
        deltas = np.array([p["delta_pp"] for p in members])
        better = sum(p["verdict"] == "variant better" for p in members)
        worse = sum(p["verdict"] == "variant worse" for p in members)
        said = (f"{better} of {len(members)} pairs detectably better, {worse} worse" if better or worse
                else f"no detectable difference in any of {len(members)} pair{'s' if len(members) > 1 else ''}")
        said += f" ({CORRECTION_NAME}-corrected over all pairs)"
        out.append({"field": field, "title": FIELDS[field][0], "backend": backend, "reference_value": ref_value,
                    "value": value, "pairs": members, "n_pairs": len(members),
                    "mean_delta_pp": round(float(deltas.mean()), 4), "min_delta_pp": float(deltas.min()),
                    "max_delta_pp": float(deltas.max()), "verdict": said, "correction": CORRECTION_NAME})
    return out


def confusion_comparison(row: Row, fp32: Row, classes_stats: dict[str, dict] | None = None, top: int = 3) -> dict:
    """FP32 and quantized confusion matrices (means over seeds), their difference, each class's delta with its
    interval, and the classes that lose detectably (`view.per_class`: corrected over the classes), most first,
    with what they become."""
    classes = list(row.per_class_accuracy)
    base, quant = np.array(fp32.confusion_matrix, float), np.array(row.confusion_matrix, float)
    diff = quant - base
    stats = classes_stats or {}
    per_class = {c: stats[c]["delta_pp"] if c in stats else
                 round(100 * (row.per_class_accuracy[c] - fp32.per_class_accuracy[c]), 4) for c in classes}
    losing = [c for c in classes if stats.get(c, {}).get("losing")]
    losers = []
    for c in sorted(losing, key=lambda c: per_class[c])[:top]:
        i = classes.index(c)
        off = diff[i].copy()
        off[i] = -np.inf
        j = int(off.argmax())
        losers.append({"class": c, "delta_pp": per_class[c], "ci_pp": stats[c]["ci_pp"],
                       "lost_images": round(float(-diff[i, i]), 1), "of_images": int(round(base[i].sum())),
                       "mostly_to": classes[j] if off[j] > 0 else None,
                       "mostly_to_images": round(float(max(off[j], 0)), 1)})
    return {"model": row.model, "config": row.config_name, "classes": classes, "baseline": base.tolist(),
            "quantized": quant.tolist(), "difference": diff.round(2).tolist(), "per_class_delta_pp": per_class,
            "per_class_ci_pp": {c: stats[c]["ci_pp"] for c in stats}, "most_lost": losers,
            "intervals": bool(stats), "correction": f"{CORRECTION_NAME} over {len(stats)} classes"}


def losers_text(comparison: dict) -> str:
    """The classes that lose detectably, in words: 'cat −5.0 pp, 95% [−8.1, −1.9] (5.0 of 100 images, mostly now
    dog)', and the correction that made them so."""
    parts = []
    for c in comparison["most_lost"]:
        to = f", mostly now called {c['mostly_to']} (+{c['mostly_to_images']:g})" if c["mostly_to"] else ""
        low, high = c["ci_pp"]
        parts.append(f"{c['class']} {c['delta_pp']:+.1f} pp, {level_text()} [{low:+.1f}, {high:+.1f}] "
                     f"({c['lost_images']:g} of {c['of_images']} images{to})")
    if not comparison.get("intervals"):
        return "no per-class intervals (no per-image predictions)"
    return ("; ".join(parts) if parts else "no class loses detectably") + f" ({comparison['correction']})"


def all_confusions(view: View) -> list[dict]:
    fp32 = fp32_rows(view.rows)
    return [confusion_comparison(r, fp32[r.model], per_class(view, r)) for r in view.rows
            if is_quantized(r) and r.model in fp32 and r.confusion_matrix is not None]
