"""The sweep as users depend on it: resumable, crash-safe, deterministic."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from quant_explorer.configs import get_config
from quant_explorer.data import load_split
from quant_explorer.models import load_model
from quant_explorer.results import load_results
from quant_explorer.sweep import EvalData, make_calibration, run_config, run_sweep

from .conftest import MLPERF_H5, SUBSET

ORT_CONFIGS = ["ort_u8_minmax_qdq_per_channel_rr", "ort_s8asym_minmax_qdq_per_tensor",
               "ort_u8_minmax_qoperator_per_channel_rr", "ort_s8asym_minmax_qoperator_per_channel"]


def test_rerun_skips_finished_entries_and_force_redoes_them(tiny_env):
    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    path = tiny_env / "results.json"
    configs = [get_config(n) for n in ("fp32_baseline", *ORT_CONFIGS[:2])]
    first = list(run_sweep([model], configs, data, 20, 0, path))
    assert [skipped for _, _, skipped in first] == [False, False, False]
    entries = load_results(path)["entries"]
    assert set(entries) == {"resnet8|fp32_baseline", "resnet8|ort_u8_minmax_qdq_per_channel_rr|n=20|seed=0",
                            "resnet8|ort_s8asym_minmax_qdq_per_tensor|n=20|seed=0"}
    row = entries["resnet8|ort_u8_minmax_qdq_per_channel_rr|n=20|seed=0"]
    assert row["n_images"] == 30 and row["calibration"]["calibration_n"] == 20
    assert row["checks"]["quantized_ops"]["QuantizeLinear"] > 0 and row["checks"]["zero_point_exact_zero"]
    assert abs(row["delta_pp"] - 100 * (row["accuracy"] - entries["resnet8|fp32_baseline"]["accuracy"])) < 1e-6
    assert sum(map(sum, row["confusion_matrix"])) == 30
    assert row["seconds"] >= row["quantize_seconds"] + row["eval_seconds"] > 0
    second = list(run_sweep([model], configs[1:], data, 20, 0, path))
    assert [skipped for _, _, skipped in second] == [True, True]
    forced = list(run_sweep([model], configs[1:2], data, 20, 0, path, force=True))
    assert [skipped for _, _, skipped in forced] == [False]


def _cli(*args, env):
    return [sys.executable, "-c", "from quant_explorer.cli import main; main()", *args]


def test_killed_sweep_keeps_finished_rows_and_resumes(tiny_env):
    env = {**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(tiny_env / "kill-artifacts")}
    results = tiny_env / "kill-artifacts" / "results" / "full_results.json"
    args = ["sweep", "--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"), "--data-dir", str(tiny_env / "data"), "--calibration-n", "20",
            "-c", ",".join(ORT_CONFIGS)]
    proc = subprocess.Popen(_cli(*args, env=env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        if results.exists() and len(json.loads(results.read_text())["entries"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = json.loads(results.read_text())["entries"]  # valid JSON after the kill
    assert 2 <= len(done_before) <= len(ORT_CONFIGS) + 1
    rerun = subprocess.run(_cli(*args, env=env), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    after = json.loads(results.read_text())["entries"]
    assert len(after) == len(ORT_CONFIGS) + 1
    for key, row in done_before.items():
        if "fp32" not in key:
            assert after[key] == row  # finished rows were skipped, not redone
    assert rerun.stdout.count("done before") == len(done_before) - 1


@pytest.mark.shared_data
@pytest.mark.parametrize("config", ["ort_s8asym_minmax_qdq_per_channel", "pt2e_u8_per_channel_minmax"])
def test_same_command_twice_gives_identical_predictions(config, tmp_path, monkeypatch):
    model = load_model("resnet8-mlperf", MLPERF_H5)
    test = load_split(SUBSET, "test")
    data = EvalData(test.subset(range(0, 1017, 4)), load_split(SUBSET, "train"))
    outcomes = []
    for attempt in range(2):
        monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tmp_path / f"a{attempt}"))
        row, preds = run_config(model, get_config(config), data, make_calibration(model, data, 64, 0), None,
                                alternates=set())
        assert "error" not in row, row.get("error")
        outcomes.append((row["correct"], preds.tolist(), row["calibration"]["calibration_images_sha256"]))
    assert outcomes[0] == outcomes[1]
