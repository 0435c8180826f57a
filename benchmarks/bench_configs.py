"""The whole speed comparison in one run: FP32 (torch eager, torch + inductor, ORT) and the default-sweep configs,
side by side, plus the tool's own evaluation throughput, each model's fraction of the CPU's peak, profiles
that say where the time goes, and the speed/size targets checked. Writes artifacts/results/bench.json (the
bench document of `quant-explorer bench`, plus an "analysis" section) and bench_profile.{json,txt}.

    python benchmarks/bench_configs.py                                  # resnet8-mlperf, default sweep
    python benchmarks/bench_configs.py -m resnet8 -c 'ort_*' --runs 50 --no-compile

Peak multiply-adds per second (the "peak" section of the JSON repeats this with the numbers used):
    peak = cores x clock x MACs per cycle per core
  - cores: CPUs this process may run on (sched_getaffinity); the fraction uses min(cores, --threads).
  - clock: measured. simd_peak.c runs register-only loops of one multiply-add instruction on every thread;
    AVX2 cores retire 2 vfmadd ymm (8 fp32 lanes) per cycle, so that loop's rate / (16 x threads) is the clock
    the cores hold under full vector load. Without a C compiler or AVX2, /proc/cpuinfo's 'cpu MHz': under a
    hypervisor the nominal (TSC) clock, below the boost clock, so peaks from it are too low.
  - FP32: a fused multiply-add is one MAC. AVX2+FMA: 2 FMA units x 8 lanes = 16 MACs/cycle/core. AVX-512:
    the vfmadd zmm loop's rate / clock, measured, because cores differ: 32 with two 512-bit FMA units, 16
    where 512-bit ops run as two 256-bit halves (AMD Zen 4), so AVX-512 is no faster than AVX2 there.
  - int8 with VNNI: vpdpbusd (u8 x s8, 4 MACs per 32-bit lane, accumulated in int32) is measured the same way,
    zmm (AVX512-VNNI) or ymm (AVX-VNNI): 4x the fp32 lanes per instruction, so up to 4x the FP32 peak.
    Measured MACs per cycle are rounded to the nearest power of two (lanes x units), which absorbs the
    probes' noise on a shared machine; the raw rates are in "probe_macs_per_s".
  - int8 without VNNI (derived, not measured): vpmaddubsw multiplies u8 x s8 pairs and adds adjacent products
    into int16 (saturating), vpmaddwd by ones widens to int32, vpaddd accumulates. Two of those three run on
    the 2 vector-multiply ports: 2x the FP32 peak. So without VNNI, a 2.5x int8 speed-up over FP32 needs the
    FP32 kernels to run far below their peak while the int8 ones do not.
The two speed targets are decided by paired runs, not by the main table. The table's ratios compare medians
of runs up to a round (many seconds) apart. The paired check alternates the FP32 model and the candidate,
one batch each, 40 times, and takes the median of the per-pair ratios, with its quartiles. It runs for
ORT's three fastest int8 configs and for the fastest PT2E model under inductor.
MACs per image are counted exactly from the model: every Conv2d output element costs in_channels/groups x
kH x kW MACs, every Linear output in_features (ResNet8: 12,501,632; additions, BN, pooling not counted).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quant_explorer.bench import (SETTLE_SECONDS, BenchSettings, bench_and_record, bench_inputs, load_pt2,
                                  table_rows)
from quant_explorer.configs import select_configs
from quant_explorer.data import resolve_data_dir
from quant_explorer.env import cpu_info
from quant_explorer.models import load_model
from quant_explorer.paths import results_file
from quant_explorer.results import write_json_atomic
from quant_explorer.runtimes import inductor_runner, ort_runner, ort_session
from quant_explorer.sweep import EvalData, row_key

SHARED = Path(__file__).resolve().parents[2] / "shared"
MLPERF_H5 = SHARED / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet.h5"
TARGETS = {"ort_int8_vs_fp32_b256": 1.5, "pt2e_inductor_vs_fp32_inductor_b256": 2.5, "int8_size_ratio_max": 0.30}
INT8_RUNTIMES = {"onnxruntime", "inductor", "x86", "qnnpack"}  # runtimes that compute in int8 for int8 configs
PROFILE_RUNS = 10
HEAD_TO_HEAD_PAIRS = 40
PROBE_ITERATIONS = 50_000_000  # ~0.2 s per try at 3 GHz
HEAD_TO_HEAD_ORT_CANDIDATES = 3  # the fastest ORT configs of the main table; PT2E: the fastest one (each compile ~1 min)


def count_macs(module: nn.Module, shape=(1, 3, 32, 32)) -> dict:
    """Multiply-adds per image of every Conv2d and Linear, from a forward pass with hooks."""
    per_layer = {}

    def hook(name):
        def count(layer, inputs, output):
            if isinstance(layer, nn.Conv2d):
                k = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            else:
                k = layer.in_features
            per_layer[name] = output.numel() // output.shape[0] * k
        return count

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(shape))
    finally:
        for h in handles:
            h.remove()
    return {"macs_per_image": sum(per_layer.values()), "per_layer": per_layer}


def simd_rates(threads: int) -> dict[str, float]:
    """MACs/s of each simd_peak.c loop this CPU can run, best of 5; empty without a C compiler or AVX2+FMA."""
    flags = cpu_info()["flags"]
    probes = {"fp32_fma_ymm": flags["avx2"] and flags["fma"], "fp32_fma_zmm": flags["avx512f"],
              "int8_vnni_zmm": flags["avx512f"] and flags["avx512_vnni"], "int8_vnni_ymm": flags["avx_vnni"]}
    if not probes["fp32_fma_ymm"]:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "simd_peak.so"
        try:
            subprocess.run([os.environ.get("CC", "cc"), "-O2", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC",
                            "-o", str(library), str(Path(__file__).with_name("simd_peak.c"))],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return {}
        compiled = ctypes.CDLL(str(library))
        runnable = [getattr(compiled, name) for name, runs_here in probes.items() if runs_here]
        for probe in runnable:
            probe.restype, probe.argtypes = ctypes.c_double, [ctypes.c_long, ctypes.c_int]
        rounds = [[probe(PROBE_ITERATIONS, threads) for probe in runnable] for _ in range(5)]  # interleaved
        return {probe.__name__: max(rates) for probe, rates in zip(runnable, zip(*rounds))}


def power_of_two(x: float) -> int:
    """The nearest power of two: SIMD lanes x execution units, what a core's MACs per cycle always is."""
    return 2 ** round(math.log2(x))


def cpu_peak(threads: int) -> dict:
    """Peak FP32 and int8 MACs/s: cores x measured clock x MACs per cycle (the module docstring derives it)."""
    info = cpu_info()
    flags = info["flags"]
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
           if line.startswith("cpu MHz")] if Path("/proc/cpuinfo").exists() else []
    nominal_hz = float(np.median(mhz)) * 1e6 if mhz else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    used = min(threads, cores)
    rates = simd_rates(used)
    clock_hz = rates["fp32_fma_ymm"] / (16 * used) if rates else nominal_hz
    measured = {name: rate / (clock_hz * used) for name, rate in rates.items()}  # MACs per cycle per core
    if "fp32_fma_zmm" in measured:
        simd, fp32 = "AVX-512", max(16, power_of_two(measured["fp32_fma_zmm"]))
        fp32_how = f"measured: vfmadd zmm {measured['fp32_fma_zmm']:.1f} MACs/cycle (ymm: 16)"
    elif flags["avx512f"]:
        simd, fp32, fp32_how = "AVX-512", 2 * 16, "2 FMA units x 16 fp32 lanes (assumed)"
    elif flags["avx2"] and flags["fma"]:
        simd, fp32, fp32_how = "AVX2+FMA", 2 * 8, "2 FMA units x 8 fp32 lanes"
    else:
        simd, fp32, fp32_how = "SSE", 2 * 4, "2 units x 4 fp32 lanes (assumed)"
    vnni = {name: per_cycle for name, per_cycle in measured.items() if name.startswith("int8_vnni")}
    if vnni:
        best = max(vnni, key=vnni.get)
        int8, int8_how = power_of_two(vnni[best]), f"measured: vpdpbusd {best[-3:]} {vnni[best]:.1f} MACs/cycle"
    elif info["vnni"]:
        int8, int8_how = 4 * fp32, "vpdpbusd: 4 u8 x s8 MACs per 32-bit lane, 4x FP32 (assumed)"
    else:
        int8, int8_how = 2 * fp32, ("vpmaddubsw (u8 x s8 pairs -> int16) + vpmaddwd (-> int32) + vpaddd: the two "
                                    "multiplies on the 2 vector ports, 2x the fp32 lanes per cycle (derived)")
    out = {"cpu": info["model"], "simd": simd, "vnni": info["vnni"], "cores_available": cores, "threads_used": used,
           "clock_mhz": round(clock_hz / 1e6, 1) if clock_hz else None,
           "clock_source": "measured (simd_peak.c: vfmadd ymm rate / 16 MACs per cycle)" if rates else "/proc/cpuinfo",
           "clock_mhz_proc_cpuinfo": round(nominal_hz / 1e6, 1) if nominal_hz else None,
           "probe_macs_per_s": {name: round(rate) for name, rate in rates.items()},
           "fp32_macs_per_cycle_per_core": fp32, "fp32_how": fp32_how,
           "int8_macs_per_cycle_per_core": int8, "int8_how": int8_how,
           "int8_over_fp32_peak_ratio": int8 / fp32}
    if clock_hz:
        out.update({"fp32_peak_macs_per_s": fp32 * clock_hz * used, "int8_peak_macs_per_s": int8 * clock_hz * used,
                    "fp32_peak_macs_per_s_all_cores": fp32 * clock_hz * cores,
                    "int8_peak_macs_per_s_all_cores": int8 * clock_hz * cores})
    return out


def fractions_of_peak(document: dict, macs: int, peak: dict, configs: dict) -> list[dict]:
    """Per timed runtime: achieved MACs/s at batch 256 and that as a fraction of the matching peak."""
    rows = []
    for entry in document["entries"].values():
        config = configs.get(entry["config_name"])
        for runtime, r in entry.get("runtimes", {}).items():
            if "throughput_b256" not in r or not peak.get("fp32_peak_macs_per_s"):
                continue
            int8 = config.backend != "fp32" and runtime in INT8_RUNTIMES and config.backend != "eager_dynamic"
            achieved = r["throughput_b256"] * macs
            key = "int8_peak_macs_per_s" if int8 else "fp32_peak_macs_per_s"
            rows.append({"config_name": entry["config_name"], "runtime": runtime, "compute": "int8" if int8 else "fp32",
                         "achieved_gmacs_per_s": round(achieved / 1e9, 2),
                         "fraction_of_peak": round(achieved / peak[key], 4)})
    return rows


def eval_throughput(document: dict) -> dict:
    """The tool's own evaluate() (1,017 images, end to end) as a fraction of bench's batch-256 throughput."""
    fp32 = next(e for e in document["entries"].values() if e["config_name"] == "fp32_baseline")
    out = {}
    for runtime, r in fp32["runtimes"].items():
        if "eval_images_per_second" in r:
            out[runtime] = {"eval_images_per_second": r["eval_images_per_second"],
                            "bench_throughput_b256": r["throughput_b256"],
                            "fraction": r["eval_fraction_of_b256"], "meets_70_percent": r["eval_fraction_of_b256"] >= 0.7}
    return out


def size_breakdown(path: Path) -> dict:
    """What the artifact's bytes are: ONNX initializers by dtype vs graph; a .pt2/.pt zip by member."""
    path = Path(path)
    out = {"file": path.name, "size_bytes": path.stat().st_size}
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        by_dtype: dict[str, int] = {}
        for t in onnx.load(str(path)).graph.initializer:
            a = numpy_helper.to_array(t)
            by_dtype[str(a.dtype)] = by_dtype.get(str(a.dtype), 0) + a.nbytes
        out["initializer_bytes_by_dtype"] = by_dtype
        out["graph_and_names_bytes"] = out["size_bytes"] - sum(by_dtype.values())
    elif zipfile.is_zipfile(path):
        members = {}
        for info in zipfile.ZipFile(path).infolist():
            name = info.filename
            kind = ("sample_inputs" if "sample_inputs" in name else "graph_json" if name.endswith(".json")
                    else "tensors" if "/data/" in name else "code_and_other")
            members[kind] = members.get(kind, 0) + info.compress_size
        out["zip_members_bytes"] = members
    return out


def ort_profile(path: Path, xb: torch.Tensor, threads: int, runs: int = PROFILE_RUNS) -> dict:
    """ORT's per-node profile at the bench batch: milliseconds per batch by op type (fused op names as run)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(xb.numpy())}
        for _ in range(2):
            session.run(None, feed)
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, feed)
        wall = (time.perf_counter() - started) / runs
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, list] = {}
    by_node: dict[str, list] = {}  # in execution order: which convolution costs what
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op.setdefault(op, []).append(e["dur"])
            by_node.setdefault(f"{op} {e['name'].removesuffix('_kernel_time')}", []).append(e["dur"])
    total_runs = runs + 2
    ops = {op: {"ms_per_batch": round(sum(d) / 1e3 / total_runs, 3), "nodes": len(d) // total_runs}
           for op, d in sorted(by_op.items(), key=lambda kv: -sum(kv[1]))}
    kernel = sum(v["ms_per_batch"] for v in ops.values())
    return {"batch": len(xb), "wall_ms_per_batch": round(wall * 1e3, 3), "kernel_ms_per_batch": round(kernel, 3),
            "ops": {op: {**v, "share": round(v["ms_per_batch"] / kernel, 4)} for op, v in ops.items()},
            "conv_nodes_ms_per_batch": {node: round(float(np.median(d)) / 1e3, 3) for node, d in by_node.items()
                                        if "Conv" in node}}


def torch_profile(runner, xb: torch.Tensor, runs: int = PROFILE_RUNS, top: int = 15) -> tuple[dict, str]:
    """torch.profiler over `runs` batches: self CPU time per op (ms per batch), and the table as text."""
    from torch.profiler import ProfilerActivity, profile

    runner(xb)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            runner(xb)
    averages = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in averages)
    ops = {e.key: {"self_ms_per_batch": round(e.self_cpu_time_total / 1e3 / runs, 3),
                   "calls_per_batch": e.count // runs, "share": round(e.self_cpu_time_total / total, 4)}
           for e in averages[:top]}
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    return {"batch": len(xb), "self_cpu_ms_per_batch": round(total / 1e3 / runs, 3), "ops": ops}, table


def by_throughput(entries: dict, configs: dict, backend: str, runtime: str) -> list[str]:
    """Config names of `backend` timed in `runtime`, fastest batch-256 throughput first."""
    timed = [(e["runtimes"][runtime]["throughput_b256"], name) for name, e in entries.items()
             if configs[name].backend == backend and "throughput_b256" in e.get("runtimes", {}).get(runtime, {})]
    return [name for _, name in sorted(timed, reverse=True)]


def profiles(model, document: dict, data: EvalData, settings: BenchSettings, configs: dict) -> tuple[dict, str]:
    """Profiles of FP32 and the fastest int8 config in ORT, and FP32 vs the fastest PT2E model under inductor."""
    from quant_explorer.runtimes import torch_runner

    _, xb = bench_inputs(model, data, settings.batch)
    entries = {e["config_name"]: e for e in document["entries"].values()}

    ort_ranked = by_throughput(entries, configs, "ort", "onnxruntime")
    pt2e_ranked = by_throughput(entries, configs, "pt2e", "inductor")
    out, text = {}, []
    torch.set_num_threads(settings.threads)
    for name in dict.fromkeys(["fp32_baseline", *ort_ranked[:1], *ort_ranked[-1:]]):
        out[f"ort/{name}"] = ort_profile(Path(entries[name]["artifact"]), xb, settings.threads)
    torch_targets = {"fp32_baseline/torch": lambda: torch_runner(model.module)}
    if settings.compile:
        torch_targets["fp32_baseline/inductor"] = lambda: inductor_runner(model.fresh())
        for name in dict.fromkeys([*pt2e_ranked[:1], *pt2e_ranked[-1:]]):
            path = Path(entries[name]["artifact"])
            torch_targets[f"{name}/inductor"] = lambda path=path: inductor_runner(load_pt2(path))
    for name, build in torch_targets.items():
        summary, table = torch_profile(build(), xb)
        out[f"torch/{name}"] = summary
        text.append(f"== {name} (batch {settings.batch}, {settings.threads} threads) ==\n{table}")
    return {"threads": settings.threads, "runs_per_profile": PROFILE_RUNS, "profiles": out}, "\n".join(text)


def pt2e_profile_bound(profiles_summary: dict, target: float) -> dict | None:
    """Why PT2E+inductor falls short, from the profiles: convolution kernels vs everything else, FP32 vs int8.

    The int8 model cannot beat FP32 by more than FP32 total / int8 convolution time even if every other kernel
    (quantize/dequantize, adds, copies) took no time at all.
    """
    runs = profiles_summary["profiles"]
    fp32 = runs.get("torch/fp32_baseline/inductor")
    int8_name = next((k for k in runs if k.startswith("torch/pt2e_") and k.endswith("/inductor")), None)
    if not fp32 or not int8_name:
        return None

    def split(summary):
        conv = sum(op["self_ms_per_batch"] for name, op in summary["ops"].items() if "conv" in name.lower())
        return round(conv, 3), round(summary["self_cpu_ms_per_batch"] - conv, 3)

    (fp32_conv, fp32_rest), (int8_conv, int8_rest) = split(fp32), split(runs[int8_name])
    return {"model": int8_name.removeprefix("torch/").removesuffix("/inductor"),
            "fp32_ms_per_batch": {"conv_kernels": fp32_conv, "other": fp32_rest},
            "int8_ms_per_batch": {"conv_kernels": int8_conv, "other": int8_rest},
            "conv_kernel_speedup": round(fp32_conv / int8_conv, 3),
            "profiled_speedup": round((fp32_conv + fp32_rest) / (int8_conv + int8_rest), 3),
            "speedup_if_other_were_free": round((fp32_conv + fp32_rest) / int8_conv, 3),
            "int8_ms_needed_for_target": round((fp32_conv + fp32_rest) / target, 3),
            "other_share_of_int8": round(int8_rest / (int8_conv + int8_rest), 3)}


def paired_speedup(baseline, candidate, xb: torch.Tensor, pairs: int = HEAD_TO_HEAD_PAIRS) -> dict:
    """The two models alternately, one timed batch each per pair, order swapped every pair: the speed-up as the
    median of the per-pair ratios. Adjacent runs see the same background load, so this holds when the main
    table's ratio of medians (runs up to a round apart) drifts."""
    for runner in (baseline, candidate):
        runner(xb)
    runners = {"baseline": baseline, "candidate": candidate}
    times = {name: [] for name in runners}
    for i in range(pairs):
        for name in (list(runners) if i % 2 == 0 else list(runners)[::-1]):
            time.sleep(SETTLE_SECONDS)  # let the other runtime's threads stop spinning
            runners[name](xb)  # and wake this one's
            started = time.perf_counter()
            runners[name](xb)
            times[name].append(time.perf_counter() - started)
    ratios = np.array(times["baseline"]) / np.array(times["candidate"])
    return {"pairs": pairs, "batch": len(xb), "speedup_median": round(float(np.median(ratios)), 3),
            "speedup_p25": round(float(np.percentile(ratios, 25)), 3),
            "speedup_p75": round(float(np.percentile(ratios, 75)), 3),
            "baseline_images_per_s": round(len(xb) / float(np.median(times["baseline"])), 1),
            "candidate_images_per_s": round(len(xb) / float(np.median(times["candidate"])), 1)}


def head_to_head(model, document: dict, data: EvalData, settings: BenchSettings, configs: dict) -> dict:
    """Paired speed-ups for the two speed targets: ORT FP32 vs its fastest int8 configs, FP32 vs PT2E under inductor."""
    _, xb = bench_inputs(model, data, settings.batch)
    entries = {e["config_name"]: e for e in document["entries"].values()}

    torch.set_num_threads(settings.threads)
    out = {"ort": {}, "inductor": {}}
    fp32_ort = ort_runner(Path(entries["fp32_baseline"]["artifact"]), settings.threads)
    for name in by_throughput(entries, configs, "ort", "onnxruntime")[:HEAD_TO_HEAD_ORT_CANDIDATES]:
        out["ort"][name] = paired_speedup(fp32_ort, ort_runner(Path(entries[name]["artifact"]), settings.threads), xb)
    if settings.compile:
        fp32_inductor = inductor_runner(model.fresh())
        for name in by_throughput(entries, configs, "pt2e", "inductor")[:1]:
            out["inductor"][name] = paired_speedup(fp32_inductor, inductor_runner(load_pt2(Path(entries[name]["artifact"]))), xb)
    return out


def targets_check(document: dict, configs: dict, sizes_fp32: int, peak: dict) -> dict:
    entries = {e["config_name"]: e for e in document["entries"].values()}

    def best(backend, runtime):
        vals = [(e["runtimes"][runtime].get("speedup_vs_fp32_b256"), n) for n, e in entries.items()
                if configs[n].backend == backend and e.get("runtimes", {}).get(runtime, {}).get("speedup_vs_fp32_b256")]
        return max(vals) if vals else (None, None)

    ort_speedup, ort_name = best("ort", "onnxruntime")
    pt2e_speedup, pt2e_name = best("pt2e", "inductor")
    sizes = [(e["size_ratio_vs_fp32"], n) for n, e in entries.items()
             if configs[n].backend != "fp32" and configs[n].backend != "eager_dynamic" and e.get("size_ratio_vs_fp32")]
    size_ratio, size_name = min(sizes) if sizes else (None, None)
    return {
        "ort_int8_vs_fp32_b256": {"target": TARGETS["ort_int8_vs_fp32_b256"], "best": ort_speedup, "config": ort_name,
                                  "met": bool(ort_speedup and ort_speedup >= TARGETS["ort_int8_vs_fp32_b256"])},
        "pt2e_inductor_vs_fp32_inductor_b256": {
            "target": TARGETS["pt2e_inductor_vs_fp32_inductor_b256"], "best": pt2e_speedup, "config": pt2e_name,
            "met": bool(pt2e_speedup and pt2e_speedup >= TARGETS["pt2e_inductor_vs_fp32_inductor_b256"]),
            "compute_ceiling": peak["int8_over_fp32_peak_ratio"],
            "why": f"int8 peak / fp32 peak on this CPU is {peak['int8_over_fp32_peak_ratio']:.1f}x ({peak['int8_how']})"},
        "int8_size_ratio_max": {"target": TARGETS["int8_size_ratio_max"], "best": size_ratio, "config": size_name,
                                "met": bool(size_ratio and size_ratio <= TARGETS["int8_size_ratio_max"]),
                                "fp32_size_bytes": sizes_fp32},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="resnet8-mlperf")
    parser.add_argument("--weights", type=Path, default=None, help="default for resnet8-mlperf: ../shared's h5")
    parser.add_argument("-c", "--configs", action="append", help="names or globs; default: the default sweep")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch-runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true", help="skip the inductor runtimes")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--calibration-n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    weights = args.weights or (MLPERF_H5 if args.model == "resnet8-mlperf" and MLPERF_H5.exists() else None)
    model = load_model(args.model, weights)
    data = EvalData.load(resolve_data_dir(args.data_dir or (SHARED / "data" / "cifar10-subset" if
                                                             (SHARED / "data" / "cifar10-subset").is_dir() else None)))
    chosen = select_configs([p for item in args.configs or [] for p in item.split(",") if p])
    configs = {c.name: c for c in select_configs(["*"])}
    settings = BenchSettings(threads=args.threads, runs=args.runs, batch_runs=args.batch_runs, rounds=args.rounds,
                             compile=not args.no_compile, time_eval=True)
    bench_path = results_file().with_name("bench.json")
    started = time.perf_counter()
    document = bench_and_record(model, chosen, data, args.calibration_n, args.seed, settings, results_file(),
                                bench_path, log=print)
    macs = count_macs(model.fresh())
    peak = cpu_peak(settings.threads)
    fp32_entry = document["entries"][row_key(model, configs["fp32_baseline"], data, args.calibration_n, args.seed)]
    analysis = {
        "macs": macs, "peak": peak,
        "fraction_of_peak_b256": fractions_of_peak(document, macs["macs_per_image"], peak, configs),
        "eval_throughput_vs_bench": eval_throughput(document),
        "targets": targets_check(document, configs, fp32_entry["size_bytes"], peak),
        "sizes": {e["config_name"]: size_breakdown(Path(e["artifact"])) for e in document["entries"].values()
                  if "artifact" in e},
    }
    paired = head_to_head(model, document, data, settings, configs)
    for key, runtime in (("ort_int8_vs_fp32_b256", "ort"), ("pt2e_inductor_vs_fp32_inductor_b256", "inductor")):
        target = analysis["targets"][key]
        if paired[runtime]:
            name, best = max(paired[runtime].items(), key=lambda kv: kv[1]["speedup_median"])
            target.update({"table_best": target.pop("best"), "table_config": target.pop("config"),
                           "best": best["speedup_median"], "config": name, "paired": paired[runtime],
                           "met": best["speedup_median"] >= target["target"]})
    if not args.no_profile:
        summary, text = profiles(model, document, data, settings, configs)
        write_json_atomic(bench_path.with_name("bench_profile.json"), summary)
        bench_path.with_name("bench_profile.txt").write_text(text)
        analysis["profiles"] = "bench_profile.json"
        pt2e = analysis["targets"]["pt2e_inductor_vs_fp32_inductor_b256"]
        pt2e["profile"] = pt2e_profile_bound(summary, pt2e["target"])
    document["analysis"] = analysis
    document["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(bench_path, document)
    for row in table_rows(document):
        print(" | ".join(row))
    print(json.dumps(analysis["targets"], indent=1))
    print(json.dumps(analysis["eval_throughput_vs_bench"], indent=1))
    print(f"wrote {bench_path}")



if __name__ == "__main__":
    main()
