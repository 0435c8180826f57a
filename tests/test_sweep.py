"""The sweep as users depend on it: resumable, crash-safe, deterministic."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from quant_explorer.backends import get_config
from quant_explorer.data import EvalData, load_split
from quant_explorer.env import cpu_info
from quant_explorer.experiment import run_config
from quant_explorer.identity import cpu_class
from quant_explorer.keys import make_calibration
from quant_explorer.models import load_model
from quant_explorer.results import decode_classes, load_labels, load_results
from quant_explorer.sweep import run_sweep

from .conftest import MLPERF_H5, SUBSET, run_main

ORT_CONFIGS = ["ort_u8_minmax_qdq_per_channel_rr", "ort_s8asym_minmax_qdq_per_tensor",
               "ort_u8_minmax_qoperator_per_channel_rr", "ort_s8asym_minmax_qoperator_per_channel"]


def test_rerun_skips_finished_entries_and_force_redoes_them(tiny_env):
    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    path = tiny_env / "results.json"
    configs = [get_config(n) for n in ("fp32_baseline", *ORT_CONFIGS[:2], "dynamic_int8")]
    first = list(run_sweep([model], configs, data, 20, [0, 1], path))
    assert [skipped for _, _, skipped in first] == [False] * 6  # 2 seeds for each static config, 1 otherwise
    entries = load_results(path)["entries"]
    keys = [key for key, _, _ in first]
    assert {k.rsplit("|", 1)[0] for k in keys} == {
        "resnet8|fp32_baseline", "resnet8|dynamic_int8", "resnet8|ort_u8_minmax_qdq_per_channel_rr|n=20|seed=0",
        "resnet8|ort_u8_minmax_qdq_per_channel_rr|n=20|seed=1", "resnet8|ort_s8asym_minmax_qdq_per_tensor|n=20|seed=0",
        "resnet8|ort_s8asym_minmax_qdq_per_tensor|n=20|seed=1"}
    assert set(entries) == set(keys)
    fp32 = entries[keys[0]]
    row = entries[keys[1]]
    assert row["n_images"] == 30 and row["calibration"]["calibration_n"] == 20
    assert row["checks"]["quantized_ops"]["QuantizeLinear"] > 0 and row["checks"]["zero_point_exact_zero"]
    assert abs(row["delta_pp"] - 100 * (row["accuracy"] - fp32["accuracy"])) < 1e-6
    assert sum(map(sum, row["confusion_matrix"])) == 30
    assert row["seconds"] >= row["quantize_seconds"] + row["eval_seconds"] > 0
    preds, fp32_preds = decode_classes(row["predictions"]), decode_classes(fp32["predictions"])
    labels, why = load_labels(data.test.fingerprint, len(data.test))
    assert why is None  # proven by its record
    assert "labels" not in json.dumps(load_results(path)["datasets"]) and (labels == data.test.labels.numpy()).all()
    assert int((preds == labels).sum()) == row["correct"]
    assert row["changed_predictions"] == int((preds != fp32_preds).sum())
    assert row["fp32_right_quantized_wrong"] == int(((fp32_preds == labels) & (preds != labels)).sum())
    # ORT's float reference (onnx2torch, 5 s a row on ResNet8) scores the first seed only, beside the shipped run
    assert row["runtime"] == "onnxruntime" and row["reference"]["runtime"] == "onnx2torch"
    assert 0 < row["reference"]["agreement"] <= 1 and "reference" not in entries[keys[2]]
    second = list(run_sweep([model], configs[1:], data, 20, [0, 1], path))
    assert [skipped for _, _, skipped in second] == [True] * 5
    forced = list(run_sweep([model], configs[1:2], data, 20, [0], path, force=True))
    assert [skipped for _, _, skipped in forced] == [False]


def _sweep_keys(model, data, path, notices=None, config="ort_u8_minmax_qdq_per_channel_rr"):
    return [(key, skipped) for key, _, skipped in run_sweep([model], [get_config(config)], data, 20, [0], path,
                                                              notify=[].append if notices is None else notices.append)]


def test_a_result_is_reused_only_where_everything_that_could_change_it_is_the_same(tiny_env, monkeypatch):
    """Another evaluation set, config record, CPU class or library version gives a new row; the old ones stay."""
    from dataclasses import replace

    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    path = tiny_env / "identity.json"
    [(first, skipped)] = _sweep_keys(model, data, path)
    assert not skipped and _sweep_keys(model, data, path) == [(first, True)]
    before = load_results(path)["entries"][first]

    notices: list[str] = []
    fewer = EvalData(data.test.subset(range(25)), data.train)  # another evaluation set
    [(key, skipped)] = _sweep_keys(model, fewer, path, notices)
    assert key != first and not skipped
    assert notices == ["1 row was computed on another evaluation set; computing it here"]

    monkeypatch.setattr("quant_explorer.keys.recipe", lambda backend: f"{backend} v2")
    notices = []
    [(key, skipped)] = _sweep_keys(model, data, path, notices)
    assert key != first and not skipped and "by another version of its backend's code" in notices[0]
    monkeypatch.undo()

    reworded = replace(get_config("ort_u8_minmax_qdq_per_channel_rr"), description="other words", default=False)
    assert [k for k, _, _ in run_sweep([model], [reworded], data, 20, [0], path)] == [first]  # words change no number
    changed = replace(get_config("ort_u8_minmax_qdq_per_channel_rr"), granularity="per_tensor")
    keys = [k for k, _, _ in run_sweep([model], [changed], data, 20, [0], path)]  # same name, another record
    assert keys[0] != first

    other_cpu = {"flags": {"avx2": True}}  # a class unlike this host's, whichever it is (AVX2, VNNI, AMX...)
    if cpu_class(cpu_info()) == "avx2":
        other_cpu = {"flags": {"avx2": True, "avx512bw": True, "avx512_vnni": True, "amx_int8": True}}
    monkeypatch.setattr("quant_explorer.identity.cpu_info", lambda: other_cpu)
    notices = []
    [(key, skipped)] = _sweep_keys(model, data, path, notices)
    assert key not in (first, keys[0]) and not skipped
    assert notices[0].startswith("1 row was computed on another CPU class (")
    monkeypatch.undo()

    monkeypatch.setattr("quant_explorer.identity.library_versions",
                        lambda: {"onnxruntime": "9.9", "torch": "2.14.1", "torchao": "0.18.0"})
    notices = []
    [(key, skipped)] = _sweep_keys(model, data, path, notices)
    assert key != first and not skipped and "with other library versions" in notices[0]
    assert load_results(path)["entries"][first] == before  # other environments' rows are left as they were


def test_a_model_that_quantizes_but_cannot_run_is_an_error_row_and_the_sweep_goes_on(tiny_env):
    """Test images of another size than the calibration ones: ORT quantizes, then its runner raises."""
    from quant_explorer.data import ImageSet

    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    small = ImageSet(data.test.images[:, :, :16, :16].contiguous(), data.test.labels, data.test.classes, "16x16")
    baseline_data = EvalData(data.test, data.train)
    from quant_explorer.experiment import fp32_baseline

    baseline, _ = fp32_baseline(model, baseline_data)
    row, preds = run_config(model, get_config("ort_u8_minmax_qdq_per_channel_rr"), EvalData(small, data.train),
                            make_calibration(model, data, 20, 0), baseline)
    assert preds is None and row.error.split(":")[0] in ("InvalidArgument", "Fail", "RuntimeError", "RuntimeException")
    assert row.quantize_seconds is not None and row.accuracy is None


def test_sweep_on_other_data_computes_its_own_rows_and_says_why(tiny_env, tmp_path, capfd):
    from .conftest import write_image_folder

    env = {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "a")}
    base = ["sweep", "--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"), "--calibration-n", "20",
            "--seeds", "1", "-c", "fp32_baseline,ort_u8_minmax_qdq_per_channel_rr"]
    first = run_main([*base, "--data-dir", str(tiny_env / "data")], env, capfd)
    assert first.returncode == 0, first.stderr
    other = write_image_folder(tmp_path / "other", n_train=40, n_test=12)
    second = run_main([*base, "--data-dir", str(other)], env, capfd)
    assert second.returncode == 0, second.stderr
    assert "done before" not in second.stdout and "(12/12)" in second.stdout or "/12)" in second.stdout
    assert "computed on another evaluation set; computing it here" in second.stderr
    entries = json.loads((tmp_path / "a" / "results" / "full_results.json").read_text())["entries"]
    assert sorted(r["n_images"] for r in entries.values()) == [12, 12, 30, 30]


def _cli(*args):
    return [sys.executable, "-c", "from quant_explorer.cli import main; main()", *args]


@pytest.mark.process
def test_killed_sweep_keeps_finished_rows_and_resumes(tiny_env, capfd):
    env = {**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(tiny_env / "kill-artifacts")}
    results = tiny_env / "kill-artifacts" / "results" / "full_results.json"
    args = ["sweep", "--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"),
            "--data-dir", str(tiny_env / "data"), "--calibration-n", "20",
            "--seeds", "1", "-c", ",".join(ORT_CONFIGS)]
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        if results.exists() and len(json.loads(results.read_text())["entries"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = json.loads(results.read_text())["entries"]  # valid JSON after the kill
    assert 2 <= len(done_before) <= len(ORT_CONFIGS) + 1
    rerun = run_main(args, {"QUANT_EXPLORER_ARTIFACTS": env["QUANT_EXPLORER_ARTIFACTS"]}, capfd)
    assert rerun.returncode == 0, rerun.stderr
    after = json.loads(results.read_text())["entries"]
    assert len(after) == len(ORT_CONFIGS) + 1
    for key, row in done_before.items():
        if "fp32" not in key:
            assert after[key] == row  # finished rows were skipped, not redone
    assert rerun.stdout.count("done before") == len(done_before) - 1  # the FP32 row is not one of the configs shown


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
                                with_cross_checks=False)
        assert row.error is None, row.error
        outcomes.append((row.correct, preds.tolist(), row.calibration["calibration_images_sha256"]))
    assert outcomes[0] == outcomes[1]


@pytest.mark.process
@pytest.mark.parametrize("sig, executor, group", [(signal.SIGINT, "local", False), (signal.SIGTERM, "processes", True)])
def test_an_interrupted_sweep_says_what_was_saved_and_exits_non_zero(tiny_env, tmp_path, sig, executor, group):
    env = {**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "a")}
    results = tmp_path / "a" / "results" / "full_results.json"
    args = ["sweep", "--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"),
            "--data-dir", str(tiny_env / "data"),
            "--calibration-n", "20", "--seeds", "3", "-c", ",".join(ORT_CONFIGS), "--executor", executor]
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=group)
    # Signalled once a config's row is seen in the file (the FP32 row and one more), however slow the machine is.
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and len(json.loads(results.read_text())["entries"]) >= 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    said = re.fullmatch(r"interrupted: (\d+) rows? saved to (.+), (\d+) not run; rerun the same command to resume",
                        line)
    assert said and said[2] == str(results), line
    # What it says it saved is what the file holds (it started empty): the rows are kept, the JSON valid.
    assert int(said[1]) == len(json.loads(results.read_text())["entries"]) >= 2
    assert int(said[3]) <= 3 * len(ORT_CONFIGS) - (int(said[1]) - 1)
    assert "Traceback" not in stderr
    if group:  # the pool's workers are gone too (a worker's zombie lasts until init reaps it)
        with pytest.raises(ProcessLookupError):
            for _ in range(100):
                os.killpg(proc.pid, 0)
                time.sleep(0.1)
    from filelock import FileLock

    with FileLock(f"{results}.lock", timeout=5):  # no stale lock: the next run can write
        pass


def test_a_failed_row_makes_sweep_and_quantize_exit_1_after_the_other_rows(tiny_env, tmp_path, capfd):
    """One config's model folder cannot be created (a file sits where it goes): that row fails, the rest run."""
    from quant_explorer.models import file_sha256

    artifacts = tmp_path / "a"
    blocked = "ort_u8_minmax_qdq_per_channel_rr"
    model_dir = artifacts / "models" / f"resnet8-{file_sha256(tiny_env / 'resnet8.pt')[:12]}"
    model_dir.mkdir(parents=True)
    (model_dir / blocked).write_text("not a folder")
    env = {"QUANT_EXPLORER_ARTIFACTS": str(artifacts)}
    common = ["--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"), "--data-dir", str(tiny_env / "data"),
              "--calibration-n", "20"]
    swept = run_main(["sweep", *common, "--seeds", "1", "--json", "-c", f"{blocked},{ORT_CONFIGS[1]}"], env, capfd)
    assert swept.returncode == 1, swept.stderr
    rows = {r["config_name"]: r for r in json.loads(swept.stdout)}  # stdout stays JSON
    assert "error" in rows[blocked] and "accuracy" in rows[ORT_CONFIGS[1]]
    assert "error: 1 of 2 rows failed" in swept.stderr
    quantized = run_main(["quantize", "--config", blocked, *common], env, capfd)
    assert quantized.returncode == 1 and "failed" in quantized.stdout, quantized.stderr


def test_a_model_named_twice_is_swept_once(tiny_env, tmp_path, capfd):
    args = ["--model", "resnet8", "--model", "resnet8", "--weights", str(tiny_env / "resnet8.pt"), "--data-dir",
            str(tiny_env / "data"), "--calibration-n", "20", "--seeds", "1", "--json", "-c", ORT_CONFIGS[1]]
    swept = run_main(["sweep", *args], {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "a")}, capfd)
    assert swept.returncode == 0, swept.stderr
    assert [r["config_name"] for r in json.loads(swept.stdout)] == [ORT_CONFIGS[1]]  # one row, not two
