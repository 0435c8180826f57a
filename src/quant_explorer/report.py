"""pareto.md and a self-contained HTML report, generated from the results files and nothing else.

The HTML embeds every plot as a base64 PNG (matplotlib, Agg), so the one file can be mailed or archived.
Both show one `summary.View` (one environment, one evaluation set, named in a banner). The page leads, per
model, with a forest plot of every config's delta vs FP32 and its 95% interval, then the "which to pick"
table; the details (all configs, trade-offs, explanations, comparisons, classes, studies) follow collapsed.
Sections for calibration size and per-layer sensitivity appear when their JSON files exist.
`render_check` opens the page in headless Chromium and checks that every image decodes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .analysis import current_studies, fp32_rows, is_quantized
from .analysis.comparisons import all_confusions, comparisons, losers_text
from .analysis.explain import LOSS_PP, explain
from .analysis.pareto import (SPEED_WORDS, accuracy_text, delta_text, latency_column, markdown, pareto_front,
                              pareto_table, picks, speed_columns, speed_text, speedup_text, tied_text)
from .analysis.summary import View, choices, load_view
from .errors import UserError
from .files import write_text_atomic
from .results import load_results

BACKEND_COLORS = {"fp32": "black", "ort": "tab:blue", "pt2e": "tab:orange", "eager_static": "tab:green",
                  "eager_dynamic": "tab:purple"}
ZOOM_PP = 8  # accuracy plots show this many points below the best row; rows further down sit on the floor
DETAIL_PER_MODEL = 3  # confusion heatmaps and class bars: this many worst configs per model, plus the best
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


# ---- plots: each returns PNG bytes -------------------------------------------------------------------------

def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(rows: list[dict], cost: str, xlabel: str) -> bytes:
    """Accuracy against a cost, one panel per model; the pareto front drawn and its points named."""
    plt = _plt()
    models = sorted({r["model"] for r in rows if isinstance(r.get(cost), (int, float))})
    cols = min(2, len(models))  # two panels a row stay readable on a page
    rows_n = -(-len(models) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(10 * cols, 6 * rows_n), squeeze=False, layout="constrained")
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models):
        mine = [r for r in rows if r["model"] == model and isinstance(r.get(cost), (int, float))]
        scale = 1 / 1024 if cost == "size_bytes" else 1
        xs, ys = [r[cost] * scale for r in mine], [100 * r["accuracy"] for r in mine]
        for backend in sorted({r["config"]["backend"] for r in mine}):
            pts = [(x, y) for x, y, r in zip(xs, ys, mine) if r["config"]["backend"] == backend]
            ax.scatter(*zip(*pts), color=BACKEND_COLORS.get(backend, "gray"), label=backend,
                       marker="*" if backend == "fp32" else "o", s=160 if backend == "fp32" else 40, zorder=3)
        front = sorted((x, y, r["config_name"]) for x, y, r, on in
                       zip(xs, ys, mine, pareto_front([(r["accuracy"], r[cost]) for r in mine])) if on)
        ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="tab:red", lw=1.5,
                label="pareto front", zorder=2)
        for k, (x, y, name) in enumerate(sorted(front, key=lambda f: -f[1])):  # a label column, top row = top point
            ax.annotate(name, (x, y), textcoords="axes fraction", xytext=(0.45, 0.94 - 0.055 * k), fontsize=8,
                        arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.6})
        floor = max(min(ys), max(ys) - ZOOM_PP)  # far-off rows would squash the interesting part
        below = [(x, y) for x, y in zip(xs, ys) if y < floor]
        if below:
            ax.scatter([x for x, _ in below], [floor] * len(below), marker="v", color="tab:gray", s=50, zorder=3,
                       label=f"{len(below)} below {floor:.0f}% (lowest {min(y for _, y in below):.1f}%)")
        ax.set_ylim(floor - 0.5, max(ys) + 0.5)
        ax.set(xlabel=xlabel, ylabel="top-1 accuracy (%)", title=f"{model}: accuracy vs {xlabel.split(' (')[0]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_forest(view: View, model: str) -> bytes:
    """Each config's mean delta vs FP32 with its 95% interval, best at the top; tied configs shaded, the pick starred."""
    plt = _plt()
    choice = choices(view)[model]
    rows = sorted((r for r in view.rows if r["model"] == model and is_quantized(r)), key=lambda r: r["accuracy"])
    fig, ax = plt.subplots(figsize=(11, 0.34 * len(rows) + 1.6), layout="constrained")
    for y, r in enumerate(rows):
        color = BACKEND_COLORS.get(r["config"]["backend"], "gray")
        if r["config_name"] in choice["tied"]:
            ax.axhspan(y - 0.5, y + 0.5, color="tab:green", alpha=0.12, lw=0)
        ci = r.get("delta_pp_ci95")
        if ci:
            ax.plot(ci, [y, y], color=color, lw=2)
        ax.plot([r["delta_pp"]], [y], "o", color=color, ms=6)
        if r["config_name"] == choice["pick"]:
            ax.plot([r["delta_pp"]], [y], marker="*", color="gold", ms=18, mec="black", zorder=5)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(range(len(rows)), [r["config_name"] + ("  ◀ pick" if r["config_name"] == choice["pick"] else "")
                                     for r in rows], fontsize=8)
    handles = [plt.Line2D([], [], color=BACKEND_COLORS.get(b, "gray"), marker="o", label=b)
               for b in sorted({r["config"]["backend"] for r in rows})]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.25, label="tied with the best"))
    handles.append(plt.Line2D([], [], color="gold", marker="*", ms=12, mec="black", ls="", label="pick"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    seeds = max((len(r["seeds"]) for r in rows), default=0) or 1
    ax.set(xlabel="Δ top-1 accuracy vs FP32 (percentage points), mean and 95% interval",
           title=f"{model}: every config against FP32 ({view.n_images:,} test images, {seeds} calibration seeds)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_class_deltas(model: str, confusions: list[dict]) -> bytes:
    """Per-class accuracy change vs FP32 for a few configs of one model, grouped by class name."""
    plt = _plt()
    import numpy as np

    classes = confusions[0]["classes"]
    width = 0.8 / len(confusions)
    fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
    for k, c in enumerate(confusions):
        ax.bar(np.arange(len(classes)) + (k - (len(confusions) - 1) / 2) * width,
               [c["per_class_delta_pp"][name] for name in classes], width, label=c["config"])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set(xlabel="class", ylabel="Δ class accuracy vs FP32 (pp)", title=f"{model}: per-class accuracy change")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_confusion(c: dict) -> bytes:
    """FP32 and quantized confusion matrices side by side, and their difference (quantized - FP32)."""
    plt = _plt()
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(20, 6.2), layout="constrained")
    panels = (("FP32", np.array(c["fp32"]), "Blues"), (c["config"], np.array(c["quantized"]), "Blues"),
              ("difference (quantized − FP32)", np.array(c["difference"]), "RdBu"))
    for ax, (title, m, cmap) in zip(axes, panels):
        limit = max(1.0, float(np.abs(m).max()))
        im = ax.imshow(m, cmap=cmap, vmin=-limit if cmap == "RdBu" else 0, vmax=limit)
        for (i, j), v in np.ndenumerate(m):
            if abs(v) >= 0.05:
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_xticks(range(len(c["classes"])), c["classes"], rotation=45, ha="right")
        ax.set_yticks(range(len(c["classes"])), c["classes"])
        ax.set(xlabel="predicted class", ylabel="true class", title=title)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, label="images (mean over seeds)")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fig.suptitle(f"{c['model']}: confusion matrices (means over calibration seeds), {c['config']} vs FP32")
    return _png(fig)


def plot_calibration(entry: dict) -> bytes:
    """Mean accuracy ± std over seeds per calibration-set size, min-max band, FP32 for reference."""
    plt = _plt()
    sizes = [s for s in entry["sizes"] if s["seeds"]]
    n = [s["n"] for s in sizes]
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    ax.fill_between(n, [100 * s["min"] for s in sizes], [100 * s["max"] for s in sizes], alpha=0.2,
                    label="min–max over seeds")
    ax.errorbar(n, [100 * s["mean"] for s in sizes], yerr=[100 * s["std"] for s in sizes], marker="o", capsize=4,
                label="mean ± std over seeds")
    ax.axhline(100 * entry["fp32_accuracy"], color="black", ls="--", lw=1, label="FP32")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(v) for v in n])
    seeds = max(len(s["seeds"]) for s in sizes)
    ax.set(xlabel="calibration images (log scale)", ylabel="top-1 accuracy (%)",
           title=f"{entry['model']} / {entry['config_name']}: accuracy vs calibration-set size ({seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_layers(entry: dict) -> bytes:
    """Per-layer cost and recovery (pp), and the SQNR of each activation against FP32, in model order."""
    plt = _plt()
    import numpy as np

    layers = entry["layers"]
    acts = entry["sqnr"]["activations"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, max(4.5, 0.32 * max(len(layers), len(acts)))),
                                      layout="constrained")
    y = np.arange(len(layers))
    left.barh(y - 0.2, [r["cost_pp"] for r in layers], 0.4, label="cost: only this layer quantized (vs FP32)")
    left.barh(y + 0.2, [r["recovery_pp"] for r in layers], 0.4, label="recovery: only this layer FP32 (vs all quantized)")
    left.set_yticks(y, [r["layer"] for r in layers])
    left.invert_yaxis()
    left.axvline(0, color="black", lw=0.8)
    left.set(xlabel="accuracy (percentage points)", title=f"{entry['model']} / {entry['config_name']}: per-layer sensitivity")
    left.legend(fontsize=8)
    left.grid(axis="x", alpha=0.3)
    right.barh(range(len(acts)), [a["sqnr_db"] for a in acts], color="tab:gray")
    right.set_yticks(range(len(acts)), [a["label"] for a in acts], fontsize=8)
    right.invert_yaxis()
    right.set(xlabel="SQNR vs FP32 activations (dB, higher is better)",
              title=f"activation SQNR over {entry['sqnr']['n_images']} test images")
    right.grid(axis="x", alpha=0.3)
    return _png(fig)


# ---- HTML ---------------------------------------------------------------------------------------------------

NUMERIC = re.compile(r"^([-+−]?[\d.,]+ ?(%|pp)?|—|★)$")


class _Raw(str):
    """Markup that is already HTML: table cells pass it through unescaped."""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(head: list[str], rows: list[list], cls: str = "") -> str:
    def cell(v) -> str:
        text = v if isinstance(v, _Raw) else html.escape(str(v))
        numeric = isinstance(v, (int, float, _Raw)) or NUMERIC.match(str(v))
        return f'<td class="n">{text}</td>' if numeric else f"<td>{text}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return (f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>")


def _fmt(value, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _heat(value: float, shown: float | None = None) -> str:
    """A table cell coloured by a delta in pp, red for losses and blue for gains; it shows `shown` if given."""
    alpha = min(abs(value) / 10, 1)
    color = f"rgba(214,39,40,{alpha:.2f})" if value < 0 else f"rgba(31,119,180,{alpha:.2f})"
    return _Raw(f'<span class="heat" style="background:{color}">{value if shown is None else shown:+.1f}</span>')


def _lead_section(view: View, model: str) -> str:
    """A model's forest plot and its "which to pick" table: what a reader needs first."""
    choice = choices(view)[model]
    if not choice:
        return ""
    mine = [p for p in picks(view) if p["model"] == model]
    table = _table(["criterion", "config", "accuracy, mean ± std over seeds", "Δ vs FP32 (pp) [95% interval]",
                    "size (KiB)", "throughput, batch 256 (images/s)", "× FP32, batch 256",
                    "latency, batch 1 (ms)", "rule"],
                   [[p["criterion"], p["config"], accuracy_text(p), delta_text(p), f"{p['size_bytes'] / 1024:.1f}",
                     speed_text(p["throughput_b256"]), speedup_text(p), speed_text(p["latency_ms_b1_median"]),
                     p["rule"]]
                    for p in mine])
    resolution = choice["resolution"].get("text", "") if choice.get("resolution") else ""
    return "\n".join([f'<h2 id="model-{html.escape(model)}">{html.escape(model)}</h2>',
                      _img(plot_forest(view, model), f"{model} forest plot"),
                      f"<p><b>Pick: {html.escape(choice['pick'])}</b>. {html.escape(choice['rule'])}.</p>",
                      table, f"<p>{html.escape(resolution)}.</p>" if resolution else ""])


def _details(title: str, body: str) -> str:
    return f"<details><summary>{html.escape(title)}</summary>\n{body}\n</details>" if body else ""


def _configs_section(view: View) -> str:
    rows = view.rows
    speed = speed_columns(rows)
    latency = latency_column(rows)
    out = ["<p>★ size: no other row of the model is at least as accurate (mean over seeds) and as small, and better "
           "in one; ★ latency likewise against " + html.escape(SPEED_WORDS.get(latency, "latency (not measured yet: "
                                                                                   "run the benchmark)")) + ".</p>"]
    out.append(_table(["model", "config", "backend", "accuracy, mean ± std over seeds", "Δ vs FP32 (pp) [95% interval]",
                       "tied with best", "size (KiB)", *(SPEED_WORDS[c] for c in speed), "★ size", "★ latency"],
                      [[t["model"], t["config"], t["backend"], accuracy_text(t), delta_text(t),
                        tied_text(t),
                        f"{t['size_bytes'] / 1024:.1f}", *(speed_text(t[c]) for c in speed),
                        "★" if t["pareto_size"] else "", "★" if t["pareto_latency"] else ""] for t in pareto_table(rows)]))
    out.append(_img(plot_tradeoff(rows, "size_bytes", "model file size (KiB)"), "accuracy vs size"))
    if latency:
        out.append(_img(plot_tradeoff(rows, latency, SPEED_WORDS[latency]), f"accuracy vs {latency}"))
    return "\n".join(out)


def _seeds_section(view: View) -> str:
    """Every calibration seed of every config: its score, the images it changed, and McNemar's exact test."""
    rows = []
    for r in view.rows:
        if not is_quantized(r):
            continue
        for seed, s in zip(r["seeds"] or [None], r["per_seed"]):
            rows.append([r["model"], r["config_name"], "—" if seed is None else seed, f"{100 * s['accuracy']:.2f}",
                         s.get("changed_predictions", "—"), s.get("fp32_right_quantized_wrong", "—"),
                         s.get("fp32_wrong_quantized_right", "—"),
                         "—" if s.get("mcnemar_p") is None else f"{s['mcnemar_p']:.3g}"])
    return ("<p>Per calibration seed: the images whose prediction changed against FP32, the discordant ones (right "
            "in FP32 and wrong quantized, and the reverse) and the exact McNemar p-value on them (scipy's binomial "
            "test). A small p for one seed alone is not a finding: the intervals above pool the seeds.</p>"
            + _table(["model", "config", "seed", "accuracy (%)", "changed predictions", "lost (right → wrong)",
                      "gained (wrong → right)", "McNemar p"], rows, "small"))


def _explain_section(view: View) -> str:
    items = explain(view)
    out = []
    if not items:
        return f"<p>No config loses more than {LOSS_PP:g} pp, and every alternate runtime agrees.</p>"
    for e in items:
        out.append(f"<h3>{html.escape(e['model'])}: {html.escape(e['config'])} ({e['delta_pp']:+.2f} pp)</h3><ul>"
                   + "".join(f"<li>{html.escape(s)}</li>" for s in e["sentences"]) + "</ul>")
    return "\n".join(out)


def _comparison_section(view: View) -> str:
    out = ["<p>Each table pairs configs whose records differ in exactly one field, everything else (model, the "
           "other fields) held fixed. Δ = variant − reference, paired on the same test images and calibration seeds, "
           f"with its 95% interval; a pair differs only where the interval excludes 0. One test image is "
           f"{100 / max(view.n_images, 1):.2f} pp.</p>"]
    for t in comparisons(view):
        out.append(f"<h3>{html.escape(t['title'])} ({html.escape(t['backend'])}): {html.escape(t['reference_value'])} "
                   f"→ {html.escape(t['value'])}: {html.escape(t['verdict'])}</h3>")
        out.append(_table(["model", "reference", "variant", "reference accuracy (%)", "variant accuracy (%)",
                           "Δ (pp)", "95% interval (pp)", "verdict"],
                          [[p["model"], p["reference_config"], p["config"], f"{100 * p['reference_accuracy']:.2f}",
                            f"{100 * p['accuracy']:.2f}", _heat(p["delta_pp"]),
                            f"[{p['ci95_pp'][0]:+.2f}, {p['ci95_pp'][1]:+.2f}]" if p.get("ci95_pp") else "—",
                            p["verdict"]] for p in t["pairs"]], "small"))
    return "\n".join(out)


def _classes_section(view: View) -> str:
    confusions = all_confusions(view)
    if not confusions:
        return ""
    classes = confusions[0]["classes"]
    out = ["<p>Per class: the mean change vs FP32 in pp (colour), and the classes whose 95% interval lies below 0 "
           "(the only ones called losing).</p>",
           _table(["model", "config", *classes, "losing detectably"],
                  [[c["model"], c["config"], *(_heat(c["per_class_delta_pp"][k]) for k in classes),
                   ", ".join(loser["class"] for loser in c["most_lost"]) or "none"]
                   for c in confusions], "small")]
    by_config = {(r["model"], r["config_name"]): r for r in view.rows}
    for model in sorted({c["model"] for c in confusions}):
        mine = sorted((c for c in confusions if c["model"] == model),
                      key=lambda c: by_config[(model, c["config"])]["accuracy"])
        chosen = [c for c in mine[:DETAIL_PER_MODEL] if by_config[(model, c["config"])].get("delta_pp", 0) < 0]
        chosen += [mine[-1]] if mine[-1] not in chosen else []
        out.append(f"<h3>{html.escape(model)}: the {len(chosen) - 1} most-losing configs and the best</h3>")
        out.append(_img(plot_class_deltas(model, chosen), f"{model} per-class deltas"))
        for c in chosen:
            out.append(f"<p><b>{html.escape(c['config'])}</b>: {html.escape(losers_text(c))}.</p>")
            out.append(_img(plot_confusion(c), f"{model} {c['config']} confusion matrices"))
    return "\n".join(out)


def _calibration_section(entries: dict) -> str:
    if not entries:
        return ""
    out = ["<p>Each size is quantized once per seed, each seed a different "
           "stratified sample of the training split; std is the sample standard deviation over seeds.</p>"]
    for entry in entries.values():
        out.append(f"<h3>{html.escape(entry['model'])} / {html.escape(entry['config_name'])} "
                   f"(FP32 {100 * entry['fp32_accuracy']:.2f}%)</h3>")
        out.append(_table(["images", "seeds", "mean", "std", "min", "max", "Δ mean vs FP32"],
                          [[s["n"], len(s["seeds"]), f"{100 * s['mean']:.2f}%", f"{100 * s['std']:.2f} pp",
                            f"{100 * s['min']:.2f}%", f"{100 * s['max']:.2f}%", f"{s['mean_delta_pp']:+.2f} pp"]
                           for s in entry["sizes"] if s["seeds"]], "small"))
        if any(s["seeds"] for s in entry["sizes"]):
            out.append(_img(plot_calibration(entry), f"{entry['config_name']} calibration-size curve"))
    return "\n".join(out)


def _layers_section(entries: dict) -> str:
    if not entries:
        return ""
    out = []
    for entry in entries.values():
        top = ", ".join(f"{r['layer']} ({r['cost_pp']:+.2f} pp)" for r in
                        sorted(entry["layers"], key=lambda r: -r["cost_pp"])[:3])
        out.append(f"<h3>{html.escape(entry['model'])} / {html.escape(entry['config_name'])}: FP32 "
                   f"{100 * entry['fp32_accuracy']:.2f}%, all layers quantized {100 * entry['quantized_accuracy']:.2f}%"
                   "</h3>")
        out.append(f"<p>Method: {html.escape(entry['method'])}; SQNR: {html.escape(entry['sqnr']['method'])}. "
                   f"Most costly alone: {html.escape(top)}.</p>")
        out.append(_table(["layer", "op", "only it quantized", "cost pp", "only it FP32", "recovery pp", "weight SQNR dB"],
                          [[r["layer"], r["op_type"], f"{100 * r['only_this_quantized']['accuracy']:.2f}%", _heat(-r["cost_pp"], r["cost_pp"]),
                            f"{100 * r['all_but_this_quantized']['accuracy']:.2f}%", f"{r['recovery_pp']:+.2f}",
                            _fmt(r["weight_sqnr_db"], ".1f")] for r in entry["layers"]], "small"))
        out.append(_img(plot_layers(entry), f"{entry['config_name']} per-layer sensitivity"))
    return "\n".join(out)


def _environment(view: View) -> str:
    out = []
    for model, row in sorted(fp32_rows(view.rows).items()):
        env = row.get("environment", {})
        cpu = env.get("cpu", {})
        out.append(f"<p>{html.escape(model)}: {row['n_images']} test images from {html.escape(row.get('dataset', '?'))}; "
                   f"CPU {html.escape(str(cpu.get('model')))} (VNNI: {'yes' if cpu.get('vnni') else 'no'}), "
                   f"{env.get('threads')} threads; " + html.escape(", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())) + "</p>")
    if view.problems:
        out.append("<ul>" + "".join(f"<li>{html.escape(p['key'])}: " + html.escape(
            p.get("stale") or p.get("not_applicable") or (p.get("error") or "no score").splitlines()[0]) + "</li>"
            for p in view.problems) + "</ul>")
    others = [v for v in view.available if (v["environment"], v["dataset"]) != (view.environment, view.dataset)]
    if others:
        out.append("<p>Other results in the file, not shown here (<code>quant-explorer report --environment ... "
                   "--dataset ...</code>):</p><ul>" + "".join(
                       f"<li>{html.escape(v['environment'])} / {html.escape(str(v['dataset_name']))} "
                       f"({v['n_images']} images): {v['rows']} rows</li>" for v in others) + "</ul>")
    return "\n".join(out)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td,th{text-align:left}td.n{text-align:right}table.small{font-size:12px}img{max-width:100%;display:block;margin:1em 0}
.heat{display:inline-block;min-width:3em;text-align:right;padding:0 3px}h2{border-bottom:2px solid #ddd;margin-top:2em}
.banner{background:#f3f6fa;border-left:4px solid #1f77b4;padding:.6em 1em}
details{margin:1em 0}summary{font-size:1.3em;font-weight:600;cursor:pointer;border-bottom:2px solid #ddd}"""


def render_html(view: View, calibration: dict, layers: dict) -> str:
    models = sorted({r["model"] for r in view.rows})
    quantized = sum(is_quantized(r) for r in view.rows)
    body = "\n".join([
        f"<h1>Quantization report: {html.escape(', '.join(models))}</h1>",
        f'<p class="banner">{html.escape(view.banner())}.</p>',
        f"<p>{quantized} quantized configs and {len(models)} FP32 references. Every accuracy is top-1 on the whole "
        "evaluation set, the mean over calibration seeds; Δ is the paired difference from the same model's FP32 "
        "row in percentage points (pp), with its 95% interval from a bootstrap over test images and seeds. Configs "
        "whose interval against the best includes 0 tie with it; the pick is the fastest of them, then the "
        "smallest.</p>",
        *(_lead_section(view, model) for model in models),
        _details("Every config: accuracy, size, speed and the pareto fronts", _configs_section(view)),
        _details("Every calibration seed: changed predictions and McNemar's test", _seeds_section(view)),
        _details(f"Configs losing more than {LOSS_PP:g} points, and runtimes that disagree", _explain_section(view)),
        _details("Scheme comparisons", _comparison_section(view)),
        _details("Per-class accuracy change vs FP32", _classes_section(view)),
        _details("Calibration-set size", _calibration_section(calibration)),
        _details("Per-layer sensitivity", _layers_section(layers)),
        _details("Environment and unscored rows", _environment(view))])
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>quant-explorer report</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


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


# ---- browser check ------------------------------------------------------------------------------------------

CHECK_SCRIPT = """<script>window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre"); out.id = "qe-render-check";
  out.textContent = JSON.stringify({images: images.length, broken: broken});
  document.body.appendChild(out);
});</script>"""


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def render_check(index: Path, screenshot: Path | None = None, timeout: int = 180) -> dict:
    """Load the report in headless Chromium: how many images, which failed to decode; optionally a screenshot."""
    browser = find_chromium()
    if browser is None:
        raise UserError("no Chromium found (looked for " + ", ".join(CHROMIUM) + "); install it, e.g. "
                        "`apt-get install chromium`")
    with tempfile.TemporaryDirectory(prefix="qe-render-") as tmp:
        page = Path(tmp) / "check.html"
        page.write_text(Path(index).read_text().replace("</body>", CHECK_SCRIPT + "</body>"))

        def chromium(*args: str) -> subprocess.CompletedProcess:
            profile = tempfile.mkdtemp(dir=tmp)
            return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                                  capture_output=True, text=True, timeout=timeout)

        dom = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri()).stdout
        start = dom.find('<pre id="qe-render-check">')
        if start < 0:
            raise RuntimeError(f"Chromium did not run the page's check script; its output began: {dom[:300]!r}")
        result = json.loads(html.unescape(dom[dom.index(">", start) + 1:dom.index("</pre>", start)]))
        if screenshot is not None:
            chromium("--window-size=1400,2200", f"--screenshot={Path(screenshot).resolve()}", Path(index).resolve().as_uri())
            if not Path(screenshot).is_file():
                raise RuntimeError(f"Chromium wrote no screenshot at {screenshot}")
    return {**result, "screenshot": str(screenshot) if screenshot else None}
