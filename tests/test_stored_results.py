"""Every command of the CLI on the results `make run` wrote (the committed artifacts/results files, cut to one model
and two seeds so the suite stays fast): the views on them, and the commands that compute adding rows of their own
beside them, which later commands then reuse (calib-sensitivity once failed on those: dicts where rows belong)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from .conftest import run_main

COMMITTED = Path(__file__).resolve().parents[1] / "artifacts" / "results"
MODEL = "cifar_cnn"
CONFIGS = {"fp32_baseline", "dynamic_int8", "ort_u8_minmax_qdq_per_channel_rr", "ort_u8_minmax_qoperator_per_channel",
           "pt2e_u8_per_channel_minmax", "pt2e_u8_per_channel_minmax_rr", "static_int8_per_tensor"}
STATIC = "ort_u8_minmax_qdq_per_channel"


def _cut(name: str, keep) -> str:
    document = json.loads((COMMITTED / name).read_text())
    document["entries"] = {k: e for k, e in document["entries"].items() if keep(e)}
    return json.dumps(document, indent=1) + "\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """An artifacts folder holding what `make run` wrote: its rows of one model (every environment, seeds 0-1) and
    its studies of that model."""
    if not (COMMITTED / "full_results.json").is_file():
        pytest.skip("no committed results in artifacts/results")
    results = tmp_path_factory.mktemp("stored") / "artifacts" / "results"
    results.mkdir(parents=True)
    (results / "full_results.json").write_text(_cut("full_results.json", lambda e: e.get("model") == MODEL and e.get(
        "config_name") in CONFIGS and (e.get("calibration") or {}).get("calibration_seed", 0) < 2))
    for study in ("calibration_size.json", "layer_sensitivity.json"):
        (results / study).write_text(_cut(study, lambda e: e.get("model") == MODEL))
    return results.parent


def test_every_view_reads_the_results_make_run_wrote(stored, tmp_path, capfd):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(stored)}
    made = json.loads((stored / "results" / "full_results.json").read_text())
    [fingerprint] = made["datasets"]
    for argv in (["summary"], ["summary", "--json"], ["summary", "--seeds", "1", "--objective", "size"],
                 ["summary", "--dataset", fingerprint, "--for-isa", "avx2"], ["compare", "--json"], ["report"]):
        result = run_main(argv, env, capfd)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (argv, result.stderr)
        assert MODEL in result.stdout or argv == ["report"], argv
    assert (stored / "report" / "index.html").is_file()


def test_every_command_that_computes_runs_beside_them_and_reuses_its_own_rows(stored, tiny, capfd, monkeypatch):
    from quant_explorer import bench

    env = {"QUANT_EXPLORER_ARTIFACTS": str(stored)}
    monkeypatch.setattr(bench, "BenchSettings", functools.partial(bench.BenchSettings, batch_runs=1, rounds=2,
                                                                  warmup=1, batch=8))  # seconds, not 20
    common = ["--model", "resnet8", "--weights", str(tiny / "resnet8.pt"), "--data-dir", str(tiny / "data")]
    for argv in (["models"], ["configs", "--all"], ["cpu"], ["data", "info", "--data-dir", str(tiny / "data")],
                 ["evaluate", *common, "--runtime", "onnxruntime"],
                 ["sweep", *common, "-c", f"fp32_baseline,{STATIC}", "--seeds", "1", "--calibration-n", "20"],
                 ["quantize", *common, "-c", STATIC, "--calibration-n", "20"],
                 ["calib-sensitivity", *common, "-c", STATIC, "--sizes", "20", "--seeds", "1"],
                 ["layer-sensitivity", *common, "-c", STATIC, "--calibration-n", "20", "--layers", "conv"],
                 ["bench", *common, "-c", STATIC, "--calibration-n", "20", "--no-compile", "--runs", "2"]):
        result = run_main(argv, env, capfd)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (argv, result.stderr)
        if argv[0] == "calib-sensitivity":  # the sweep's row of size 20, seed 0 is taken, not computed again
            assert "n=20 seed=0: " in result.stderr and "(the sweep's row)" in result.stderr
    entries = json.loads((stored / "results" / "full_results.json").read_text())["entries"]
    assert {e["model"] for e in entries.values()} == {MODEL, "resnet8"}  # beside them, none replaced
