"""Commands that compute: quantize one config, sweep many, bench their speed, train a model, run the studies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..configs import MAX_SEED
from ..errors import UserError
from .answers import print_answer, quantize_answer, row_line
from .app import (
    CalibN,
    ConfigsOpt,
    DataDir,
    InputScale,
    IsaOpt,
    JsonOpt,
    MeanOpt,
    ModelOpt,
    SeedOpt,
    SeedsOpt,
    StdOpt,
    WeightsOpt,
    app,
    bar,
    console,
    err_console,
    interruptible,
    patterns,
    print_json,
    print_table,
    quiet_or,
)


@app.command()
def quantize(config: str = typer.Option(..., "--config", "-c", help="Config name (see `configs`)."),
             model: str = ModelOpt, weights: Optional[Path] = WeightsOpt, calibration_n: int = CalibN,
             seed: int = SeedOpt, data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
             mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, isa: str = IsaOpt,
             as_json: bool = JsonOpt) -> None:
    """Quantize one model with one config, evaluate it on every test image, record it in full_results.json.

    Prints FP32 and quantized accuracy (each in the runtime it ships in), the delta with its interval (pooled
    over the recipe's stored seeds when there are several), size, the saved model's path and the time taken.
    Exit code 1 if quantizing or running it fails (the row records the error), 2 for bad input.
    """
    import time

    started = time.perf_counter()  # the command's wall time includes importing torch, which is seconds
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..backends import get_config
    from ..paths import results_file

    chosen = get_config(config)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(f"{model}: loading torch, the data and the model")
        from ..experiment import FP32
        from ..keys import row_identity, row_key
        from ..preflight import load_models, prepare
        from ..results import Results
        from ..sweep import run_sweep

        progress.stop()  # reading the images shows its own progress bar, on a first run
        data = prepare(data_dir, [results_file()], calibration_n, seed, [model])
        progress.start()
        loaded = load_models([model], weights, input_scale, mean, std, data)
        progress.update(task, description=f"{model}: FP32 baseline (once), then {chosen.name}: quantizing and "
                                          f"scoring {len(data.test):,} test images")
        [(key, row, _)] = list(run_sweep(loaded, [chosen], data, calibration_n, [seed], results_file(), force=True,
                                         notify=lambda line: err_console.print(f"[yellow]warning:[/yellow] {line}",
                                                                               highlight=False, soft_wrap=True)))
        stored = Results.load(results_file()).rows
        fp32 = stored.get(row_key(loaded[0], FP32, row_identity(loaded[0], FP32, data)))
    answer = quantize_answer(row, fp32, stored, data.test.labels.numpy(), time.perf_counter() - started)
    if as_json:
        print_json(answer.to_json())
    else:
        print_answer(answer)
        for warning in row.warnings or []:
            err_console.print(f"[yellow]warning:[/yellow] {warning}")
    if row.error is not None:
        raise typer.Exit(1)


@app.command()
def sweep(model: list[str] = typer.Option(None, "--model", "-m", help="Models to sweep (repeatable); default: every "
                                          "shipped model (see `models`)."),
          weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for the model, when one --model "
                                                 "is given."),
          config_names: list[str] = ConfigsOpt,
          all_configs: bool = typer.Option(False, "--all", help="The full config grid."),
          calibration_n: int = CalibN, seeds: int = SeedsOpt,
          first_seed: int = typer.Option(0, "--first-seed", min=0, max=MAX_SEED, help="The first calibration seed."),
          data_dir: Optional[Path] = DataDir,
          force: bool = typer.Option(False, "--force", help="Rerun entries already in the results file."),
          input_scale: Optional[str] = InputScale, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
          executor: str = typer.Option("local", "--executor", help="Where configs run: local (this process), "
                                       "processes (a process pool here) or ray (a Ray cluster; see docs/ray.md)."),
          ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. "
                                                    "HEAD:6379; default: start a local Ray instance."),
          workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Tasks at once (processes, "
                                                "ray); default: one per CPU."),
          isa: str = IsaOpt,
          as_json: bool = JsonOpt) -> None:
    """Run many configs on many models, each static one with several calibration seeds; resumable.

    A stored row is reused only where it was measured alike (same data, calibration sample, config record,
    weights, CPU class and library versions); the sweep says in one line why others are computed afresh.
    Exit code 1 if any row failed (the others still ran and were saved), 2 for bad input.
    """
    import time

    from ..backends import select_configs
    from ..executors import make_executor
    from ..models import SHIPPED
    from ..paths import results_file
    from ..preflight import load_models, prepare
    from ..sweep import run_sweep, stage_seconds

    if isa != "native" and executor == "ray":  # a cluster's workers would not inherit the oneDNN cap
        raise UserError("--isa emulates a CPU class in this machine's processes only: use --executor local or "
                        "processes with it")
    runner = make_executor(executor, ray_address, workers)
    chosen = select_configs(patterns(config_names), all_configs)
    if first_seed + seeds - 1 > MAX_SEED:
        raise UserError(f"--first-seed {first_seed} with --seeds {seeds} goes above the largest seed, {MAX_SEED:,}")
    started = time.perf_counter()
    seed_list = list(range(first_seed, first_seed + seeds))
    names = list(dict.fromkeys(model or SHIPPED))
    data = prepare(data_dir, [results_file()], calibration_n, seed_list, names)
    # A model named twice (or by two paths to one file) is swept once.
    loaded = list({m.name: m for m in load_models(names, weights, input_scale, mean, std, data)}.values())
    loaded_seconds = time.perf_counter() - started
    rows = []  # (key, row, reused)
    total = len(loaded) * sum(len(seed_list) if c.is_static else 1 for c in chosen)
    with interruptible(lambda: _sweep_progress(rows, {c.name for c in chosen}, total)), \
            bar(disable=as_json) as progress:
        task = progress.add_task("sweep", total=total)
        notify = (lambda line: None) if as_json else (lambda line: progress.console.print(f"[yellow]{line}[/yellow]"))
        for key, row, skipped in run_sweep(loaded, chosen, data, calibration_n, seed_list, results_file(), force,
                                           runner, notify):
            rows.append((key, row, skipped))
            if not as_json:
                seed = f" [dim]seed {row.seed}[/dim]" if row.seed is not None else ""
                done = " [dim](done before)[/dim]" if skipped else ""
                console.print(f"{row.model} " + row_line(row) + seed + done, soft_wrap=True)
            progress.update(task, advance=1, description=key.rsplit("|", 1)[0])
    stages = {"load data and models": round(loaded_seconds, 1),
              **stage_seconds([row for _, row, reused in rows if not reused]),
              "total": round(time.perf_counter() - started, 1)}
    if as_json:
        print_json([{"key": key, "skipped": reused, **row.to_dict()} for key, row, reused in rows])
    else:
        console.print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    failed = [row for _, row, _ in rows if row.error is not None]
    if failed:
        err_console.print(f"[red]error:[/red] {len(failed)} of {len(rows)} rows failed (saved with their error; "
                          "rerun to retry them)")
        raise typer.Exit(1)


def _sweep_progress(rows: list, configs: set[str], total: int) -> str:
    """What an interrupted sweep saved (counted where it is written: a row saved but not yet shown counts) and how
    many of its rows were not run."""
    from ..paths import results_file
    from ..results import saved_here

    saved = saved_here().get(results_file(), [])
    done = {key for key, _, _ in rows} | {key for key in saved if key.split("|")[1] in configs}
    return (f"{len(saved)} row{'s' if len(saved) != 1 else ''} saved to {results_file()}, "
            f"{max(total - len(done), 0)} not run")


@app.command()
def bench(model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
          config_names: list[str] = typer.Option(None, "--configs", "-c", help="Config names or globs (repeatable "
                                                  "or comma-separated); default: the default sweep. "
                                                  "FP32 is always in."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, max=1024, help="Threads for torch and ORT; "
                                                "default: torch's."),
          runs: int = typer.Option(200, "--runs", min=1, max=100_000, help="Timed batch-1 runs per model and runtime."),
          no_compile: bool = typer.Option(False, "--no-compile", help="Skip the runtimes a compiler builds "
                                          "(torch.compile, AOTInductor)."),
          calibration_n: int = CalibN, seed: int = SeedOpt, data_dir: Optional[Path] = DataDir,
          input_scale: Optional[str] = InputScale, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
          force: bool = typer.Option(False, "--force", help="Time again even where the same rows were timed with "
                                     "the same settings on this CPU model."),
          as_json: bool = JsonOpt) -> None:
    """Latency (batch 1), throughput (batch 256), size and as-run accuracy of configs beside FP32, one run; the
    stored bench when the same rows were timed alike here (say so with --force to time again)."""
    import torch

    from ..backends import select_configs
    from ..bench import BenchSettings, bench_and_record
    from ..paths import bench_file, results_file
    from ..preflight import load_models, prepare
    from ..report.text import bench_table_rows

    chosen = select_configs(patterns(config_names))
    settings = BenchSettings(threads=threads or torch.get_num_threads(), runs=runs, compile=not no_compile)
    data = prepare(data_dir, [results_file()], calibration_n, seed, [model])
    [loaded] = load_models([model], weights, input_scale, mean, std, data)
    document = bench_and_record(loaded, chosen, data, calibration_n, seed, settings, results_file(),
                                bench_file(loaded.name), log=err_console.print, force=force)
    failed = document.failures()
    if as_json:
        print_json(document.to_dict())
        raise typer.Exit(1 if failed else 0)
    if document.reused:
        err_console.print(f"the same rows were timed alike on this CPU ({document.created}): shown as stored; "
                          "--force times them again", highlight=False)
    table = Table("config", "runtime", "latency b1 median (spread), ms", "threads b1", "latency b1 p90 (ms)",
                  "throughput b256 (images/s)", "× FP32", "size (KiB)", "accuracy as run", "reference accuracy",
                  title=f"{loaded.name}, {settings.threads} threads (batch 1: the fastest of "
                        f"{', '.join(map(str, settings.latency_threads))}), {document.environment['cpu']['model']}")
    for r in bench_table_rows(document):
        table.add_row(*r)
    print_table(table)
    if failed:
        err_console.print(f"[red]error:[/red] {len(failed)} failed ({failed[0]}{', ...' if len(failed) > 1 else ''}); "
                          "saved with their errors, never reused: rerun to time them again", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def train(model: str = typer.Option(..., "--model", "-m", help="resnet8 or cifar_cnn."),
          train_data: list[Path] = typer.Option(..., "--train-data", help="Training data directories (repeatable); "
                                                "their train splits are concatenated."),
          data_dir: Optional[Path] = DataDir,
          out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default: ARTIFACTS/weights/MODEL "
                                             "(use them with --weights)."),
          force: bool = typer.Option(False, "--force", help="Allow --out to replace the weights shipped in the "
                                     "package."),
          epochs: int = typer.Option(100, "--epochs", min=1, max=10_000, help="The shipped resnet8: 100 (2 h 13 min "
                                     "on 2 CPU cores); cifar_cnn: 20."),
          seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED)) -> None:
    """Train a model from scratch (random crop + flip), write fp32_baseline.pt and model_card.json."""
    from ..data import resolve_data_dir
    from ..paths import trained_dir
    from ..train import TrainRecipe
    from ..train import train as run_train

    out = out or trained_dir(model)
    card = run_train(model, train_data, resolve_data_dir(data_dir), out, TrainRecipe(epochs=epochs, seed=seed),
                     log=console.print, force=force)
    console.print(f"{model}: {100 * card['accuracy']:.2f}% ({card['correct']}/{card['n_eval_images']}) on "
                  f"{card['evaluated_on']} after {card['train_seconds']:.0f} s; use it with --weights "
                  f"{out / 'fp32_baseline.pt'}", soft_wrap=True)


@app.command("calib-sensitivity")
def calib_sensitivity(config: str = typer.Option(..., "--config", "-c", help="A static config (see `configs`)."),
                      model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
                      sizes: str = typer.Option("32,100,256,512,1024", "--sizes", help="Calibration-set sizes, "
                                                "comma-separated."),
                      seeds: int = typer.Option(5, "--seeds", min=1, max=100, help="Samples per size (seeds 0..N-1)."),
                      data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
                      mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Accuracy vs calibration-set size, mean and spread over seeds; saved to results/calibration_size.json.

    A size and seed the sweep already measured alike (same key in full_results.json) is taken from there.
    """
    from ..backends import get_config
    from ..paths import results_file, results_path
    from ..preflight import load_models, prepare
    from ..results import Results
    from ..studies.calibration_size import FILE, CalibrationSizeStudy, parse_sizes
    from .views import show_study

    get_config(config)
    out = results_path(FILE)
    data = prepare(data_dir, [out], models=[model])
    chosen_sizes = tuple(parse_sizes(sizes, len(data.train)))
    [loaded] = load_models([model], weights, input_scale, mean, std, data)
    study = CalibrationSizeStudy(loaded.name, config, chosen_sizes, seeds)
    entry = study.run(loaded, data, Results.load(results_file()).rows, quiet_or(as_json))
    study.save(out, entry)
    if as_json:
        return print_json(entry.to_dict())
    show_study(study, entry)
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
    from ..backends import get_config
    from ..keys import make_calibration
    from ..paths import results_path
    from ..preflight import load_models, prepare
    from ..studies import layer_sensitivity as per_layer
    from .views import show_study

    chosen = get_config(config)
    out = results_path(per_layer.FILE)
    data = prepare(data_dir, [out], calibration_n, seed, [model])
    [loaded] = load_models([model], weights, input_scale, mean, std, data)
    entry = per_layer.run(loaded, chosen, data, make_calibration(loaded, data, calibration_n, seed),
                          [name for name in layers.split(",") if name] if layers else None, log=quiet_or(as_json))
    per_layer.save(out, entry)
    if as_json:
        return print_json(entry.to_dict())
    show_study(per_layer.LayerSensitivityStudy, entry)
    console.print(f"most recovered by keeping FP32: {', '.join(entry.ranking_by_recovery[:3])}; saved to {out}")


@app.command()
def analyze(model: list[str] = typer.Option(None, "--model", "-m", help="Only the studies of these models "
                                             "(repeatable); default: all of them."),
            force: bool = typer.Option(False, "--force", help="Rerun studies whose entries are current."),
            data_dir: Optional[Path] = DataDir, as_json: bool = JsonOpt) -> None:
    """Run the report's studies (calibration size, per layer: `studies.STUDIES`) that are missing or stale; skip the
    rest. A calibration-size point the sweep already stored alike is taken from full_results.json."""
    from ..paths import results_file, results_path
    from ..preflight import load_models, prepare
    from ..studies import STUDIES, run_studies

    studies = [s for s in STUDIES if not model or s.model in model]
    if not studies:
        raise UserError(f"no studies for {', '.join(model)}; studies exist for "
                        f"{', '.join(sorted({s.model for s in STUDIES}))}")
    data = prepare(data_dir, sorted({results_path(s.file) for s in studies}))
    names = list(dict.fromkeys(s.model for s in studies))
    loaded = dict(zip(names, load_models(names)))
    done = []
    for study, _entry, skipped in run_studies(studies, loaded, data, results_file().parent, force, quiet_or(as_json)):
        done.append({"study": study.kind, "model": study.model, "config": study.config, "skipped": skipped,
                     "file": study.file})
        if not as_json:
            console.print(f"{study.kind}: {study.model} / {study.config} " +
                          ("[dim](current, skipped)[/dim]" if skipped else f"→ {study.file}"))
    if as_json:
        print_json(done)
