"""The CLI as a user meets it: real subprocesses and exit codes where the process is the point (imports, the
terminal's width, the working directory), its entry point in this process otherwise (bad inputs:
tests/test_hardening.py)."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import MLPERF_H5, SUBSET, run_main


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-c", "from quant_explorer.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


@pytest.mark.process
def test_listings_as_json():
    configs = json.loads(run("configs", "--json", "--all").stdout)
    assert ({"fp32_baseline", "ort_s8_minmax_qdq_per_channel", "pt2e_u8_per_channel_histogram"}
            <= {c["name"] for c in configs})
    models = json.loads(run("models", "--json").stdout)
    assert [m["name"] for m in models] == ["resnet8", "resnet8-mlperf", "cifar_cnn"]


@pytest.mark.shared_data
def test_evaluate_mlperf_in_ort_prints_88_percent(capfd):
    result = run_main(["evaluate", "--model", "resnet8-mlperf", "--weights", str(MLPERF_H5), "--runtime", "onnxruntime",
                       "--data-dir", str(SUBSET), "--json"], {}, capfd)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert (metrics["correct"], metrics["n_images"], round(100 * metrics["accuracy"], 2)) == (895, 1017, 88.0)


def test_a_command_that_exits_non_zero_makes_the_process_exit_non_zero(monkeypatch):
    """typer returns a command's Exit(code) as a value outside standalone mode; main must not drop it."""
    import pytest
    import typer

    from quant_explorer import cli

    @cli.app.command("exit-three", hidden=True)
    def exit_three() -> None:
        raise typer.Exit(3)

    try:
        monkeypatch.setattr("sys.argv", ["quant-explorer", "exit-three"])
        with pytest.raises(SystemExit) as exited:
            cli.main()
        assert exited.value.code == 3
    finally:
        cli.app.registered_commands.pop()


HEAVY = ("torch", "onnxruntime", "onnx", "matplotlib", "scipy")


@pytest.mark.process
def test_listings_and_help_import_no_torch():
    """`models`, `configs` and every --help answer at once: none of them imports torch, ONNX Runtime, onnx,
    matplotlib or scipy (those cost seconds), here or through the package's modules."""
    from quant_explorer.cli import app

    commands = [["models"], ["configs"], ["configs", "--all"], ["--help"], ["--version"]]
    commands += [[c.name or c.callback.__name__, "--help"] for c in app.registered_commands]
    commands += [["data", "info", "--help"]]
    script = ("import sys, json\nfrom typer.testing import CliRunner\nfrom quant_explorer.cli import app\n"
              f"for args in {commands!r}:\n    sys.argv = ['quant-explorer', *args]\n"
              "    result = CliRunner().invoke(app, args)\n"
              "    assert result.exit_code == 0, (args, result.output)\n"
              f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


@pytest.mark.process
def test_version_and_flags_without_a_value_type():
    from importlib.metadata import version

    assert run("--version").stdout.strip() == f"quant-explorer {version('quant-explorer')}"
    assert "<bool>" not in run("summary", "--help", env={"COLUMNS": "100"}).stdout


@pytest.mark.process
def test_config_names_are_never_cut_in_an_80_column_terminal():
    from quant_explorer.backends import CONFIGS

    out = run("configs", "--all", env={"COLUMNS": "80"}).stdout
    assert all(name in out for name in CONFIGS) and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80  # two lines a config, not a 133-column table


@pytest.mark.process
def test_summary_and_compare_fit_80_columns_without_cutting_a_name(tiny_run):
    from .conftest import TINY_CONFIGS

    env = {"COLUMNS": "80", "QUANT_EXPLORER_ARTIFACTS": str(tiny_run["results"].parent.parent)}
    summary = run("summary", env=env)
    assert summary.returncode == 0, summary.stderr
    assert all(name in summary.stdout for name in TINY_CONFIGS) and "…" not in summary.stdout
    assert max(len(line) for line in summary.stdout.splitlines()) <= 80
    compare = run("compare", env=env)
    assert compare.returncode in (0, 2), compare.stderr  # 2: the tiny configs may pair in no field
    assert "…" not in compare.stdout and max(map(len, compare.stdout.splitlines() or [""])) <= 80
    document = json.loads(run("summary", "--json", env=env).stdout)
    answer = document["answer"]["resnet8"]
    assert list(document)[0] == "answer" and answer["pick"] == document["models"]["resnet8"]["pick"]
    assert {"rule", "set_aside", "artifact", "reproduce", "delta_pp_ci"} <= answer.keys()
    assert not answer["artifact"].startswith("/")


@pytest.mark.process
def test_an_empty_artifacts_variable_means_the_default_not_the_working_directory(tiny, tmp_path):
    result = run("quantize", "--config", "ort_u8_minmax_qdq_per_channel_rr", "--model", "resnet8", "--weights",
                 str(tiny / "resnet8.pt"), "--data-dir", str(tiny / "data"), "--calibration-n", "20",
                 env={"QUANT_EXPLORER_ARTIFACTS": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "artifacts" / "results" / "full_results.json").is_file() and not (tmp_path / "results").exists()
    # What quantize tells a person: both accuracies with their runtimes, the delta with its interval (here, where
    # the two models agree on all 30 images, why there is none), size, the saved model (relative to here) and the
    # command's time; no third-party warnings.
    out = " ".join(result.stdout.split())
    for said in ("FP32 ", "quantized ", "Δ vs FP32 ", "95%", "size ", "KiB", "saved artifacts/models/resnet8-",
                 "took "):
        assert said in out, result.stdout
    assert "Warning" not in result.stderr and "W1" not in result.stderr, result.stderr


def test_the_progress_line_keeps_done_of_total_and_the_eta_at_80_columns():
    """`make run`'s progress at 80 columns was "━━━ 5… 0:… ETA 0:…": the row label is what gets cut short."""
    import io

    from rich.console import Console

    from quant_explorer.cli.app import bar

    for width in (80, 100, 200):
        console = Console(file=io.StringIO(), width=width, color_system=None)
        progress = bar(console=console)
        task = progress.add_task("[bold]1/6 first answer[/bold] resnet8-mlperf ort_u8_minmax_qdq_per_channel_rr seed 0",
                                 total=1234)
        progress.update(task, completed=567)
        console.print(progress.make_tasks_table(progress.tasks))
        line = console.file.getvalue().rstrip("\n")
        assert len(line) <= width and line.startswith("1/6 first answer ")
        assert " 567/1234 0:00:00 ETA " in line and "…" not in line.split("567/1234")[1]
        assert ("seed 0" in line) == (width >= 120)  # the label is shortened only where it must be
