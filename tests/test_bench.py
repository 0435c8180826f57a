"""bench runs and records well-formed numbers: a tiny ResNet8, tiny data, a few runs; no timing assertions."""

import functools
import json
import math

import pytest
from typer.testing import CliRunner

from quant_explorer import bench
from quant_explorer.backends import get_config
from quant_explorer.bench import BenchSettings, bench_and_record
from quant_explorer.data import EvalData
from quant_explorer.models import load_model
from quant_explorer.results import load_results

CONFIGS = ["ort_u8_minmax_qoperator_per_channel_rr", "static_int8_per_tensor"]
TINY = dict(runs=4, batch_runs=1, rounds=2, warmup=1, batch=8, compile=False)


def positive(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_bench_records_numbers_in_sweep_rows_and_bench_json(tiny_env):
    model = load_model("resnet8", tiny_env / "resnet8.pt")
    results, bench_json = tiny_env / "artifacts/results/full_results.json", tiny_env / "artifacts/results/bench.json"
    settings = BenchSettings(threads=1, time_eval=True, **TINY)
    doc = bench_and_record(model, [get_config(n) for n in CONFIGS], EvalData.load(tiny_env / "data"), 20, 0,
                           settings, results, bench_json).to_dict()
    assert json.loads(bench_json.read_text()) == doc
    assert doc["environment"]["threads"] == 1 and doc["environment"]["versions"]["onnxruntime"]
    assert doc["environment"]["allocator"].startswith("glibc, freed memory kept")  # Linux CI runs glibc
    assert doc["settings"]["runs"] == 4
    entries = load_results(results)["entries"]
    keys = list(doc["entries"])
    assert [k.rsplit("|", 1)[0] for k in keys] == ["resnet8|fp32_baseline",
                                                   *(f"resnet8|{c}|n=20|seed=0" for c in CONFIGS)]
    for key in keys:
        row = entries[key]["bench"]  # attached to the sweep's own row
        assert "accuracy" in entries[key] and row["threads"] == 1 and row["size_bytes"] > 0
        for field in ("latency_ms_b1_median", "latency_ms_b1_p90", "throughput_b256", "speedup_vs_fp32_b256"):
            assert positive(row[field]), (key, field, row)
        assert row["latency_ms_b1_p90"] >= row["latency_ms_b1_median"]
        assert 0 <= row["accuracy"] <= 1
    fp32 = entries[keys[0]]["bench"]
    assert fp32["runtime"] == "onnxruntime" and fp32["speedup_vs_fp32_b256"] == 1.0
    assert {"onnxruntime", "torch"} <= set(fp32["runtimes"])  # every runtime FP32 is timed in, one per backend's
    assert not {"inductor", "aotinductor"} & set(fp32["runtimes"])  # compile=False
    assert 0 < fp32["runtimes"]["onnxruntime"]["eval_fraction_of_b256"]
    ort = entries[keys[1]]["bench"]
    assert ort["runtimes"]["onnxruntime"]["baseline"] == "fp32_baseline/onnxruntime"
    assert 0 < ort["size_ratio_vs_fp32"] < 1
    eager = entries[keys[2]]["bench"]
    assert eager["runtime"] == "x86" and eager["reference_runtime"] == "qnnpack"
    assert 0 <= eager["reference_accuracy"] <= 1
    paired, runs = eager["as_run_vs_reference"], eager["runtimes"]  # x86 kernels vs qnnpack, image by image
    assert (paired["reference_right_as_run_wrong"] - paired["reference_wrong_as_run_right"]
            == runs["qnnpack"]["correct"] - runs["x86"]["correct"])
    assert paired["delta_pp"] == pytest.approx(100 * (runs["x86"]["accuracy"] - runs["qnnpack"]["accuracy"]), abs=1e-3)


def test_bench_cli_prints_table_and_json(tiny_env, monkeypatch):
    from quant_explorer.cli import app

    monkeypatch.setattr(bench, "BenchSettings", functools.partial(BenchSettings, **{**TINY, "runs": 2}))
    args = ["bench", "--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"), "--data-dir",
            str(tiny_env / "data"), "--calibration-n", "20", "-c", CONFIGS[0], "--threads", "1", "--no-compile"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["settings"]["threads"] == 1 and doc["settings"]["compile"] is False and len(doc["entries"]) == 2
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "1 threads" in result.stdout, result.output
