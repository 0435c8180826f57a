"""pareto.md and a self-contained HTML report, generated from the results files and nothing else.

Both show one `summary.View` (one environment, one evaluation set, named in a banner). `build` is the one
place that reads the results files (the sweep's and each registered study kind's) and writes the two outputs;
the answer per model (what to ship, what it costs and buys, how to reproduce it, where its model is) is in
`answer`, shared with `summary --json`; how a number is written in `text`; pareto.md in `markdown`; what the
page says in `html`; its pictures in `plots` (matplotlib, embedded as base64 PNGs so the one file can be
mailed or archived); and the optional headless-Chromium check (every image decodes, nothing overflows 1024 px,
the answer comes first) in `render_check`. Split so each concern reads on its own: the page's wording without
matplotlib in view, the plots without HTML, the browser without either.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis import current_studies
from ..analysis.deploy import deployment
from ..analysis.summary import load_view
from ..files import write_text_atomic
from ..results import Results
from ..studies import kinds, read_entries
from .html import render_html
from .markdown import markdown
from .render_check import find_chromium, render_check

__all__ = ["build", "find_chromium", "render_check"]


def build(results_dir: Path, report_dir: Path, environment: str | None = None, dataset: str | None = None,
          objective: str = "latency", data_dir: Path | None = None, deploy: list[str] | None = None
          ) -> dict[str, Path]:
    """Write results_dir/pareto.md and report_dir/index.html from the results files there, for one view (its pick
    on `objective`, in the confidence set on every class of `deploy`, default all the file holds; labels from
    `data_dir` where not cached)."""
    results = Results.load(results_dir / "full_results.json")
    view = load_view(results, environment, dataset, objective=objective, data_dir=data_dir)
    studies = [(kind, current_studies(read_entries(results_dir / kind.file, kind), view.rows))
               for kind in kinds()]  # each registered kind's entries measured alike to the view
    classes = {m: t for m, t in deployment(view, results, deploy, data_dir).items()
               if len(t["classes"]) > 1}  # a matrix only where the file holds more than one CPU class
    written = {"markdown": results_dir / "pareto.md", "html": report_dir / "index.html"}
    write_text_atomic(written["markdown"], markdown(view, classes))
    write_text_atomic(written["html"], render_html(view, studies, classes))
    return written
