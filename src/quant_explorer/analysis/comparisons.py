"""Scheme comparisons: pairs of rows whose configs differ in exactly one field, everything else held fixed.

Pairs are derived from the config records, not from names: two rows of the same model and calibration
sample pair up when their config dicts differ in one field only. The field's reference value (uint8,
per-tensor, minmax, QDQ, no reduce_range...) is the left side; the delta is variant minus reference.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import fp32_rows, is_quantized

IDENTITY_FIELDS = ("name", "description", "default")  # differ between any two configs; not a scheme choice
# field -> (what the comparison is about, its reference value)
FIELDS = {
    "activation_dtype": ("int8 vs uint8 activations", "uint8"),
    "symmetric_activations": ("symmetric vs asymmetric activations", False),
    "granularity": ("per-tensor vs per-channel weights", "per_tensor"),
    "calibration": ("calibration method / activation observer", "minmax"),
    "format": ("QDQ vs QOperator", "qdq"),
    "reduce_range": ("with vs without reduce_range (7-bit)", False),
    "backend": ("same recipe, another backend", "pt2e"),
}
VALUE_NAMES = {"symmetric_activations": {False: "asymmetric", True: "symmetric"},
               "reduce_range": {False: "8-bit", True: "reduce_range"}}


def _calibration(row: dict):
    cal = row.get("calibration") or {}
    return cal.get("calibration_n"), cal.get("calibration_seed")


def _scheme(row: dict, without: str) -> tuple:
    return tuple(sorted((k, v) for k, v in row["config"].items() if k not in IDENTITY_FIELDS and k != without))


def pairs(rows: list[dict]) -> list[dict]:
    """Every (reference, variant) pair of quantized rows differing in exactly one config field."""
    out = []
    quantized = [r for r in rows if is_quantized(r)]
    for field, (_, reference) in FIELDS.items():
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for row in quantized:
            groups[(row["model"], _calibration(row), _scheme(row, field))].append(row)
        for members in groups.values():
            values = {r["config"][field] for r in members}
            if len(values) < 2:
                continue
            ref_value = reference if reference in values else sorted(values, key=str)[0]
            ref = next(r for r in members if r["config"][field] == ref_value)
            for row in members:
                if row is ref:
                    continue
                out.append({"field": field, "model": row["model"], "backend": row["config"]["backend"],
                            "reference_value": ref_value, "value": row["config"][field],
                            "reference_config": ref["config_name"], "config": row["config_name"],
                            "reference_accuracy": ref["accuracy"], "accuracy": row["accuracy"],
                            "delta_pp": round(100 * (row["accuracy"] - ref["accuracy"]), 4),
                            "n_images": row["n_images"]})
    return out


def comparisons(rows: list[dict]) -> list[dict]:
    """Pairs grouped into one small table per (field, backend), with the mean, min and max delta."""
    tables: dict[tuple, list[dict]] = defaultdict(list)
    for p in pairs(rows):
        backend = "any" if p["field"] == "backend" else p["backend"]
        names = VALUE_NAMES.get(p["field"], {})
        tables[(p["field"], backend, names.get(p["reference_value"], str(p["reference_value"])),
                names.get(p["value"], str(p["value"])))].append(p)
    out = []
    for (field, backend, ref_value, value), members in tables.items():
        deltas = np.array([p["delta_pp"] for p in members])
        out.append({"field": field, "title": FIELDS[field][0], "backend": backend, "reference_value": ref_value,
                    "value": value, "pairs": members, "n_pairs": len(members),
                    "mean_delta_pp": round(float(deltas.mean()), 4), "min_delta_pp": float(deltas.min()),
                    "max_delta_pp": float(deltas.max())})
    return out


def confusion_comparison(row: dict, fp32: dict, top: int = 3) -> dict:
    """FP32 and quantized confusion matrices, their difference, and the classes that lose most (and to what)."""
    classes = list(row["per_class_accuracy"])
    base, quant = np.array(fp32["confusion_matrix"]), np.array(row["confusion_matrix"])
    diff = quant - base
    per_class = {c: round(100 * (row["per_class_accuracy"][c] - fp32["per_class_accuracy"][c]), 4) for c in classes}
    losers = []
    for c in sorted(classes, key=lambda c: per_class[c])[:top]:
        if per_class[c] >= 0:
            break
        i = classes.index(c)
        off = diff[i].copy()
        off[i] = np.iinfo(off.dtype).min
        j = int(off.argmax())
        losers.append({"class": c, "delta_pp": per_class[c], "lost_images": int(-diff[i, i]),
                       "of_images": int(base[i].sum()), "mostly_to": classes[j] if off[j] > 0 else None,
                       "mostly_to_images": int(max(off[j], 0))})
    return {"model": row["model"], "config": row["config_name"], "classes": classes, "fp32": base.tolist(),
            "quantized": quant.tolist(), "difference": diff.tolist(), "per_class_delta_pp": per_class,
            "most_lost": losers}


def losers_text(comparison: dict) -> str:
    """The classes that lose most, in words: 'cat −5.0 pp (5 of 100 images, mostly now called dog)'."""
    parts = []
    for c in comparison["most_lost"]:
        to = f", mostly now called {c['mostly_to']} (+{c['mostly_to_images']})" if c["mostly_to"] else ""
        parts.append(f"{c['class']} {c['delta_pp']:+.1f} pp ({c['lost_images']} of {c['of_images']} images{to})")
    return "; ".join(parts) if parts else "no class loses"


def all_confusions(rows: list[dict]) -> list[dict]:
    fp32 = fp32_rows(rows)
    return [confusion_comparison(r, fp32[r["model"]]) for r in rows
            if is_quantized(r) and r["model"] in fp32 and "confusion_matrix" in r]
