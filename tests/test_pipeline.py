"""`run` (make run): the first answer before the rest, every phase in order, a rerun that computes nothing, and a
lower CPU class swept by the library in a process of its own."""

import json

import pytest
from typer.testing import CliRunner

from quant_explorer.backends import get_config
from quant_explorer.bench import BenchSettings
from quant_explorer.data import EvalData
from quant_explorer.models import load_model
from quant_explorer.paths import artifacts_dir
from quant_explorer.pipeline import Job, run_job

CONFIGS = ("fp32_baseline", "ort_u8_minmax_qdq_per_tensor", "dynamic_int8")
TINY_BENCH = BenchSettings(threads=1, runs=2, batch_runs=1, rounds=1, warmup=1, batch=4, compile=False)


def test_job_answers_first_then_everything_and_a_rerun_computes_nothing(tiny_env):
    data = EvalData.load(tiny_env / "data")
    job = Job([load_model("resnet8", tiny_env / "resnet8.pt")], [get_config(c) for c in CONFIGS], data, [0, 1],
              bench=TINY_BENCH, calibration_n=20, data_dir=tiny_env / "data", workers=1)
    report = artifacts_dir() / "report" / "index.html"
    steps, report_before_second_seed = [], []

    def on_step(step):
        if step.phase == "every seed" and not report_before_second_seed:
            report_before_second_seed.append(report.exists())
        steps.append(step)

    result = run_job(job, on_step)
    assert list(dict.fromkeys(s.phase for s in steps)) == ["first answer", "every seed", "studies", "speed", "report"]
    assert report_before_second_seed == [True]  # the first answer's report came before any second draw
    assert result.computed == {"first answer": 3, "every seed": 1, "speed": 1}  # seed 1 of the one static config
    assert not result.failed and result.first_answer_seconds <= result.seconds["total"]
    every_seed = [s for s in steps if s.phase == "every seed"]
    assert every_seed[-1].done == every_seed[-1].total == 4  # 3 rows reused from the first answer, 1 new
    bench = json.loads((artifacts_dir() / "results" / "bench_resnet8.json").read_text())
    assert len(bench["entries"]) == 3

    again = run_job(job)
    assert again.computed == {} and not again.failed  # nothing changed: every row, and the bench, reused
    assert json.loads((artifacts_dir() / "results" / "bench_resnet8.json").read_text()) == bench


@pytest.mark.process
def test_a_cpu_class_is_swept_by_the_library_in_a_fresh_process_its_rows_coming_back_as_data(tiny_env):
    """The emulated phase: a model's members, FP32 beside them, swept as a lower class by `sweep_as` in a fresh
    process (the job's own weights, not the shipped ones); each row counted as it arrives, none parsed from text."""
    from quant_explorer.emulation import QEMU_CPU
    from quant_explorer.identity import emulable
    from quant_explorer.paths import results_file
    from quant_explorer.pipeline import JobResult, _emulated_sweep
    from quant_explorer.results import Results

    isa = next((c for c in emulable() if c not in QEMU_CPU), None)  # oneDNN's cap alone: no minute-long qemu rows
    if isa is None:
        pytest.skip("no class below this CPU's that oneDNN's cap alone emulates (an AVX2 or AVX-512 CPU)")
    model = load_model("resnet8", tiny_env / "resnet8.pt")
    job = Job([model], [get_config(c) for c in CONFIGS], EvalData.load(tiny_env / "data"), [0], calibration_n=20,
              data_dir=tiny_env / "data", workers=1)
    steps, result = [], JobResult()
    _emulated_sweep(isa, job, {model.name: list(CONFIGS[1:])}, steps.append, result)
    assert not result.failed and result.computed == {"CPU classes": len(CONFIGS)}
    assert steps[-1].phase == f"CPU classes ({isa}, emulated)" and steps[-1].done == steps[-1].total == len(CONFIGS)
    rows = {r.config_name: r for r in Results.load(results_file()).rows.values() if r.identity["cpu_class"] == isa}
    assert set(rows) == set(CONFIGS) and all(r.identity["emulated"] for r in rows.values())
    assert rows["fp32_baseline"].model_weights_sha256 == model.weights_sha256
    assert rows["fp32_baseline"].accuracy is not None and rows["fp32_baseline"].runtime == "torch"  # a capped one
    # what neither oneDNN's cap nor qemu reaches on this class says so, never a guess
    assert all(r.not_applicable.startswith(f"not measured on {isa}") for n, r in rows.items() if n != "fp32_baseline")


def test_run_help_says_what_it_does():
    from quant_explorer.cli import app

    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0 and "first answer" in result.stdout


def test_studies_on_worker_processes_give_the_entries_computed_here(tiny_run):
    from quant_explorer.executors import ProcessExecutor
    from quant_explorer.studies import CalibrationSizeStudy, run_studies

    model, data, results_dir = tiny_run["model"], tiny_run["data"], tiny_run["results"].parent
    study = CalibrationSizeStudy("resnet8", "ort_u8_minmax_qdq_per_tensor", sizes=(10, 20), seeds=2)
    [(_, pooled, skipped)] = run_studies([study], {"resnet8": model}, data, results_dir, executor=ProcessExecutor(2))
    assert not skipped and [s.n for s in pooled.sizes] == [10, 20]
    [(_, here, _)] = run_studies([study], {"resnet8": model}, data, results_dir, force=True)
    assert [s.accuracy for s in here.sizes] == [s.accuracy for s in pooled.sizes]
    [(_, stored, skipped)] = run_studies([study], {"resnet8": model}, data, results_dir, executor=ProcessExecutor(2))
    assert skipped and stored == here  # current: no worker started, the stored entry as it was saved
