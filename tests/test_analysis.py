"""Analyses: pareto marking, one-field pairs, explanations, confusion comparison, calibration size, per-layer runs.

Hand-made rows pin the arithmetic; a real results file (a random ResNet8 swept over a few ORT configs on the
tiny image folder) pins the structure the sweep actually writes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from torch import nn
from typer.testing import CliRunner

from quant_explorer.analysis import current_studies
from quant_explorer.analysis.comparisons import comparisons, confusion_comparison, pairs
from quant_explorer.analysis.explain import explain
from quant_explorer.analysis.pareto import pareto_front, pareto_table
from quant_explorer.analysis.summary import load_view
from quant_explorer.analysis.view import PooledRow, View
from quant_explorer.backends import get_config
from quant_explorer.bench_entry import RuntimeSpeed
from quant_explorer.data import CIFAR10_CLASSES
from quant_explorer.errors import UserError
from quant_explorer.keys import make_calibration
from quant_explorer.results import Results, load_results
from quant_explorer.studies import (
    STUDIES,
    CalibrationSizeStudy,
    LayerSensitivityStudy,
    StudyEntry,
    calibration_size,
    layer_sensitivity,
    run_studies,
)

from .conftest import TINY_CONFIGS

# ---- hand-made rows ------------------------------------------------------------------------------------------

def row(config: str, accuracy: float, size: int, model: str = "m", latency: float | None = None) -> PooledRow:
    backend = "fp32" if config == "fp32_baseline" else "ort"
    return PooledRow(model=model, config_name=config, config={"backend": backend}, accuracy=accuracy, size_bytes=size,
                     n_images=100, speed=RuntimeSpeed(latency_ms_b1_median=latency))


def test_pareto_front_marks_exactly_the_undominated_points():
    points = [(0.90, 100), (0.85, 50), (0.80, 60), (0.90, 120), (0.95, 300), (0.85, 50)]
    assert pareto_front(points) == [True, True, False, False, True, True]


def test_pareto_table_marks_fronts_per_model():
    rows = [row("fp32_baseline", 0.90, 400, latency=2.0), row("a", 0.89, 100, latency=1.0),
            row("b", 0.85, 90, latency=3.0), row("c", 0.84, 95, latency=0.5), row("d", 0.80, 150, latency=4.0),
            row("fp32_baseline", 0.70, 400, model="other"), row("e", 0.69, 100, model="other")]
    table = {(t.row.model, t.row.config_name): t for t in pareto_table(rows)}
    assert {k[1] for k, t in table.items() if t.on_size and k[0] == "m"} == {"fp32_baseline", "a", "b"}
    assert {k[1] for k, t in table.items() if t.on_latency and k[0] == "m"} == {"fp32_baseline", "a", "c"}
    assert table[("other", "e")].on_latency is None  # no latency measured for that model


def cm_row(name: str, cm: np.ndarray, **extra) -> PooledRow:
    per_class = cm.diagonal() / cm.sum(axis=1)
    accuracy = cm.trace() / cm.sum()
    return PooledRow(model="m", config_name=name, accuracy=accuracy, first_seed_accuracy=accuracy,
                     n_images=int(cm.sum()), confusion_matrix=cm.tolist(),
                     per_class_accuracy=dict(zip(CIFAR10_CLASSES, per_class.tolist())), size_bytes=100, **extra)


def test_confusion_comparison_names_the_losing_class_and_where_it_went():
    fp32 = np.eye(10, dtype=int) * 10
    quant = fp32.copy()
    quant[3, 3], quant[3, 5], quant[3, 2] = 5, 4, 1  # cat: 4 more called dog, 1 more bird
    stats = {"cat": {"delta_pp": -50.0, "ci_pp": [-80.0, -20.0], "losing": True},
             "dog": {"delta_pp": -1.0, "ci_pp": [-3.0, 1.0], "losing": False}}
    c = confusion_comparison(cm_row("q", quant), cm_row("fp32_baseline", fp32), stats)
    assert c["difference"][3][5] == 4 and np.array(c["difference"]).sum() == 0
    assert c["most_lost"] == [{"class": "cat", "delta_pp": -50.0, "ci_pp": [-80.0, -20.0], "lost_images": 5,
                               "of_images": 10, "mostly_to": "dog", "mostly_to_images": 4}]  # dog: within noise


def test_explain_blames_the_kernels_when_exact_simulation_keeps_the_accuracy():
    fp32 = np.eye(10, dtype=int) * 10
    lossy = fp32.copy()
    lossy[3, 3], lossy[3, 5], lossy[5, 5], lossy[5, 3] = 2, 8, 6, 4
    rows = [cm_row("fp32_baseline", fp32, config=get_config("fp32_baseline").to_dict()),
            cm_row("u8", lossy, runtime="onnxruntime", config=get_config("ort_u8_minmax_qdq_per_channel").to_dict(),
                   alternates={"onnx2torch": {"accuracy": 0.99}},
                   warnings=["uint8 activations x int8 weights ... can saturate"],
                   environment={"cpu": {"model": "AMD EPYC", "vnni": False}}),
            cm_row("u8_rr", fp32, config=get_config("ort_u8_minmax_qdq_per_channel_rr").to_dict())]
    rows += [replace(r, model="other") for r in (rows[0], rows[2])]  # another model's twin must not be cited
    [e] = explain(View("env", "ds", "ds", 100, rows, []))
    text = " ".join(e["sentences"])
    assert e["config"] == "u8" and e["delta_pp"] == pytest.approx(-12.0)
    assert ("exact simulated quantization (the same QDQ model converted to PyTorch) it scores 99.00%: of the -12.00 pp "
            "(first seed), "
            "the recipe accounts for -1.00 pp and onnxruntime's int8 kernels for -11.00 pp, so the loss is mostly in "
            "onnxruntime's int8 kernels") in text
    assert "VNNI: no" in text and "can saturate" in text
    assert "changing only reduce_range to True (`u8_rr`)" in text and text.count("changing only") == 1
    assert "Classes losing most: no per-class intervals" in text  # hand-made rows carry no predictions


# ---- the real results file -----------------------------------------------------------------------------------

def test_pairs_from_a_real_sweep_differ_in_exactly_one_field(tiny_run):
    view = load_view(Results.load(tiny_run["results"]))
    rows = view.rows
    assert not view.problems and len(rows) == len(TINY_CONFIGS)
    assert all(r.seeds == [0, 1] for r in rows if r.config_name != "fp32_baseline")
    by_name = {r.config_name: r for r in rows}
    found = pairs(view)
    assert {(p["field"], p["reference_config"], p["config"]) for p in found} == {
        ("granularity", "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_channel"),
        ("reduce_range", "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_tensor_rr"),
        ("activation_dtype", "ort_u8_minmax_qdq_per_tensor", "ort_s8asym_minmax_qdq_per_tensor"),
        ("format", "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qoperator_per_tensor")}
    for p in found:
        a, b = by_name[p["reference_config"]].config, by_name[p["config"]].config
        assert [k for k in a if a[k] != b[k] and k not in ("name", "description", "default")] == [p["field"]]
        assert p["delta_pp"] == pytest.approx(100 * (by_name[p["config"]].accuracy - p["reference_accuracy"]))
        assert p["ci_pp"][0] <= p["delta_pp"] <= p["ci_pp"][1] and p["verdict"] and "p_adjusted" in p
    assert {t["field"] for t in comparisons(view)} == {"granularity", "reduce_range", "activation_dtype", "format"}


def test_compare_command_prints_the_pairs_as_json(tiny_run, monkeypatch):
    from quant_explorer.cli import app

    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tiny_run["results"].parent.parent))
    result = CliRunner().invoke(app, ["compare", "--json"])
    assert result.exit_code == 0, result.output
    assert sum(t["n_pairs"] for t in json.loads(result.stdout)) == 4


def test_parse_sizes_rejects_garbage_in_one_line():
    assert calibration_size.parse_sizes("256, 32,100,32", 1000) == [32, 100, 256]
    for bad, needle in (("32,abc", "whole numbers"), ("1e3", "whole numbers"), ("5", "at least 10"),
                        ("2000", "at most the training split's 1000"), ("", "whole numbers"), ("-20", "whole numbers")):
        with pytest.raises(UserError, match=needle):
            calibration_size.parse_sizes(bad, 1000)


def test_spread_is_sample_std_over_the_seeds():
    assert calibration_size.spread([0.8, 0.9, 1.0]) == pytest.approx({"mean": 0.9, "std": 0.1, "min": 0.8, "max": 1.0})
    assert calibration_size.spread([0.7])["std"] == 0.0


def test_calibration_size_runs_each_seed_on_its_own_sample(tiny_run):
    model, data = tiny_run["model"], tiny_run["data"]
    config = get_config("ort_u8_minmax_qdq_per_tensor")
    entry = calibration_size.run(model, config, data, [10, 20], 3)
    assert [s.n for s in entry.sizes] == [10, 20]
    for s in entry.sizes:
        assert s.seeds == [0, 1, 2] and not s.errors
        want = [make_calibration(model, data, s.n, seed).describe()["calibration_images_sha256"] for seed in range(3)]
        assert s.calibration_images_sha256 == want and len(set(want)) == 3
        assert s.mean == pytest.approx(np.mean(s.accuracy))
        assert s.std == pytest.approx(np.std(s.accuracy, ddof=1))
        assert s.min == min(s.accuracy) and s.max == max(s.accuracy)
    path = tiny_run["results"].with_name("calibration_size.json")
    calibration_size.save(path, entry)
    [(key, stored)] = load_results(path)["entries"].items()
    assert key == f"resnet8|ort_u8_minmax_qdq_per_tensor|{entry.identity_hash}"
    assert calibration_size.CalibrationSizeEntry.from_dict(stored) == entry  # read back as written
    with pytest.raises(UserError, match="uses no calibration"):
        calibration_size.run(model, get_config("dynamic_int8"), data, [10], 1)


def _quantized_weights(path: Path) -> set[str]:
    import onnx

    return {n.input[0].removesuffix("_quantized").removesuffix(".weight") for n in onnx.load(str(path)).graph.node
            if n.op_type == "DequantizeLinear" and n.input[0].endswith(".weight_quantized")}


def test_ort_node_selection_quantizes_exactly_the_chosen_layers(tiny_run, tmp_path):
    from quant_explorer.backends.ort import onnx_layers, preprocessed_onnx, quantize_onnx

    model, data = tiny_run["model"], tiny_run["data"]
    source = preprocessed_onnx(model)
    layers = onnx_layers(source)
    names = [la["layer"] for la in layers]
    assert names == [n for n, m in model.module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    config, cal = get_config("ort_u8_minmax_qdq_per_tensor"), make_calibration(model, data, 10, 0)
    target = layers[3]
    only = quantize_onnx(source, tmp_path / "only.onnx", config, cal, nodes_to_quantize=[target["node"]])
    skip = quantize_onnx(source, tmp_path / "skip.onnx", config, cal, nodes_to_exclude=[target["node"]])
    assert _quantized_weights(only) == {target["layer"]}
    assert _quantized_weights(skip) == set(names) - {target["layer"]}


@pytest.mark.parametrize("config,layers", [("ort_u8_minmax_qdq_per_tensor", ["conv", "stack2.shortcut", "fc"]),
                                           # reduce_range pads the RGB stem: SQNR compares like with like
                                           ("ort_u8_minmax_qdq_per_channel_rr", ["conv"]),
                                           ("pt2e_u8_per_tensor_minmax", ["fc"])])
def test_layer_sensitivity_costs_recoveries_and_sqnr(tiny_run, config, layers):
    model, data = tiny_run["model"], tiny_run["data"]
    entry = layer_sensitivity.run(model, get_config(config), data, make_calibration(model, data, 10, 0), layers)
    expected = layers
    assert [r.layer for r in entry.layers] == expected
    for r in entry.layers:
        assert r.cost_pp == pytest.approx(100 * (entry.fp32_accuracy - r.only_this_quantized.accuracy), abs=1e-3)
        assert r.recovery_pp == pytest.approx(100 * (r.all_but_this_quantized.accuracy - entry.quantized_accuracy),
                                              abs=1e-3)
    assert sorted(entry.ranking_by_cost) == sorted(expected)
    assert entry.ranking_by_cost == sorted(expected, key=lambda n: -next(r.cost_pp for r in entry.layers
                                                                         if r.layer == n))
    sqnr = [a["sqnr_db"] for a in entry.sqnr["activations"]]
    assert len(sqnr) >= 5 and all(np.isfinite(sqnr)) and np.median(sqnr) > 5  # 8 bits: well above noise level
    if config.startswith("ort"):
        assert all(r.weight_sqnr_db > 20 for r in entry.layers)  # int8 weights: about 6 dB per bit
    with pytest.raises(UserError, match="unknown layers"):
        layer_sensitivity.run(model, get_config(config), data, make_calibration(model, data, 20, 0), ["nope"])


def test_studies_run_once_then_skip_until_the_weights_change(tiny_run):
    from dataclasses import replace

    model, data = tiny_run["model"], tiny_run["data"]
    results_dir = tiny_run["results"].parent
    studies = [CalibrationSizeStudy("resnet8", "ort_u8_minmax_qdq_per_tensor", sizes=(10, 20), seeds=2),
               LayerSensitivityStudy("resnet8", "ort_u8_minmax_qdq_per_tensor", calibration_n=10)]
    first = list(run_studies(studies, {"resnet8": model}, data, results_dir))
    assert [skipped for _, _, skipped in first] == [False, False]
    assert [s.n for s in first[0][1].sizes] == [10, 20] and first[1][1].layers
    files = {p: p.read_bytes() for p in results_dir.glob("*.json")}
    again = list(run_studies(studies, {"resnet8": model}, data, results_dir))
    assert [skipped for _, _, skipped in again] == [True, True]
    assert {p: p.read_bytes() for p in results_dir.glob("*.json")} == files
    retrained = replace(model, weights_sha256="1" * 64)
    more_seeds = replace(studies[0], seeds=3)
    rerun = list(run_studies([more_seeds, studies[1]], {"resnet8": retrained}, data, results_dir))
    assert [skipped for _, _, skipped in rerun] == [False, False]
    assert rerun[0][1].sizes[0].seeds == [0, 1, 2] and rerun[1][1].model_weights_sha256 == "1" * 64


def test_report_studies_are_the_configs_and_models_it_explains():
    from quant_explorer.backends import CONFIGS
    from quant_explorer.models import MODELS

    assert {s.model for s in STUDIES} == {"resnet8-mlperf", "resnet8"} <= set(MODELS)
    assert all(s.config in CONFIGS and CONFIGS[s.config].is_static for s in STUDIES)
    assert len({(type(s), s.model, s.config) for s in STUDIES}) == len(STUDIES)


def test_analyze_command_refuses_a_model_without_studies(image_folder_dir):
    from quant_explorer.cli import app

    result = CliRunner().invoke(app, ["analyze", "--model", "cifar_cnn", "--data-dir", str(image_folder_dir)])
    assert isinstance(result.exception, UserError)
    assert "studies exist for resnet8, resnet8-mlperf" in str(result.exception)


def test_report_drops_studies_measured_on_other_weights_data_or_machines():
    ident = {"cpu_class": "avx2", "versions": {"torch": "1"}, "dataset": {"fingerprint": "d", "n_images": 1}}
    rows = [PooledRow(model="m", config_name="fp32_baseline", model_weights_sha256="new", identity=ident)]
    entries = {"m|a": StudyEntry(model="m", model_weights_sha256="new", identity=ident),
               "m|b": StudyEntry(model="m", model_weights_sha256="old", identity=ident),
               "m|c": StudyEntry(model="m", model_weights_sha256="new", identity={**ident, "cpu_class": "amx"}),
               "m|d": StudyEntry(model="m", model_weights_sha256="new",
                                 identity={**ident, "dataset": {"fingerprint": "e", "n_images": 1}}),
               "other|a": StudyEntry(model="other", model_weights_sha256="x", identity=ident)}
    assert list(current_studies(entries, rows)) == ["m|a"]
