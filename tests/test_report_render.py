"""The report from a real (tiny) results file: pareto.md, the HTML's sections and images, and a real browser render
(the answer first, nothing wider than a 1024 px window, no absolute path)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from quant_explorer.backends import get_config
from quant_explorer.report import build, find_chromium
from quant_explorer.results import load_results, save_entries
from quant_explorer.row import Row
from quant_explorer.studies import calibration_size

from .conftest import TINY_CONFIGS

TINY_SHA = "0" * 64  # the random tiny ResNet8's weights hash (test_analysis.random_resnet8)


def add_analyses(results_dir) -> None:
    """calibration_size.json through the real summarizer, and a layer_sensitivity.json entry of the stored shape;
    plus a calibration study measured on other weights, which the report must leave out. Both carry the
    identity (environment, evaluation set) of the sweep's rows, as the real studies do."""
    fp32 = next(r for r in load_results(results_dir / "full_results.json")["entries"].values()
                if r["config_name"] == "fp32_baseline")
    ident = {"identity": fp32["identity"]}
    runs = {n: {s: Row(accuracy=acc, calibration={"calibration_images_sha256": f"{n}-{s}"})
                for s, acc in enumerate(accs)}
            for n, accs in {32: [0.70, 0.74, 0.72], 256: [0.78, 0.79, 0.80]}.items()}
    entry = calibration_size.summarize("resnet8", get_config("ort_u8_minmax_qdq_per_tensor"), 0.8, runs)
    stale = calibration_size.summarize("resnet8", get_config("ort_u8_minmax_qdq_per_channel"), 0.8, runs)
    save_entries(results_dir / "calibration_size.json",
                 {"resnet8|ort_u8_minmax_qdq_per_tensor": {**entry.to_dict(), "model_weights_sha256": TINY_SHA,
                                                           **ident},
                  "resnet8|ort_u8_minmax_qdq_per_channel": {**stale.to_dict(), "model_weights_sha256": "f" * 64,
                                                            **ident}})
    layers = [{"layer": name, "node": name, "op_type": "Conv", "cost_pp": cost, "recovery_pp": cost / 2,
               "only_this_quantized": {"accuracy": 0.8 - cost / 100}, "all_but_this_quantized": {"accuracy": 0.75},
               "weight_sqnr_db": 42.0} for name, cost in (("conv", 2.0), ("stack1.conv1", 0.5), ("fc", -0.1))]
    save_entries(results_dir / "layer_sensitivity.json", {"resnet8|ort_u8_minmax_qdq_per_tensor|n=20|seed=0": {
        "model": "resnet8", "model_weights_sha256": TINY_SHA, "config_name": "ort_u8_minmax_qdq_per_tensor", **ident,
        "fp32_accuracy": 0.8, "quantized_accuracy": 0.74,
        "method": "ORT quantize_static nodes_to_quantize / nodes_to_exclude", "layers": layers,
        "sqnr": {"method": "qdq_loss_debug", "n_images": 20,
                 "activations": [{"tensor": "relu", "label": "conv", "sqnr_db": 30.0},
                                 {"tensor": "view", "label": "fc", "sqnr_db": 20.0}]}}})


def test_report_writes_pareto_and_an_html_with_every_section(tiny_run):
    results_dir = tiny_run["results"].parent
    written = build(results_dir, results_dir.parent / "report")
    pareto = written["markdown"].read_text()
    assert sum(f"| `{c}` |" in pareto for c in TINY_CONFIGS) == len(TINY_CONFIGS)
    assert "## Which to pick" in pareto and "| resnet8 | reference | `fp32_baseline` |" in pareto
    assert "| resnet8 | pick (latency) | `" in pareto and "confidence set for the best" in pareto
    assert "Environment: " in pareto
    assert "**Made on " in pareto and "this machine" not in pareto
    page = written["html"].read_text()
    assert page.count('<img alt="') == page.count('src="data:image/png;base64,') >= 3
    # The answer block leads: before the contents, every picture and every table of details.
    answer = page.index('<section class="answer" id="answer-resnet8">')
    assert answer < page.index('<nav class="toc">') < page.index('alt="resnet8 forest plot"') < page.index("<details")
    block = re.sub(r"<[^>]+>", "", page[answer:page.index("</section>", answer)])  # its text
    for field in ("Δ accuracy", "batch 1", "batch 256", "size", "classes losing detectably", "reproduce",
                  "saved model", "95% interval", "quant-explorer sweep --model resnet8 --configs"):
        assert field in block
    assert "Δ vs FP32 pp [95%]" in page and "Made on " in page and "this machine's" not in page
    assert "Calibration-set size" not in page and "Per-layer sensitivity" not in page
    assert "airplane" in page and "Scheme comparisons" in page
    assert "McNemar p" not in page and "seeds with p &lt; 0.05" in page  # the per-seed table, summarised
    add_analyses(results_dir)
    page = build(results_dir, results_dir.parent / "report")["html"].read_text()
    assert "Calibration-set size" in page and "Per-layer sensitivity" in page
    # One sign convention: a loss is negative, in the per-layer text as everywhere else.
    assert ("Most costly alone (Δ vs FP32, negative = loss): conv (-2.00 pp), stack1.conv1 (-0.50 pp), "
            "fc (+0.10 pp)") in page
    assert "ort_u8_minmax_qdq_per_tensor calibration-size curve" in page
    assert "ort_u8_minmax_qdq_per_channel calibration-size curve" not in page


def test_report_names_each_unscored_row_by_the_first_line_of_its_error(tiny_run):
    results = tiny_run["results"]
    scored = next(r for r in load_results(results)["entries"].values() if r["config_name"] != "fp32_baseline")
    failed = {k: v for k, v in scored.items() if k != "accuracy"}
    save_entries(results, {"resnet8|broken": {**failed, "error": "\nRuntimeError: boom\n  while quantizing"}})
    page = build(results.parent, results.parent.parent / "report")["html"].read_text()
    assert "<li>resnet8|broken: RuntimeError: boom</li>" in page  # not the blank line the error starts with


ABSOLUTE = re.compile(r"(?<![\w:/+=.<\-])/(?:tmp|home|root|work|Users|var|private)/[\w.@+\-]+")


def test_report_renders_in_headless_chromium_with_every_image(tiny_run, monkeypatch):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from quant_explorer.cli import app
    from quant_explorer.report import render_check

    add_analyses(tiny_run["results"].parent)
    artifacts = tiny_run["results"].parent.parent
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(artifacts))
    result = CliRunner().invoke(app, ["report", "--check-render"])
    assert result.exit_code == 0, result.output
    index = artifacts / "report" / "index.html"
    page = index.read_text()
    images = page.count("<img ")
    assert f"chromium rendered {images} images, 0 broken" in " ".join(result.output.split())
    assert (artifacts / "report" / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'alt="resnet8 forest plot"' in page  # each model's forest plot
    # No absolute path anywhere in the page: not the artifacts folder, not the data's, not this machine's.
    assert str(artifacts) not in page and not ABSOLUTE.search(page), ABSOLUTE.search(page)
    # In a 1024 px window: nothing wider than the window, and the answer block is the first thing after the title.
    check = render_check(index, width=1024)
    assert check["scroll_width"] <= check["viewport_width"] == 1024 and not check["overflowing"], check
    assert check["answer_top"] is not None and check["answer_top"] < 300, check
    assert check["answer_top"] < check["first_other_top"], check
