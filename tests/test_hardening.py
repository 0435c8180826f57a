"""One checked catalogue of bad inputs, each run through the CLI's entry point (`main`, what the console script
calls): in this process, or, for the cases in IN_A_PROCESS, in a fresh interpreter (seconds of imports each).

Every case must end in exactly one stderr line `error: ...` naming the problem and its fix, exit code 2, no
traceback, and leave every file under the artifacts directory byte-identical (results files included, whether
valid or the broken one the case is about), and its inputs too. Each case uses the cheapest command that reaches
its check, and its expected substrings are specific to that check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Sequence

import pytest

from quant_explorer.models import PACKAGED_WEIGHTS

from .conftest import run_main, trust_cifar_md5, write_image_folder
from .hardening_cases import CASES, Case, Inputs, build_inputs, quantize, snapshot, write_artifacts

PROGRAM = "from quant_explorer.cli import main; main()"  # the console script, in a fresh interpreter


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    return build_inputs(tmp_path_factory)

# --- the driver -----------------------------------------------------------------------------------------------

# Root writes into read-only folders anyway: for the read-only case it runs without the capabilities that let it.
WITHOUT_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
# Cases that also prove the process: the installed CLI in a fresh interpreter (its imports, its exit status) for a
# library error, a parser error and a damaged results file (and the read-only cases, which need setpriv as root).
IN_A_PROCESS = {"unknown-model", "calibration-n-not-an-integer", "results-not-json"}


def run_cli(argv: list[str], env: dict[str, str], prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def permission_checks_prefix() -> list[str]:
    """How to run a command that root's permission override does not reach (nothing to do for other users)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv") or subprocess.run([*WITHOUT_ROOT_OVERRIDE, "true"], capture_output=True).returncode:
        pytest.skip("running as root, which ignores a read-only folder, and setpriv cannot drop that override here")
    return WITHOUT_ROOT_OVERRIDE


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line_exit_2_and_touches_no_results(case: Case, inputs, tmp_path, monkeypatch, capfd):
    artifacts = write_artifacts(tmp_path / "artifacts")
    if case.setup:
        case.setup(artifacts)
    env = {"QUANT_EXPLORER_ARTIFACTS": str(artifacts), **dict(case.env)}
    if case.cifar_md5:
        trust_cifar_md5(inputs.cifar_md5, monkeypatch)
    prefix = permission_checks_prefix() if case.read_only_results else []
    if case.read_only_results:
        (artifacts / "results").chmod(0o555)
    before, inputs_before = snapshot(artifacts), snapshot(inputs.root)
    try:
        argv = case.argv(inputs, tmp_path)
        in_a_process = case.read_only_results or case.id in IN_A_PROCESS
        result = run_cli(argv, env, prefix) if in_a_process else run_main(argv, env, capfd)
    finally:
        if case.read_only_results:
            (artifacts / "results").chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].strip(), result.stderr
    for needle in case.expect:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert snapshot(artifacts) == before
    assert snapshot(inputs.root) == inputs_before
    assert result.stdout == ""


# --- messages that are not errors ------------------------------------------------------------------------------

# The CLI with data loading replaced by a signal arriving right then, as a Ctrl-C while data or models load.
INTERRUPTED_WHILE_LOADING = """
import os, signal, sys, time
from quant_explorer import data
SIGNAL = int(sys.argv.pop(1))
def load_split(*args, **kwargs):
    os.kill(os.getpid(), SIGNAL)
    time.sleep(30)
data.load_split = load_split
from quant_explorer.cli import main
main()
"""


@pytest.mark.process
@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)])
def test_an_interrupt_while_loading_prints_the_interrupted_line(inputs, tmp_path, signum, code):
    artifacts = write_artifacts(tmp_path / "artifacts")
    before = snapshot(artifacts)
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_WHILE_LOADING, str(signum), "evaluate", "--data-dir",
                             str(inputs.folders)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(artifacts)})
    assert result.returncode == code
    assert result.stderr.splitlines() == ["interrupted: nothing saved (files are written whole or not at all); rerun "
                                          "the same command"]
    assert snapshot(artifacts) == before


# The CLI with a SIGTERM arriving right after its first save (quantize's FP32 row), as `kill` during the run.
SIGNALLED_AFTER_THE_FIRST_SAVE = """
import os, signal
from quant_explorer import results
save = results.save_entries
def save_then_signal(*args, **kwargs):
    kept = save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return kept
results.save_entries = save_then_signal
from quant_explorer.cli import main
main()
"""


@pytest.mark.process
def test_an_interrupt_after_a_save_says_what_was_saved(inputs, tmp_path):
    artifacts = write_artifacts(tmp_path / "artifacts")
    results = artifacts / "results" / "full_results.json"
    before = set(json.loads(results.read_text())["entries"])
    result = subprocess.run([sys.executable, "-c", SIGNALLED_AFTER_THE_FIRST_SAVE, *quantize("--calibration-n", "20")(
        inputs, tmp_path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(artifacts)})
    assert result.returncode == 143, result.stderr
    assert result.stderr.splitlines() == [f"interrupted: 1 row saved to {results} (files are written whole or not at "
                                          "all); rerun the same command to resume"]
    [saved] = set(json.loads(results.read_text())["entries"]) - before  # the FP32 row, and nothing else is new
    assert saved.startswith("resnet8|fp32_baseline|")


@pytest.mark.process
def test_an_onnx_file_in_a_read_only_folder_costs_one_warning_line(inputs, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    model = shutil.copy(inputs.onnx["classifier"], folder / "classifier.onnx")
    prefix = permission_checks_prefix()
    folder.chmod(0o555)
    try:
        result = run_cli(["evaluate", "--model", str(model), "--input-scale", "raw255", "--data-dir",
                          str(inputs.folders)], {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "artifacts")}, prefix)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"warning: cannot write model card {model}.card.json (Permission denied): "
                                          "pass --input-scale (and --mean/--std) again next time"]


def test_train_writes_under_the_artifacts_directory_never_over_the_shipped_weights(tmp_path, capfd):
    from quant_explorer.models import file_sha256

    data = write_image_folder(tmp_path / "data", n_train=130)  # one batch of 128: one step per epoch
    shipped = file_sha256(PACKAGED_WEIGHTS / "resnet8" / "fp32_baseline.pt")
    artifacts = tmp_path / "artifacts"
    result = run_main(["train", "--model", "resnet8", "--train-data", str(data), "--data-dir", str(data), "--epochs",
                       "1"], {"QUANT_EXPLORER_ARTIFACTS": str(artifacts), "QUANT_EXPLORER_CACHE": str(tmp_path / "c")},
                      capfd)
    assert result.returncode == 0, result.stderr
    written = artifacts / "weights" / "resnet8" / "fp32_baseline.pt"
    assert written.is_file() and (written.parent / "model_card.json").is_file()
    assert f"use it with --weights {written}" in " ".join(result.stdout.split())
    assert file_sha256(PACKAGED_WEIGHTS / "resnet8" / "fp32_baseline.pt") == shipped
