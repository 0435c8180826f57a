"""The `quant-explorer` command line: thin commands over the library; heavy imports inside commands."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import UserError

app = typer.Typer(help="What 8-bit post-training quantization costs a CIFAR-10 classifier, where, and which recipe "
                       "to ship.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Find, check and download CIFAR-10.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DEFAULT_MODELS = ["resnet8", "resnet8-mlperf", "cifar_cnn"]

DataDir = typer.Option(None, "--data-dir", help="CIFAR-10 directory (python batches or train/test image folders); "
                       "default $QUANT_EXPLORER_DATA, then ~/.cache/quant-explorer/cifar10.")
ModelOpt = typer.Option("resnet8", "--model", "-m", help="Registered model name (see `models`) or a path to an "
                        ".onnx classifier.")
WeightsOpt = typer.Option(None, "--weights", help="Weights file (.pt for our models, .h5 for resnet8-mlperf).")
InputScale = typer.Option(None, "--input-scale", help="Imported ONNX models: raw255 (0-255 floats) or unit (0-1).")
MeanOpt = typer.Option(None, "--mean", help="Imported ONNX models: per-channel mean after scaling, e.g. 0.49,0.48,0.45.")
StdOpt = typer.Option(None, "--std", help="Imported ONNX models: per-channel std after scaling.")
CalibN = typer.Option(256, "--calibration-n", help="Calibration images, a stratified sample of the training split.")
SeedOpt = typer.Option(0, "--seed", min=0, help="Seed of the calibration sample (same seed, same images).")
SeedsOpt = typer.Option(5, "--seeds", min=1, max=100, help="Calibration samples per static config (seeds FIRST..FIRST+N-1): one "
                        "draw moves a recipe by up to ~2 points, so every summary pools several.")
FirstSeedOpt = typer.Option(0, "--first-seed", min=0, help="The first calibration seed.")
EnvironmentOpt = typer.Option(None, "--environment", help="Show this environment's results (a part of its id, e.g. "
                              "avx512-vnni); default: this machine's, else the most recent.")
DatasetOpt = typer.Option(None, "--dataset", help="Show results on this evaluation set (fingerprint or part of its "
                          "name); default: the environment's most recent.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def main() -> None:
    """Console entry point: a UserError is one red line on stderr and exit code 2, never a traceback."""
    from rich.markup import escape
    from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer vendors its own click

    try:
        # Without standalone mode, click returns a command's `typer.Exit(code)` as the value instead of raising it.
        code = app(standalone_mode=False, prog_name="quant-explorer")
    except UserError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except NoArgsIsHelpError as e:
        e.show()
        sys.exit(e.exit_code)
    except ClickException as e:  # a bad option or value: one line too, not click's usage block
        ctx = getattr(e, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx else ""
        message = " ".join(e.format_message().split()).rstrip(".")  # one line, whatever the parser wrote
        err_console.print(f"[red]error:[/red] {escape(message + hint)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def _load(model: str, weights: Path | None, input_scale: str | None = None, mean: str | None = None,
          std: str | None = None):
    from .models import Preprocessing, load_model

    preprocessing = Preprocessing(input_scale, _floats(mean), _floats(std)) if input_scale else None
    if preprocessing is None and (mean or std):
        raise UserError("--mean/--std need --input-scale (raw255 or unit)")
    return load_model(model, weights, preprocessing) if preprocessing else load_model(model, weights)


def _print_table(table: Table, text_width: int | None = None) -> None:
    """Print a table at its natural width, never cutting a cell (config names above all): a narrower terminal
    wraps the lines instead. `text_width`: the last column is prose, wrapped within that many characters."""
    from rich.measure import Measurement

    for column in table.columns:
        column.no_wrap = True
    if text_width:
        table.columns[-1].no_wrap, table.columns[-1].max_width = False, text_width
    width = Measurement.get(console, console.options.update(width=10_000), table).maximum
    saved = console.width
    console.width = max(saved, width)
    try:
        console.print(table)
    finally:
        console.width = saved


def _patterns(config_names: list[str] | None) -> list[str]:
    """--configs values split on commas; given but empty (`--configs ''`) is an error, not the default sweep."""
    patterns = [p.strip() for item in config_names or [] for p in item.split(",") if p.strip()]
    if config_names and not patterns:
        raise UserError("--configs selects no config: give names or globs, e.g. --configs 'ort_*,pt2e_*'")
    return patterns


class _Terminated(BaseException):
    """SIGTERM, raised where the sweep is, so it stops like Ctrl-C does."""


@contextlib.contextmanager
def _interruptible(progress: Callable[[], str]):
    """Ctrl-C (exit 130) or SIGTERM (exit 143) during long work: one line saying what was saved, and how to resume.
    Rows are saved as they finish, so nothing finished is lost."""
    def terminate(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except (KeyboardInterrupt, _Terminated) as e:
        err_console.print(f"interrupted: {progress()}; rerun the same command to resume", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(143 if isinstance(e, _Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _preprocessing_for(model: str, input_scale: str | None, mean: str | None, std: str | None) -> tuple:
    """The preprocessing options for one of several --model values: they describe the .onnx files only."""
    return (input_scale, mean, std) if str(model).lower().endswith(".onnx") else (None, None, None)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2))


@app.command()
def models(as_json: bool = JsonOpt) -> None:
    """List the registered models."""
    from .models import MODELS

    rows = [{"name": s.name, "description": s.description, "preprocessing": s.preprocessing.to_dict()}
            for s in MODELS.values()]
    if as_json:
        return _print_json(rows)
    table = Table("model", "input", "description")
    for s in MODELS.values():
        p = s.preprocessing
        table.add_row(s.name, p.input_scale + (" + mean/std" if p.mean else ""), s.description)
    console.print(table)


@app.command()
def configs(as_json: bool = JsonOpt, all_configs: bool = typer.Option(False, "--all", help="The full grid, not "
            "only the default sweep.")) -> None:
    """List the quantization configs (the default sweep, or the full grid with --all)."""
    from .configs import select_configs

    chosen = select_configs(all_configs=all_configs)
    if as_json:
        return _print_json([c.to_dict() for c in chosen])
    table = Table("config", "backend", "default", "description")
    for c in chosen:
        table.add_row(c.name, c.backend, "yes" if c.default else "", c.description)
    _print_table(table, text_width=60)


@app.command()
def evaluate(model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
             backend: str = typer.Option("torch", "--backend", help="torch, ort (the exported ONNX model) or "
                                         "onnx2torch (that ONNX file converted back to PyTorch)."),
             data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
             mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Evaluate an FP32 model on the whole evaluation set in one runtime."""
    from .data import load_split, resolve_data_dir
    from .evaluate import evaluate as run_eval
    from .models import exported_onnx
    from .runtimes import onnx2torch_runner, ort_runner, onnx_opset, torch_runner

    runners = {"torch": lambda m: torch_runner(m.module), "ort": lambda m: ort_runner(exported_onnx(m)),
               "onnx2torch": lambda m: onnx2torch_runner(exported_onnx(m))}
    if backend not in runners:
        import difflib
        close = difflib.get_close_matches(backend, runners, n=1)
        raise UserError(f"unknown backend {backend!r}: {'did you mean ' + close[0] + '? ' if close else ''}"
                        f"choose one of {', '.join(runners)}")
    test = load_split(resolve_data_dir(data_dir), "test")
    loaded = _load(model, weights, input_scale, mean, std)
    if backend != "ort" and loaded.torch_unavailable:
        raise UserError(f"--backend {backend} cannot run {model}: {loaded.torch_unavailable} (--backend ort)")
    metrics, _ = run_eval(runners[backend](loaded), test, loaded.preprocessing)
    result = {"model": loaded.name, "backend": backend, "weights": str(loaded.weights_path), **metrics}
    if backend != "torch":
        result["onnx_opset"] = onnx_opset(exported_onnx(loaded))
    if as_json:
        return _print_json(result)
    console.print(f"{loaded.name} ({backend}) accuracy {100 * metrics['accuracy']:.2f}% "
                  f"({metrics['correct']:,}/{metrics['n_images']:,}) on {metrics['dataset']}, "
                  f"{metrics['images_per_second']:,.0f} images/s")
    table = Table("class", "accuracy")
    for name, acc in metrics["per_class_accuracy"].items():
        table.add_row(name, f"{100 * acc:.1f}%")
    console.print(table)


def _row_line(row: dict) -> str:
    if "not_applicable" in row:
        return f"{row['config_name']}: not applicable ({row['not_applicable']})"
    if "error" in row:
        return f"{row['config_name']}: [red]failed[/red] {row['error'].splitlines()[0]}"
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
    from .configs import get_config
    from .data import calibration_indices, resolve_data_dir
    from .paths import results_file
    from .results import check_writable
    from .sweep import EvalData, run_sweep

    chosen = get_config(config)
    check_writable(results_file())
    data = EvalData.load(resolve_data_dir(data_dir))
    calibration_indices(data.train.labels, calibration_n, seed)  # fail before any model work
    loaded = _load(model, weights, input_scale, mean, std)
    for key, row, _ in run_sweep([loaded], [chosen], data, calibration_n, [seed], results_file(), force=True):
        if as_json:
            _print_json(row)
        else:
            console.print(_row_line(row))
            for warning in row.get("warnings", []):
                err_console.print(f"[yellow]warning:[/yellow] {warning}")
        if "error" in row:
            raise typer.Exit(1)


@app.command()
def sweep(model: list[str] = typer.Option(DEFAULT_MODELS, "--model", "-m", help="Models to sweep (repeatable)."),
          weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for the model, when one --model "
                                                 "is given."),
          config_names: list[str] = typer.Option(None, "--configs", "-c", help="Config names or globs "
                                                  "(repeatable or comma-separated); default: the default sweep."),
          all_configs: bool = typer.Option(False, "--all", help="The full config grid."),
          calibration_n: int = CalibN, seeds: int = SeedsOpt, first_seed: int = FirstSeedOpt,
          data_dir: Optional[Path] = DataDir,
          force: bool = typer.Option(False, "--force", help="Rerun entries already in the results file."),
          input_scale: Optional[str] = InputScale, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
          executor: str = typer.Option("local", "--executor", help="Where configs run: local (this process), "
                                       "processes (a process pool here) or ray (a Ray cluster; see docs/ray.md)."),
          ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. "
                                                    "HEAD:6379; default: start a local Ray instance."),
          workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Tasks at once (processes, ray); default: "
                                                "one per CPU."),
          as_json: bool = JsonOpt) -> None:
    """Run many configs on many models, each static one with several calibration seeds; resumable.

    A stored row is reused only where it was measured alike (same data, calibration sample, config record,
    weights, CPU class and library versions); the sweep says in one line why others are computed afresh.
    Exit code 1 if any row failed (the others still ran and were saved), 2 for bad input.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .configs import select_configs
    from .data import calibration_indices, resolve_data_dir
    from .executors import make_executor
    from .paths import results_file
    from .results import check_writable
    from .sweep import EvalData, run_sweep, stage_seconds

    runner = make_executor(executor, ray_address, workers)
    chosen = select_configs(_patterns(config_names), all_configs)
    check_writable(results_file())
    started = time.perf_counter()
    data = EvalData.load(resolve_data_dir(data_dir))
    seed_list = list(range(first_seed, first_seed + seeds))
    calibration_indices(data.train.labels, calibration_n, first_seed)  # fail before any model work
    if weights and len(model) != 1:
        raise UserError("--weights goes with exactly one --model")
    loaded = [_load(m, weights, *_preprocessing_for(m, input_scale, mean, std)) for m in model]
    loaded_seconds = time.perf_counter() - started
    rows = []
    total = len(loaded) * sum(len(seed_list) if c.is_static else 1 for c in chosen)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with _interruptible(lambda: f"{sum(not r['skipped'] for r in rows)} rows saved, {total - len(rows)} not run"), \
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
        _print_json(rows)
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
          threads: Optional[int] = typer.Option(None, "--threads", min=1, max=1024, help="Threads for torch and ORT; default: torch's."),
          runs: int = typer.Option(200, "--runs", min=1, max=100_000, help="Timed batch-1 runs per model and runtime."),
          no_compile: bool = typer.Option(False, "--no-compile", help="Skip the torch.compile (inductor) runtimes."),
          calibration_n: int = CalibN, seed: int = SeedOpt, data_dir: Optional[Path] = DataDir,
          input_scale: Optional[str] = InputScale, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
          as_json: bool = JsonOpt) -> None:
    """Latency (batch 1), throughput (batch 256), size and as-run accuracy of configs beside FP32, one run."""
    import torch

    from .bench import BenchSettings, bench_and_record, table_rows
    from .configs import select_configs
    from .data import calibration_indices, resolve_data_dir
    from .paths import results_file
    from .results import check_writable
    from .sweep import EvalData

    chosen = select_configs(_patterns(config_names))
    settings = BenchSettings(threads=threads or torch.get_num_threads(), runs=runs, compile=not no_compile)
    check_writable(results_file())
    data = EvalData.load(resolve_data_dir(data_dir))
    calibration_indices(data.train.labels, calibration_n, seed)  # fail before any model work
    loaded = _load(model, weights, input_scale, mean, std)
    document = bench_and_record(loaded, chosen, data, calibration_n, seed, settings, results_file(),
                                results_file().with_name(f"bench_{loaded.name}.json"), log=err_console.print)
    if as_json:
        return _print_json(document)
    table = Table("config", "runtime", "latency b1 median (ms)", "latency b1 p90 (ms)", "throughput b256 (images/s)",
                  "× FP32", "size (KiB)", "accuracy as run", "reference accuracy",
                  title=f"{loaded.name}, {settings.threads} threads, {document['environment']['cpu']['model']}")
    for r in table_rows(document):
        table.add_row(*r)
    _print_table(table)


@app.command()
def train(model: str = typer.Option(..., "--model", "-m", help="resnet8 or cifar_cnn."),
          train_data: list[Path] = typer.Option(..., "--train-data", help="Training data directories (repeatable); "
                                                "their train splits are concatenated."),
          data_dir: Optional[Path] = DataDir,
          out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default: the packaged weights."),
          epochs: int = typer.Option(100, "--epochs", min=1, max=10_000, help="The shipped resnet8: 100 (2 h 13 min on 2 CPU cores); "
                                     "cifar_cnn: 20."),
          seed: int = typer.Option(0, "--seed", min=0)) -> None:
    """Train a model from scratch (random crop + flip), write fp32_baseline.pt and model_card.json."""
    from .data import resolve_data_dir
    from .models import PACKAGED_WEIGHTS, get_spec
    from .train import TrainRecipe, train as run_train

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
    from .analysis import calibration_size
    from .configs import get_config
    from .data import resolve_data_dir
    from .paths import results_file
    from .results import check_writable
    from .sweep import EvalData

    chosen = get_config(config)
    out = results_file().with_name("calibration_size.json")
    check_writable(out)
    data = EvalData.load(resolve_data_dir(data_dir))
    chosen_sizes = calibration_size.parse_sizes(sizes, len(data.train))
    entry = calibration_size.run(_load(model, weights, input_scale, mean, std), chosen, data, chosen_sizes, seeds,
                                 log=(lambda _: None) if as_json else err_console.print)
    calibration_size.save(out, entry)
    if as_json:
        return _print_json(entry)
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
def layer_sensitivity(config: str = typer.Option(..., "--config", "-c", help="An ORT or PT2E config."),
                      model: str = ModelOpt, weights: Optional[Path] = WeightsOpt, calibration_n: int = CalibN,
                      seed: int = SeedOpt, layers: Optional[str] = typer.Option(None, "--layers", help="Only these "
                                                                               "layers, comma-separated."),
                      data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
                      mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Per layer: quantize it alone / keep it alone FP32, plus activation SQNR; saved to layer_sensitivity.json."""
    from .analysis import layer_sensitivity as analysis
    from .configs import get_config
    from .data import resolve_data_dir
    from .paths import results_file
    from .results import check_writable
    from .sweep import EvalData, make_calibration

    chosen = get_config(config)
    out = results_file().with_name("layer_sensitivity.json")
    check_writable(out)
    data = EvalData.load(resolve_data_dir(data_dir))
    loaded = _load(model, weights, input_scale, mean, std)
    entry = analysis.run(loaded, chosen, data, make_calibration(loaded, data, calibration_n, seed),
                         [name for name in layers.split(",") if name] if layers else None,
                         log=(lambda _: None) if as_json else err_console.print)
    analysis.save(out, entry)
    if as_json:
        return _print_json(entry)
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
    from .analysis.studies import STUDIES, run_studies
    from .data import resolve_data_dir
    from .paths import results_file
    from .results import check_writable
    from .sweep import EvalData

    studies = [s for s in STUDIES if not model or s.model in model]
    if not studies:
        raise UserError(f"no studies for {', '.join(model)}; studies exist for "
                        f"{', '.join(sorted({s.model for s in STUDIES}))}")
    results_dir = results_file().parent
    for path in {results_dir / s.file for s in studies}:
        check_writable(path)
    data = EvalData.load(resolve_data_dir(data_dir))
    loaded = {name: _load(name, None) for name in dict.fromkeys(s.model for s in studies)}
    done = []
    log = (lambda _: None) if as_json else err_console.print
    for study, entry, skipped in run_studies(studies, loaded, data, results_dir, force, log):
        done.append({"study": study.kind, "model": study.model, "config": study.config, "skipped": skipped,
                     "file": study.file})
        if not as_json:
            console.print(f"{study.kind}: {study.model} / {study.config} " +
                          ("[dim](current, skipped)[/dim]" if skipped else f"→ {study.file}"))
    if as_json:
        _print_json(done)


def _view(environment: str | None, dataset: str | None, seeds: str | None = None):
    from .analysis.summary import load_view
    from .paths import results_file
    from .results import load_results

    return load_view(load_results(results_file()), environment, dataset, _seed_set(seeds))


def _seed_set(text: str | None) -> set[int] | None:
    """'5-9' or '0,2,4' -> a set of seeds; None: every stored seed."""
    if not text:
        return None
    try:
        out = set()
        for part in text.split(","):
            low, _, high = part.partition("-")
            out.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise UserError(f"--seeds takes seeds like 0-4 or 0,2,4, got {text!r}") from None
    if not out or min(out) < 0:
        raise UserError(f"--seeds takes non-negative seeds like 0-4 or 0,2,4, got {text!r}")
    return out


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "—"


@app.command()
def summary(model: list[str] = typer.Option(None, "--model", "-m", help="Only these models (repeatable)."),
            environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt,
            seeds: Optional[str] = typer.Option(None, "--seeds", help="Pool only these calibration seeds, e.g. 5-9 "
                                                "(does the pick survive other draws?); default: every stored seed."),
            as_json: bool = JsonOpt) -> None:
    """Each config's accuracy over its calibration seeds, its delta vs FP32 with a 95% interval, and the pick.

    The interval is a paired bootstrap over test images and seeds; configs whose interval against the best
    config includes 0 tie with it, and the pick is the fastest of those (then the smallest).
    """
    from .analysis.summary import choices, summary_records

    view = _view(environment, dataset, seeds)
    records = [r for r in summary_records(view) if not model or r["model"] in model]
    if model and not records:
        raise UserError(f"no results for {', '.join(model)} in {view.environment} / {view.dataset_name}")
    if as_json:
        return _print_json(records)
    console.print(view.banner(), soft_wrap=True)
    for name, choice in choices(view).items():
        if model and name not in model:
            continue
        table = Table("config", "seeds", "accuracy % ± sd", "Δ pp", "95% interval", "tied", "images/s",
                      title=f"{name}: accuracy over calibration seeds, Δ vs FP32, tied with the best, batch-256 "
                            "throughput; ◀ the pick", title_justify="left")
        for r in (r for r in records if r["model"] == name):
            table.add_row(r["config"] + (" ◀" if r["pick"] else ""), str(len(r["seeds"])) if r["seeds"] else "—",
                          f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}",
                          "—" if r["delta_pp_mean"] is None else f"{r['delta_pp_mean']:+.2f}",
                          _interval(r["delta_pp_ci95"]),
                          {True: "yes", False: "no", None: ""}[r["tied_with_best"]],
                          f"{r['throughput_b256']:,.0f}" if r["throughput_b256"] else "—")
        _print_table(table)
        if choice:
            console.print(f"pick: {choice['pick']} — {choice['rule']}.", soft_wrap=True)
            if choice["resolution"]:
                console.print(choice["resolution"]["text"] + ".", soft_wrap=True)


@app.command()
def compare(environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt,
            as_json: bool = JsonOpt) -> None:
    """Scheme comparisons: pairs of configs differing in exactly one field, paired deltas with 95% intervals."""
    from .analysis.comparisons import comparisons
    from .paths import results_file

    view = _view(environment, dataset)
    tables = comparisons(view)
    if as_json:
        return _print_json(tables)
    if not tables:
        raise UserError(f"no pairs of configs differing in one field in {results_file()}: run `quant-explorer sweep` first")
    console.print(view.banner(), soft_wrap=True)
    for t in tables:
        table = Table("model", "reference", "variant", "reference accuracy (%)", "variant accuracy (%)", "Δ (pp)",
                      "95% interval (pp)", "verdict", title=f"{t['title']} ({t['backend']}): {t['reference_value']} → "
                      f"{t['value']}: {t['verdict']}")
        for p in t["pairs"]:
            table.add_row(p["model"], p["reference_config"], p["config"], f"{100 * p['reference_accuracy']:.2f}",
                          f"{100 * p['accuracy']:.2f}", f"{p['delta_pp']:+.2f}", _interval(p.get("ci95_pp")),
                          p["verdict"])
        console.print(table)


@app.command()
def report(check_render: bool = typer.Option(False, "--check-render", help="Open the HTML in headless Chromium, "
                                             "check every image loads, save report/screenshot.png."),
           environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt) -> None:
    """Write results/pareto.md and the self-contained HTML report report/index.html from the results files.

    Both show one environment and one evaluation set (named in their banner), never a mix.
    """
    from .paths import artifacts_dir, results_file
    from .report import build, render_check

    written = build(results_file().parent, artifacts_dir() / "report", environment, dataset)
    for path in written.values():
        console.print(f"wrote {path}")
    if check_render:
        check = render_check(written["html"], written["html"].with_name("screenshot.png"))
        console.print(f"chromium rendered {check['images']} images, {len(check['broken'])} broken; "
                      f"screenshot {check['screenshot']}")
        if check["broken"]:
            raise typer.Exit(1)


@data_app.command("info")
def data_info(data_dir: Optional[Path] = DataDir, as_json: bool = JsonOpt) -> None:
    """Say which data set would be used, its layout and image counts."""
    from .data import detect_layout, load_split, resolve_data_dir

    root = resolve_data_dir(data_dir)
    info = {"data_dir": str(root), "layout": detect_layout(root)}
    for split in ("train", "test"):
        s = load_split(root, split)
        info[split] = {"dataset": s.dataset, "n_images": len(s), "classes": list(s.classes)}
    if as_json:
        return _print_json(info)
    console.print(info)


@data_app.command("fetch")
def data_fetch(directory: Optional[Path] = typer.Argument(None, help="Where to put cifar-10-batches-py; default "
                                                          "the default data directory.")) -> None:
    """Download the real CIFAR-10 python batches with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10

    from .data import resolve_data_dir

    root = directory or resolve_data_dir(None)
    try:
        CIFAR10(str(root), train=True, download=True)
        CIFAR10(str(root), train=False, download=True)
    except Exception as e:
        raise UserError(f"could not download CIFAR-10 into {root} ({e}); download cifar-10-python.tar.gz by hand "
                        f"and unpack it there") from None
    console.print(f"CIFAR-10 is in {root}/cifar-10-batches-py")
