"""The report's HTML: one self-contained page for one `summary.View`, every plot embedded as a base64 PNG.

The page leads, per model, with a forest plot of every config's delta vs FP32 and its 95% interval, then the
"which to pick" table; the details (all configs, trade-offs, seeds, explanations, comparisons, classes, studies,
environment) follow collapsed. The calibration-size and per-layer sections appear only when those studies exist.
It is apart from the plots and the browser check so that what the page says (its sections, tables and wording)
can be read and changed in one place, without matplotlib or Chromium in view.
"""

from __future__ import annotations

import base64
import html
import re

from ..analysis import fp32_rows, is_quantized
from ..analysis.comparisons import all_confusions, comparisons, losers_text
from ..analysis.explain import LOSS_PP, explain
from ..analysis.pareto import (SPEED_WORDS, accuracy_text, delta_text, latency_column, pareto_table, picks,
                               speed_columns, speed_text, speedup_text, tied_text)
from ..analysis.summary import View, choices
from .plots import plot_calibration, plot_class_deltas, plot_confusion, plot_forest, plot_layers, plot_tradeoff

DETAIL_PER_MODEL = 3  # confusion heatmaps and class bars: this many worst configs per model, plus the best
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
    if not items:
        return f"<p>No config loses more than {LOSS_PP:g} pp, and every alternate runtime agrees.</p>"
    return "\n".join(f"<h3>{html.escape(e['model'])}: {html.escape(e['config'])} ({e['delta_pp']:+.2f} pp)</h3><ul>"
                     + "".join(f"<li>{html.escape(s)}</li>" for s in e["sentences"]) + "</ul>" for e in items)


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
                            "—" if r["weight_sqnr_db"] is None else f"{r['weight_sqnr_db']:.1f}"]
                           for r in entry["layers"]], "small"))
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
        out.append("<ul>" + "".join(f"<li>{html.escape(p['key'])}: {html.escape(view.why_unscored(p))}</li>"
                                    for p in view.problems) + "</ul>")
    others = view.others
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
    """The whole page for one view and the studies measured alike to it (calibration size, per layer)."""
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
