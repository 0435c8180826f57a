"""Wall time of one sweep run in-process (local), by a process pool (processes) and by a local Ray instance (ray).

Each executor gets a fresh results file and a fresh artifacts folder, so each pays for the same work: the
driver's FP32 baselines (ONNX export included) and every config quantized and evaluated. Data and model
loading happen once, before the clocks start. The rows' accuracies are compared across executors: they
must be identical. Writes artifacts/results/executors.json.

    python benchmarks/bench_executors.py                        # the default sweep, models with weights here
    python benchmarks/bench_executors.py -m resnet8-mlperf -c 'ort_*' --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from quant_explorer.backends import select_configs
from quant_explorer.data import EvalData, resolve_data_dir
from quant_explorer.env import cpu_info, library_versions
from quant_explorer.errors import UserError
from quant_explorer.executors import EXECUTORS, make_executor, ray_available
from quant_explorer.models import load_model
from quant_explorer.paths import ARTIFACTS_ENV, artifacts_dir
from quant_explorer.results import write_json_atomic
from quant_explorer.sweep import run_sweep

DEFAULT_MODELS = ["resnet8", "resnet8-mlperf", "cifar_cnn"]
COMPARED = ("accuracy", "correct", "delta_pp", "agreement_with_fp32")  # must not depend on the executor


def _loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def time_sweep(executor_name: str, models, configs, data, calibration_n: int, workers: int | None) -> dict:
    executor = make_executor(executor_name, workers=None if executor_name == "local" else workers)
    with tempfile.TemporaryDirectory(prefix=f"bench-{executor_name}-") as tmp:
        os.environ[ARTIFACTS_ENV] = tmp
        started, first, rows = time.perf_counter(), None, {}
        load_before = _loadavg()
        for key, row, _skipped in run_sweep(models, configs, data, calibration_n, 0, Path(tmp) / "results.json",
                                           force=True, executor=executor):
            if "fp32_baseline" not in key and first is None:
                first = time.perf_counter() - started
            rows[key] = row
        wall = time.perf_counter() - started
    return {"executor": executor_name, "workers": None if executor_name == "local" else workers,
            "wall_seconds": round(wall, 2), "first_row_seconds": round(first, 2) if first else None,
            "rows": len(rows), "errors": sorted(k for k, r in rows.items() if r.error is not None),
            "load_average_before": load_before, "load_average_after": _loadavg(),
            "_rows": {k: {f: getattr(r, f) for f in COMPARED} for k, r in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="Models (repeatable); default: the default "
                        "sweep's models whose weights are here.")
    parser.add_argument("-c", "--configs", help="Config names or globs, comma-separated; default: the default sweep.")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--calibration-n", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--executors", default=",".join(EXECUTORS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    out = args.out or artifacts_dir() / "results" / "executors.json"
    out = out.resolve()
    names = [n for n in args.executors.split(",") if n and (n != "ray" or ray_available())]
    models = []
    for name in args.model or DEFAULT_MODELS:
        try:
            models.append(load_model(name))
        except UserError as e:
            if args.model:
                raise
            print(f"skipping {name}: {e}")
    configs = select_configs([p for p in (args.configs or "").split(",") if p])
    data_dir = resolve_data_dir(args.data_dir)
    data = EvalData.load(data_dir)
    print(f"{len(models)} models x {len(configs)} configs on {len(data.test)} test images, "
          f"{os.cpu_count()} CPUs; executors {', '.join(names)}")

    runs = []
    for name in names:
        run = time_sweep(name, models, configs, data, args.calibration_n, args.workers)
        print(f"{name:>9}: {run['wall_seconds']:.1f} s ({run['rows']} rows, first config row after "
              f"{run['first_row_seconds']} s, {len(run['errors'])} errors, load {run['load_average_before']})")
        runs.append(run)
    reference = runs[0]["_rows"]
    for run in runs:
        rows = run.pop("_rows")
        run["same_accuracies_as_" + names[0]] = rows == reference
        run["differing_rows"] = sorted(k for k in reference if rows.get(k) != reference[k])
    result = {"benchmark": "sweep wall time by executor", "models": [m.name for m in models],
              "configs": [c.name for c in configs], "n_test_images": len(data.test),
              "calibration_n": args.calibration_n, "data_dir": str(data_dir), "cpu_count": os.cpu_count(),
              "cpu": cpu_info()["model"], "versions": {**library_versions(), "ray": _ray_version()},
              "note": "wall time of run_sweep only (data and model loading excluded), ray including starting "
                      "and stopping its local instance; other processes' load is in load_average_*",
              "runs": runs}
    write_json_atomic(out, result)
    print(f"wrote {out}")


def _ray_version() -> str | None:
    if not ray_available():
        return None
    from importlib import metadata

    return metadata.version("ray")


if __name__ == "__main__":
    main()
