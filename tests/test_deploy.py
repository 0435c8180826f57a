"""The CPU-class matrix and the pick that holds on the classes users deploy to: results files written by hand (the
predictions chosen so the answer is known), one view per class, as test_summary.py does for one."""

from __future__ import annotations

import pytest

from quant_explorer.analysis.classes import OLDER, cell_text, class_views, matrix
from quant_explorer.analysis.deploy import apply, classes_text, deployment
from quant_explorer.analysis.summary import load_view, superseded_out
from quant_explorer.errors import UserError
from quant_explorer.results import Results, encode_classes
from quant_explorer.row import Row

from .test_summary import HERE, bench, entry, preds, results

U8, U8_QOP = "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"
QEMU = {"emulated": True, "emulation": "qemu Haswell-v4"}
LATER = "2026-12-03T00:00:00+00:00"


def here() -> list:
    """This machine: both u8 configs in the set, the QDQ one faster, so picked."""
    out = [entry("m", "fp32_baseline", preds(20), None, HERE, size=400, **bench(2000.0, 0.6))]
    for seed in range(3):
        out.append(entry("m", U8, preds(22 + seed, 100 * seed), seed, HERE, size=120,
                         **(bench(4000.0, 0.2) if seed == 0 else {})))
        out.append(entry("m", U8_QOP, preds(21 + seed, 50 * seed), seed, HERE, size=90,
                         **(bench(3000.0, 0.5) if seed == 0 else {})))
    return out


def avx2(qdq_lost: int = 100, older: bool = False) -> list:
    """An emulated avx2 class on which the QDQ config loses `qdq_lost` images a seed (out of the set there), or an
    older quant-explorer's native avx2 rows (no recipe version, other versions, the eager engine's old runtime)."""
    extra = {"recipe": None, "versions": {"onnxruntime": "1.32.0"}} if older else QEMU
    out = [entry("m", "fp32_baseline", preds(20), None, "avx2", identity_extra=extra, created=LATER)]
    for seed in range(3):
        out.append(entry("m", U8, preds(qdq_lost + seed, 100 * seed), seed, "avx2", identity_extra=extra,
                         created=LATER))
        out.append(entry("m", U8_QOP, preds(21 + seed, 50 * seed), seed, "avx2", identity_extra=extra, created=LATER,
                         **({"runtime": "torch"} if older else {})))
    if older:
        for _, row in out:
            del row["identity"]["recipe"]
    return out


def test_the_pick_that_loses_a_deployment_class_is_not_picked_and_the_answer_says_so_with_numbers():
    document = results(*here(), *avx2())
    view = load_view(Results.of(document))
    assert view.choices["m"].pick == U8  # on this machine alone
    table = deployment(view, Results.of(document))
    choice = view.choices["m"]
    assert choice.pick == U8_QOP and next(r for r in view.rows if r.pick).config_name == U8_QOP
    assert f"{U8}: -0.75 pp here, -20.25 pp on avx2 (emulated): not picked (out of the confidence set there)" \
        in choice.rule
    assert "1 of the 2 members are in the set on every deployment class (avx2 (emulated))" in choice.rule
    cell = choice.deploy.cells["avx2 (emulated)"]
    assert (cell["delta_pp"], cell["in_set"], cell["method"]) == (pytest.approx(-0.5), True, "qemu Haswell-v4")
    assert classes_text(choice).startswith(f"{U8_QOP} on each deployment class: avx2 (emulated) -0.50 pp [")
    assert table["m"]["configs"][U8]["depends_on_class"]


def test_deploying_to_this_class_alone_keeps_this_machines_pick_and_an_unknown_class_is_refused():
    document = results(*here(), *avx2())
    view = load_view(Results.of(document))
    deployment(view, Results.of(document), [HERE])
    assert view.choices["m"].pick == U8 and view.choices["m"].deploy is None
    with pytest.raises(UserError, match=r"--deploy sse4: no results for that class here \(the results hold avx2, "):
        deployment(load_view(Results.of(document)), Results.of(document), ["sse4"])


def test_when_no_member_holds_on_every_class_the_one_that_loses_least_is_picked_and_said():
    document = results(*here(), *avx2())
    view = load_view(Results.of(document))
    table = matrix(class_views(Results.of(document), view.dataset))
    table["m"]["configs"][U8_QOP]["avx2 (emulated)"]["in_set"] = False  # both out of avx2's set
    apply(view, table)
    choice = view.choices["m"]
    assert choice.pick == U8_QOP  # worst Δ -0.50 pp against the QDQ one's -20.25
    assert "no member is in the set on every deployment class (avx2 (emulated)): " \
           f"{U8_QOP} loses least (worst Δ -0.50 pp)" in choice.rule


def test_an_older_quant_explorers_native_rows_are_a_column_of_their_own_marked_where_not_todays_runtime():
    document = results(*here(), *avx2(older=True), *avx2(qdq_lost=23))
    table = matrix(class_views(Results.of(document), "ds1"))["m"]
    assert table["classes"] == [f"avx2 ({OLDER})", "avx2 (emulated)", HERE]
    older = table["configs"][U8_QOP][f"avx2 ({OLDER})"]
    assert (older["kind"], older["note"]) == (OLDER, "in torch, not as shipped")
    assert cell_text(older).endswith("(in torch, not as shipped)")
    assert cell_text(table["configs"][U8]["avx2 (emulated)"]).endswith("(qemu Haswell-v4)")
    assert table["configs"][U8][f"avx2 ({OLDER})"]["note"] is None  # same recipe, same runtime: a native avx2 number


def test_a_row_not_measured_before_and_measured_now_is_no_longer_listed_as_unscored():
    old = Row(model="m", config_name=U8, calibration={"calibration_seed": 0}, created="2026-12-01",
              not_applicable="not measured on avx2")
    new = Row(model="m", config_name=U8, calibration={"calibration_seed": 0}, created="2026-12-03", accuracy=0.9)
    other = Row(model="m", config_name=U8, calibration={"calibration_seed": 1}, created="2026-12-01", error="boom")
    assert superseded_out([old, other], {"k": new}) == [other]
    assert superseded_out([old], {}) == [old]


def test_the_comparison_tool_counts_equal_predictions_of_native_and_emulated_rows_of_one_recipe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "emulated_vs_native.py"
    spec = importlib.util.spec_from_file_location("emulated_vs_native", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    native = dict(avx2(qdq_lost=30, older=True))
    emulated = dict(avx2(qdq_lost=30))
    for (_, a), (_, b) in zip(native.items(), emulated.items()):  # one draw each: same calibration sample
        a["calibration"] = b["calibration"] = {**(a.get("calibration") or {}), "calibration_images_sha256": "s"}
    emulated[next(k for k in emulated if U8 in k and "seed=2" in k)]["predictions"] = encode_classes(preds(60))
    # the older native rows of U8_QOP scored another runtime ("torch"): compared by their bench's count, where benched
    qop = {k: v for k, v in emulated.items() if U8_QOP in k}
    native[next(k for k in native if U8_QOP in k and "seed=0" in k)]["bench"] = {
        "runtimes": {"onnxruntime": {"correct": next(v["correct"] for k, v in qop.items() if "seed=0" in k)}}}
    table = {t["config"]: t for t in tool.compare({k: Row.from_dict(v) for k, v in native.items()},
                                                  {k: Row.from_dict(v) for k, v in emulated.items()}, "avx2")}
    assert (table[U8]["seeds"], table[U8]["images"]) == (3, 1200) and table[U8]["equal"] < 1200
    assert table[U8]["same_recipe"] and table[U8]["method"] == "qemu Haswell-v4"
    assert (table[U8_QOP]["seeds"], table[U8_QOP]["images"]) == (1, 0)  # seed 0's bench only, no per-image claim
    assert table[U8_QOP]["native_correct"] == table[U8_QOP]["emulated_correct"]


def test_make_run_emulates_each_models_confidence_set_members_identical_recipes_included():
    import json
    from types import SimpleNamespace

    from quant_explorer.backends import get_config
    from quant_explorer.paths import results_file
    from quant_explorer.pipeline import Job, _members

    from .test_summary import model_rows

    results_file().parent.mkdir(parents=True, exist_ok=True)
    results_file().write_text(json.dumps(results(*model_rows())))
    configs = [get_config(n) for n in (U8, U8_QOP, "ort_s8_minmax_qdq_per_channel", "pt2e_u8_per_channel_minmax")]
    job = Job([SimpleNamespace(name="m")], configs, SimpleNamespace(test=SimpleNamespace(fingerprint="ds1")), [0])
    assert sorted(_members(job)["m"]) == [U8, U8_QOP]  # s8 is out of the set here: not emulated by `make run`
