"""A full disk and a read-only filesystem, for real: small tmpfs mounts (root only; skipped with a reason elsewhere).

Each case runs the CLI's entry point in this process and asserts one stderr line naming the path and the fix (or
one warning, for a cache that only saves time), no temporary file left, and the results written before it
byte-identical.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import run_main, write_image_folder


@contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def temporary_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def quantize_args(tiny):
    return ["quantize", "--config", "ort_u8_minmax_qdq_per_channel_rr", "--model", "resnet8", "--weights",
            str(tiny / "resnet8.pt"), "--data-dir", str(tiny / "data"), "--calibration-n", "20"]


def test_a_full_disk_under_the_models_is_one_line_and_leaves_no_temporary_file(tmp_path, quantize_args, capfd):
    with tmpfs(tmp_path / "artifacts", "size=200k") as artifacts:
        result = run_main(quantize_args, {"QUANT_EXPLORER_ARTIFACTS": str(artifacts)}, capfd)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith("error: FP32 evaluation of resnet8 failed: UserError: cannot write to ")
        assert re.search(r"fp32-[0-9a-f]{12}\.onnx \(No space left on device\); free some space there", line)
        assert "Traceback" not in result.stderr
        assert temporary_files(artifacts) == []


def test_a_full_disk_under_the_results_keeps_the_old_results_byte_identical(tmp_path, quantize_args, capfd):
    artifacts = tmp_path / "artifacts"
    first = run_main(quantize_args, {"QUANT_EXPLORER_ARTIFACTS": str(artifacts)}, capfd)
    assert first.returncode == 0, first.stderr
    results = artifacts / "results" / "full_results.json"
    before = results.read_bytes()
    with tmpfs(tmp_path / "full", f"size={len(before) // 1024 + 64}k") as full:
        (full / "results").mkdir()
        (full / "results" / "full_results.json").write_bytes(before)
        os.rename(artifacts / "results", tmp_path / "results-before")
        (artifacts / "results").symlink_to(full / "results")
        filler = full / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill it: no room for the new file
            try:
                while True:
                    f.write(b"\0" * 1024)
            except OSError:
                pass
        again = run_main([a if a != "20" else "21" for a in quantize_args],
                         {"QUANT_EXPLORER_ARTIFACTS": str(artifacts)}, capfd)
        assert again.returncode == 2, again.stderr
        [line] = again.stderr.splitlines()
        assert line.startswith("error: cannot write to ") and "full_results.json (No space left on device)" in line
        assert (full / "results" / "full_results.json").read_bytes() == before
        assert temporary_files(full) == [] and temporary_files(artifacts / "models") == []


def test_a_read_only_cache_costs_a_warning_not_the_run(tmp_path, tiny, capfd):
    data = write_image_folder(tmp_path / "fresh-data", n_train=30, n_test=20)  # never decoded: needs the cache
    with tmpfs(tmp_path / "cache", "ro,size=64k") as cache:
        result = run_main(["evaluate", "--model", "resnet8", "--weights", str(tiny / "resnet8.pt"), "--data-dir",
                           str(data), "--json"],
                          {"QUANT_EXPLORER_CACHE": str(cache), "QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "a")}, capfd)
        assert result.returncode == 0, result.stderr
        [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert "decoded images not cached: cannot write to " in warning and "Read-only file system" in warning
        assert '"n_images": 20' in result.stdout


def test_temporary_files_of_killed_runs_are_removed_at_the_next_start_and_live_writers_keep_theirs(isolated_dirs, tiny):
    from quant_explorer.files import HOST, atomic_path
    from quant_explorer.preflight import prepare

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = isolated_dirs / "artifacts" / "models" / "resnet8-0123" / "ort_u8" / "n20-s0"
    folder.mkdir(parents=True)
    killed = folder / f".model.k3x9.tmp-{HOST}-{int(dead.stdout)}.onnx"  # as a run SIGKILLed mid-write leaves it
    killed.write_bytes(b"half a model")
    other_host = folder / f".model.a1b2.tmp-00000000-{int(dead.stdout)}.onnx"  # another machine's, on a shared disk
    other_host.write_bytes(b"")
    with atomic_path(folder / "model.onnx") as live:  # this process is writing it right now
        live.write_bytes(b"being written")
        prepare(tiny / "data", [])
        assert live.exists()
    assert not killed.exists() and other_host.exists() and (folder / "model.onnx").read_bytes() == b"being written"
