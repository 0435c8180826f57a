"""Use quant-explorer from your own code: your `nn.Module` (or .onnx file), your `Dataset`, the same answers.

    import quant_explorer as qe
    result = qe.explore(model, calibration=train_ds, evaluation=test_ds,
                        configs=["ort_u8_minmax_qdq_*", "pt2e_u8_per_channel_minmax"], seeds=5)
    result.pick          # the config to ship, as `quant-explorer summary` picks it
    result.rows          # one dict per config, FP32 included
    result.report("out") # pareto.md + index.html for this exploration

Nothing here is new machinery: a model becomes a `LoadedModel`, a dataset an `ImageSet` (`user_inputs.py`: its
tensors as they are, fingerprinted by content), and `explore` is the sweep (`sweep.run_sweep`: same rows, same
keys, same results file under the artifacts directory), optionally the bench, then the one view
(`analysis.summary`) restricted to this exploration's rows. Nothing prints to stdout; `progress=True` writes one
line per row to stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from .backends import select_configs
from .configs import REFERENCE
from .data import ImageSet
from .errors import UserError, first_line
from .models import LoadedModel, Preprocessing
from .paths import ARTIFACTS_ENV
from .quiet import quietly
from .row import Row
from .user_inputs import (
    check_calibration,
    class_names,
    count_scores,
    input_shape,
    load_model_file,
    prepare,
    read_dataset,
)

__all__ = ["Exploration", "Quantized", "configs", "evaluate", "explore", "quantize"]

DEFAULT_CALIBRATION_N = 256  # as the CLI's --calibration-n


# --- configs -------------------------------------------------------------------------------------------------


def configs(pattern: str | Iterable[str] | None = None, all_configs: bool = False) -> list[dict]:
    """The configs `explore` and `quantize` take: by name or glob (`"ort_u8_*"`, or a list of them), else the
    default sweep (`all_configs=True`: the whole grid). One dict each: name, backend, description, default,
    static (needs calibration)."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern) if pattern else None
    return [{"name": c.name, "backend": c.backend, "description": c.description, "default": c.default,
             "static": c.is_static} for c in select_configs(patterns, all_configs)]


# --- the artifacts directory and progress --------------------------------------------------------------------


@contextlib.contextmanager
def _artifacts(folder: str | Path | None):
    """Everything written (results, models, labels) goes under `folder` for the call (else ./artifacts or
    $QUANT_EXPLORER_ARTIFACTS, as for the CLI)."""
    if folder is None:
        yield
        return
    previous = os.environ.get(ARTIFACTS_ENV)
    os.environ[ARTIFACTS_ENV] = str(Path(folder).resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ARTIFACTS_ENV, None)
        else:
            os.environ[ARTIFACTS_ENV] = previous


def _say(progress: bool):
    return (lambda line: print(line, file=sys.stderr, flush=True)) if progress else (lambda line: None)


def _row_text(row: Row) -> str:
    name = row.config_name + (f" seed {row.seed}" if row.seed is not None else "")
    if row.not_applicable is not None:
        return f"{name}: not applicable ({row.not_applicable})"
    if row.error is not None:
        return f"{name}: failed ({first_line(row.error)})"
    delta = f" ({row.delta_pp:+.2f} pp)" if row.delta_pp is not None else ""
    return f"{name}: {100 * row.accuracy:.2f}% in {row.runtime}{delta}"


# --- explore -------------------------------------------------------------------------------------------------


@dataclass
class Exploration:
    """What `explore` found: the pick, one row per config, and the view they come from (`analysis.view.View`)."""

    model: str
    pick: dict | None  # the config to ship (None: no quantized config scored), with the rule that picked it
    rows: list[dict]  # one per config, FP32 first; unscored ones carry `not_applicable` or `error`
    view: Any = field(repr=False)
    results_path: Path = field(repr=False)
    keys: list[str] = field(default_factory=list, repr=False)  # this exploration's rows in the results file

    def row(self, config: str) -> dict:
        """The row of one config, by name."""
        found = next((r for r in self.rows if r["config"] == config), None)
        if found is None:
            raise KeyError(f"no row for {config!r}; configs: {', '.join(r['config'] for r in self.rows)}")
        return found

    @quietly
    def report(self, out_dir: str | Path) -> dict[str, Path]:
        """Write out_dir/pareto.md and out_dir/index.html (the `quant-explorer report` page) for this
        exploration; returns their paths."""
        from .files import write_text_atomic
        from .report.html import render_html
        from .report.markdown import markdown

        out = Path(out_dir)
        written = {"markdown": out / "pareto.md", "html": out / "index.html"}
        with _artifacts(self.results_path.parent.parent):  # where this exploration's models are
            write_text_atomic(written["markdown"], markdown(self.view))
            write_text_atomic(written["html"], render_html(self.view, {}, {}))
        return written

    def __str__(self) -> str:
        from .analysis.records import summary_records

        scored = {r.config: r for r in summary_records(self.view) if r.model == self.model}
        pick = scored.get(self.pick["config"]) if self.pick else None
        lines = [self.view.banner(), "pick: " + (f"{pick.config} ({pick.runtime}), {_pct(pick.accuracy)}, "
                                                  f"{_delta(pick)}; {self.pick['rule']}" if pick else "none")]
        load = pick.load if pick and pick.load else None
        if load and load.code:
            lines.append(f"load it as timed (in {load.runtime} with {load.setting}):\n{load.code}")
        width = max(len(r["config"]) for r in self.rows)
        for row in self.rows:
            r = scored.get(row["config"])
            if r is None:  # not applicable, or failed
                lines.append(f"  {row['config']:<{width}}  {row.get('not_applicable') or row.get('error')}")
                continue
            speed = f"  {r.latency_ms_b1:.3f} ms b1" if r.latency_ms_b1 else ""
            lines.append(f"  {r.config:<{width}}  {r.runtime:<12} {_pct(r.accuracy)}  {_delta(r):<28} "
                         f"{r.size_bytes / 1024:>7.0f} KiB  seeds {len(r.seeds) or '-'}{speed}"
                         + ("  <- pick" if r.pick else ""))
        return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _delta(row) -> str:
    """A summary record's Δ vs FP32 with its interval; 'reference' for FP32."""
    if row.config == REFERENCE:
        return "reference"
    from .analysis.view import scope

    ci = row.delta_pp_ci
    return f"{row.delta_pp:+.2f} pp" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]{scope(row.delta_pp_seed_part)}" if ci else "")


@quietly
def explore(model, calibration, evaluation, configs: str | Iterable[str] | None = None, seeds: int | Iterable[int] = 5,
            calibration_n: int = DEFAULT_CALIBRATION_N, benchmark: bool | Any = False,
            artifacts_dir: str | Path | None = None, progress: bool = False, name: str | None = None,
            preprocessing: Preprocessing | None = None, objective: str | None = None, force: bool = False,
            isa: str = "native", deploy: str | Iterable[str] = ()) -> Exploration:
    """Quantize `model` with each config, evaluate every result on every `evaluation` image, and pick one.

    model: a `torch.nn.Module` in eval mode (what torch.export and the ONNX exporter take), a path to an FP32
        .onnx classifier, or one of our model names.
    calibration, evaluation: `torch.utils.data.Dataset`s yielding (tensor [C, H, W], int label), already
        preprocessed as the model expects (or image-folder paths, read as the CLI reads them, with
        `preprocessing` applied). Classes: the dataset's `.classes`, else "0", "1", ...
    configs: names or globs (`configs()` lists them); default: the default sweep. FP32 is always in.
    seeds: the number of calibration seeds (0..seeds-1) or the seeds; each a stratified, seeded draw of
        `calibration_n` images from `calibration`.
    benchmark: also time each config in the runtime it ships in (`True`, or a `bench.BenchSettings`); the pick
        is then the fastest config of the confidence set for the best (else the smallest).
    artifacts_dir: where results (`results/full_results.json`, the CLI's file and schema) and models go;
        default ./artifacts or $QUANT_EXPLORER_ARTIFACTS.
    progress: one line per row on stderr. name: the model's name in the results (default: its class name).
    objective: what the pick optimizes: latency, throughput or size (default latency when benchmarked, else size).
    force: recompute rows already stored (else rows measured alike are reused, as the sweep does).
    isa: score as this CPU class, emulated, as the CLI's `--isa` (ONNX Runtime, the eager engine and FP32 under
        qemu-user as a CPU of the class; PT2E only where ONEDNN_MAX_CPU_ISA named it before PyTorch started, else
        not measured); emulated rows are never timed.
    deploy: CPU classes the pick must hold on (e.g. ["avx2"]): each is also explored, emulated as with `isa`, and
        the pick is a member of the confidence set on every one that measured it (`summary --deploy`).
    """
    from .analysis.records import explore_rows
    from .analysis.summary import load_view
    from .backends import get_config
    from .experiment import FP32
    from .files import remove_leftovers
    from .identity import emulating
    from .paths import artifacts_dir as current_artifacts
    from .paths import results_file
    from .results import Results, check_writable
    from .sweep import run_sweep

    if isa != "native" and benchmark:
        raise UserError("benchmark=True with isa: emulated rows are never timed (their speed is the emulator's)")
    deploy = [deploy] if isinstance(deploy, str) else list(deploy)
    for cls in deploy:  # a class this machine cannot emulate is refused before any work
        with emulating(cls):
            pass
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise UserError("seeds must be at least 1")
    patterns = [configs] if isinstance(configs, str) else list(configs) if configs else None
    chosen = [FP32, *(c for c in select_configs(patterns) if c.name != REFERENCE)]
    say = _say(progress)
    loaded, data = prepare(model, calibration, evaluation, name, preprocessing)
    if any(c.is_static for c in chosen):
        check_calibration(data, calibration_n, seed_list)
    with _artifacts(artifacts_dir), emulating(isa):
        remove_leftovers(current_artifacts())
        results = results_file()
        check_writable(results)
        keys = []
        for key, row, reused in run_sweep([loaded], chosen, data, calibration_n, seed_list, results, force,
                                          notify=say):
            keys.append(key)
            say(f"{loaded.name} {_row_text(row)}" + (" (stored)" if reused else ""))
        if benchmark:
            from .bench import BenchSettings, bench_and_record
            from .paths import bench_file

            settings = benchmark if isinstance(benchmark, BenchSettings) else BenchSettings()
            say(f"timing {len(chosen)} configs of {loaded.name} (seed {seed_list[0]})")
            bench_and_record(loaded, chosen[1:], data, calibration_n, seed_list[0], settings, results,
                             bench_file(loaded.name), log=say)
        for cls in deploy:
            with emulating(cls):
                for key, row, reused in run_sweep([loaded], chosen, data, calibration_n, seed_list, results, force,
                                                  notify=say):
                    keys.append(key)
                    say(f"{loaded.name} as {cls}: {_row_text(row)}" + (" (stored)" if reused else ""))
        stored = Results.load(results)
    fingerprint = data.test.fingerprint
    subset = Results({k: stored.rows[k] for k in dict.fromkeys(keys) if k in stored.rows},
                     {fingerprint: stored.datasets.get(fingerprint, data.test.record())})
    with _artifacts(artifacts_dir):  # the labels the intervals pair on are cached there
        view = load_view(subset, dataset=fingerprint, objective=objective or ("latency" if benchmark else "size"))
        if deploy:
            from .analysis.deploy import deployment

            deployment(view, subset, deploy)
    rows = explore_rows(view, loaded.name, chosen)
    choice = view.choices.get(loaded.name)
    pick = None
    if choice and choice.pick:
        pick = {**next(r for r in rows if r["config"] == choice.pick), "model": loaded.name,
                "rule": choice.rule, "best": choice.best, "best_set": choice.best_set,
                "resolution_pp": choice.resolution.get("resolution_pp"),
                "description": get_config(choice.pick).description}
    return Exploration(loaded.name, pick, rows, view, results, list(dict.fromkeys(keys)))


# --- quantize and evaluate -----------------------------------------------------------------------------------


@dataclass
class Quantized:
    """One quantized model: call it on a preprocessed float batch for [N, classes] logits (`q(x)`), in the
    runtime it ships in (`runtime`); `artifact` is the saved model (an ONNX file, a .pt2 program, TorchScript)."""

    config: str
    runtime: str
    artifact: Path
    model: LoadedModel = field(repr=False)
    quantized: Any = field(repr=False)  # backends.QuantizedModel: every runtime it runs in, its checks

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        out = self.quantized.runner(x.float() if not x.is_floating_point() else x)
        return torch.as_tensor(np.asarray(out)) if not isinstance(out, torch.Tensor) else out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Top-1 class ids of a batch."""
        return self(x).argmax(dim=1)

    @property
    def runtimes(self) -> list[str]:
        return list(self.quantized.runtimes)

    @property
    def size_bytes(self) -> int:
        return self.quantized.size_bytes

    @property
    def checks(self) -> dict:
        return self.quantized.checks

    def loading(self, threads: int | None = None) -> dict:
        """How to load the artifact in the runtime it ships in: {runtime, artifact, threads, setting, code}, the code
        as the bench runs it. `threads`: the count `explore(..., benchmark=True)` found fastest at batch 1 (its
        `pick["load"]` says it); default torch's. Where the shipped form is a compiled package, this compiles it."""
        from .bench import load_record

        shipped = self.quantized.headline or self.quantized.runtime
        build = self.quantized.runtimes[shipped]
        threads = threads or torch.get_num_threads()
        if build.artifact is not None and not build.artifact.exists():
            build.build(threads)  # writes the package
        return load_record(shipped, Path(build.artifact or self.artifact).resolve(), threads).to_dict()


@quietly
def quantize(model, config: str, calibration, seed: int = 0, calibration_n: int = DEFAULT_CALIBRATION_N,
             artifacts_dir: str | Path | None = None, name: str | None = None,
             preprocessing: Preprocessing | None = None, isa: str = "native") -> Quantized:
    """Quantize `model` (an nn.Module in eval mode, or an .onnx path) with one config, calibrated on a stratified
    draw (`seed`) of `calibration_n` images of `calibration` (a Dataset of preprocessed (tensor, label) pairs, or
    an image-folder path). Raises UserError for bad input and NotApplicable where the config cannot apply.
    `isa`: the returned model runs as a CPU of that class, emulated (as `explore`'s)."""
    from .backends import get_config
    from .backends import quantize as apply
    from .identity import emulating
    from .keys import build_identity, make_calibration, workdir_for

    chosen = get_config(config)
    loaded, data = prepare(model, calibration, calibration, name, preprocessing)
    cal = None
    if chosen.is_static:
        check_calibration(data, calibration_n, [seed])
        cal = make_calibration(loaded, data, calibration_n, seed)  # the sweep's draw of the same seed
    with _artifacts(artifacts_dir), emulating(isa):
        identity = build_identity(loaded, chosen, cal.describe() if cal else None, None)
        built = apply(loaded, chosen, cal, workdir_for(loaded, chosen, cal, identity))
        # Built and run at batch 1 and 2 (compiled, where it compiles, for a single image and for any batch) while
        # the artifacts directory is the one asked for and third-party noise is muted; a graph that hard-codes
        # batch 1 runs at batch 1 only.
        for batch in (loaded.example[:1], *(() if loaded.import_info.get("fixed_batch") else (loaded.example,))):
            built.runner(batch)
    return Quantized(chosen.name, built.runtime, built.path.resolve(), loaded, built)


@quietly
def evaluate(model, dataset, batch_size: int = 256, preprocessing: Preprocessing | None = None) -> dict:
    """Accuracy, per-class accuracy, confusion matrix and throughput of a `Quantized`, an nn.Module (eager) or an
    .onnx file (ONNX Runtime) on every image of `dataset` (preprocessed (tensor, label) pairs, or an image folder).
    The classes: the dataset's `.classes`, else "0", "1", ... as many as the model scores."""
    from .evaluate import evaluate as run
    from .runtimes import ort_runner, torch_runner

    loaded = None  # the model's LoadedModel, where it has one: its input shape is checked against the data
    if isinstance(model, Quantized):
        loaded, runner = model.model, model.quantized.runner
    elif isinstance(model, nn.Module):
        from .models.loaded import private_copy

        module = private_copy(model)  # the user's own module is never run
        prep = preprocessing or Preprocessing("raw255")
        runner, scores, shape = torch_runner(module), None, input_shape(module)
    elif isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        from .models import exported_onnx

        loaded = load_model_file(model, preprocessing)
        runner = ort_runner(exported_onnx(loaded))
    else:
        raise UserError(f"evaluate takes a Quantized (from quantize), a torch.nn.Module or an .onnx path, got "
                        f"{type(model).__name__}")
    if loaded is not None:
        prep, scores, shape = loaded.preprocessing, loaded.num_classes, input_shape(loaded)
    images, labels, name, classes = read_dataset(dataset, "evaluation", shape)
    if scores is None:
        prep.check_channels(int(images.shape[1]), f"{type(model).__name__} (given this dataset)")
        scores = count_scores(module, prep, images[:2])
    names = class_names([(images, labels, name, classes)], scores)
    if len(names) != scores:
        raise UserError(f"the model scores {scores} classes, the dataset has {len(names)}: pass data of its classes")
    data = ImageSet(images, labels, names, name)
    if loaded is not None:
        from .preflight import check_fits

        check_fits(loaded, data)
    metrics, _ = run(runner, data, prep, batch_size)
    return metrics
