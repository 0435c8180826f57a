"""Commands that show: the registries (models, configs), one FP32 evaluation, and views of the results files
(summary, compare, report), plus the data commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..errors import UserError
from .app import (
    DataDir,
    DatasetOpt,
    EnvironmentOpt,
    InputScale,
    JsonOpt,
    MeanOpt,
    ModelOpt,
    StdOpt,
    WeightsOpt,
    app,
    console,
    data_app,
    err_console,
    interval,
    print_json,
    print_table,
)


def busy(text: str):
    """A spinner on stderr while something takes seconds; nothing where stderr is not a terminal."""
    import contextlib

    return err_console.status(text) if err_console.is_terminal else contextlib.nullcontext()


def show(head: list[str], rows: list[list[str]], labels: list[str], title: str = "",
         text_width: int | None = None) -> None:
    """A table at its natural width where the terminal has room for it; in a narrower one, two lines per row: the
    first cell alone (a config name, never cut), then the other cells, indented, each after its short `labels`
    entry (one per cell after the first). Empty and "—" cells are left out of the second line."""
    from rich.measure import Measurement

    table = Table(*head, title=title or None, title_justify="left")
    for row in rows:
        table.add_row(*row)
    for column in table.columns:
        column.no_wrap = True
    if text_width:
        table.columns[-1].no_wrap, table.columns[-1].max_width = False, text_width
    if Measurement.get(console, console.options.update(width=10_000), table).maximum <= console.width:
        return print_table(table, text_width)
    if title:
        console.print(Text(title, style="italic"))
    for row in rows:
        console.print(Text(row[0], style="bold"), overflow="fold")
        rest = "   ".join(f"{label}{value}" for label, value in zip(labels, row[1:]) if value not in ("", "—"))
        console.print(Padding(Text(rest), (0, 0, 0, 4)))


def show_study(kind, entry) -> None:
    """One study entry as its kind formats it for the report too (`studies.Study`): heading, table, text."""
    head, rows = kind.table(entry)
    show(head, [[str(v) for v in row] for row in rows], [f"{h}: " for h in head[1:]], title=kind.heading(entry))
    if kind.text(entry):
        console.print(kind.text(entry) + ".", markup=False, highlight=False)


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
    from ..backends import select_configs

    chosen = select_configs(all_configs=all_configs)
    if as_json:
        return print_json([c.to_dict() for c in chosen])
    show(["config", "backend", "default", "description"],
         [[c.name, c.backend, "yes" if c.default else "", c.description] for c in chosen],
         ["", "in the default sweep: ", ""], text_width=60)


@app.command()
def evaluate(model: str = ModelOpt, weights: Optional[Path] = WeightsOpt,
             runtime: str = typer.Option("torch", "--runtime", help="Where the FP32 model runs: torch (eager), "
                                         "onnxruntime (its ONNX export), onnx2torch (that export converted back to "
                                         "PyTorch), inductor (torch.compile) or aotinductor (a package compiled "
                                         "ahead of time)."),
             data_dir: Optional[Path] = DataDir, input_scale: Optional[str] = InputScale,
             mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt, as_json: bool = JsonOpt) -> None:
    """Evaluate an FP32 model on the whole evaluation set in one runtime."""
    with busy("loading torch"):
        from ..data import load_split, resolve_data_dir
        from ..evaluate import evaluate as run_eval
        from ..experiment import fp32_runner
        from ..models import exported_onnx
        from ..preflight import check_fp32_runtime, folder_classes, folder_shape, load_models
        from ..runtimes import onnx_opset

    check_fp32_runtime(runtime)
    root = resolve_data_dir(data_dir)
    shape = folder_shape([model])
    test = load_split(root, "test", folder_classes([model], root), shape[0], shape[1:])  # shows its own progress
    with busy(f"{model}: loading it and scoring {len(test):,} test images in {runtime}"):
        [loaded] = load_models([model], weights, input_scale, mean, std, test)
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


DeployOpt = typer.Option(None, "--deploy", help="The CPU classes the pick must hold on, comma-separated (e.g. "
                         "avx2,avx512-vnni): it must be in the confidence set for the best on each that measured it; "
                         "default: every class the results hold, native or emulated.")


def _classes(deploy: str | None) -> list[str] | None:
    return [c.strip() for c in deploy.split(",") if c.strip()] or None if deploy else None


ObjectiveOpt = typer.Option("latency", "--objective", help="What the pick optimizes among the configs in the "
                            "confidence set for the best: latency (batch 1, median), throughput (batch 256) or size.")


def _view(environment: str | None, dataset: str | None, seeds: str | None = None, objective: str = "latency",
          data_dir: Path | None = None):
    from ..analysis.summary import load_view, parse_seeds
    from ..data import resolve_data_dir
    from ..paths import results_file
    from ..results import Results

    with busy("reading the results and computing intervals"):
        return load_view(Results.load(results_file()), environment, dataset, parse_seeds(seeds), objective,
                         resolve_data_dir(data_dir))


def _preamble(view) -> None:
    """The banner, then each note and each reason rows were set aside, once."""
    for line in [view.banner(), *view.notes, *view.set_aside_lines()]:
        console.print(line, markup=False, highlight=False)  # wrapped at spaces: a config name is never cut


def _pick_lines(choice) -> None:
    """A model's pick (`analysis.view.Choice`) in lines: identical recipes, the pick and its rule, the resolution,
    the pick on each deployment class."""
    from ..analysis.deploy import classes_text

    if choice.identical:
        console.print(f"identical recipes: {choice.identical_text}.", markup=False, highlight=False)
    console.print(f"pick ({choice.objective}): {choice.pick or 'none'} — {choice.rule}.", markup=False,
                  highlight=False)
    if choice.resolution:
        console.print(choice.resolution["text"] + ".", markup=False, highlight=False)
    if classes_text(choice):
        console.print(classes_text(choice) + ".", markup=False, highlight=False)


@app.command()
def summary(model: list[str] = typer.Option(None, "--model", "-m", help="Only these models (repeatable)."),
            environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt,
            seeds: Optional[str] = typer.Option(None, "--seeds", help="Pool only these calibration seeds, e.g. 5-9 "
                                                "(does the pick survive other draws?); default: every stored seed."),
            objective: str = ObjectiveOpt, data_dir: Optional[Path] = DataDir,
            for_isa: Optional[str] = typer.Option(None, "--for-isa", help="Answer for this CPU class (avx2, avx512, "
                                                  "avx512-vnni, amx, avx-vnni): its native rows, else its emulated "
                                                  "ones (`sweep --isa`)."),
            deploy: Optional[str] = DeployOpt, as_json: bool = JsonOpt) -> None:
    """Each config's accuracy over its calibration seeds, its delta vs FP32 with an interval, the confidence set
    for the best, and the pick (in the set on every deployment class); then, where the results hold several CPU
    classes, what each config scores on each.

    The interval pairs test images and calibration seeds (t with Welch-Satterthwaite degrees of freedom); the
    confidence set holds the configs no other config beats by more than the noise allows, family-wise; the pick
    is the best of the set on --objective.
    """
    from ..analysis.classes import environment_for
    from ..analysis.deploy import deployment
    from ..analysis.pick import OBJECTIVES, choices
    from ..analysis.records import summary_json
    from ..analysis.rows import is_quantized, speedup
    from ..analysis.view import scope
    from ..data import resolve_data_dir
    from ..paths import results_file
    from ..results import Results
    from ..stats import level_text

    if for_isa:
        environment = environment_for(Results.load(results_file()), for_isa, dataset)
    view = _view(environment, dataset, seeds, objective, data_dir)
    with busy("scoring every CPU class"):
        classes = deployment(view, Results.load(results_file()), _classes(deploy), resolve_data_dir(data_dir))
    document = summary_json(view, model)
    classes = {m: t for m, t in classes.items() if not model or m in model}
    document["cpu_classes"] = classes
    if model and not document["rows"]:
        raise UserError(f"no results for {', '.join(model)} in {view.environment} / {view.dataset_name}")
    if as_json:  # the answer first (per model: the pick, its numbers, its rule, what was set aside), then the rows
        from ..record import document as document_of
        from ..report.answer import answers

        found = {m: document_of(a) for m, a in answers(view).items() if not model or m in model}
        return print_json({"answer": found, **document})
    _preamble(view)
    cost = OBJECTIVES[objective].cost
    batch = 256 if objective == "throughput" else 1
    unit = {"latency": "latency (ms, batch 1)", "throughput": "images/s, batch 256", "size": "size (bytes)"}[objective]
    for name, choice in choices(view).items():
        if model and name not in model:
            continue
        rows = []
        for r in (r for r in view.rows if r.model == name):
            ratio = speedup(r, batch)[0]
            value = cost(r)
            rows.append([r.config_name + (" ◀" if r.pick else ""), r.runtime or "—",
                         str(len(r.seeds)) if r.seeds else "—",
                         f"{100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f}",
                         "—" if r.delta_pp is None else f"{r.delta_pp:+.2f}",
                         interval(r.delta_pp_ci) + scope((r.delta_stats or {}).get("seed_part")),
                         ({True: "yes", False: "no", None: "—"}[r.in_best_set]
                          + (f" (= {r.identical_to})" if r.identical_to else "")) if is_quantized(r) else "",
                         f"{value:,.4g}" if isinstance(value, (int, float)) else "—",
                         f"{ratio:.2f}x" if ratio else "—"])
        show(["config", "runtime", "seeds", "accuracy % ± sd", "Δ pp", f"{level_text()} interval", "in set", unit,
              f"× fastest FP32, batch {batch}"], rows,
             ["in ", "seeds ", "", "Δ ", "", "in set: ", f"{unit} ", f"× fastest FP32, batch {batch}: "],
             title=f"{name}: accuracy over calibration seeds in the runtime it ships in, Δ vs FP32 (pp), in the "
                   f"{level_text()} confidence set for the best; ◀ the pick")
        if choice:
            _pick_lines(choice)
            depends = classes.get(name, {}).get("configs", {}).get(choice.pick, {}).get("depends_on_class")
            if depends:
                console.print(f"warning: {choice.pick}'s accuracy depends on the CPU class (its intervals on two "
                              "classes do not overlap): see the CPU-class matrix below", markup=False, highlight=False)
    for name, table in classes.items():
        if len(table["classes"]) > 1:
            _class_matrix(name, table)


def _class_matrix(model: str, table: dict) -> None:
    """Config x CPU class: the shipped Δ vs FP32 with its interval in each class's own view."""
    from ..analysis.classes import table_rows
    from ..stats import level_text

    show(["config", *table["classes"]], table_rows(table), [f"{column}: " for column in table["classes"]],
         title=f"{model}: Δ vs FP32 (pp) and its {level_text()} interval on each CPU class, each in its own view")


@app.command()
def compare(environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt,
            objective: str = ObjectiveOpt, data_dir: Optional[Path] = DataDir, as_json: bool = JsonOpt) -> None:
    """Scheme comparisons: pairs of configs differing in exactly one field, paired deltas with intervals, verdicts
    corrected for the number of pairs; then each model's pick."""
    from ..analysis.comparisons import comparisons
    from ..analysis.pick import choices
    from ..paths import results_file
    from ..stats import level_text

    view = _view(environment, dataset, None, objective, data_dir)
    tables = comparisons(view)
    if as_json:
        return print_json(tables)
    if not tables:
        raise UserError(f"no pairs of configs differing in one field in {results_file()}: "
                        "run `quant-explorer sweep` first")
    _preamble(view)
    for t in tables:
        show(["variant (vs reference)", "model", "reference accuracy (%)", "variant accuracy (%)", "Δ (pp)",
              f"{level_text()} interval (pp)", f"{t['correction']} p", "verdict"],
             [[f"{p['config']} (vs {p['reference_config']})", p["model"], f"{100 * p['reference_accuracy']:.2f}",
               f"{100 * p['accuracy']:.2f}", f"{p['delta_pp']:+.2f}", interval(p.get("ci_pp")),
               "—" if p.get("p_adjusted") is None else f"{p['p_adjusted']:.3g}", p["verdict"]] for p in t["pairs"]],
             ["", "", "→ ", "Δ ", "", "p ", ""],
             title=f"{t['title']} ({t['backend']}): {t['reference_value']} → {t['value']}: {t['verdict']}")
    for name, choice in choices(view).items():
        if choice:
            console.print(f"{name}:", soft_wrap=True)
            _pick_lines(choice)


@app.command()
def report(check_render: bool = typer.Option(False, "--check-render", help="Open the HTML in headless Chromium, "
                                             "check every image loads and nothing overflows 1024 px, save the "
                                             "first screen as report/screenshot.png (1400 px) and "
                                             "screenshot-1024.png."),
           environment: Optional[str] = EnvironmentOpt, dataset: Optional[str] = DatasetOpt,
           objective: str = ObjectiveOpt, data_dir: Optional[Path] = DataDir,
           deploy: Optional[str] = DeployOpt) -> None:
    """Write results/pareto.md and the self-contained HTML report report/index.html from the results files: the
    answer per model first, then the evidence.

    Both show one environment and one evaluation set (named in their banner), never a mix.
    """
    from ..data import resolve_data_dir
    from ..paths import artifacts_dir, results_file
    from ..report import build, render_check

    with busy("writing the report (plots take a few seconds)"):
        written = build(results_file().parent, artifacts_dir() / "report", environment, dataset, objective,
                        resolve_data_dir(data_dir), _classes(deploy))
    for path in written.values():
        console.print(f"wrote {path}")
    if check_render:  # the first screen at desktop width and at 1024 px, where nothing may overflow
        check = render_check(written["html"], written["html"].with_name("screenshot.png"))
        narrow = render_check(written["html"], written["html"].with_name("screenshot-1024.png"), width=1024)
        overflow = narrow["scroll_width"] > narrow["viewport_width"]
        console.print(f"chromium rendered {check['images']} images, {len(check['broken'])} broken; "
                      f"{'overflows' if overflow else 'no horizontal overflow'} at 1024 px; screenshots "
                      f"{check['screenshot']}, {narrow['screenshot']}")
        if check["broken"] or overflow:
            raise typer.Exit(1)


@data_app.command("info")
def data_info(data_dir: Optional[Path] = DataDir, as_json: bool = JsonOpt) -> None:
    """Say which data set would be used, its layout and image counts."""
    with busy("loading torch"):  # seconds; decoding then shows its own progress bar
        from ..data import detect_layout, load_split, resolve_data_dir

    root = resolve_data_dir(data_dir)
    info = {"data_dir": str(root), "layout": detect_layout(root)}
    for split in ("train", "test"):
        s = load_split(root, split)
        info[split] = {"dataset": s.dataset, "n_images": len(s), "classes": list(s.classes)}
    if as_json:
        return print_json(info)
    table = Table("split", "images", "dataset", title=f"{root} ({info['layout']})", title_justify="left")
    for split in ("train", "test"):
        table.add_row(split, f"{info[split]['n_images']:,}", info[split]["dataset"])
    console.print(table)
    console.print(f"classes: {', '.join(info['test']['classes'])}", highlight=False)


@data_app.command("fetch")
def data_fetch(directory: Optional[Path] = typer.Argument(None, help="Where to put cifar-10-batches-py; default "
                                                          "the default data directory.")) -> None:
    """Download the real CIFAR-10 python batches with torchvision (needs internet)."""
    from ..data import fetch_cifar10, resolve_data_dir

    root = directory or resolve_data_dir(None)
    fetch_cifar10(root)
    console.print(f"CIFAR-10 is in {root}/cifar-10-batches-py")


@app.command()
def cpu(emulable: bool = typer.Option(False, "--emulable", help="Print only the classes `--isa` can emulate here, "
                                      "space-separated (for scripts: `make classes` loops over them)."),
        as_json: bool = JsonOpt) -> None:
    """This CPU's int8-kernel class, the lower classes `--isa` can emulate on it and how (qemu-user's CPU models for
    ONNX Runtime, the eager engine and FP32; oneDNN's cap for PT2E)."""
    from ..emulation import QEMU_CPU, available, method, missing, qemu_path
    from ..env import cpu_info
    from ..identity import CAP, CAPPED, below, cpu_class
    from ..identity import emulable as classes

    here = cpu_class(cpu_info())
    methods = {c: [*([method(c)] if c in QEMU_CPU and available(c) else []),
                   *([CAP] if c in CAPPED.get(here, ()) else [])] for c in classes(here)}
    absent: dict[str, list[str]] = {}  # why qemu cannot run them -> the classes
    for c in below(here):
        if c in QEMU_CPU and not available(c):
            absent.setdefault(missing(c), []).append(c)
    info = {"model": cpu_info()["model"], "cpu_class": here, "emulates": list(methods), "methods": methods,
            "qemu": qemu_path()}
    if as_json:
        return print_json(info)
    if emulable:
        return print(" ".join(info["emulates"]))
    said = ", ".join(f"{c} ({' and '.join(m)})" for c, m in methods.items()) or "nothing lower"
    console.print(f"{info['model']}: {here}; can emulate: {said}" + "".join(
        f"; not measured in qemu on {', '.join(isas)}: {why}" for why, isas in absent.items()),
        highlight=False)
