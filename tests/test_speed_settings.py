"""Batch-1 speed as shipped: the bench times each runtime at every thread count it tries and records the fastest
with its run-to-run spread and the code that loads the artifact that way (the code runs); the pick calls medians
within that spread a tie and takes the more accurate; a bench of the older shape is timed again, and its rows are
still read. No timing assertions: which thread count wins is the machine's business."""

import json

import numpy as np
import pytest
import torch

from quant_explorer.analysis.summary import load_view
from quant_explorer.backends import get_config
from quant_explorer.bench import BenchSettings, bench_and_record, stored_bench
from quant_explorer.data import EvalData
from quant_explorer.models import load_model
from quant_explorer.results import Results
from tests.test_summary import model_rows, results

ORT, EAGER = "ort_u8_minmax_qoperator_per_channel_rr", "static_int8_per_tensor"
TINY = dict(runs=4, batch_runs=1, rounds=2, warmup=1, batch=8, compile=False)


@pytest.fixture(scope="module")
def benched(tiny):
    """One bench of an ORT and an eager config beside FP32, at 1 and 2 threads, shared by the module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tiny / "artifacts"))
        model = load_model("resnet8", tiny / "resnet8.pt")
        data = EvalData.load(tiny / "data")
        paths = tiny / "artifacts/results/full_results.json", tiny / "artifacts/results/bench_speed.json"
        settings = BenchSettings(threads=1, b1_threads=(1, 2), **TINY)
        document = bench_and_record(model, [get_config(ORT), get_config(EAGER)], data, 20, 0, settings, *paths)
        yield model, data, settings, paths, document.to_dict()  # as written


def test_each_runtime_is_timed_at_every_thread_count_and_the_fastest_is_recorded_with_its_spread(benched):
    *_, document = benched
    for entry in document["entries"].values():
        for runtime, r in entry["runtimes"].items():
            if "latency_ms_b1_median" not in r:
                continue  # a float reference, scored not timed
            tried = r["latency_ms_b1_by_threads"]
            assert set(tried) == {"1", "2"}, (runtime, r)
            fastest = min(tried, key=lambda n: (tried[n]["median"], int(n)))
            assert r["latency_b1_threads"] == int(fastest) and r["latency_ms_b1_median"] == tried[fastest]["median"]
            assert r["latency_ms_b1_spread"] >= 0 and r["throughput_threads"] == 1
        assert entry["load"]["threads"] == entry["latency_b1_threads"]
        assert entry["load"]["setting"].startswith(f"{entry['latency_b1_threads']} ")
    fp32 = document["entries"][next(iter(document["entries"]))]
    assert fp32["fastest_fp32_b1_setting"].endswith(("thread", "threads"))
    ort = next(e for e in document["entries"].values() if e["config_name"] == ORT)
    assert len(ort["latency_speedup_vs_fastest_fp32_b1_iqr"]) == 2  # per-round ratios against the fastest FP32


@pytest.mark.parametrize("config", [ORT, EAGER])
def test_the_load_code_the_bench_records_loads_the_artifact_and_gives_the_runtimes_logits(benched, config):
    model, data, *_, document = benched
    entry = next(e for e in document["entries"].values() if e["config_name"] == config)
    load = entry["load"]
    threads = load["threads"]
    assert load["artifact"] in load["code"] and (f"= {threads}\n" in load["code"] or f"({threads})\n" in load["code"])
    x = model.preprocessing(data.test.images[:3])
    scope = {"images": np.ascontiguousarray(x.numpy()) if load["runtime"] == "onnxruntime" else x}
    engine, torch_threads = torch.backends.quantized.engine, torch.get_num_threads()
    try:
        exec(load["code"], scope)  # the code a user is told to run
    finally:
        torch.backends.quantized.engine = engine
        torch.set_num_threads(torch_threads)
    logits = np.asarray(scope["logits"])
    assert logits.shape == (3, 10) and np.isfinite(logits).all()


def test_a_bench_of_the_older_shape_is_timed_again_not_reused(benched):
    *_, settings, (_, bench_path), document = benched
    keys = list(document["entries"])
    assert stored_bench(bench_path, keys, settings) is not None  # this shape, these rows: reused
    old = {**json.loads(bench_path.read_text()), "schema_version": 1}
    bench_path.with_name("old.json").write_text(json.dumps(old))
    assert stored_bench(bench_path.with_name("old.json"), keys, settings) is None


def test_medians_within_the_run_to_run_spread_tie_and_the_more_accurate_is_picked_saying_so():
    rows = dict(model_rows())
    qdq, qop = "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"  # qop loses fewer images
    for row in rows.values():
        if "bench" in row and row["config_name"] in (qdq, qop):
            faster = row["config_name"] == qdq
            row["bench"].update(latency_ms_b1_median=0.40 if faster else 0.42, latency_ms_b1_spread=0.05,
                                load={"setting": "1 intra-op thread"}, latency_speedup_vs_fastest_fp32_b1=1.5,
                                latency_speedup_vs_fastest_fp32_b1_iqr=[1.4, 1.6], fastest_fp32_b1="onnxruntime",
                                fastest_fp32_b1_setting="2 intra-op threads")
    choice = load_view(Results.of(results(*rows.items()))).choices["m"]
    assert choice.pick == qop and "tie on speed" in choice.rule and f"{qdq}, {qop} tie" in choice.rule
    assert "the most accurate of them" in choice.rule
    assert "with 1 intra-op thread" in choice.rule and "run-to-run spread 0.05 ms" in choice.rule
    assert "1.50x (1.40-1.60 over rounds) the fastest FP32 (onnxruntime with 2 intra-op threads)" in choice.rule
    for row in rows.values():  # the same medians measured tighter: no tie, the faster one
        if "bench" in row and row["config_name"] in (qdq, qop):
            row["bench"]["latency_ms_b1_spread"] = 0.005
    choice = load_view(Results.of(results(*rows.items()))).choices["m"]
    assert choice.pick == qdq and "tie" not in choice.rule


def test_quantize_prints_how_to_load_the_artifact_as_the_bench_timed_it_or_how_to_time_it(benched, tiny, monkeypatch):
    from typer.testing import CliRunner

    from quant_explorer.cli import app

    *_, document = benched
    timed = next(e for e in document["entries"].values() if e["config_name"] == ORT)
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tiny / "artifacts"))
    common = ["--model", "resnet8", "--weights", str(tiny / "resnet8.pt"), "--data-dir", str(tiny / "data"),
              "--calibration-n", "20"]
    result = CliRunner().invoke(app, ["quantize", "--config", ORT, *common, "--json"])
    assert result.exit_code == 0, result.output
    load = json.loads(result.stdout)["load"]  # the same row (same identity): the bench's setting and code
    assert load["setting"] == timed["load"]["setting"] and load["code"] == timed["load"]["code"]
    result = CliRunner().invoke(app, ["quantize", "--config", ORT, *common])
    out = " ".join(result.stdout.split())
    assert f"load in onnxruntime with {load['setting']}, the fastest at batch 1" in out and "InferenceSession(" in out
    result = CliRunner().invoke(app, ["quantize", "--config", "ort_u8_minmax_qdq_per_channel_rr", *common, "--json"])
    assert json.loads(result.stdout)["load"] == {
        "code": None, "measure": "quant-explorer bench --model resnet8 --configs ort_u8_minmax_qdq_per_channel_rr"}


def test_the_api_says_how_to_load_a_quantized_model_and_that_code_gives_its_logits(tiny, tmp_path):
    import quant_explorer as qe
    from quant_explorer.models import get_spec

    spec = get_spec("resnet8")
    module = spec.architecture()
    module.load_state_dict(torch.load(tiny / "resnet8.pt"))
    q = qe.quantize(module.eval(), ORT, tiny / "data", calibration_n=20, artifacts_dir=tmp_path,
                    preprocessing=spec.preprocessing)
    load = q.loading(threads=1)
    assert load["runtime"] == "onnxruntime" and load["setting"] == "1 intra-op thread"
    x = torch.rand(2, 3, 32, 32) * 255
    scope = {"images": x.numpy()}
    exec(load["code"], scope)
    assert np.allclose(scope["logits"], q(x).numpy(), atol=1e-5)


@pytest.mark.slow
def test_the_aotinductor_load_code_runs_the_package_as_the_bench_times_it(tmp_path):
    from quant_explorer.backends.pt2e import AOTINDUCTOR
    from quant_explorer.runtimes.aot import aot_runner, compile_package

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()
    package = compile_package(module, tmp_path / "model.aoti.pt2", torch.rand(2, 3, 32, 32))
    x = torch.rand(3, 3, 32, 32) * 255
    scope = {"images": x}
    threads = torch.get_num_threads()
    try:
        exec(AOTINDUCTOR.load_code(str(package), 1), scope)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(scope["logits"], aot_runner(package)(x), atol=1e-5)
    assert torch.allclose(scope["logits"], module(x), atol=1e-3)


def test_a_row_benched_in_the_older_shape_is_read_as_what_it_is():
    rows = dict(model_rows())
    for row in rows.values():  # one thread count, no spread, no load code: what schema-1 benches stored
        if "bench" in row:
            row["bench"].update(threads=2, latency_speedup_vs_fastest_fp32_b1=1.5, fastest_fp32_b1="onnxruntime")
    choice = load_view(Results.of(results(*rows.items()))).choices["m"]
    assert choice.pick == "ort_u8_minmax_qdq_per_channel" and "tie" not in choice.rule
    assert "0.4 ms in onnxruntime with 2 threads, 1.50x the fastest FP32 (onnxruntime)" in choice.rule


def test_a_slow_config_measured_noisily_ties_with_nothing():
    rows = dict(model_rows())
    qdq, qop = "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"  # qop is the more accurate
    for row in rows.values():
        if "bench" in row and row["config_name"] in (qdq, qop):
            fast = row["config_name"] == qdq
            row["bench"].update(latency_ms_b1_median=0.40 if fast else 1.4, latency_ms_b1_spread=0.01 if fast else 2.5)
    choice = load_view(Results.of(results(*rows.items()))).choices["m"]
    assert choice.pick == qdq and "tie" not in choice.rule
