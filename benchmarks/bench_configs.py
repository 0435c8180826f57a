"""The whole speed comparison in one run: FP32 (torch eager, torch + inductor, ORT) and the default-sweep configs,
side by side, plus the tool's own evaluation throughput, each model's fraction of the CPU's peak, profiles
that say where the time goes, and the speed/size targets checked. Writes artifacts/results/bench.json (the
bench document of `quant-explorer bench`, plus an "analysis" section) and bench_profile.{json,txt}.

    python benchmarks/bench_configs.py                                  # resnet8-mlperf, default sweep
    python benchmarks/bench_configs.py -m resnet8 -c 'ort_*' --runs 50 --no-compile

Peak multiply-adds per second per SIMD path, and which path each runtime's kernels ran (oneDNN verbose, perf
samples, else the CPU flags): see peak.py. The "dispatch" section records the evidence per runtime, and each
"fraction_of_peak_b256" row names the path its peak is that of.
The two speed targets are decided by paired runs, not by the main table. The table's ratios compare medians
of runs up to a round (many seconds) apart. The paired check alternates the FP32 model and the candidate,
one batch each, 40 times, and takes the median of the per-pair ratios, with its quartiles. It runs for
ORT's three fastest int8 configs and for the fastest PT2E model under inductor.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from quant_explorer.backends import select_configs
from quant_explorer.backends.ort import ONNXRUNTIME
from quant_explorer.backends.pt2e import AOTINDUCTOR, INDUCTOR, in_eval_mode, load_pt2
from quant_explorer.bench import BenchSettings, bench_and_record, bench_inputs
from quant_explorer.configs import CALIBRATION_N, REFERENCE
from quant_explorer.data import EvalData, resolve_data_dir
from quant_explorer.errors import one_line
from quant_explorer.files import write_text_atomic
from quant_explorer.keys import row_identity, row_key
from quant_explorer.models import load_model
from quant_explorer.paths import results_file
from quant_explorer.report.text import bench_table_rows
from quant_explorer.results import write_json_atomic
from quant_explorer.runtimes import (
    aot_runner,
    inductor_runner,
    ort_runner,
    ort_session,
    torch_runner,
)
from quant_explorer.timing import SETTLE_SECONDS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peak.py beside this file, also when it is loaded by path
from peak import count_macs, cpu_peak, dispatched, fractions_of_peak

SHARED = Path(__file__).resolve().parents[2] / "shared"
MLPERF_H5 = SHARED / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet.h5"
TARGETS = {"ort_int8_vs_fp32_b256": 1.5, "pt2e_inductor_vs_fp32_inductor_b256": 2.5, "int8_size_ratio_max": 0.30}
PROFILE_RUNS = 10
HEAD_TO_HEAD_PAIRS = 40
# the fastest ORT configs of the main table; PT2E: the fastest one (each compile ~1 min)
HEAD_TO_HEAD_ORT_CANDIDATES = 3


def eval_throughput(document: dict) -> dict:
    """The tool's own evaluate() (1,017 images, end to end) as a fraction of bench's batch-256 throughput."""
    fp32 = next(e for e in document["entries"].values() if e["config_name"] == "fp32_baseline")
    out = {}
    for runtime, r in fp32["runtimes"].items():
        if "eval_images_per_second" in r:
            out[runtime] = {"eval_images_per_second": r["eval_images_per_second"],
                            "bench_throughput_b256": r["throughput_b256"],
                            "fraction": r["eval_fraction_of_b256"],
                            "meets_70_percent": r["eval_fraction_of_b256"] >= 0.7}
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
        session = ort_session(path, threads, profile_prefix=str(Path(tmp) / "onnxruntime"))
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


def by_throughput(entries: dict, runtime: str) -> list[str]:
    """The quantized configs timed in `runtime` (ORT's in onnxruntime, PT2E's in inductor), fastest batch-256
    throughput first."""
    timed = [(e["runtimes"][runtime]["throughput_b256"], name) for name, e in entries.items()
             if name != REFERENCE and "throughput_b256" in e.get("runtimes", {}).get(runtime, {})]
    return [name for _, name in sorted(timed, reverse=True)]


def profiles(model, document: dict, data: EvalData, settings: BenchSettings, configs: dict) -> tuple[dict, str]:
    """Profiles of FP32 and the fastest int8 config in ORT, and FP32 vs the fastest PT2E model under inductor."""
    _, xb = bench_inputs(model, data, settings.batch)
    entries = {e["config_name"]: e for e in document["entries"].values()}

    ort_ranked = by_throughput(entries, ONNXRUNTIME.name)
    pt2e_ranked = by_throughput(entries, INDUCTOR.name)
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


def dispatch_records(model, document: dict, data: EvalData, settings: BenchSettings,
                     configs: dict) -> dict[tuple[str, str], dict]:
    """(config, runtime) -> the path its kernels ran at the bench batch, with the evidence (peak.dispatched), on a
    runner rebuilt from the artifact. Inductor is compiled for FP32 and the fastest PT2E config only; the other
    PT2E configs run the same oneDNN kernels and get that path, with the config it was observed on."""
    _, xb = bench_inputs(model, data, settings.batch)
    entries = {e["config_name"]: e for e in document["entries"].values() if "runtimes" in e}
    fastest_pt2e = by_throughput(entries, INDUCTOR.name)[:1]

    def build(config, runtime: str, artifact: Path):
        fp32 = config.name == REFERENCE
        if runtime == "onnxruntime":
            return ort_runner(artifact, settings.threads)
        if runtime == "aotinductor":
            return aot_runner(artifact)
        if runtime == "inductor":
            return inductor_runner(model.fresh() if fp32 else load_pt2(artifact))
        if runtime == "torch":
            return torch_runner(model.module if fp32 else in_eval_mode(load_pt2(artifact)))
        return torch_runner(torch.jit.load(str(artifact)))  # x86, qnnpack: TorchScript repacks for the engine set

    out: dict[tuple[str, str], dict] = {}
    torch.set_num_threads(settings.threads)
    for name, entry in entries.items():
        for runtime, r in entry["runtimes"].items():
            if ("throughput_b256" not in r or runtime == "inductor" and name not in ("fp32_baseline", *fastest_pt2e)
                    or runtime == "aotinductor" and "artifact" not in r):
                continue
            previous = torch.backends.quantized.engine
            torch.backends.quantized.engine = runtime if runtime in ("x86", "qnnpack") else previous
            try:
                artifact = Path(r.get("artifact", entry["artifact"]))
                out[name, runtime] = dispatched(runtime, build(configs[name], runtime, artifact), xb)
            except Exception as e:  # a path we cannot observe falls back to the CPU flags in fractions_of_peak
                out[name, runtime] = {"error": one_line(e)}
            finally:
                torch.backends.quantized.engine = previous
    seen = out.get((fastest_pt2e[0], "inductor"), {}) if fastest_pt2e else {}
    for name, entry in entries.items():
        if ("path" in seen and "throughput_b256" in entry["runtimes"].get("inductor", {})
                and (name, "inductor") not in out):
            out[name, "inductor"] = {"path": seen["path"], "path_how": seen["path_how"], "observed_on": fastest_pt2e[0]}
    return out


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
    """Paired speed-ups for the two speed targets — ORT FP32 vs its fastest int8 configs, FP32 vs PT2E under
    Inductor — and, beside them, FP32 vs the fastest PT2E config both as AOTInductor packages (what ships)."""
    _, xb = bench_inputs(model, data, settings.batch)
    entries = {e["config_name"]: e for e in document["entries"].values()}

    torch.set_num_threads(settings.threads)
    out = {ONNXRUNTIME.name: {}, INDUCTOR.name: {}, AOTINDUCTOR.name: {}}
    fp32_ort = ort_runner(Path(entries[REFERENCE]["artifact"]), settings.threads)
    for name in by_throughput(entries, ONNXRUNTIME.name)[:HEAD_TO_HEAD_ORT_CANDIDATES]:
        out[ONNXRUNTIME.name][name] = paired_speedup(fp32_ort,
                                                     ort_runner(Path(entries[name]["artifact"]), settings.threads), xb)
    if settings.compile:
        fp32_inductor = inductor_runner(model.fresh())
        for name in by_throughput(entries, INDUCTOR.name)[:1]:
            out[INDUCTOR.name][name] = paired_speedup(fp32_inductor,
                                                      inductor_runner(load_pt2(Path(entries[name]["artifact"]))), xb)
        fp32_package = entries[REFERENCE]["runtimes"].get(AOTINDUCTOR.name, {}).get("artifact")
        for name in by_throughput(entries, AOTINDUCTOR.name)[:1] if fp32_package else []:
            package = entries[name]["runtimes"][AOTINDUCTOR.name]["artifact"]
            out[AOTINDUCTOR.name][name] = paired_speedup(aot_runner(Path(fp32_package)), aot_runner(Path(package)), xb)
    return out


def targets_check(document: dict, configs: dict, sizes_fp32: int, peak: dict) -> dict:
    entries = {e["config_name"]: e for e in document["entries"].values()}

    def best(runtime):
        vals = [(e["runtimes"][runtime].get("speedup_vs_fp32_b256"), n) for n, e in entries.items()
                if n != REFERENCE and e.get("runtimes", {}).get(runtime, {}).get("speedup_vs_fp32_b256")]
        return max(vals) if vals else (None, None)

    ort_speedup, ort_name = best(ONNXRUNTIME.name)
    pt2e_speedup, pt2e_name = best(INDUCTOR.name)
    sizes = [(e["size_ratio_vs_fp32"], n) for n, e in entries.items()
             if configs[n].is_static and e.get("size_ratio_vs_fp32")]  # int8 activations and weights
    size_ratio, size_name = min(sizes) if sizes else (None, None)
    return {
        "ort_int8_vs_fp32_b256": {"target": TARGETS["ort_int8_vs_fp32_b256"], "best": ort_speedup, "config": ort_name,
                                  "met": bool(ort_speedup and ort_speedup >= TARGETS["ort_int8_vs_fp32_b256"])},
        "pt2e_inductor_vs_fp32_inductor_b256": {
            "target": TARGETS["pt2e_inductor_vs_fp32_inductor_b256"], "best": pt2e_speedup, "config": pt2e_name,
            "met": bool(pt2e_speedup and pt2e_speedup >= TARGETS["pt2e_inductor_vs_fp32_inductor_b256"]),
            "compute_ceiling": peak["int8_over_fp32_peak_ratio"],
            "why": f"int8 peak / fp32 peak on this CPU is {peak['int8_over_fp32_peak_ratio']:.1f}x "
                   f"({peak['int8_how']})"},
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
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles and the dispatch observation")
    parser.add_argument("--calibration-n", type=int, default=CALIBRATION_N)
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
    timed = bench_and_record(model, chosen, data, args.calibration_n, args.seed, settings, results_file(), bench_path,
                             log=print)
    document = timed.to_dict()  # read as the JSON it is written as, with the analysis added
    macs = count_macs(model.fresh())
    peak = cpu_peak(settings.threads)
    dispatch = {} if args.no_profile else dispatch_records(model, document, data, settings, configs)
    fp32 = configs["fp32_baseline"]
    fp32_entry = document["entries"][row_key(model, fp32, row_identity(model, fp32, data))]
    analysis = {
        "macs": macs, "peak": peak,
        "dispatch": {f"{name}/{runtime}": record for (name, runtime), record in dispatch.items()},
        "fraction_of_peak_b256": fractions_of_peak(document, macs["macs_per_image"], peak, configs, dispatch),
        "eval_throughput_vs_bench": eval_throughput(document),
        "targets": targets_check(document, configs, fp32_entry["size_bytes"], peak),
        "sizes": {e["config_name"]: size_breakdown(Path(e["artifact"])) for e in document["entries"].values()
                  if "artifact" in e},
    }
    paired = head_to_head(model, document, data, settings, configs)
    analysis["paired_aotinductor_b256"] = paired[AOTINDUCTOR.name]
    for key, runtime in (("ort_int8_vs_fp32_b256", ONNXRUNTIME.name),
                         ("pt2e_inductor_vs_fp32_inductor_b256", INDUCTOR.name)):
        target = analysis["targets"][key]
        if paired[runtime]:
            name, best = max(paired[runtime].items(), key=lambda kv: kv[1]["speedup_median"])
            target.update({"table_best": target.pop("best"), "table_config": target.pop("config"),
                           "best": best["speedup_median"], "config": name, "paired": paired[runtime],
                           "met": best["speedup_median"] >= target["target"]})
    if not args.no_profile:
        summary, text = profiles(model, document, data, settings, configs)
        write_json_atomic(bench_path.with_name("bench_profile.json"), summary)
        write_text_atomic(bench_path.with_name("bench_profile.txt"), text)
        analysis["profiles"] = "bench_profile.json"
        pt2e = analysis["targets"]["pt2e_inductor_vs_fp32_inductor_b256"]
        pt2e["profile"] = pt2e_profile_bound(summary, pt2e["target"])
    document["analysis"] = analysis
    document["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(bench_path, document)
    for row in bench_table_rows(timed):
        print(" | ".join(row))
    print(json.dumps(analysis["targets"], indent=1))
    print(json.dumps(analysis["eval_throughput_vs_bench"], indent=1))
    print(f"wrote {bench_path}")


if __name__ == "__main__":
    main()
