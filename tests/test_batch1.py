"""benchmarks/batch1_parts.py: one batch-1 call of a real ORT session split by ORT's own profiler, its settings
timed side by side, and the goals and compute floors read from a bench document (numbers chosen here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def parts():
    sys.path.insert(0, str(BENCHMARKS))  # batch1_parts imports peak.py beside it
    try:
        spec = importlib.util.spec_from_file_location("batch1_parts", BENCHMARKS / "batch1_parts.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory) -> Path:
    """A two-convolution ONNX model written with onnx.helper: NCHW float input, 8 channels, ReLU between."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["logits"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8, 8, 8])], weights)
    path = tmp_path_factory.mktemp("onnx") / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_an_ort_call_splits_into_binding_executor_and_the_kernels_by_op(parts, conv_onnx, monkeypatch):
    monkeypatch.setattr(parts, "CALLS", 30)
    b = parts.ort_breakdown(conv_onnx, torch.rand(1, 3, 8, 8), threads=1)
    assert b["threads"] == 1 and b["wall_ms"] > 0 and b["nodes"] >= 2
    assert set(b["kernels_ms"]) >= {"Conv"} and b["kernels_ms"]["Conv"] > 0
    p = b["parts_ms"]
    whole = p["binding (Python, numpy in and out)"] + p["executor (scheduling, allocation, thread pool)"] + p["kernels"]
    assert whole == pytest.approx(b["profiled_wall_ms"], abs=2e-4)  # the parts are the profiled call, nothing fitted
    assert p["kernels"] == pytest.approx(sum(b["kernels_ms"].values()), abs=2e-4)


def test_each_ort_setting_is_timed_side_by_side_with_its_spread(parts, conv_onnx):
    runners = parts.ort_settings(conv_onnx, threads=2)
    assert len(runners) == 3 + 6 + 2 * 2  # 1 thread x 3 levels, 2 threads x spinning x 3 levels, 2 feeds each
    x = torch.rand(1, 3, 8, 8)
    outputs = [run(x) for run, _ in runners.values()]
    outputs = [o[0] if isinstance(o, list) else o for o in outputs]  # session.run: a list of outputs
    outputs = [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outputs]  # an OrtValue
    assert all(o.shape == (1, 8, 8, 8) and np.allclose(o, outputs[0], atol=1e-4) for o in outputs)  # same logits
    spec = importlib.util.spec_from_file_location("batch1", BENCHMARKS / "batch1.py")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        batch1 = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(batch1)
        timed = batch1.side_by_side(runners, x, rounds=2, runs=2)
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert set(timed) == set(runners)
    assert all(v["median_ms"] > 0 and v["spread_ms"] >= 0 for v in timed.values())


def document(fp32_ms: float, int8_ms: float, aoti_ms: float) -> tuple[dict, dict]:
    """A bench document as bench_configs writes it, reduced to what the goals read: 10 M MACs, 100 GMAC/s fp32
    and 400 GMAC/s int8 on 2 cores."""
    def entry(runtime, ms, threads, ratio):
        return {"runtime": runtime, "latency_ms_b1_median": ms, "latency_ms_b1_spread": ms / 20,
                "latency_b1_threads": threads, "latency_speedup_vs_fastest_fp32_b1": ratio,
                "latency_speedup_vs_fastest_fp32_b1_iqr": [ratio * 0.9, ratio * 1.1], "fastest_fp32_b1": "onnxruntime",
                "fastest_fp32_b1_setting": "1 intra-op thread", "load": {"setting": f"{threads} thread(s)"},
                "runtimes": {runtime: {"latency_ms_b1_median": ms, "latency_b1_threads": threads,
                                       "latency_speedup_vs_fastest_fp32_b1_iqr": [0.4, 0.5]}}}

    entries = {"fp32_baseline": entry("onnxruntime", fp32_ms, 1, 1.0),
               "ort_u8_minmax_qdq_per_channel": entry("onnxruntime", int8_ms, 1, round(fp32_ms / int8_ms, 3)),
               "pt2e_u8_per_channel_minmax": entry("aotinductor", aoti_ms, 1, round(fp32_ms / aoti_ms, 3))}
    peaks = [{"config_name": n, "runtime": e["runtime"], "path": p, "peak_gmacs_per_s": g}
             for (n, e), (p, g) in zip(entries.items(), [("fp32_avx512", 100.0)] + [("int8_avx512_vnni", 400.0)] * 2)]
    doc = {"settings": {"threads": 2}, "analysis": {"macs": {"macs_per_image": 10_000_000},
                                                    "peak": {"threads_used": 2}, "fraction_of_peak_b256": peaks}}
    return doc, entries


def test_goals_say_the_ratios_their_spread_and_why_a_missed_one_is_missed(parts):
    doc, entries = document(fp32_ms=0.2, int8_ms=0.125, aoti_ms=0.4)
    breakdown = {"aotinductor int8 (pt2e_u8_per_channel_minmax)": {
        "wall_ms": 0.4, "parts_ms": {"wrapper": 0.02, "kernels": 0.06, "rest": 0.32}}}
    g = parts.goals(doc, entries, "pt2e_u8_per_channel_minmax", "ort_u8_minmax_qdq_per_channel", breakdown)
    pick = g["pick_vs_fastest_fp32_b1"]
    assert pick["ratio"] == 1.6 and not pick["met"] and "1.60x (per-round IQR 1.44-1.76)" in pick["text"]
    # the fp32 floor: 10 M MACs at 50 GMAC/s per core on its 1 thread = 0.2 ms, so FP32 runs at 1.0x its floor;
    # int8's is 0.05 ms, and 2x FP32 would need 0.1 ms = 2.0x that floor
    assert "1.0x its compute floor (0.2000 ms" in pick["why"] and "needs 0.1000 ms, 2.00x the int8 floor" in pick["why"]
    floors = g["compute_floor_b1"]["runtimes"]
    assert floors["ort_u8_minmax_qdq_per_channel/onnxruntime"]["multiple_of_floor"] == 2.5
    aoti = g["pt2e_aotinductor_vs_ort_fp32_b1"]
    assert aoti["ratio"] == 0.5 and not aoti["met"] and "oneDNN's int8 kernels take 0.0600 ms" in aoti["why"]
    doc, entries = document(fp32_ms=0.2, int8_ms=0.08, aoti_ms=0.19)
    g = parts.goals(doc, entries, "pt2e_u8_per_channel_minmax", "ort_u8_minmax_qdq_per_channel", {})
    assert g["pick_vs_fastest_fp32_b1"]["met"] and "why" not in g["pick_vs_fastest_fp32_b1"]
    assert g["pt2e_aotinductor_vs_ort_fp32_b1"]["met"]
