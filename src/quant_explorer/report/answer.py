"""The answer, per model, as a reader wants it first: the config to ship, the runtime it ships in, what it costs
(Δ vs FP32 with its interval, the classes that lose detectably), what it buys (speed against the fastest FP32
runtime at batch 1 and 256, size), the command that reproduces it and where its saved model is.

One place for it, so the report's answer block, `summary --json` and pareto.md say the same thing. Paths are
relative (to the working directory, or to $QUANT_EXPLORER_ARTIFACTS): a report mailed elsewhere names no
machine's directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..analysis import fp32_rows
from ..analysis.comparisons import confusion_comparison
from ..analysis.deploy import classes_text
from ..analysis.pick import choices, not_scored
from ..analysis.rows import speedup
from ..analysis.view import PooledRow, View, per_class
from ..bench_entry import LoadRecord
from ..models import MODELS
from ..paths import ARTIFACTS_ENV, artifacts_dir
from ..row import Row


def shown_path(path: Path) -> str:
    """A path as a reader can use it anywhere: relative to the working directory when under it, else relative to
    the artifacts folder ("$QUANT_EXPLORER_ARTIFACTS/models/..."), else only its name; never absolute."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    for base, prefix in ((Path.cwd(), ""), (artifacts_dir(), f"${ARTIFACTS_ENV}/")):
        try:
            return prefix + str(path.resolve().relative_to(Path(base).resolve()))
        except ValueError:
            continue
    return path.name


def artifact_path(row: Row) -> tuple[str, bool]:
    """Where a row's saved quantized model is (`experiment.workdir_for`: one folder per artifact identity), shown
    relative, and whether it is on this machine. A row made elsewhere names the folder a rerun would write."""
    from ..keys import artifact_hash
    from ..paths import models_dir
    from ..provenance import is_bookkeeping

    folder = models_dir() / f"{row.model}-{(row.model_weights_sha256 or '')[:12]}" / row.config_name
    found = sorted(folder.glob(f"*-{artifact_hash(row.identity)}")) if row.identity else []
    files = [f for d in found for f in sorted(d.iterdir()) if f.is_file() and not is_bookkeeping(f)]
    exact = [f for f in files if f.stat().st_size == row.size_bytes]
    if exact or files:
        return shown_path((exact or files)[0]), True
    return shown_path(folder), False


def reproduce(row: PooledRow) -> str:
    """What reproduces the row, every seed the answer pools or the one config: a CLI command for a model the CLI
    loads (ours by name, a user's .onnx by its path) from an image folder; the Python call for a user's
    nn.Module or Python data, which no command line can load."""
    model, config, seeds = row.model, row.config_name, len(row.seeds)
    n = (row.calibration or {}).get("calibration_n")
    if model not in MODELS and (not str(model).startswith("onnx:") or str(row.dataset).startswith("python:")):
        source = '"path/to/model.onnx"' if str(model).startswith("onnx:") else "model"
        sizes = f", calibration_n={n}" if n else ""
        if seeds > 1:
            return (f'qe.explore({source}, calibration=train_ds, evaluation=test_ds, configs=["{config}"], '
                    f"seeds={seeds}{sizes})")
        seed = f", seed={row.seeds[0]}" if row.seeds else ""
        return f'qe.quantize({source}, "{config}", train_ds{seed}{sizes})'
    if str(model).startswith("onnx:"):
        model = "path/to/model.onnx"
    weights = " --weights PATH/pretrainedResnet.h5" if model == "resnet8-mlperf" and not os.environ.get(
        "QUANT_EXPLORER_MLPERF_WEIGHTS") else ""
    if seeds > 1:
        return f"quant-explorer sweep --model {model}{weights} --configs {config} --seeds {seeds}"
    return f"quant-explorer quantize --model {model}{weights} --config {config}"


def made_on(view: View) -> str:
    """'avx512-vnni (Intel Xeon ...), results of 2026-12-02': what the numbers were measured on, and when."""
    rows = view.rows
    models = ((r.environment or {}).get("cpu", {}).get("model") for r in rows)
    cpu = next((m for m in models if m), None)
    latest = max((r.created or "" for r in rows), default="")[:10]
    return f"{view.environment.split(',')[0]}" + (f" ({cpu})" if cpu else "") + (f", {latest}" if latest else "")


def dataset_label(name: str | None) -> str:
    """'image-folder: cifar10-subset/test' for 'image-folder:/any/where/cifar10-subset/test': no machine's path."""
    kind, _, where = str(name).rpartition(":")
    parts = [p for p in where.split("/") if p]
    return (f"{kind}: " if kind else "") + "/".join(parts[-2:])


def today() -> str:
    return datetime.now().strftime("%Y-%m-%d")


@dataclass
class NoAnswer:
    """A model without a pick, and why (`answers`)."""

    pick: None
    not_scored: list[str]  # 'config (why)' of each config whose row failed
    rule: str | None


@dataclass
class Answer:
    """One model's answer block: the pick, what it costs (Δ vs FP32 with its interval, the classes that lose
    detectably) and buys (speed against the fastest FP32 runtime, size), how to reproduce and load it, and where its
    saved model is. In `summary --json` as `record.document` writes it."""

    pick: str
    runtime: str | None
    objective: str
    accuracy: float
    accuracy_std: float
    seeds: list
    fp32_accuracy: float | None
    fp32_runtime: str | None
    delta_pp: float | None
    delta_pp_ci: list[float] | None
    delta_seed_part: str | None
    latency_ms_b1: float | None
    speedup_b1: float | None
    speedup_b1_against: str
    latency_ms_b1_spread: float | None
    load: LoadRecord | None  # the setting it was timed with at batch 1, and its load code
    throughput_b256: float | None
    speedup_b256: float | None
    speedup_b256_against: str
    size_bytes: int
    fp32_size_bytes: int | None
    losing_classes: list[dict]  # {class, delta_pp, ci_pp, mostly_to}
    reproduce: str
    artifact: str
    artifact_here: bool
    rule: str
    best_set: list[str]
    classes: dict  # the pick's cell on each deployment class
    classes_text: str | None
    set_aside: list[str]  # configs with rows set aside from the view
    not_scored: list[str]


def answers(view: View) -> dict[str, Answer | NoAnswer]:
    """Per model: the pick and everything the answer block shows, or why there is none."""
    out = {}
    fp32 = fp32_rows(view.rows)
    for model, choice in choices(view).items():
        if not choice or not choice.pick:
            failed = not_scored(view, model)
            why = (choice.rule if choice else f"no quantized config scored: {'; '.join(failed)}" if failed else
                   f"no quantized config of it in this view yet (`quant-explorer sweep --model {model}`)")
            out[model] = NoAnswer(None, failed, why)
            continue
        row = next(r for r in view.rows if r.model == model and r.config_name == choice.pick)
        classes = per_class(view, row)
        losing = []
        if model in fp32 and row.confusion_matrix is not None:
            losing = confusion_comparison(row, fp32[model], classes, top=10)["most_lost"]
        ratio_1, against_1 = speedup(row, 1)
        ratio_256, against_256 = speedup(row, 256)
        path, present = artifact_path(row)
        reference = fp32.get(model)
        out[model] = Answer(
            pick=row.config_name, runtime=row.runtime, objective=choice.objective,
            accuracy=row.accuracy, accuracy_std=row.accuracy_std, seeds=row.seeds,
            fp32_accuracy=reference.accuracy if reference else None,
            fp32_runtime=reference.runtime if reference else None,
            delta_pp=row.delta_pp, delta_pp_ci=row.delta_pp_ci,
            delta_seed_part=(row.delta_stats or {}).get("seed_part"),
            latency_ms_b1=row.speed.latency_ms_b1_median, speedup_b1=ratio_1, speedup_b1_against=against_1,
            latency_ms_b1_spread=row.speed.latency_ms_b1_spread, load=row.bench.load if row.bench else None,
            throughput_b256=row.speed.throughput_b256, speedup_b256=ratio_256, speedup_b256_against=against_256,
            size_bytes=row.size_bytes, fp32_size_bytes=reference.size_bytes if reference else None,
            losing_classes=[{"class": c["class"], "delta_pp": c["delta_pp"], "ci_pp": c["ci_pp"],
                             "mostly_to": c["mostly_to"]} for c in losing],
            reproduce=reproduce(row), artifact=path, artifact_here=present, rule=choice.rule,
            best_set=choice.best_set, classes=choice.deploy.cells if choice.deploy else {},
            classes_text=classes_text(choice),
            set_aside=sorted({s["config"] for s in view.set_aside if s["model"] == model}),
            not_scored=not_scored(view, model))
    return out
