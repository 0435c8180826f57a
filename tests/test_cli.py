"""The CLI as a user meets it: real subprocesses and exit codes (bad inputs: tests/test_hardening.py)."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import MLPERF_H5, SUBSET


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-c", "from quant_explorer.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


def test_listings_as_json():
    configs = json.loads(run("configs", "--json", "--all").stdout)
    assert {"fp32_baseline", "ort_s8_minmax_qdq_per_channel", "pt2e_u8_per_channel_histogram"} <= {c["name"] for c in configs}
    models = json.loads(run("models", "--json").stdout)
    assert [m["name"] for m in models] == ["resnet8", "resnet8-mlperf", "cifar_cnn"]


@pytest.mark.shared_data
def test_evaluate_mlperf_in_ort_prints_88_percent():
    result = run("evaluate", "--model", "resnet8-mlperf", "--weights", str(MLPERF_H5), "--runtime", "onnxruntime",
                 "--data-dir", str(SUBSET), "--json")
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


def test_config_names_are_never_cut_in_an_80_column_terminal():
    from quant_explorer.configs import CONFIGS

    out = run("configs", "--all", env={"COLUMNS": "80"}).stdout
    assert all(name in out for name in CONFIGS) and "…" not in out


def test_an_empty_artifacts_variable_means_the_default_not_the_working_directory(tiny, tmp_path):
    result = run("quantize", "--config", "ort_u8_minmax_qdq_per_channel_rr", "--model", "resnet8", "--weights",
                 str(tiny / "resnet8.pt"), "--data-dir", str(tiny / "data"), "--calibration-n", "20",
                 env={"QUANT_EXPLORER_ARTIFACTS": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "artifacts" / "results" / "full_results.json").is_file() and not (tmp_path / "results").exists()
