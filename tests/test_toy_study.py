"""Studies as a registry: a study registered from this file alone is computed by `analyze`, reused while current,
and drawn in the report (adding a study touches one module, its own); and the calibration-size study takes the
points the sweep already stored alike instead of computing them again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from quant_explorer.backends import get_config
from quant_explorer.data import EvalData
from quant_explorer.experiment import FP32, fp32_baseline
from quant_explorer.identity import identity_hash
from quant_explorer.keys import is_finished, make_calibration, row_identity, row_key
from quant_explorer.models import load_model
from quant_explorer.paths import artifacts_dir, results_file
from quant_explorer.results import Results, entry_key, load_results, save_entries
from quant_explorer.row import Row
from quant_explorer.studies import PoolStudy, StudyEntry, calibration_size, register, unregister
from quant_explorer.sweep import run_sweep

RUNS: list[str] = []  # the models ToyStudy.run was called for, in order


@dataclass
class ToyEntry(StudyEntry):
    per_class_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ToyStudy(PoolStudy):
    """FP32 accuracy per class: the sweep's FP32 row where stored alike, else computed."""

    model: str
    config: str = "fp32_baseline"

    kind: ClassVar[str] = "toy study"
    file: ClassVar[str] = "toy_study.json"
    title: ClassVar[str] = "Toy study: FP32 per class"
    anchor: ClassVar[str] = "toy"
    intro: ClassVar[str] = "The test's own study."
    figure: ClassVar[str] = "per-class bars"
    entry_type: ClassVar[type[StudyEntry]] = ToyEntry

    def run(self, model, data, stored: dict[str, Row], log) -> ToyEntry:
        RUNS.append(model.name)
        row = stored.get(row_key(model, FP32, row_identity(model, FP32, data)))
        if not is_finished(row):
            _, row = fp32_baseline(model, data)
        identity = self.identity(model, data)
        return ToyEntry(model=model.name, config_name=self.config, model_weights_sha256=model.weights_sha256,
                        identity=identity, identity_hash=identity_hash(identity),
                        per_class_accuracy=row.per_class_accuracy)

    def save(self, path: Path, entry: ToyEntry) -> None:
        key = entry_key(entry.model, entry.config_name, identity_hash=entry.identity_hash)
        save_entries(path, {key: entry.to_dict()})

    @staticmethod
    def heading(entry: ToyEntry) -> str:
        return f"{entry.model}: FP32 accuracy per class"

    @staticmethod
    def text(entry: ToyEntry) -> str:
        return f"{len(entry.per_class_accuracy)} classes"

    @staticmethod
    def table(entry: ToyEntry) -> tuple[list[str], list[list]]:
        return ["class", "accuracy"], [[c, f"{100 * a:.1f}%"] for c, a in entry.per_class_accuracy.items()]

    @staticmethod
    def plot(entry: ToyEntry) -> bytes:
        from quant_explorer.figures import png, pyplot

        fig, ax = pyplot().subplots(figsize=(6, 3))
        ax.bar(list(entry.per_class_accuracy), list(entry.per_class_accuracy.values()))
        return png(fig)


@pytest.fixture
def toy():
    study = register(ToyStudy("cifar_cnn"))
    RUNS.clear()
    yield study
    unregister(study)


def test_a_study_registered_here_is_computed_by_analyze_kept_current_and_drawn_in_the_report(toy, tiny_env):
    from quant_explorer.cli import app

    data_dir = str(tiny_env / "data")
    model, data = load_model("cifar_cnn"), EvalData.load(tiny_env / "data")
    list(run_sweep([model], [FP32, get_config("ort_u8_minmax_qdq_per_tensor")], data, 20, [0], results_file()))

    def analyze(*extra: str) -> list[dict]:
        result = CliRunner().invoke(app, ["analyze", "--model", "cifar_cnn", "--data-dir", data_dir, "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert analyze() == [{"study": "toy study", "model": "cifar_cnn", "config": "fp32_baseline", "skipped": False,
                          "file": "toy_study.json"}]
    stored = results_file().with_name("toy_study.json")
    [entry] = load_results(stored)["entries"].values()
    fp32 = next(r for r in load_results(results_file())["entries"].values() if r["config_name"] == "fp32_baseline")
    assert entry["per_class_accuracy"] == fp32["per_class_accuracy"] and RUNS == ["cifar_cnn"]
    before = stored.read_bytes()
    assert [s["skipped"] for s in analyze()] == [True]  # current: not run, not rewritten
    assert RUNS == ["cifar_cnn"] and stored.read_bytes() == before
    assert [s["skipped"] for s in analyze("--force")] == [False] and RUNS == ["cifar_cnn"] * 2

    result = CliRunner().invoke(app, ["report", "--data-dir", data_dir])
    assert result.exit_code == 0, result.output
    page = (artifacts_dir() / "report" / "index.html").read_text()
    assert '<a href="#toy">Toy study: FP32 per class</a>' in page and '<details id="toy">' in page
    assert "<h3>cifar_cnn: FP32 accuracy per class</h3>" in page and "<p>10 classes.</p>" in page
    assert "<td>airplane</td>" in page and 'alt="cifar_cnn fp32_baseline per-class bars"' in page
    assert page.index('<details id="toy">') < page.index('<details id="environment">')  # studies before it


def test_calibration_size_takes_the_sweeps_rows_and_computes_only_the_rest(tiny_run):
    model, data = tiny_run["model"], tiny_run["data"]
    config = get_config("ort_u8_minmax_qdq_per_tensor")
    stored = Results.load(tiny_run["results"]).rows  # the sweep's rows: n=20, seeds 0 and 1
    lines: list[str] = []
    entry = calibration_size.run(model, config, data, [10, 20], 2, lines.append, stored)
    assert [line.endswith("(the sweep's row)") for line in lines] == [False, False, True, True]
    sweep = [stored[row_key(model, config, row_identity(model, config, data, make_calibration(model, data, 20, seed)))]
             for seed in (0, 1)]
    assert entry.sizes[1].accuracy == [r.accuracy for r in sweep]
    assert entry.sizes[1].calibration_images_sha256 == [r.calibration["calibration_images_sha256"] for r in sweep]
    assert calibration_size.run(model, config, data, [10, 20], 2) == entry  # computing every point: the same entry
