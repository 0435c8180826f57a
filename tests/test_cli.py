"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import MLPERF_H5, SUBSET


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-c", "from quant_explorer.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_listings_as_json():
    configs = json.loads(run("configs", "--json", "--all").stdout)
    assert {"fp32_baseline", "ort_s8_minmax_qdq_per_channel", "pt2e_u8_per_channel_histogram"} <= {c["name"] for c in configs}
    models = json.loads(run("models", "--json").stdout)
    assert [m["name"] for m in models] == ["resnet8", "resnet8-mlperf", "cifar_cnn"]


def test_bad_input_gets_one_line_and_exit_2(tmp_path, image_folder_dir):
    assert_one_line_error(run("evaluate", "--data-dir", str(tmp_path / "missing")), "does not exist", "--data-dir")
    assert_one_line_error(run("evaluate", "--model", "resnet9", "--data-dir", str(image_folder_dir)), "resnet8")
    assert_one_line_error(run("evaluate", "--backend", "tensorflow", "--data-dir", str(image_folder_dir)),
                          "torch, ort, onnx2torch")
    assert_one_line_error(run("quantize", "--config", "ort_u8_minmax", "--data-dir", str(image_folder_dir)),
                          "unknown config")
    assert_one_line_error(run("quantize", "--config", "ort_u8_minmax_qdq_per_channel", "--calibration-n", "5000",
                              "--data-dir", str(image_folder_dir)), "larger than the training split")


@pytest.mark.shared_data
def test_evaluate_mlperf_in_ort_prints_88_percent():
    result = run("evaluate", "--model", "resnet8-mlperf", "--weights", str(MLPERF_H5), "--backend", "ort",
                 "--data-dir", str(SUBSET), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert (metrics["correct"], metrics["n_images"], round(100 * metrics["accuracy"], 2)) == (895, 1017, 88.0)
