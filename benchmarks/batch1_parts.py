"""The measurements batch1.py puts together: per-runtime breakdowns of one batch-1 call, the settings each runtime
is tried with, and the goals (see batch1.py's docstring for what each part means)."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from quant_explorer.backends import get_config
from quant_explorer.backends.pt2e import load_pt2
from quant_explorer.configs import REFERENCE
from quant_explorer.runtimes import aot, inductor_runner, ort_session, torch_runner
from quant_explorer.runtimes.aot import aot_runner
from quant_explorer.timing import pinned_threads, timed

CALLS = 300  # back-to-back calls behind each median
GOALS = {"pick_vs_fastest_fp32_b1": 2.0, "pt2e_aotinductor_vs_ort_fp32_b1": 1.0}
# perf samples by library and symbol, first match wins: (category, dso pattern, symbol pattern)
PERF_CATEGORIES = [
    ("oneDNN kernels (JIT code)", r"^\[(JIT|unknown)", ""),
    ("allocation (malloc, free, allocators)", "", r"malloc|free|memalign|_int_|unlink_chunk|consolidate|"
                                                    r"operator (new|delete)|alloc_cpu|Allocator|tcache"),
    ("oneDNN execution (non-JIT)", "", r"dnnl.*(execute|ker_|exec_ker|::jit_|brgemm_kernel)"),
    ("oneDNN/ideep setup (primitive and memory descriptors, built per call)", "", r"dnnl|ideep|mkldnn"),
    ("OpenMP (thread pool, barriers)", r"gomp|iomp", ""),
    ("kernel (scheduler, futex, page faults)", r"kernel", ""),
    ("Python", r"python", ""),
    ("ATen and c10 (dispatch, tensors, other ops)", r"libtorch|libc10", ""),
    ("generated code (the package's .so)", r"wrapper", ""),
    ("libc (memcpy, memset, ...)", r"^libc[.-]", ""),
]

# torch.profiler's operators by kind, first match wins
PROFILER_CATEGORIES = [("int8 operators", r"^(onednn|mkldnn|quantized)::"),
                       ("wrappers (Dynamo's guards, the generated Python wrapper, TorchScript's forward)",
                        r"CompiledFxGraph|Torch-Compiled Region|TorchDynamo|Pregraph|AOTDispatcher|^forward$"),
                       ("other ATen operators", r"^aten::")]


def _median_ms(run, x, calls: int = CALLS) -> float:
    timed(run, x, 20)
    return round(1e3 * float(np.median(timed(run, x, calls))), 4)


def _session(path: Path, threads: int, spinning: bool = True, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_breakdown(path: Path, x: torch.Tensor, threads: int) -> dict:
    """One session.run at batch 1: binding, executor and kernels by op type from ORT's own profiler."""
    plain = _session(path, threads)
    name = plain.get_inputs()[0].name
    wall = _median_ms(lambda x: plain.run(None, {name: np.ascontiguousarray(x.numpy())}), x)
    convert = _median_ms(lambda x: np.ascontiguousarray(x.numpy()), x)
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        profiled = _median_ms(lambda x: session.run(None, {name: np.ascontiguousarray(x.numpy())}), x)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e["dur"] for e in events if e.get("name") == "model_run"][20:]  # after the warm-up calls
    nodes: dict[tuple[str, str], list] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            nodes.setdefault((e["args"].get("op_name", "?"), e["name"]), []).append(e["dur"])
    by_op: dict[str, float] = {}
    for (op, _), durations in nodes.items():
        by_op[op] = by_op.get(op, 0.0) + float(np.median(durations[20:] or durations)) / 1e3
    model_run, kernels = float(np.median(runs)) / 1e3, sum(by_op.values())
    return {"threads": threads, "wall_ms": wall, "profiled_wall_ms": profiled, "nodes": len(nodes),
            "parts_ms": {"binding (Python, numpy in and out)": round(profiled - model_run, 4),
                         "of which torch to numpy": convert,
                         "executor (scheduling, allocation, thread pool)": round(model_run - kernels, 4),
                         "kernels": round(kernels, 4)},
            "kernels_ms": {op: round(ms, 4) for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])}}


def ort_settings(path: Path, threads: int) -> dict[str, tuple]:
    """Sessions to time side by side: intra-op threads x spinning x graph optimization level, and the input fed
    as numpy, as an OrtValue, or through IO binding (bound per call)."""
    import onnxruntime as ort

    out = {}
    for n in sorted({1, threads}):
        for spinning in (True, False) if n > 1 else (True,):
            for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC"):
                s = _session(path, n, spinning, level)
                name = f"{n} thread{'s' * (n > 1)}{', no spinning' if not spinning else ''}, {level.lower()[4:]}"
                out[name] = (lambda x, s=s, i=s.get_inputs()[0].name: s.run(None, {i: x.numpy()}), 1)
        s = _session(path, n)
        i, o = s.get_inputs()[0].name, s.get_outputs()[0].name

        def bound(x, s=s, i=i, o=o):
            binding = s.io_binding()
            binding.bind_cpu_input(i, x.numpy())
            binding.bind_output(o)
            s.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]

        out[f"{n} thread{'s' * (n > 1)}, input as OrtValue"] = (
            lambda x, s=s, i=i: s.run_with_ort_values(None, {i: ort.OrtValue.ortvalue_from_numpy(x.numpy())}), 1)
        out[f"{n} thread{'s' * (n > 1)}, IO binding"] = (bound, 1)
    return out


def onednn_exec_ms(run, x, calls: int = 20) -> float:
    """oneDNN's own execution time of one call (its verbose 'exec' lines, summed over the call's primitives), the
    median over `calls` calls: a call preempted on a busy machine does not count for all."""
    from peak import onednn_verbose

    text = onednn_verbose(lambda x: [run(x) for _ in range(calls)], x)
    times = [float(line.rsplit(",", 1)[1]) for line in text.splitlines()
             if line.startswith("onednn_verbose") and ",exec," in line]
    per_call = len(times) // calls
    if not per_call:
        return 0.0
    return round(float(np.median([sum(times[i:i + per_call]) for i in range(0, per_call * calls, per_call)])), 4)


def perf_split(run, x, seconds: float = 2.0) -> dict:
    """Shares of perf's samples of this process by category (PERF_CATEGORIES) while `run(x)` repeats."""
    from peak import perf_record

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        try:
            err = perf_record(run, x, seconds, data, "cpu-clock", 4000)
        except OSError as e:
            return {"error": f"perf: {e}"}
        report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym", "--stdio",
                                 "-q", "-t", "\t"], capture_output=True, text=True, check=False, timeout=300)
    shares: dict[str, float] = {}
    for line in report.stdout.splitlines():
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 3 or not fields[0].endswith("%"):
            continue
        share, dso, symbol = float(fields[0].rstrip("%")) / 100, fields[1], fields[2]
        category = next((c for c, d, s in PERF_CATEGORIES if (not d or re.search(d, dso))
                         and (not s or re.search(s, symbol))), "other")
        shares[category] = shares.get(category, 0.0) + share
    if not shares:
        return {"error": f"perf: {(err.decode() + report.stderr).strip().splitlines()[-1:] or 'no samples'}"}
    return {k: round(v, 4) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def aoti_breakdown(package: Path, x: torch.Tensor, threads: int) -> dict:
    """One call of an AOTInductor package at batch 1: the Python wrapper, oneDNN's kernels and the rest."""
    user = torch._inductor.aoti_load_package(str(package))
    inputs = [x]
    with pinned_threads(threads):
        wall, loader = _median_ms(user, x), _median_ms(lambda _: user.loader.run(inputs), x)
        kernels = onednn_exec_ms(lambda _: user.loader.run(inputs), x)
        split = perf_split(lambda _: user.loader.run(inputs), x)
    out = {"threads": threads, "wall_ms": wall,
           "parts_ms": {"Python wrapper (AOTICompiledModel.__call__)": round(wall - loader, 4),
                        "oneDNN kernels (their own execution time)": kernels,
                        "the rest inside the package (per-operator setup, ATen ops, allocation)":
                            round(loader - kernels, 4)}}
    if "error" in split:
        out["perf"] = split
    else:
        out["perf_ms_of_loader_run"] = {k: round(v * loader, 4) for k, v in split.items()}
    return out


def torch_breakdown(entries: dict, pt2e: str | None, x: torch.Tensor) -> dict:
    """Inductor (the fastest PT2E config) and the eager x86 engine (the fastest eager config) at batch 1 under
    torch.profiler: self time per operator, per call, at the thread count the bench found fastest."""
    from torch.profiler import ProfilerActivity, profile

    runners = {}
    if pt2e and "inductor" in entries[pt2e]["runtimes"]:
        runners[f"inductor int8 ({pt2e})"] = (inductor_runner(load_pt2(Path(entries[pt2e]["artifact"]))),
                                              entries[pt2e]["runtimes"]["inductor"].get("latency_b1_threads", 1))
    eager = [(e["runtimes"]["x86"]["latency_ms_b1_median"], n) for n, e in entries.items()
             if "latency_ms_b1_median" in e["runtimes"].get("x86", {}) and get_config(n).is_static]
    if eager:
        name = min(eager)[1]
        previous, torch.backends.quantized.engine = torch.backends.quantized.engine, "x86"
        runners[f"x86 int8 ({name})"] = (torch_runner(torch.jit.load(entries[name]["artifact"])),
                                         entries[name]["runtimes"]["x86"].get("latency_b1_threads", 1))
    out = {}
    try:
        for label, (run, threads) in runners.items():
            with pinned_threads(threads):
                wall, kernels = _median_ms(run, x), onednn_exec_ms(run, x)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(100):
                        run(x)
            ops = {e.key: e.self_cpu_time_total / 100 / 1e3 for e in prof.key_averages()}
            ops = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
            parts: dict[str, float] = {}
            for op, ms in ops.items():
                kind = next((k for k, pattern in PROFILER_CATEGORIES if re.search(pattern, op)), "other")
                parts[kind] = parts.get(kind, 0.0) + ms
            if kernels:  # the int8 operators' time split: oneDNN's own kernels, and the rest of the operator
                name = PROFILER_CATEGORIES[0][0]
                parts.update({f"{name}: oneDNN kernels (own time)": kernels,
                              f"{name}: setup around them": parts.pop(name, 0.0) - kernels})
            out[label] = {"threads": threads, "wall_ms": wall, "parts_ms": {k: round(v, 4) for k, v in parts.items()},
                          "kernels_ms": {k: round(v, 4) for k, v in list(ops.items())[:12]}}
    finally:
        if eager:
            torch.backends.quantized.engine = previous
    return out


def compile_variants(pt2: Path, package: Path, x: torch.Tensor) -> dict[str, tuple]:
    """The PT2E model compiled with other Inductor options than the shipped package's (aot.INDUCTOR_CONFIGS:
    freezing on), each timed at 1 thread: AOTInductor with max_autotune or without freezing, Inductor with its
    Python wrapper or cpp_wrapper."""
    from torch._inductor import config

    out = {"aotinductor, as shipped (freezing)": (aot_runner(package), 1)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in (("aotinductor + max_autotune", {"max_autotune": True}),
                              ("aotinductor, freezing off", {"freezing": False})):
            with mock.patch.dict(aot.INDUCTOR_CONFIGS, options):
                compiled = aot.compile_package(load_pt2(pt2), Path(tmp) / f"{len(out)}.pt2", torch.cat([x, x]))
            out[name] = (aot_runner(compiled), 1)
    out["inductor (Python wrapper)"] = (inductor_runner(load_pt2(pt2)), 1)
    with config.patch(cpp_wrapper=True):
        cpp = inductor_runner(load_pt2(pt2))
        cpp(x)  # compiled here, with the option on

    def cpp_wrapper(x):
        with config.patch(cpp_wrapper=True):
            return cpp(x)

    out["inductor + cpp_wrapper"] = (cpp_wrapper, 1)
    return out


def _floors(document: dict, entries: dict) -> dict:
    """'config/runtime' -> its batch-1 median as a multiple of its compute floor: MACs per image over the peak of
    the path its kernels ran (bench_configs' fraction_of_peak rows) on the threads it ran with."""
    analysis = document.get("analysis", {})
    macs = analysis.get("macs", {}).get("macs_per_image")
    used = analysis.get("peak", {}).get("threads_used") or document["settings"]["threads"]
    paths = {(r["config_name"], r["runtime"]): r for r in analysis.get("fraction_of_peak_b256", [])}
    floors = {}
    for name, e in entries.items():
        for runtime, r in e["runtimes"].items():
            path = paths.get((name, runtime), {})
            if "latency_ms_b1_median" in r and path.get("peak_gmacs_per_s") and macs:
                threads = r.get("latency_b1_threads", used)
                floor = 1e3 * macs / (path["peak_gmacs_per_s"] * 1e9 / used * threads)
                floors[f"{name}/{runtime}"] = {"path": path["path"], "threads": threads, "floor_ms": round(floor, 4),
                                               "median_ms": r["latency_ms_b1_median"],
                                               "multiple_of_floor": round(r["latency_ms_b1_median"] / floor, 2)}
    return floors


def _part(breakdown: dict, prefix: str, config: str | None = None) -> dict:
    """The breakdown whose label starts with `prefix` (and names `config`, when given)."""
    return next((b for label, b in breakdown.items() if label.startswith(prefix)
                 and (config is None or f"({config})" in label)), {})


def _ratio_text(name: str, e: dict, target: float) -> str:
    iqr = e.get("latency_speedup_vs_fastest_fp32_b1_iqr") or []
    ratio = e["latency_speedup_vs_fastest_fp32_b1"]
    return (f"{name}: {e['latency_ms_b1_median']:.4f} ms (spread {e.get('latency_ms_b1_spread', float('nan')):.4f}) "
            f"in {e['runtime']} with {(e.get('load') or {}).get('setting')}, {ratio:.2f}x"
            + (f" (per-round IQR {iqr[0]:.2f}-{iqr[1]:.2f})" if iqr else "")
            + f" the fastest FP32 ({e['fastest_fp32_b1']} with {e.get('fastest_fp32_b1_setting')}): goal {target}x "
            + ("met" if ratio >= target else "not met"))


def goals(document: dict, entries: dict, pt2e: str | None, pick: str | None, breakdown: dict) -> dict:
    """The batch-1 goals from the bench's side-by-side medians (ratios with the interquartile range of their
    per-round ratios), why where one is missed (from the breakdown and the compute floors), and every timed
    runtime's batch-1 median as a multiple of its compute floor."""
    floors, out = _floors(document, entries), {}
    fp32 = entries[REFERENCE]
    fastest = fp32.get("fastest_fp32_b1") or "onnxruntime"
    base = floors.get(f"{REFERENCE}/{fastest}", {})
    int8 = [(e.get("latency_speedup_vs_fastest_fp32_b1", 0), n) for n, e in entries.items() if n != REFERENCE]
    target = GOALS["pick_vs_fastest_fp32_b1"]
    for key, name in (("pick_vs_fastest_fp32_b1", pick), ("fastest_int8_vs_fastest_fp32_b1", max(int8)[1])):
        e = entries.get(name or "", {})
        if "latency_speedup_vs_fastest_fp32_b1" not in e:
            continue
        ratio, mine = e["latency_speedup_vs_fastest_fp32_b1"], floors.get(f"{name}/{e['runtime']}", {})
        out[key] = {"config": name, "ratio": ratio, "ratio_iqr": e.get("latency_speedup_vs_fastest_fp32_b1_iqr"),
                    "target": target, "met": ratio >= target, "text": _ratio_text(name, e, target)}
        if ratio < target and base and mine:
            need = fp32["runtimes"][fastest]["latency_ms_b1_median"] / target
            part = _part(breakdown, e["runtime"], name).get("parts_ms", {})
            out[key]["why"] = (
                f"FP32 in {fastest} takes {base['median_ms']:.4f} ms, {base['multiple_of_floor']}x its compute floor "
                f"({base['floor_ms']:.4f} ms on {base['path']}, {base['threads']} thread(s)); {target}x needs "
                f"{need:.4f} ms, {need / mine['floor_ms']:.2f}x the int8 floor ({mine['floor_ms']:.4f} ms on "
                f"{mine['path']}, {mine['threads']} thread(s)); {name} takes {e['latency_ms_b1_median']:.4f} ms, "
                f"{mine['multiple_of_floor']}x"
                + (": of its profiled call, " + ", ".join(f"{k} {v:.4f} ms" for k, v in part.items()) if part else ""))
    ort_fp32 = fp32["runtimes"].get("onnxruntime", {})
    aoti = entries.get(pt2e or "", {}).get("runtimes", {}).get("aotinductor", {})
    if "latency_ms_b1_median" in aoti and "latency_ms_b1_median" in ort_fp32:
        ratio = round(ort_fp32["latency_ms_b1_median"] / aoti["latency_ms_b1_median"], 3)
        iqr = aoti.get("latency_speedup_vs_fastest_fp32_b1_iqr") if fastest == "onnxruntime" else None
        out["pt2e_aotinductor_vs_ort_fp32_b1"] = {
            "config": pt2e, "ratio": ratio, "ratio_iqr": iqr, "target": 1.0, "met": ratio >= 1.0,
            "text": f"{pt2e} in aotinductor {aoti['latency_ms_b1_median']:.4f} ms with "
                    f"{aoti.get('latency_b1_threads')} thread(s), ORT FP32 {ort_fp32['latency_ms_b1_median']:.4f} ms: "
                    f"{ratio:.2f}x" + (f" (per-round IQR {iqr[0]:.2f}-{iqr[1]:.2f})" if iqr else "")
                    + f": goal no slower (1.0x) {'met' if ratio >= 1.0 else 'not met'}"}
        b = _part(breakdown, "aotinductor int8", pt2e)
        if ratio < 1.0 and b:
            parts = list(b["parts_ms"].values())
            perf = list((b.get("perf_ms_of_loader_run") or {}).items())[:3]
            out["pt2e_aotinductor_vs_ort_fp32_b1"]["why"] = (
                f"of its {b['wall_ms']:.4f} ms call, oneDNN's int8 kernels take {parts[1]:.4f} ms (ORT FP32's whole "
                f"call: {ort_fp32['latency_ms_b1_median']:.4f} ms), the Python wrapper {parts[0]:.4f} ms and the rest "
                f"inside the package {parts[2]:.4f} ms: PyTorch builds each oneDNN primitive descriptor and its "
                "tensors on every call"
                + ("; perf: " + ", ".join(f"{k} {v:.4f} ms" for k, v in perf) if perf else ""))
    text = "; ".join(f"{k} {v['multiple_of_floor']}x (floor {v['floor_ms']:.4f} ms, {v['path']}, {v['threads']} "
                     f"thread(s))" for k, v in floors.items())
    out["compute_floor_b1"] = {"macs_per_image": document.get("analysis", {}).get("macs", {}).get("macs_per_image"),
                               "runtimes": floors, "text": text}
    return out
