"""Commands that compute: quantize one config, sweep many, bench their speed, train a model, run the studies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError, first_line
from .app import (CalibN, ConfigsOpt, DataDir, InputScale, JsonOpt, MeanOpt, ModelOpt, SeedOpt, SeedsOpt, StdOpt,
                  WeightsOpt, app, console, err_console, interruptible, patterns, print_json, print_table, quiet_or)


def _row_line(row: dict) -> str:
    if "not_applicable" in row:
        return f"{row['config_name']}: not applicable ({row['not_applicable']})"
    if "error" in row:
        return f"{row['config_name']}: [red]failed[/red] {first_line(row['error'])}"
    delta = f" ({row['delta_pp']:+.2f} pp)" if "delta_pp" in row else ""
    return (f"{row['config_name']}: {100 * row['accuracy']:.2f}% ({row['correct']}/{row['n_images']}){delta}, "
            f"{row['size_bytes'] / 1024:.0f} KiB" + (f", {row['seconds']:.1f} s" if "seconds" in row else ""))


@app.command()
def quantize(config: str = typer.Option(..., "--config", "-c", help="Config name (see `configs`)."),
             model: str = ModelOpt, weights: Optional[Path] = WeightsOpt, calibration_n: int = CalibN,
             seed: int = SeedOpt, data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
             mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Quantize one model with one config, evaluate it on every test image, record it in full_results.json.

    Exit code 1 if quantizing or running it fails (the row records the error), 2 for bad input.
    """
    from ..configs import get_config
    from ..experiment import load_models, prepare
    from ..paths import results_file
    from ..sweep import run_sweep

    chosen = get_config(config)
    data = prepare(data_dir, [results_file()], calibration_n, seed)
    loaded = load_models([model], weights, input_scale, mean, std)
    for key, row, _ in run_sweep(loaded, [chosen], data, calibration_n, [seed], results_file(), force=True):
        if as_json:
            print_json(row)
        else:
            console.print(_row_line(row))
            for warning in row.get("warnings", []):
                err_console.print(f"[yellow]warning:[/yellow] {warning}")
        if "error" in row:
            raise typer.Exit(1)


@app.command()
def sweep(model: list[str] = typer.Option(None, "--model", "-m", help="Models to sweep (repeatable); default: every "
                                          "shipped model (see `models`)."),
          weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for the model, when one --model "
                                                 "is given."),
          config_names: list[str] = ConfigsOpt,
          all_configs: bool = typer.Option(False, "--all", help="The full config grid."),
          calibration_n: int = CalibN, seeds: int = SeedsOpt,
          first_seed: int = typer.Option(0, "--first-seed", min=0, help="The first calibration seed."),
          data_dir: Optional[Path] = DataDir,
          force: bool = typer.Option(False, "--force", help="Rerun entries already in the results file."),
          input_scale: Optional[str] = InputScale, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
          executor: str = typer.Option("local", "--executor", help="Where configs run: local (this process), "
                                       "processes (a process pool here) or ray (a Ray cluster; see docs/ray.md)."),
          ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. "
                                                    "HEAD:6379; default: start a local Ray instance."),
          workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Tasks at once (processes, "
                                                "ray); default: one per CPU."),
          as_json: bool = JsonOpt) -> None:
    """Run many configs on many models, each static one with several calibration seeds; resumable.

    A stored row is reused only where it was measured alike (same data, calibration sample, config record,
    weights, CPU class and library versions); the sweep says in one line why others are computed afresh.
    Exit code 1 if any row failed (the others still ran and were saved), 2 for bad input.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..configs import select_configs
    from ..executors import make_executor
    from ..experiment import load_models, prepare
    from ..models import SHIPPED
    from ..paths import results_file
    from ..sweep import run_sweep, stage_seconds

    runner = make_executor(executor, ray_address, workers)
    chosen = select_configs(patterns(config_names), all_configs)
    started = time.perf_counter()
    data = prepare(data_dir, [results_file()], calibration_n, first_seed)
    seed_list = list(range(first_seed, first_seed + seeds))
    loaded = load_models(model or list(SHIPPED), weights, input_scale, mean, std)
    loaded_seconds = time.perf_counter() - started
    rows = []
    total = len(loaded) * sum(len(seed_list) if c.is_static else 1 for c in chosen)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with interruptible(lambda: f"{sum(not r['skipped'] for r in rows)} rows saved, {total - len(rows)} not run"), \
            Progress(*columns, console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task("sweep", total=total)
        notify = (lambda line: None) if as_json else (lambda line: progress.console.print(f"[yellow]{line}[/yellow]"))
        for key, row, skipped in run_sweep(loaded, chosen, data, calibration_n, seed_list, results_file(), force,
                                           runner, notify):
            rows.append({"key": key, "skipped": skipped, **row})
            if not as_json:
                seed = (row.get("calibration") or {}).get("calibration_seed")
                console.print(f"{row['model']} " + _row_line(row) + (f" [dim]seed {seed}[/dim]" if seed is not None else "")
                              + (" [dim](done before)[/dim]" if skipped else ""), soft_wrap=True)
            progress.update(task, advance=1, description=key.rsplit("|", 1)[0])
    stages = {"load data and models": round(loaded_seconds, 1), **stage_seconds(rows),
              "total": round(time.perf_counter() - started, 1)}
    if as_json:
        print_json(rows)
    else:
        console.print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    failed = [r for r in rows if "error" in r]
    if failed:
        err_console.print(f"[red]error:[/red] {len(failed)} of {len(rows)} rows failed (saved with their error; "
                          "rerun to retry them)")
        raise typer.Exit(1)


@app.command()
def bench(model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
          config_names: list[str] = typer.Option(None, "--configs", "-c", help="Config names or globs (repeatable "
                                                  "or comma-separated); default: the default sweep. FP32 is always in."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, max=1024, help="Threads for torch and ORT; "
                                                "default: torch's."),
          runs: int = typer.Option(200, "--runs", min=1, max=100_000, help="Timed batch-1 runs per model and runtime."),
          no_compile: bool = typer.Option(False, "--no-compile", help="Skip the runtimes a compiler builds "
                                          "(torch.compile, AOTInductor)."),
          calibration_n: int = CalibN, seed: int = SeedOpt, data_dir: Optional[Path] = DataDir,
          input_scale: Optional[str] = InputScale, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
          as_json: bool = JsonOpt) -> None:
    """Latency (batch 1), throughput (batch 256), size and as-run accuracy of configs beside FP32, one run."""
    import torch

    from ..bench import BenchSettings, bench_and_record, table_rows
    from ..configs import select_configs
    from ..experiment import load_models, prepare
    from ..paths import bench_file, results_file

    chosen = select_configs(patterns(config_names))
    settings = BenchSettings(threads=threads or torch.get_num_threads(), runs=runs, compile=not no_compile)
    data = prepare(data_dir, [results_file()], calibration_n, seed)
    [loaded] = load_models([model], weights, input_scale, mean, std)
    document = bench_and_record(loaded, chosen, data, calibration_n, seed, settings, results_file(),
                                bench_file(loaded.name), log=err_console.print)
    if as_json:
        return print_json(document)
    table = Table("config", "runtime", "latency b1 median (ms)", "latency b1 p90 (ms)", "throughput b256 (images/s)",
                  "× FP32", "size (KiB)", "accuracy as run", "reference accuracy",
                  title=f"{loaded.name}, {settings.threads} threads, {document['environment']['cpu']['model']}")
    for r in table_rows(document):
        table.add_row(*r)
    print_table(table)


@app.command()
def train(model: str = typer.Option(..., "--model", "-m", help="resnet8 or cifar_cnn."),
          train_data: list[Path] = typer.Option(..., "--train-data", help="Training data directories (repeatable); "
                                                "their train splits are concatenated."),
          data_dir: Optional[Path] = DataDir,
          out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default: the packaged weights."),
          epochs: int = typer.Option(100, "--epochs", min=1, max=10_000, help="The shipped resnet8: 100 (2 h 13 min "
                                     "on 2 CPU cores); cifar_cnn: 20."),
          seed: int = typer.Option(0, "--seed", min=0)) -> None:
    """Train a model from scratch (random crop + flip), write fp32_baseline.pt and model_card.json."""
    from ..data import resolve_data_dir
    from ..models import PACKAGED_WEIGHTS, get_spec
    from ..train import TrainRecipe, train as run_train

    get_spec(model)
    card = run_train(model, train_data, resolve_data_dir(data_dir), out or PACKAGED_WEIGHTS / model,
                     TrainRecipe(epochs=epochs, seed=seed), log=console.print)
    console.print(f"{model}: {100 * card['accuracy']:.2f}% ({card['correct']}/{card['n_eval_images']}) on "
                  f"{card['evaluated_on']} after {card['train_seconds']:.0f} s")


@app.command("calib-sensitivity")
def calib_sensitivity(config: str = typer.Option(..., "--config", "-c", help="A static config (see `configs`)."),
                      model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
                      sizes: str = typer.Option("32,100,256,512,1024", "--sizes", help="Calibration-set sizes, "
                                                "comma-separated."),
                      seeds: int = typer.Option(5, "--seeds", min=1, max=100, help="Samples per size (seeds 0..N-1)."),
                      data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
                      mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Accuracy vs calibration-set size, mean and spread over seeds; saved to results/calibration_size.json."""
    from ..analysis import calibration_size
    from ..configs import get_config
    from ..experiment import load_models, prepare
    from ..paths import results_path

    chosen = get_config(config)
    out = results_path(calibration_size.FILE)
    data = prepare(data_dir, [out])
    chosen_sizes = calibration_size.parse_sizes(sizes, len(data.train))
    [loaded] = load_models([model], weights, input_scale, mean, std)
    entry = calibration_size.run(loaded, chosen, data, chosen_sizes, seeds, log=quiet_or(as_json))
    calibration_size.save(out, entry)
    if as_json:
        return print_json(entry)
    table = Table("images", "seeds", "mean", "std", "min", "max", "Δ mean vs FP32", title=f"{entry['model']} "
                  f"{entry['config_name']} (FP32 {100 * entry['fp32_accuracy']:.2f}%)")
    for s in entry["sizes"]:
        if not s["seeds"]:
            table.add_row(str(s["n"]), "0", "failed", "", "", "", "")
            continue
        table.add_row(str(s["n"]), str(len(s["seeds"])), f"{100 * s['mean']:.2f}%", f"{100 * s['std']:.2f} pp",
                      f"{100 * s['min']:.2f}%", f"{100 * s['max']:.2f}%", f"{s['mean_delta_pp']:+.2f} pp")
    console.print(table)
    console.print(f"saved to {out}")


@app.command("layer-sensitivity")
def layer_sensitivity(config: str = typer.Option(..., "--config", "-c", help="A config of a backend that can select "
                                                 "layers (ORT, PT2E)."),
                      model: str = ModelOpt, weights: Optional[Path] = WeightsOpt, calibration_n: int = CalibN,
                      seed: int = SeedOpt, layers: Optional[str] = typer.Option(None, "--layers", help="Only these "
                                                                               "layers, comma-separated."),
                      data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
                      mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Per layer: quantize it alone / keep it alone FP32, plus activation SQNR; saved to layer_sensitivity.json."""
    from ..analysis import layer_sensitivity as analysis
    from ..configs import get_config
    from ..experiment import load_models, make_calibration, prepare
    from ..paths import results_path

    chosen = get_config(config)
    out = results_path(analysis.FILE)
    data = prepare(data_dir, [out], calibration_n, seed)
    [loaded] = load_models([model], weights, input_scale, mean, std)
    entry = analysis.run(loaded, chosen, data, make_calibration(loaded, data, calibration_n, seed),
                         [name for name in layers.split(",") if name] if layers else None, log=quiet_or(as_json))
    analysis.save(out, entry)
    if as_json:
        return print_json(entry)
    table = Table("layer", "op", "cost: only it quantized", "recovery: only it FP32", "weight SQNR",
                  title=f"{entry['model']} {entry['config_name']}: FP32 {100 * entry['fp32_accuracy']:.2f}%, all "
                        f"quantized {100 * entry['quantized_accuracy']:.2f}%")
    for row in entry["layers"]:
        sqnr = f"{row['weight_sqnr_db']:.1f} dB" if row["weight_sqnr_db"] is not None else "—"
        table.add_row(row["layer"], row["op_type"], f"{row['cost_pp']:+.2f} pp", f"{row['recovery_pp']:+.2f} pp", sqnr)
    console.print(table)
    console.print(f"most costly alone: {', '.join(entry['ranking_by_cost'][:3])}; most recovered by keeping FP32: "
                  f"{', '.join(entry['ranking_by_recovery'][:3])}; saved to {out}")


@app.command()
def analyze(model: list[str] = typer.Option(None, "--model", "-m", help="Only the studies of these models "
                                             "(repeatable); default: all of them."),
            force: bool = typer.Option(False, "--force", help="Rerun studies whose entries are current."),
            data_dir: Optional[Path] = DataDir, as_json: bool = JsonOpt) -> None:
    """Run the report's calibration-size and per-layer studies that are missing or stale; skip the rest."""
    from ..analysis.studies import STUDIES, run_studies
    from ..experiment import load_models, prepare
    from ..paths import results_file, results_path

    studies = [s for s in STUDIES if not model or s.model in model]
    if not studies:
        raise UserError(f"no studies for {', '.join(model)}; studies exist for "
                        f"{', '.join(sorted({s.model for s in STUDIES}))}")
    data = prepare(data_dir, sorted({results_path(s.file) for s in studies}))
    names = list(dict.fromkeys(s.model for s in studies))
    loaded = dict(zip(names, load_models(names)))
    done = []
    for study, entry, skipped in run_studies(studies, loaded, data, results_file().parent, force, quiet_or(as_json)):
        done.append({"study": study.kind, "model": study.model, "config": study.config, "skipped": skipped,
                     "file": study.file})
        if not as_json:
            console.print(f"{study.kind}: {study.model} / {study.config} " +
                          ("[dim](current, skipped)[/dim]" if skipped else f"→ {study.file}"))
    if as_json:
        print_json(done)
