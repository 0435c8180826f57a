"""Messages that say what is true: '~' in a path setting means the home folder, --seeds that match nothing say so
(and a range costs nothing to ask), a set too small for an interval says so, and a larger file is never "smaller"."""

from __future__ import annotations

import numpy as np

from quant_explorer.analysis.rows import size_vs_fp32
from quant_explorer.cli.answers import print_answer, quantize_answer
from quant_explorer.data import resolve_data_dir
from quant_explorer.paths import artifacts_dir, cache_dir
from quant_explorer.results import encode_classes
from quant_explorer.row import Row

from .conftest import run_main


def test_a_tilde_in_a_path_setting_is_the_home_folder_never_a_folder_named_tilde(tmp_path, monkeypatch, tiny, capfd):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for name in ("QUANT_EXPLORER_ARTIFACTS", "QUANT_EXPLORER_CACHE", "QUANT_EXPLORER_DATA"):
        monkeypatch.setenv(name, f"~/qe-{name[15:].lower()}")
    assert (artifacts_dir(), cache_dir(), resolve_data_dir(None)) == tuple(
        tmp_path / "home" / f"qe-{what}" for what in ("artifacts", "cache", "data"))
    assert resolve_data_dir("~/elsewhere") == tmp_path / "home" / "elsewhere"
    result = run_main(["data", "info", "--data-dir", str(tiny / "data")], {}, capfd)  # decodes into the cache
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "home" / "qe-cache" / "decoded").glob("*.pt"))
    assert not (tmp_path / "~").exists()


def test_seeds_that_match_no_stored_seed_say_so_and_a_large_range_costs_nothing(tiny_run, capfd):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tiny_run["results"].parent.parent)}
    none = run_main(["summary", "--seeds", "99"], env, capfd)
    assert none.returncode == 2 and none.stdout == ""
    [line] = none.stderr.splitlines()
    assert line.startswith("error: --seeds 99 matches none of the stored calibration seeds (0-1) in ")
    wide = run_main(["summary", "--seeds", "1-1000000000", "--json"], env, capfd)  # a range, never a list
    assert wide.returncode == 0, wide.stderr


def _row(config: str, predictions: np.ndarray, seed: int | None, **fields) -> Row:
    right = predictions == np.arange(10)
    return Row(model="m", config_name=config, accuracy=float(right.mean()), correct=int(right.sum()), n_images=10,
               predictions=encode_classes(predictions), runtime="onnxruntime",
               calibration={"calibration_n": 10, "calibration_seed": seed} if seed is not None else None, **fields)


def test_ten_images_on_which_both_models_agree_are_too_few_for_an_interval(capsys):
    labels, same = np.arange(10), np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])
    fp32 = _row("fp32_baseline", same, None, size_bytes=7000)
    row = _row("ort_u8_minmax_qdq_per_tensor", same, 0, delta_pp=0.0, size_bytes=7300)
    answer = quantize_answer(row, fp32, {}, labels, 1.0)
    assert answer.interval["ci_pp"] is None
    print_answer(answer)
    text = " ".join(capsys.readouterr().out.split())
    assert "Δ vs FP32 +0.00 pp; no interval: FP32 and the quantized model disagree on none of the 10 test images, " \
           "too few to bound the difference (up to ±26 pp would go unseen at 95%)" in text
    assert "[+0.00, +0.00]" not in text and "7 KiB (4% larger than FP32)" in text


def test_a_size_against_fp32_is_never_a_smaller_file_that_is_larger():
    assert size_vs_fp32(25_000, 100_000) == "4.0x smaller than FP32"
    assert size_vs_fp32(120_000, 100_000) == "1.2x larger than FP32"
    assert size_vs_fp32(104_000, 100_000) == "4% larger than FP32"  # not "1.0x smaller"
    assert size_vs_fp32(96_000, 100_000) == "4% smaller than FP32"
    assert size_vs_fp32(100_000, 100_000) == "the size of FP32"
