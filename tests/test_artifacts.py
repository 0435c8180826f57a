"""Artifacts that cannot lie: every file made once and reused carries a record of what it was made from and of its
bytes (`provenance`); a damaged or unproven one is named in one line, set aside and made again; a recompute that
fails never replaces a scored row; ORT's temporary work stays where the next start cleans up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from quant_explorer.bench import BenchSettings, stored_bench
from quant_explorer.bench_entry import BenchDocument
from quant_explorer.env import environment
from quant_explorer.provenance import RECORD_SUFFIX, is_bookkeeping, record_of, reuse_or_build

from .conftest import run_main

CONFIG = "ort_u8_minmax_qdq_per_channel_rr"


def test_a_file_is_reused_only_while_its_record_proves_it(tmp_path, capsys):
    path, made = tmp_path / "model.onnx", []

    def build(out):
        made.append(out)
        out.write_bytes(b"model bytes %d" % len(made))

    def aside():
        return sorted(p.name for p in tmp_path.iterdir() if ".set-aside-" in p.name)

    assert reuse_or_build(path, {"row": "a"}, build, "quantized model") == path and len(made) == 1
    assert json.loads(record_of(path).read_text())["made_from"] == {"row": "a"}
    assert [is_bookkeeping(tmp_path / n) for n in ("model.onnx", f"model.onnx{RECORD_SUFFIX}", "model.onnx.lock",
                                                   "model.onnx.set-aside-20261207-101010")] == [False, True, True, True]
    reuse_or_build(path, {"row": "a"}, build, "quantized model")
    assert len(made) == 1 and capsys.readouterr().err == ""  # proven: reused, nothing said
    for damage, why in ((lambda: path.write_bytes(path.read_bytes()[:5]), "is damaged: 5 bytes where its record says"),
                        (lambda: path.write_bytes(b"model bytes 9"), "is damaged: its checksum differs"),
                        (lambda: None, "was made from something else"),  # read for another row
                        (lambda: record_of(path).unlink(), "has no record of what it was made from")):
        damage()
        before = path.read_bytes()
        reuse_or_build(path, {"row": "b" if "else" in why else "a"}, build, "quantized model")
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"warning: quantized model {path} {why}")
        assert "set aside as model.onnx.set-aside-" in line
        assert (tmp_path / line.split("set aside as ")[1].split(";")[0]).read_bytes() == before  # kept, renamed
        assert path.read_bytes() == b"model bytes %d" % len(made)  # made again, with its record
    assert len(made) == 5 and len(aside()) == 4 + 3  # four set aside, three with their records


@pytest.fixture
def quantize_args(tiny):
    return ["quantize", "--config", CONFIG, "--model", "resnet8", "--weights", str(tiny / "resnet8.pt"),
            "--data-dir", str(tiny / "data"), "--calibration-n", "20"]


def _stored(results) -> dict:
    return {k: e for k, e in json.loads(results.read_text())["entries"].items() if e["config_name"] == CONFIG}


def test_damaged_artifacts_are_made_again_alike_and_a_failed_recompute_keeps_the_stored_row(tmp_path, quantize_args,
                                                                                              capfd):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "a")}
    assert run_main(quantize_args, env, capfd).returncode == 0
    results = tmp_path / "a" / "results" / "full_results.json"
    [first] = _stored(results).values()
    models = tmp_path / "a" / "models"
    export = next(p for p in models.rglob("fp32-*.onnx") if "preprocessed" not in p.name)
    [workdir] = models.rglob(f"{CONFIG}/n20-*")
    damaged = [export, export.with_name(f"{export.stem}.preprocessed.onnx"), workdir / "model.onnx"]
    assert all(record_of(p).is_file() for p in damaged)
    for path in damaged:  # truncated, as a full disk or a killed copy leaves a file
        path.write_bytes(path.read_bytes()[:100])
    again = run_main(quantize_args, env, capfd)
    assert again.returncode == 0, again.stderr
    assert len(again.stderr.splitlines()) == 3, again.stderr  # one line each
    for path in damaged:
        [line] = [line for line in again.stderr.splitlines() if f" {path} is damaged: 100 bytes where its " in line]
        assert line.startswith("warning: ") and line.endswith("; making it again")
        aside = sorted(p.name for p in path.parent.glob(f"{path.name}.set-aside-*"))
        assert len(aside) == 2 and aside[1] == aside[0] + RECORD_SUFFIX and path.stat().st_size > 100  # with its record
    [row] = _stored(results).values()
    assert "error" not in row and row["predictions"] == first["predictions"]  # made again, alike

    before = _stored(results)  # now a recompute that fails: a file where the row's folder goes
    shutil.rmtree(workdir)
    workdir.write_text("not a folder")
    failed = run_main(quantize_args, env, capfd)
    assert failed.returncode == 1 and f"{CONFIG}: failed FileExistsError" in failed.stdout, failed.stderr
    assert f"resnet8|{CONFIG}|n=20|seed=0 failed (FileExistsError" in failed.stderr
    assert "the stored row measured alike is kept" in failed.stderr
    assert _stored(results) == before  # the scored row, byte for byte
    shown = run_main(["summary", "--data-dir", quantize_args[-3]], env, capfd)
    assert shown.returncode == 0 and CONFIG in shown.stdout


# A `quantize` killed (SIGKILL) while ONNX Runtime calibrates: the calibration reader kills its own process.
KILLED_IN_CALIBRATION = """
import os, signal
from quant_explorer.backends import ort
reader = ort.calibration_reader
def killing_reader(batches, name):
    inner = reader(batches, name)
    inner.get_next = lambda: os.kill(os.getpid(), signal.SIGKILL)
    return inner
ort.calibration_reader = killing_reader
from quant_explorer.cli import main
main()
"""


@pytest.mark.process
def test_a_run_killed_in_ort_calibration_leaves_its_scratch_where_the_next_start_removes_it(tmp_path, quantize_args,
                                                                                             monkeypatch):
    from quant_explorer.preflight import prepare

    system_tmp, artifacts = tmp_path / "system-tmp", tmp_path / "a"
    system_tmp.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_CALIBRATION, *quantize_args], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "TMPDIR": str(system_tmp),
                                                         "QUANT_EXPLORER_ARTIFACTS": str(artifacts)})
    assert killed.returncode == -9, killed.stderr
    # neither qe-ort-* nor ORT's own ort.quant.* and pre.quant.* in the system's (torch keeps its caches there)
    assert not [p for p in system_tmp.iterdir() if "qe-ort" in p.name or "quant." in p.name]
    [scratch] = [p for p in (artifacts / "models").rglob(".qe-ort.*") if p.is_dir()]
    assert [p.name.split(".")[0] for p in scratch.iterdir()] == ["ort"]  # ORT's ort.quant.* folder, inside it
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(artifacts))
    prepare(quantize_args[-3], [])  # what every command does first
    assert not scratch.exists()
    assert not [p for p in artifacts.rglob("*") if ".tmp-" in p.name]


def test_a_bench_with_a_failure_is_failed_work_never_reused_as_stored(tmp_path):
    from quant_explorer.bench import SCHEMA_VERSION

    settings = BenchSettings(threads=1, runs=2, batch_runs=1, rounds=1, warmup=0, batch=8, compile=False)
    entry = {"config_name": "fp32_baseline", "runtimes": {"onnxruntime": {"latency_ms_b1_median": 0.1},
                                                          "aotinductor": {"error": "RuntimeError: bad package"}}}
    document = {"schema_version": SCHEMA_VERSION, "environment": environment(1), "settings": settings.record(),
                "entries": {"m|fp32_baseline|h": entry}}
    path = tmp_path / "bench_m.json"
    path.write_text(json.dumps(document))
    failed = BenchDocument.from_dict(document)
    assert failed.failures() == ["fp32_baseline [aotinductor]: RuntimeError: bad package"]
    assert stored_bench(path, ["m|fp32_baseline|h"], settings) is None  # timed again, never shown as "stored"
    del entry["runtimes"]["aotinductor"]
    path.write_text(json.dumps(document))
    stored = stored_bench(path, ["m|fp32_baseline|h"], settings)
    assert stored.failures() == [] and stored.to_dict() == document


@pytest.mark.parametrize("pt2", [None, "model.pt2"])  # the FP32 model's package, or a saved PT2E model's
def test_a_damaged_compiled_package_is_set_aside_and_compiled_again(pt2, tiny, tmp_path, monkeypatch, capfd):
    """The AOTInductor packages go through the same proof (the compiler itself is replaced by a stand-in that
    writes bytes: a real compile takes a minute, and what is tested is which package is reused)."""
    from quant_explorer.backends import pt2e
    from quant_explorer.models import load_model
    from quant_explorer.runtimes import aot

    def compiled(model, package):
        return pt2e.compiled(model, package, package.with_name(pt2) if pt2 else None)

    compiles = []
    monkeypatch.setattr(aot, "compile_package", lambda source, path, example: (compiles.append(path),
                                                                                path.write_bytes(b"package"))[0])
    monkeypatch.setattr(pt2e, "load_pt2", lambda path: None)
    model = load_model("resnet8", tiny / "resnet8.pt")
    package = tmp_path / "models" / "n20-s0-abc" / "model.aoti.pt2"
    assert compiled(model, package) == package and compiled(model, package) == package
    assert len(compiles) == 1 and capfd.readouterr().err == ""  # compiled once, then reused
    package.write_bytes(b"pack")  # truncated: it would be loaded, and fail, on every bench
    assert compiled(model, package) == package and package.read_bytes() == b"package" and len(compiles) == 2
    [line] = capfd.readouterr().err.splitlines()
    assert f"{package} is damaged: 4 bytes where its record says 7" in line and "set aside as " in line
