"""Configs calibrated on one draw (the first answer of `make run`, `--seeds 1`, `summary --seeds 0`): their
intervals take the model's calibration-draw variance pooled over its other stored draws, and say so; with no
other draw stored they are marked "images only" wherever they are shown (summary, summary --json, pareto.md,
the report's answer, the API's rows)."""

from __future__ import annotations

import json

from quant_explorer.analysis.records import summary_records
from quant_explorer.analysis.summary import load_view
from quant_explorer.paths import results_file
from quant_explorer.report.answer import answers
from quant_explorer.report.markdown import markdown
from quant_explorer.results import Results

from .conftest import run_main
from .test_summary import HERE, entry, preds, results

QDQ, QOP = "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"


def rows(qop_seeds: int) -> list:
    """FP32, QDQ on seed 0 only, and QOP on `qop_seeds` seeds whose deltas spread by 3-4 pp per draw."""
    out = [entry("m", "fp32_baseline", preds(20), None, HERE, size=400),
           entry("m", QDQ, preds(26, 3), 0, HERE, size=120)]
    out += [entry("m", QOP, preds(10 + 15 * seed, 50 * seed), seed, HERE, size=90) for seed in range(qop_seeds)]
    return out


def test_one_draw_and_no_other_stored_draw_is_marked_images_only_wherever_shown(capfd):
    file = results(*rows(1))
    view = load_view(Results.of(file), objective="size")
    qdq = next(r for r in view.rows if r.config_name == QDQ)
    assert qdq.delta_stats["seed_part"] == "none"
    assert any("2 configs calibrated on one draw, and no other stored draw of the model" in n for n in view.notes)
    records = {r.config: r for r in summary_records(view)}
    assert records[QDQ].delta_pp_seed_part == "none" and records["fp32_baseline"].delta_pp_seed_part is None
    text = markdown(view)
    assert f"| `{QDQ}` | onnxruntime | " in text and "] images only |" in text
    assert "their intervals cover the test images only" in text
    assert answers(view)["m"].delta_seed_part == "none"
    # `summary` prints the mark beside the interval
    results_file().parent.mkdir(parents=True)
    results_file().write_text(json.dumps(file))
    shown = run_main(["summary", "--objective", "size"], {}, capfd)
    assert shown.returncode == 0, shown.stderr
    assert "images only" in shown.stdout


def test_one_draw_borrows_the_models_pooled_draw_variance_from_its_other_stored_draws():
    view = load_view(Results.of(results(*rows(3))), objective="size")
    qdq, qop = (next(r for r in view.rows if r.config_name == name) for name in (QDQ, QOP))
    assert qdq.delta_stats["seed_part"] == "pooled" and qdq.delta_stats["seed_se_pp"] > 1.0  # QOP's 3-4 pp spread
    assert qop.delta_stats["seed_part"] == "own"
    assert any("1 config calibrated on one draw: its intervals take the calibration-draw variance pooled" in n
               for n in view.notes)
    # summary --seeds 0: every config on one draw, the variance still pooled over every stored draw
    first = load_view(Results.of(results(*rows(3))), seeds={0}, objective="size")
    assert {r.config_name: (r.delta_stats or {}).get("seed_part") for r in first.rows} == {
        "fp32_baseline": None, QDQ: "pooled", QOP: "pooled"}
