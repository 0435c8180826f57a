"""Commands that compute: quantize one config, sweep many, bench their speed, train a model, run the studies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError, first_line
from .app import (CalibN, ConfigsOpt, DataDir, InputScale, IsaOpt, JsonOpt, MeanOpt, ModelOpt, SeedOpt, SeedsOpt,
                  StdOpt, WeightsOpt, app, console, err_console, interruptible, patterns, print_json, print_table,
                  quiet_or)


def _row_line(row: dict) -> str:
    if "not_applicable" in row:
        return f"{row['config_name']}: not applicable ({row['not_applicable']})"
    if "error" in row:
        return f"{row['config_name']}: [red]failed[/red] {first_line(row['error'])}"
    delta = f" ({row['delta_pp']:+.2f} pp)" if "delta_pp" in row else ""
    reference = row.get("reference", {})
    simulated = f"; float reference {100 * reference['accuracy']:.2f}%" if "accuracy" in reference else ""
    return (f"{row['config_name']}: {100 * row['accuracy']:.2f}% ({row['correct']}/{row['n_images']}) in "
            f"{row['runtime']}{delta}{simulated}, {row['size_bytes'] / 1024:.0f} KiB"
            + (f", {row['seconds']:.1f} s" if "seconds" in row else ""))


def _quantize_answer(row: dict, fp32: dict | None, entries: dict, labels, seconds: float) -> dict:
    """What `quantize` tells a person: FP32 and quantized accuracy in the runtime each ships in, the delta with its
    interval (over this seed's test images, or pooled over every stored seed of the same recipe), size, the saved
    artifact, the command's wall time; the raw row under `row`."""
    from ..analysis.summary import recipe_identity
    from ..results import decode_classes
    from ..experiment import is_finished
    from ..paths import results_file
    from ..report.answer import artifact_path, shown_path
    from ..stats import correct, level_text, paired_delta

    answer = {"model": row["model"], "config": row["config_name"], "seconds": round(seconds, 1)}
    if "accuracy" not in row:
        return {**answer, "error": row.get("error"), "not_applicable": row.get("not_applicable"), "row": row}
    seeds = {}
    if fp32 is not None and "predictions" in row:
        same = recipe_identity(row) if "identity" in row else None
        for entry in [row, *entries.values()]:
            seed = (entry.get("calibration") or {}).get("calibration_seed")
            if (entry["model"], entry["config_name"]) == (row["model"], row["config_name"]) and seed not in seeds \
                    and is_finished(entry) and (entry is row or recipe_identity(entry) == same):
                seeds[seed] = entry
    interval = None
    if seeds:
        ordered = [seeds[s] for s in sorted(seeds, key=lambda s: (s is None, s))]
        matrix = correct([decode_classes(e["predictions"]) for e in ordered], labels)
        reference = correct([decode_classes(fp32["predictions"])], labels)
        interval = {**paired_delta(matrix, reference), "seeds": len(ordered), "level": level_text(),
                    "over": "test images and calibration seeds" if len(ordered) > 1 else
                    "test images (one calibration seed)", "accuracy_mean": float(matrix.mean())}
    return {**answer, "runtime": row["runtime"], "accuracy": row["accuracy"], "correct": row["correct"],
            "n_images": row["n_images"],
            "fp32": fp32 and {"accuracy": fp32["accuracy"], "correct": fp32["correct"], "runtime": fp32.get("runtime"),
                              "size_bytes": fp32["size_bytes"]},
            "delta_pp": row.get("delta_pp"), "interval": interval, "size_bytes": row["size_bytes"],
            "float_reference_accuracy": (row.get("reference") or {}).get("accuracy"),
            "artifact": artifact_path(row)[0], "results_file": shown_path(results_file()),
            "warnings": row.get("warnings", []), "row": row}


def _print_answer(a: dict) -> None:
    from rich.table import Table

    if "accuracy" not in a:
        return console.print(_row_line(a["row"]) + f" ({a['seconds']:.1f} s)", soft_wrap=True)
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a long path folds onto the next line, never cut
    fp32, i = a["fp32"], a["interval"]
    if fp32:
        table.add_row("FP32", f"{100 * fp32['accuracy']:.2f}% ({fp32['correct']}/{a['n_images']}) in {fp32['runtime']}")
    table.add_row("quantized", f"{100 * a['accuracy']:.2f}% ({a['correct']}/{a['n_images']}) in {a['runtime']}"
                  + (f"; float reference {100 * a['float_reference_accuracy']:.2f}%"
                     if a.get("float_reference_accuracy") is not None else ""))
    if i:
        ci = f"[{i['ci_pp'][0]:+.2f}, {i['ci_pp'][1]:+.2f}] {i['level']} interval"
        table.add_row("Δ vs FP32", f"{i['mean_pp']:+.2f} pp {ci} over this seed's test images" if i["seeds"] == 1 else
                      f"{a['delta_pp']:+.2f} pp this seed; {i['mean_pp']:+.2f} pp {ci} over the {i['seeds']} "
                      f"stored seeds (mean accuracy {100 * i['accuracy_mean']:.2f}%)")
    elif a.get("delta_pp") is not None:
        table.add_row("Δ vs FP32", f"{a['delta_pp']:+.2f} pp")
    smaller = f" ({fp32['size_bytes'] / a['size_bytes']:.1f}x smaller than FP32)" if fp32 else ""
    table.add_row("size", f"{a['size_bytes'] / 1024:,.0f} KiB{smaller}")
    table.add_row("saved", a["artifact"] or "—")
    table.add_row("took", f"{a['seconds']:.1f} s")
    console.print(f"[bold]{a['model']} / {a['config']}[/bold]", soft_wrap=True)
    console.print(table)


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

    from ..configs import get_config
    from ..paths import results_file

    chosen = get_config(config)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(f"{model}: loading torch, the data and the model")
        from ..experiment import FP32, load_models, prepare, row_key
        from ..results import load_results
        from ..sweep import run_sweep

        progress.stop()  # reading the images shows its own progress bar, on a first run
        data = prepare(data_dir, [results_file()], calibration_n, seed, [model])
        progress.start()
        loaded = load_models([model], weights, input_scale, mean, std, data)
        progress.update(task, description=f"{model}: FP32 baseline (once), then {chosen.name}: quantizing and "
                                          f"scoring {len(data.test):,} test images")
        [(key, row, _)] = list(run_sweep(loaded, [chosen], data, calibration_n, [seed], results_file(), force=True))
        entries = load_results(results_file())["entries"]
        fp32 = entries.get(row_key(loaded[0], FP32, data, calibration_n, 0))
    answer = _quantize_answer(row, fp32, entries, data.test.labels.numpy(), time.perf_counter() - started)
    if as_json:
        print_json(answer)
    else:
        _print_answer(answer)
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
          isa: str = IsaOpt,
          as_json: bool = JsonOpt) -> None:
    """Run many configs on many models, each static one with several calibration seeds; resumable.

    A stored row is reused only where it was measured alike (same data, calibration sample, config record,
    weights, CPU class and library versions); the sweep says in one line why others are computed afresh.
    Exit code 1 if any row failed (the others still ran and were saved), 2 for bad input.
    """
    import time

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from ..configs import select_configs
    from ..executors import make_executor
    from ..experiment import load_models, prepare
    from ..models import SHIPPED
    from ..paths import results_file
    from ..sweep import run_sweep, stage_seconds

    if isa != "native" and executor == "ray":  # a cluster's workers would not inherit the oneDNN cap
        raise UserError("--isa emulates a CPU class in this machine's processes only: use --executor local or "
                        "processes with it")
    runner = make_executor(executor, ray_address, workers)
    chosen = select_configs(patterns(config_names), all_configs)
    started = time.perf_counter()
    seed_list = list(range(first_seed, first_seed + seeds))
    names = list(dict.fromkeys(model or SHIPPED))
    data = prepare(data_dir, [results_file()], calibration_n, seed_list, names)
    # A model named twice (or by two paths to one file) is swept once.
    loaded = list({m.name: m for m in load_models(names, weights, input_scale, mean, std, data)}.values())
    loaded_seconds = time.perf_counter() - started
    rows = []
    total = len(loaded) * sum(len(seed_list) if c.is_static else 1 for c in chosen)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
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
    data = prepare(data_dir, [results_file()], calibration_n, seed, [model])
    [loaded] = load_models([model], weights, input_scale, mean, std, data)
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
          out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default: ARTIFACTS/weights/MODEL "
                                             "(use them with --weights)."),
          force: bool = typer.Option(False, "--force", help="Allow --out to replace the weights shipped in the "
                                     "package."),
          epochs: int = typer.Option(100, "--epochs", min=1, max=10_000, help="The shipped resnet8: 100 (2 h 13 min "
                                     "on 2 CPU cores); cifar_cnn: 20."),
          seed: int = typer.Option(0, "--seed", min=0)) -> None:
    """Train a model from scratch (random crop + flip), write fp32_baseline.pt and model_card.json."""
    from ..data import resolve_data_dir
    from ..paths import trained_dir
    from ..train import TrainRecipe, train as run_train

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
    """Accuracy vs calibration-set size, mean and spread over seeds; saved to results/calibration_size.json."""
    from ..analysis import calibration_size
    from ..configs import get_config
    from ..experiment import load_models, prepare
    from ..paths import results_path

    chosen = get_config(config)
    out = results_path(calibration_size.FILE)
    data = prepare(data_dir, [out], models=[model])
    chosen_sizes = calibration_size.parse_sizes(sizes, len(data.train))
    [loaded] = load_models([model], weights, input_scale, mean, std, data)
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
    data = prepare(data_dir, [out], calibration_n, seed, [model])
    [loaded] = load_models([model], weights, input_scale, mean, std, data)
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
