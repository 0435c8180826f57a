"""Output that survives odd terminals and odd names: a stdout that cannot encode "Δ" gets ASCII words, a closed or
broken stdout is one line on stderr and a non-zero exit, and a file name that is not valid UTF-8 is hashed by its
bytes and printed escaped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from .conftest import run_main, write_image_folder

PROGRAM = "from quant_explorer.cli import main; main()"  # the console script, in a fresh interpreter


def _cli(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *argv], capture_output="stdout" not in kwargs, timeout=300,
                          env={**os.environ, **env}, **kwargs)


@pytest.mark.process
def test_a_terminal_that_cannot_encode_the_symbols_gets_ascii_words(tiny_run):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tiny_run["results"].parent.parent), "PYTHONIOENCODING": "ascii",
           "LC_ALL": "C"}
    result = _cli(["summary"], env)
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode(errors="replace")
    out = result.stdout.decode("ascii")  # nothing else reached it
    assert "delta +0.00" in out and "+/- 0.00" in out and "ort_u8_minmax_qdq_per_tensor" in out
    assert "pick (latency): " in out and out.rstrip().endswith(".")  # to the end, not half-way


@pytest.mark.process
def test_a_closed_stdout_is_one_line_on_stderr_and_a_non_zero_exit(tiny_run):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tiny_run["results"].parent.parent)}
    closed = subprocess.run(["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-c", PROGRAM, "summary", "--json"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert closed.returncode == 2
    assert closed.stderr.splitlines() == ["error: standard output is closed (`>&-`): nothing this command prints could "
                                          "be shown; redirect it to a file or to /dev/null instead"]
    read, write = os.pipe()
    os.close(read)  # a pipe nobody reads any more (`| head -1` after its line)
    try:
        broken = _cli(["summary", "--json"], env, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert broken.returncode == 1
    assert broken.stderr.decode().splitlines() == ["error: standard output was closed before everything was written "
                                                   "(Broken pipe): what was shown is incomplete"]


def test_file_names_that_are_not_utf8_are_hashed_by_their_bytes_and_printed_escaped(tmp_path, capfd):
    root = write_image_folder(tmp_path / os.fsdecode(b"donn\xe9es"), n_train=30, n_test=20)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(root / "test" / "cat" / os.fsdecode(b"caf\xe9.png"))
    (root / "test" / os.fsdecode(b"notes-\xe9.txt")).write_bytes(b"not an image")
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "a")}
    evaluated = run_main(["evaluate", "--data-dir", str(root), "--json"], env, capfd)
    assert evaluated.returncode == 0, evaluated.stderr
    assert '"n_images": 21' in evaluated.stdout and "donn\\udce9es" in evaluated.stdout  # JSON escapes it
    [warning] = evaluated.stderr.splitlines()
    assert "(e.g. notes-\\xe9.txt)" in warning  # the byte, escaped
    swept = run_main(["quantize", "--config", "ort_u8_minmax_qdq_per_tensor", "--data-dir", str(root),
                      "--calibration-n", "20"], env, capfd)
    assert swept.returncode == 0, swept.stderr
    shown = run_main(["summary"], env, capfd)
    assert shown.returncode == 0 and "donn\\xe9es" in "".join(shown.stdout.split()), shown.stderr
