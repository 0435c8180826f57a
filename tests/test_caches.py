"""Caches that prove what they belong to: a decoded-image cache entry copied over another, or a damaged labels cache,
is said in one line and made again (or read from the data), never trusted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from quant_explorer.data import load_split
from quant_explorer.provenance import record_of, why_not

from .conftest import run_main


def _entries(decoded: Path) -> dict[int, Path]:
    """The decoded-image cache entries by how many images each holds (its record says)."""
    return {json.loads(record_of(p).read_text())["made_from"]["n_images"]: p for p in decoded.glob("*.pt")}


def test_a_decoded_cache_entry_copied_over_another_is_refused_and_decoded_again(image_folder_dir, isolated_dirs,
                                                                                  capfd):
    test, train = load_split(image_folder_dir, "test"), load_split(image_folder_dir, "train")
    entries = _entries(isolated_dirs / "cache" / "decoded")
    capfd.readouterr()
    for what, copied, why in (("the payload", [entries[50]], "is damaged: "),
                              ("with its record", [entries[50], record_of(entries[50])], "was made from something")):
        for path in copied:  # the training split's entry put where the test split's is
            shutil.copy(path, entries[20].parent / path.name.replace(entries[50].stem, entries[20].stem))
        again = load_split(image_folder_dir, "test")
        assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels), what
        [line] = capfd.readouterr().err.splitlines()
        assert line.startswith(f"warning: decoded-image cache {entries[20]} {why}")
        assert line.endswith(": making it again")
        assert why_not(entries[20], json.loads(record_of(entries[20]).read_text())["made_from"]) is None  # rewritten
    assert torch.equal(load_split(image_folder_dir, "train").images, train.images)
    info = run_main(["data", "info", "--json", "--data-dir", str(image_folder_dir)], {}, capfd)
    assert json.loads(info.stdout)["test"]["n_images"] == 20 and info.stderr == ""  # proven: nothing said


def test_a_damaged_labels_cache_is_one_line_in_the_views_and_quantize_writes_it_again(tiny_run, capfd):
    artifacts = tiny_run["results"].parent.parent
    data_dir = Path(tiny_run["data"].test.dataset.split(":", 1)[1]).parent
    [labels] = (artifacts / "cache" / "labels").glob("*.txt")
    text, env = labels.read_text(), {"QUANT_EXPLORER_ARTIFACTS": str(artifacts)}
    for damage, argv in ((text[:len(text) // 2], ["summary"]), (text[:len(text) // 2], ["compare"]),
                         ("not base64 at all!\n", ["summary", "--data-dir", str(data_dir)])):
        labels.write_text(damage)  # truncated, then garbage
        result = run_main(argv, env, capfd)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (argv, result.stderr)
        said = "".join(result.stdout.split())  # wrapped at the console's width
        assert said.count(labels.name) == 1 and f"thelabelscache{labels}isdamaged" in said, result.stdout
        assert ("nointervals" in said) == (len(argv) == 1)  # read from the data where it is given: intervals
    assert f"read from {data_dir} instead" in " ".join(result.stdout.split())
    quantized = run_main(["quantize", "--config", "ort_u8_minmax_qdq_per_tensor", "--data-dir", str(data_dir),
                          "--calibration-n", "20"], env, capfd)
    assert quantized.returncode == 0, quantized.stderr
    assert f"warning: labels cache {labels} is damaged" in quantized.stderr
    assert labels.read_text() == text  # written again, with its record
    assert why_not(labels, json.loads(record_of(labels).read_text())["made_from"]) is None
