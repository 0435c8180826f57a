"""Commands that show: the registries (models, configs), one FP32 evaluation, and views of the results files
(summary, compare, report), plus the data commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError
from .app import (DataDir, DatasetOpt, EnvironmentOpt, InputScale, JsonOpt, MeanOpt, ModelOpt, StdOpt, WeightsOpt,
                  app, console, data_app, interval, print_json, print_table)


@app.command()
def models(as_json: bool = JsonOpt) -> None:
    """List the registered models."""
    from ..models import MODELS, SHIPPED

    rows = [{"name": s.name, "description": s.description, "preprocessing": s.preprocessing.to_dict(),
             "shipped": s.name in SHIPPED} for s in MODELS.values()]
    if as_json:
        return print_json(rows)
    table = Table("model", "input", "description")
    for s in MODELS.values():
        p = s.preprocessing
        table.add_row(s.name, p.input_scale + (" + mean/std" if p.mean else ""), s.description)
    console.print(table)


@app.command()
def configs(as_json: bool = JsonOpt, all_configs: bool = typer.Option(False, "--all", help="The full grid, not "
            "only the default sweep.")) -> None:
    """List the quantization configs (the default sweep, or the full grid with --all)."""
    from ..configs import select_configs

    chosen = select_configs(all_configs=all_configs)
    if as_json:
        return print_json([c.to_dict() for c in chosen])
    table = Table("config", "backend", "default", "description")
    for c in chosen:
        table.add_row(c.name, c.backend, "yes" if c.default else "", c.description)
    print_table(table, text_width=60)


@app.command()
def evaluate(model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
             runtime: str = typer.Option("torch", "--runtime", help="Where the FP32 model runs: torch (eager), "
                                         "onnxruntime (its ONNX export), onnx2torch (that export converted back to "
                                         "PyTorch), inductor (torch.compile) or aotinductor (a package compiled "
                                         "ahead of time)."),
             data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
             mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Evaluate an FP32 model on the whole evaluation set in one runtime."""
    from ..data import load_split, resolve_data_dir
    from ..evaluate import evaluate as run_eval
    from ..experiment import check_fp32_runtime, fp32_runner, load_models
    from ..models import exported_onnx
    from ..runtimes import onnx_opset

    check_fp32_runtime(runtime)
    test = load_split(resolve_data_dir(data_dir), "test")
    [loaded] = load_models([model], weights, input_scale, mean, std)
    metrics, _ = run_eval(fp32_runner(loaded, runtime), test, loaded.preprocessing)
    result = {"model": loaded.name, "runtime": runtime, "weights": str(loaded.weights_path),
              "onnx_opset": onnx_opset(exported_onnx(loaded)), **metrics}
    if as_json:
        return print_json(result)
    console.print(f"{loaded.name} ({runtime}) accuracy {100 * metrics['accuracy']:.2f}% "
                  f"({metrics['correct']:,}/{metrics['n_images']:,}) on {metrics['dataset']}, "
                  f"{metrics['images_per_second']:,.0f} images/s")
    table = Table("class", "accuracy")
    for name, acc in metrics["per_class_accuracy"].items():
        table.add_row(name, f"{100 * acc:.1f}%")
    console.print(table)


def _view(environment: str | None, dataset: str | None, seeds: str | None = None):
    from ..analysis.summary import load_view, parse_seeds
    from ..paths import results_file
    from ..results import load_results

    return load_view(load_results(results_file()), environment, dataset, parse_seeds(seeds))


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
    from ..analysis.summary import choices, summary_records

    view = _view(environment, dataset, seeds)
    records = [r for r in summary_records(view) if not model or r["model"] in model]
    if model and not records:
        raise UserError(f"no results for {', '.join(model)} in {view.environment} / {view.dataset_name}")
    if as_json:
        return print_json(records)
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
                          interval(r["delta_pp_ci95"]),
                          {True: "yes", False: "no", None: ""}[r["tied_with_best"]],
                          f"{r['throughput_b256']:,.0f}" if r["throughput_b256"] else "—")
        print_table(table)
        if choice:
            console.print(f"pick: {choice['pick']} — {choice['rule']}.", soft_wrap=True)
            if choice["resolution"]:
                console.print(choice["resolution"]["text"] + ".", soft_wrap=True)


@app.command()
def compare(environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt,
            as_json: bool = JsonOpt) -> None:
    """Scheme comparisons: pairs of configs differing in exactly one field, paired deltas with 95% intervals."""
    from ..analysis.comparisons import comparisons
    from ..paths import results_file

    view = _view(environment, dataset)
    tables = comparisons(view)
    if as_json:
        return print_json(tables)
    if not tables:
        raise UserError(f"no pairs of configs differing in one field in {results_file()}: run `quant-explorer sweep` first")
    console.print(view.banner(), soft_wrap=True)
    for t in tables:
        table = Table("model", "reference", "variant", "reference accuracy (%)", "variant accuracy (%)", "Δ (pp)",
                      "95% interval (pp)", "verdict", title=f"{t['title']} ({t['backend']}): {t['reference_value']} → "
                      f"{t['value']}: {t['verdict']}")
        for p in t["pairs"]:
            table.add_row(p["model"], p["reference_config"], p["config"], f"{100 * p['reference_accuracy']:.2f}",
                          f"{100 * p['accuracy']:.2f}", f"{p['delta_pp']:+.2f}", interval(p.get("ci95_pp")),
                          p["verdict"])
        console.print(table)


@app.command()
def report(check_render: bool = typer.Option(False, "--check-render", help="Open the HTML in headless Chromium, "
                                             "check every image loads, save report/screenshot.png."),
           environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt) -> None:
    """Write results/pareto.md and the self-contained HTML report report/index.html from the results files.

    Both show one environment and one evaluation set (named in their banner), never a mix.
    """
    from ..paths import artifacts_dir, results_file
    from ..report import build, render_check

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
    from ..data import detect_layout, load_split, resolve_data_dir

    root = resolve_data_dir(data_dir)
    info = {"data_dir": str(root), "layout": detect_layout(root)}
    for split in ("train", "test"):
        s = load_split(root, split)
        info[split] = {"dataset": s.dataset, "n_images": len(s), "classes": list(s.classes)}
    if as_json:
        return print_json(info)
    console.print(info)


@data_app.command("fetch")
def data_fetch(directory: Optional[Path] = typer.Argument(None, help="Where to put cifar-10-batches-py; default "
                                                          "the default data directory.")) -> None:
    """Download the real CIFAR-10 python batches with torchvision (needs internet)."""
    from ..data import fetch_cifar10, resolve_data_dir

    root = directory or resolve_data_dir(None)
    fetch_cifar10(root)
    console.print(f"CIFAR-10 is in {root}/cifar-10-batches-py")
