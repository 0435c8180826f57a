"""Where one image's time goes in each shipped runtime, the runtime settings tried side by side, and the batch-1
goals checked. Reads bench.json (bench_configs.py: which artifacts, each one's batch-1 median at its fastest
thread count, the path its kernels ran, the CPU's peaks), writes the "batch1" section of bench_profile.json, and
prints the breakdown and the ratios. `make bench` runs it last.

    python benchmarks/batch1.py                       # resnet8-mlperf, as bench.json names it
    python benchmarks/batch1.py --no-compile-options  # without the three extra compiles (about a minute)

One call at batch 1, in milliseconds (medians of back-to-back calls; the parts are measured, not fitted):
  onnxruntime   wall (session.run from Python, numpy in and out) = binding (wall minus ORT's own model_run:
                Python, input and output conversion) + executor (model_run minus its nodes: scheduling,
                allocation, thread-pool dispatch) + kernels by op type (ORT's profiler, which adds about 1 us
                per node; the unprofiled wall is beside it).
  aotinductor   wall (the user's call, AOTICompiledModel) = Python wrapper (minus loader.run on a prebuilt
                list) + oneDNN kernels (oneDNN's own execution times) + the rest inside the package: PyTorch's
                per-operator setup (oneDNN primitive descriptors built on every call, ideep tensors), ATen
                ops, allocation. perf samples split the whole call by library and symbol where perf runs.
  inductor, x86 torch.profiler's self time by operator (Dynamo's guards and the generated Python wrapper are
                operators there too).
  wake-up       the first call after 100 ms idle minus a back-to-back call: the thread pool asleep.
Settings, side by side in interleaved rounds (median and the interquartile range of per-round medians): ORT
intra-op threads x spinning x graph optimization level, and the input fed as numpy, OrtValue or IO binding;
AOTInductor's threads; OMP_WAIT_POLICY and glibc's malloc tunables in fresh processes (read at start-up,
alternated); Inductor and AOTInductor compile options (max_autotune, cpp_wrapper, freezing off).
Goals: the pick at batch 1 at least 2x the fastest FP32; PT2E in AOTInductor no slower than ORT FP32; each
runtime's batch-1 median as a multiple of its compute floor (MACs / the peak of its path at its thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from quant_explorer.backends import get_config
from quant_explorer.configs import REFERENCE
from quant_explorer.paths import results_file
from quant_explorer.results import write_json_atomic
from quant_explorer.runtimes import ort_session
from quant_explorer.runtimes.aot import aot_runner
from quant_explorer.timing import SETTLE_SECONDS, keep_freed_memory, pinned_threads, spread, timed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch1_parts import (  # noqa: E402  (beside this file)
    aoti_breakdown,
    compile_variants,
    goals,
    ort_breakdown,
    ort_settings,
    torch_breakdown,
)

ROUNDS, RUNS = 10, 20  # per variant: 200 timed calls over 10 interleaved rounds
# Settings read at process start-up, each tried in a fresh process: (name, environment, thread counts it is
# tried at; "all": 1 and the bench's; "pool": the bench's only, where a thread pool is what it changes)
ENV_VARIANTS = [("default", {}, "all"),
                ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}, "pool"),
                ("OMP_WAIT_POLICY=ACTIVE", {"OMP_WAIT_POLICY": "ACTIVE"}, "pool"),
                ("glibc malloc without fastbins", {"GLIBC_TUNABLES": "glibc.malloc.mxfast=0"}, "all"),
                ("the bench's malloc (freed memory kept)", {"MALLOC_MMAP_THRESHOLD_": str(1 << 30),
                                                            "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}, "all")]
ENV_PROBE = """import sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[2])); model = torch._inductor.aoti_load_package(sys.argv[1])
x = torch.rand(1, 3, 32, 32) * 255
for _ in range(50): model(x)
t = []
for _ in range(400):
    s = time.perf_counter(); model(x); t.append(time.perf_counter() - s)
print(1e3 * float(np.median(t)))"""


def side_by_side(runners: dict[str, tuple], x, rounds: int = ROUNDS, runs: int = RUNS) -> dict[str, dict]:
    """name -> (runner, torch threads): each timed `runs` back-to-back calls per round, the order rotating each
    round; its median and the interquartile range of its per-round medians, in ms."""
    names = list(runners)
    times = {n: [] for n in names}
    medians = {n: [] for n in names}
    for run, threads in runners.values():
        with pinned_threads(threads):
            timed(run, x, 10)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            run, threads = runners[name]
            time.sleep(SETTLE_SECONDS / 5)
            with pinned_threads(threads):
                timed(run, x, 3)
                got = timed(run, x, runs)
            times[name] += got
            medians[name].append(float(np.median(got)))
    return {n: {"median_ms": round(1e3 * float(np.median(times[n])), 4),
                "spread_ms": round(1e3 * spread(medians[n]), 4)} for n in names}


def wakeup(run, x, threads: int, calls: int = 15) -> dict:
    """A call after 100 ms idle against a back-to-back one: what waking the sleeping thread pool costs."""
    cold, warm = [], []
    with pinned_threads(threads):
        for _ in range(calls):
            time.sleep(0.1)
            cold += timed(run, x, 1)
            warm += timed(run, x, 5)[1:]
    c, w = 1e3 * float(np.median(cold)), 1e3 * float(np.median(warm))
    return {"threads": threads, "after_idle_ms": round(c, 4), "back_to_back_ms": round(w, 4),
            "wake_up_ms": round(c - w, 4)}


def env_variants(package: Path, threads: int, repeats: int = 2) -> dict:
    """AOTInductor in a fresh process per setting read at start-up (ENV_VARIANTS), the settings alternated
    `repeats` times so drift lands on all; per setting the median of its processes' medians and their range."""
    got: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, env, at in ENV_VARIANTS:
            for n in sorted({1, threads}) if at == "all" else [threads] if threads > 1 else []:
                out = subprocess.run([sys.executable, "-c", ENV_PROBE, str(package), str(n)], capture_output=True,
                                     text=True, env={**os.environ, **env}, timeout=300, check=False)
                if out.returncode == 0:
                    got.setdefault(f"{name}, {n} thread{'s' * (n > 1)}", []).append(float(out.stdout.split()[-1]))
    return {k: {"median_ms": round(float(np.median(v)), 4), "processes": len(v),
                "spread_ms": round(max(v) - min(v), 4)} for k, v in got.items()}


def current_pick(model: str) -> str | None:
    """The pick the answer names for `model` (batch-1 latency, held on every CPU class the results hold, as
    `summary` and the report make it), if the results file has a view here."""
    from quant_explorer.analysis.deploy import deployment
    from quant_explorer.analysis.summary import load_view
    from quant_explorer.results import Results

    try:
        results = Results.load(results_file())
        view = load_view(results)
        deployment(view, results)
        return getattr(view.choices.get(model), "pick", None)
    except Exception:  # no view here (no rows, another machine's): the goal names the fastest int8 instead
        return None


def print_report(section: dict) -> None:
    print(f"== batch-1 breakdown: {section['model']}, ms per call at the thread count the bench found fastest; "
          f"{section['cpu']}, load average {section['load']} ==")
    for name, b in section["breakdown"].items():
        profiled = f"; as profiled {b['profiled_wall_ms']:.4f}" if "profiled_wall_ms" in b else ""
        print(f"{name}, {b['threads']} thread{'s' * (b['threads'] > 1)}: {b['wall_ms']:.4f}{profiled} = "
              + ", ".join(f"{k} {v:.4f}" for k, v in b["parts_ms"].items()))
        for title in ("kernels_ms", "perf_ms_of_loader_run"):
            if b.get(title):
                print(f"    {'kernels by op' if title == 'kernels_ms' else 'perf samples, by library'}: "
                      + ", ".join(f"{k} {v:.4f}" for k, v in list(b[title].items())[:7]))
    for name, w in section["wake_up"].items():
        print(f"{name}, {w['threads']} threads: a call after 100 ms idle {w['after_idle_ms']:.4f}, back to back "
              f"{w['back_to_back_ms']:.4f}: waking the pool {w['wake_up_ms']:.4f}")
    print("== settings side by side (median ms, run-to-run spread) ==")
    for group, variants in section["settings"].items():
        best = min(variants, key=lambda k: variants[k]["median_ms"])
        print(f"{group}: " + "; ".join(f"{k} {v['median_ms']:.4f} ({v['spread_ms']:.4f})"
                                       + (" <- fastest" if k == best else "") for k, v in variants.items()))
    print("== goals ==")
    for name, g in section["goals"].items():
        print(f"{name}: {g['text']}" + (f"\n    why: {g['why']}" if g.get("why") else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=None, help="default: artifacts/results/bench.json")
    parser.add_argument("--no-compile-options", action="store_true", help="skip the three extra compiles")
    parser.add_argument("--no-env", action="store_true", help="skip the fresh-process settings")
    args = parser.parse_args()
    bench_path = args.bench or results_file().with_name("bench.json")
    document = json.loads(bench_path.read_text())
    started = time.perf_counter()
    keep_freed_memory()  # as the bench ran
    threads = document["settings"]["threads"]
    entries = {e["config_name"]: e for e in document["entries"].values() if "runtimes" in e}
    x1 = torch.rand(1, 3, 32, 32) * 255  # timing does not depend on the pixels; the profiles need one image
    fp32 = entries[REFERENCE]

    def fastest(runtime: str, keep=lambda config: True) -> str | None:
        """The quantized config with the lowest batch-1 median in `runtime`, among those `keep` takes."""
        here = [(e["runtimes"][runtime]["latency_ms_b1_median"], n) for n, e in entries.items()
                if n != REFERENCE and keep(get_config(n)) and "latency_ms_b1_median" in e["runtimes"].get(runtime, {})]
        return min(here)[1] if here else None

    ort = {"fp32": (REFERENCE, fp32["artifact"])}  # label -> (config, artifact)
    for form in ("qdq", "qoperator"):  # ORT's two int8 formats, each its fastest config
        name = fastest("onnxruntime", lambda config, form=form: config.format == form)
        if name:
            ort[f"int8 {form} ({name})"] = (name, entries[name]["artifact"])
    pt2e = fastest("aotinductor")
    packages = {label: (name, entries[name]["runtimes"]["aotinductor"]["artifact"])
                for label, name in (("fp32", REFERENCE), (f"int8 ({pt2e})", pt2e))
                if name and "artifact" in entries[name]["runtimes"].get("aotinductor", {})}
    section = {"model": document["model"], "cpu": document["environment"]["cpu"]["model"], "threads": threads,
               "load": [round(v, 2) for v in os.getloadavg()], "configs": {"ort": ort, "pt2e": pt2e},
               "breakdown": {}, "settings": {}, "wake_up": {}}
    for kind, (name, path) in ort.items():
        best = entries[name]["runtimes"]["onnxruntime"].get("latency_b1_threads", threads)
        section["breakdown"][f"onnxruntime {kind}"] = ort_breakdown(Path(path), x1, best)
        section["settings"][f"onnxruntime {kind}"] = side_by_side(ort_settings(Path(path), threads), x1)
    for kind, (name, path) in packages.items():
        best = entries[name]["runtimes"]["aotinductor"].get("latency_b1_threads", threads)
        section["breakdown"][f"aotinductor {kind}"] = aoti_breakdown(Path(path), x1, best)
        run, user = aot_runner(Path(path)), torch._inductor.aoti_load_package(str(path))
        section["settings"][f"aotinductor {kind}"] = side_by_side(
            {f"{n} thread{'s' * (n > 1)}{how}": (f, n) for n in sorted({1, threads})
             for how, f in ((" (loader.run)", run), (" (the user's call)", user))}, x1)
        if threads > 1:
            section["wake_up"][f"aotinductor {kind}"] = wakeup(run, x1, threads)
    if threads > 1:
        fp32_session = ort_session(Path(fp32["artifact"]), threads)
        section["wake_up"]["onnxruntime fp32 (spinning)"] = wakeup(
            lambda x: fp32_session.run(None, {fp32_session.get_inputs()[0].name: x.numpy()}), x1, threads)
    if pt2e and not args.no_env:
        section["settings"][f"aotinductor int8 ({pt2e}), fresh processes"] = env_variants(
            Path(packages[f"int8 ({pt2e})"][1]), threads)
    section["breakdown"].update(torch_breakdown(entries, pt2e, x1))
    if pt2e and not args.no_compile_options:
        section["settings"]["pt2e compile options, 1 thread"] = side_by_side(
            compile_variants(Path(entries[pt2e]["artifact"]), Path(packages[f"int8 ({pt2e})"][1]), x1), x1)
    section["goals"] = goals(document, entries, pt2e, current_pick(document["model"]), section["breakdown"])
    section["wall_seconds"] = round(time.perf_counter() - started, 1)
    profile_path = bench_path.with_name("bench_profile.json")
    stored = json.loads(profile_path.read_text()) if profile_path.exists() else {}
    write_json_atomic(profile_path, {**stored, "batch1": section})
    print_report(section)
    print(f"wrote the batch1 section of {profile_path}")


if __name__ == "__main__":
    main()
