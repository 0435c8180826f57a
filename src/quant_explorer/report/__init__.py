"""pareto.md and a self-contained HTML report, generated from the results files and nothing else.

Both show one `summary.View` (one environment, one evaluation set, named in a banner). `build` is the one
place that reads the results files and writes the two outputs; what the page says is in `html`, its pictures
in `plots` (matplotlib, embedded as base64 PNGs so the one file can be mailed or archived), and the optional
headless-Chromium check that every image decodes in `render_check`. Split so each concern reads on its own:
the page's wording without matplotlib in view, the plots without HTML, the browser without either.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis import current_studies
from ..analysis.pareto import markdown
from ..analysis.summary import load_view
from ..files import write_text_atomic
from ..results import load_results
from .html import render_html
from .render_check import find_chromium, render_check

__all__ = ["build", "find_chromium", "render_check"]


def build(results_dir: Path, report_dir: Path, environment: str | None = None, dataset: str | None = None) -> dict[str, Path]:
    """Write results_dir/pareto.md and report_dir/index.html from the results files there, for one view."""
    results = results_dir / "full_results.json"
    view = load_view(load_results(results), environment, dataset)
    calibration = current_studies(load_results(results_dir / "calibration_size.json")["entries"], view.rows)
    layers = current_studies(load_results(results_dir / "layer_sensitivity.json")["entries"], view.rows)
    written = {"markdown": results_dir / "pareto.md", "html": report_dir / "index.html"}
    write_text_atomic(written["markdown"], markdown(view))
    write_text_atomic(written["html"], render_html(view, calibration, layers))
    return written
