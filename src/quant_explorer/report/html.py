"""The report's HTML: one self-contained page for one `summary.View`, every plot embedded as a base64 PNG.

The page leads with the answer: one block per model (the config to ship, its runtime, Δ with its interval,
speed against the fastest FP32 runtime, size, the classes that lose detectably, the command that reproduces it
and where its saved model is), then a table of contents, then per model a forest plot zoomed on the decision
region and the "which to pick" table; the details (all configs, trade-offs, seeds, explanations, comparisons,
classes, each study kind, environment) follow collapsed. It names no absolute path: it can be mailed anywhere. A
study's section (its kind's own heading, text, table and plot: `studies.Study`) appears only when it has entries.
It is apart from the plots and the browser check so that what the page says (its sections, tables and wording)
can be read and changed in one place, without matplotlib or Chromium in view.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Sequence

from ..analysis import fp32_rows, is_quantized
from ..analysis.comparisons import all_confusions, comparisons, losers_text
from ..analysis.explain import LOSS_PP, explain
from ..analysis.pareto import latency_column, pareto_table, picks, speed_columns
from ..analysis.pick import choices
from ..analysis.rows import size_vs_fp32
from ..analysis.view import View, scope
from ..bench_entry import WORDS, LoadRecord
from ..stats import ALPHA, CORRECTION_NAME, level_text
from ..studies.base import Delta, Study, StudyEntry
from .answer import Answer, NoAnswer, answers, dataset_label, made_on, today
from .plots import plot_class_deltas, plot_confusion, plot_forest, plot_tradeoff
from .text import accuracy_text, delta_text, in_set_text, speed_text, speedup_text

DETAIL_PER_MODEL = 3  # confusion heatmaps and class bars: this many worst configs per model, plus the best
NUMERIC = re.compile(r"^([-+−]?[\d.,]+ ?(%|pp)?|—|★)$")
# An absolute path in running text (not inside a word, a number like 872/1017, or base64 image data).
ABSOLUTE_PATH = re.compile(r"(?<![\w:/+=.<\-])/(?:[\w.@+\-]+/)+[\w.@+\-]+")


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
    return (f'<div class="wide"><table class="{cls}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table></div>")


def _heat(value: float, shown: float | None = None) -> str:
    """A table cell coloured by a delta in pp, red for losses and blue for gains; it shows `shown` if given."""
    alpha = min(abs(value) / 10, 1)
    color = f"rgba(214,39,40,{alpha:.2f})" if value < 0 else f"rgba(31,119,180,{alpha:.2f})"
    return _Raw(f'<span class="heat" style="background:{color}">{value if shown is None else shown:+.1f}</span>')


def _speed_cell(value: float | None, ratio_text: str, unit: str) -> str:
    return "—" if value is None else f"{speed_text(value)} {unit} ({ratio_text})"


def _lead_section(view: View, model: str) -> str:
    """A model's forest plot and its "which to pick" table."""
    choice = choices(view)[model]
    if not choice:
        return ""
    table = _table(["", "config", "runtime", "accuracy ± sd over seeds", f"Δ vs FP32 pp [{level_text()}]",
                    "size KiB", "batch 1 (× fastest FP32)", "batch 256 (× fastest FP32)"],
                   [[p.criterion, r.config_name, r.runtime or "—", accuracy_text(r), delta_text(r),
                     f"{r.size_bytes / 1024:.1f}", _speed_cell(r.speed.latency_ms_b1_median, speedup_text(r, 1), "ms"),
                     _speed_cell(r.speed.throughput_b256, speedup_text(r), "img/s")]
                    for p in picks(view) if p.model == model for r in [p.row]])
    identical = f"<p>{html.escape(choice.identical_text)}.</p>" if choice.identical else ""
    resolution = choice.resolution.get("text", "")
    forest = _img(plot_forest(view, model), f"{model} forest plot") if any(
        r.delta_pp is not None for r in view.rows if r.model == model and is_quantized(r)) else ""
    return "\n".join([f'<h2 id="model-{html.escape(model)}">{html.escape(model)}: every config against FP32</h2>',
                      forest,
                      f"<p><b>Pick ({html.escape(choice.objective)}): {html.escape(choice.pick or 'none')}</b>. "
                      f"{html.escape(choice.rule)}.</p>", identical,
                      table, f"<p>{html.escape(resolution)}.</p>" if resolution else ""])


def _breakable(text: str) -> str:
    """Escaped, with line-break opportunities after _ and / so a long config name or path wraps there; an
    option (`--configs`) is never split at its hyphens."""
    return " ".join(f'<span class="opt">{html.escape(t)}</span>' if t.startswith("-") else
                    html.escape(t).replace("_", "_<wbr>").replace("/", "/<wbr>") for t in text.split(" "))


def _answer_block(model: str, a: Answer | NoAnswer) -> str:
    """One model's answer: what to ship and what it costs and buys, the command and the saved model."""
    if not isinstance(a, Answer):
        return (f'<section class="answer" id="answer-{html.escape(model)}"><h2>{html.escape(model)}</h2>'
                f"<p>No pick: {html.escape(a.rule or '')}.</p></section>")
    ci = a.delta_pp_ci
    delta = "—" if a.delta_pp is None else (f"<b>{a.delta_pp:+.2f} pp</b>" + (
        f" [{ci[0]:+.2f}, {ci[1]:+.2f}] {level_text()} interval{scope(a.delta_seed_part)}" if ci else ""))
    seeds = len(a.seeds)
    accuracy = f"{100 * a.accuracy:.2f}%" + (f" ± {100 * a.accuracy_std:.2f} over {seeds} seeds" if seeds > 1 else "")
    fp32 = (f" vs FP32 {100 * a.fp32_accuracy:.2f}% in {html.escape(a.fp32_runtime or '?')}"
            if a.fp32_accuracy is not None else "")

    def speed(value, ratio, against, unit):
        if value is None:
            return "not benchmarked (<code>quant-explorer bench</code>)"
        said = f"{speed_text(value)} {unit}"
        return said + (f", <b>{ratio:.2f}x</b> vs {html.escape(against.removeprefix('the '))}" if ratio else "")

    smaller = f" ({size_vs_fp32(a.size_bytes, a.fp32_size_bytes)})" if a.fp32_size_bytes else ""
    losing = ", ".join(f"{html.escape(c['class'])} {c['delta_pp']:+.1f} pp [{c['ci_pp'][0]:+.1f}, {c['ci_pp'][1]:+.1f}]"
                       + (f" (mostly now {html.escape(c['mostly_to'])})" if c.get("mostly_to") else "")
                       for c in a.losing_classes) or f"none ({CORRECTION_NAME} over the classes, α = {ALPHA:g})"
    where = "" if a.artifact_here else " <small>(not in this artifacts folder: the command writes it)</small>"
    load = a.load or LoadRecord()
    batch1 = speed(a.latency_ms_b1, a.speedup_b1, a.speedup_b1_against, "ms") + (
        f" <small>(run-to-run spread {a.latency_ms_b1_spread:.2g} ms)</small>"
        if a.latency_ms_b1_spread is not None and a.latency_ms_b1 is not None else "") + (
        f" with {html.escape(load.setting)}" if load.setting else "")
    items = [("Δ accuracy", f"{delta}<br><small>{accuracy}{fp32}</small>"),
             ("batch 1", batch1),
             ("batch 256", speed(a.throughput_b256, a.speedup_b256, a.speedup_b256_against, "images/s")),
             ("size", f"{a.size_bytes / 1024:,.0f} KiB{smaller}"),
             ("classes losing detectably", losing),
             *([("on each CPU class", html.escape(a.classes_text.split(": ", 1)[1]))] if a.classes_text else []),
             ("reproduce", f"<code>{_breakable(a.reproduce)}</code>"),
             ("saved model", f"<code>{_breakable(a.artifact)}</code>{where}"),
             *([("not scored", "; ".join(html.escape(c) for c in a.not_scored))] if a.not_scored else []),
             *([("load it as timed", f"<pre><code>{html.escape(load.code)}</code></pre>")] if load.code else [])]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return (f'<section class="answer" id="answer-{html.escape(model)}"><h2>{html.escape(model)}: ship '
            f'<span class="pick">{_breakable(a.pick)}</span> in {html.escape(a.runtime or "?")}</h2>'
            f'<table class="kv">{rows}</table>'
            f'<p class="why"><a href="#model-{html.escape(model)}">why this one</a></p></section>')


def _details(anchor: str, title: str, body: str) -> str:
    return f'<details id="{anchor}"><summary>{html.escape(title)}</summary>\n{body}\n</details>' if body else ""


def _configs_section(view: View) -> str:
    rows = view.rows
    speed = speed_columns(rows)
    latency = latency_column(rows)
    out = ["<p>★ size: no other row of the model is at least as accurate (mean over seeds) and as small, and better "
           "in one; ★ latency likewise against " + html.escape(WORDS.get(latency, "latency (not measured yet: run "
                                                                             "the benchmark)")) + ".</p>"]
    out.append(_table(["model", "config", "backend", "runtime", "accuracy, mean ± std over seeds",
                       f"Δ vs FP32 (pp) [{level_text()} interval]", "in the set for the best", "size (KiB)",
                       *(WORDS[c] for c in speed), "★ size", "★ latency"],
                      [[r.model, r.config_name, r.config["backend"], r.runtime or "—", accuracy_text(r), delta_text(r),
                        in_set_text(r), f"{r.size_bytes / 1024:.1f}", *(speed_text(getattr(r.speed, c)) for c in speed),
                        "★" if t.on_size else "", "★" if t.on_latency else ""]
                       for t in pareto_table(rows) for r in [t.row]]))
    for model in sorted({r.model for r in rows}):
        out.append(_img(plot_tradeoff(rows, "size_bytes", "model file size (KiB)", model), f"{model} accuracy vs size"))
        if latency and any(isinstance(r.cost(latency), (int, float)) for r in rows if r.model == model):
            out.append(_img(plot_tradeoff(rows, latency, WORDS[latency], model),
                            f"{model} accuracy vs {latency}"))
    return "\n".join(out)


def _p_text(p: float | None) -> str:
    return "—" if p is None else "< 0.001" if p < 0.001 else f"{p:.3g}"


def _seeds_section(view: View) -> str:
    """Per config, its calibration seeds summarised: the spread of accuracy, the images changed, and how many
    seeds McNemar's exact test flags on their own (the per-seed table is in `summary --json`)."""
    rows = []
    for r in view.rows:
        if not is_quantized(r):
            continue
        seeds = r.per_seed
        mean = lambda k, seeds=seeds: sum(getattr(s, k) or 0 for s in seeds) / max(len(seeds), 1)  # noqa: E731
        ps = [s.mcnemar_p for s in seeds if s.mcnemar_p is not None]
        rows.append([r.model, r.config_name, len(seeds), f"{100 * r.accuracy_min:.2f}–{100 * r.accuracy_max:.2f}",
                     f"{mean('changed_predictions'):.1f}", f"{mean('fp32_right_quantized_wrong'):.1f}",
                     f"{mean('fp32_wrong_quantized_right'):.1f}",
                     f"{sum(p < ALPHA for p in ps)} of {len(ps)}" if ps else "—", _p_text(min(ps) if ps else None)])
    return ("<p>Per config, over its calibration seeds: the range of accuracy, the mean number of test images whose "
            "prediction changed against FP32, of those lost (right in FP32, wrong quantized) and gained, and how "
            f"many seeds McNemar's exact test on the discordant images flags at p &lt; {ALPHA:g} on their own (with "
            "the smallest p). One seed alone is not a finding: the intervals above pool the seeds. Every seed's "
            "numbers are in <code>quant-explorer summary --json</code> (<code>rows[].per_seed</code>).</p>"
            + _table(["model", "config", "seeds", "accuracy range (%)", "changed (mean)", "lost (mean)",
                      "gained (mean)", f"seeds with p < {ALPHA:g}", "smallest p"], rows, "small"))


def _explain_section(view: View) -> str:
    items = explain(view)
    if not items:
        return f"<p>No config loses more than {LOSS_PP:g} pp, and every alternate runtime agrees.</p>"
    return "\n".join(f"<h3>{html.escape(e['model'])}: {html.escape(e['config'])} ({e['delta_pp']:+.2f} pp)</h3><ul>"
                     + "".join(f"<li>{html.escape(s)}</li>" for s in e["sentences"]) + "</ul>" for e in items)


def _comparison_section(view: View) -> str:
    out = ["<p>Each table pairs configs whose records differ in exactly one field, everything else (model, the "
           "other fields) held fixed. Δ = variant − reference, paired on the same test images and calibration seeds, "
           f"with its {level_text()} interval; a pair differs only where its p-value survives {CORRECTION_NAME}'s "
           "correction over every pair of the view. One test image is "
           f"{100 / max(view.n_images, 1):.2f} pp.</p>"]
    for t in comparisons(view):
        out.append(f"<h3>{html.escape(t['title'])} ({html.escape(t['backend'])}): {html.escape(t['reference_value'])} "
                   f"→ {html.escape(t['value'])}: {html.escape(t['verdict'])}</h3>")
        out.append(_table(["model", "reference", "variant", "reference accuracy (%)", "variant accuracy (%)",
                           "Δ (pp)", f"{level_text()} interval (pp)", f"{t['correction']} p", "verdict"],
                          [[p["model"], p["reference_config"], p["config"], f"{100 * p['reference_accuracy']:.2f}",
                            f"{100 * p['accuracy']:.2f}", _heat(p["delta_pp"]),
                            f"[{p['ci_pp'][0]:+.2f}, {p['ci_pp'][1]:+.2f}]" if p.get("ci_pp") else "—",
                            _p_text(p.get("p_adjusted")),
                            p["verdict"]] for p in t["pairs"]], "small"))
    return "\n".join(out)


def _classes_section(view: View) -> str:
    confusions = all_confusions(view)
    if not confusions:
        return ""
    classes = confusions[0]["classes"]
    out = ["<p>Per class: the mean change vs FP32 in pp (colour), and the classes that lose detectably: below 0 "
           f"with a p-value that survives {CORRECTION_NAME}'s correction over the config's classes (the only ones "
           "called losing).</p>",
           _table(["model", "config", *classes, "losing detectably"],
                  [[c["model"], c["config"], *(_heat(c["per_class_delta_pp"][k]) for k in classes),
                   ", ".join(loser["class"] for loser in c["most_lost"]) or "none"]
                   for c in confusions], "small")]
    by_config = {(r.model, r.config_name): r for r in view.rows}
    for model in sorted({c["model"] for c in confusions}):
        mine = sorted((c for c in confusions if c["model"] == model),
                      key=lambda c: by_config[(model, c["config"])].accuracy)
        chosen = [c for c in mine[:DETAIL_PER_MODEL] if (by_config[(model, c["config"])].delta_pp or 0) < 0]
        chosen += [mine[-1]] if mine[-1] not in chosen else []
        out.append(f"<h3>{html.escape(model)}: the {len(chosen) - 1} most-losing configs and the best</h3>")
        out.append(_img(plot_class_deltas(model, chosen), f"{model} per-class deltas"))
        for c in chosen:
            out.append(f"<p><b>{html.escape(c['config'])}</b>: {html.escape(losers_text(c))}.</p>")
            out.append(_img(plot_confusion(c), f"{model} {c['config']} confusion matrices"))
    return "\n".join(out)


def _study_section(kind: type[Study], entries: dict[str, StudyEntry]) -> str:
    """A study kind's section: its intro, then per current entry its heading, text, table and plot."""
    if not entries:
        return ""
    out = [f"<p>{html.escape(kind.intro)}</p>"] if kind.intro else []
    for entry in entries.values():
        head, rows = kind.table(entry)
        text = kind.text(entry)
        plot = kind.plot(entry)
        out += [f"<h3>{html.escape(kind.heading(entry))}</h3>", f"<p>{html.escape(text)}.</p>" if text else "",
                _table(head, [[_heat(v) if isinstance(v, Delta) else v for v in row] for row in rows], "small"),
                _img(plot, f"{entry.model} {entry.config_name} {kind.figure}") if plot else ""]
    return "\n".join(part for part in out if part)


def _environment(view: View) -> str:
    out = []
    for model, row in sorted(fp32_rows(view.rows).items()):
        env = row.environment or {}
        cpu = env.get("cpu", {})
        out.append(f"<p>{html.escape(model)}: {row.n_images} test images from "
                   f"{html.escape(dataset_label(row.dataset or '?'))}; "
                   f"CPU {html.escape(str(cpu.get('model')))} (VNNI: {'yes' if cpu.get('vnni') else 'no'}), "
                   f"{env.get('threads')} threads; "
                   + html.escape(", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())) + "</p>")
    if view.problems:
        out.append("<ul>" + "".join(f"<li>{html.escape(p.key)}: {html.escape(p.why)}</li>"
                                    for p in view.problems) + "</ul>")
    others = view.others
    if others:
        out.append("<p>Other results in the file, not shown here (<code>quant-explorer report --environment ... "
                   "--dataset ...</code>):</p><ul>" + "".join(
                       f"<li>{html.escape(v['environment'])} / {html.escape(dataset_label(v['dataset_name']))} "
                       f"({v['n_images']} images): {v['rows']} rows</li>" for v in others) + "</ul>")
    return "\n".join(out)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1500px;margin:1.2em auto;padding:0 1em;color:#222}
h1{margin:.2em 0 .1em;font-size:1.7em}.made{color:#555;margin:0 0 .8em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right}table.small{font-size:12px}img{max-width:100%;height:auto;display:block;margin:1em 0}
.wide{max-width:100%;overflow-x:auto}code{overflow-wrap:anywhere;font-size:.92em}.opt{white-space:nowrap}
.heat{display:inline-block;min-width:3em;text-align:right;padding:0 3px}h2{border-bottom:2px solid #ddd;margin-top:2em}
.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(290px,1fr));gap:12px;margin:0 0 1em}
.answer{border:1px solid #c9d6e3;border-top:5px solid #1f77b4;border-radius:6px;padding:.4em .9em;background:#fafcfe;
min-width:0}.answer h2{font-size:1.15em;margin:.3em 0 .4em;border:0;overflow-wrap:anywhere}
.answer .pick{font-family:ui-monospace,monospace;background:#fff3c4;padding:0 .2em}
table.kv{margin:0;font-size:14px;width:100%}table.kv th{width:7.5em;vertical-align:top;font-weight:600;color:#444}
table.kv th,table.kv td{border:0;border-top:1px solid #e3e9ef;padding:4px 6px;overflow-wrap:anywhere}
.why{margin:.3em 0;font-size:14px}nav.toc{columns:2 300px;font-size:14px;background:#f6f6f6;padding:.5em 1em}
nav.toc a{display:block;padding:1px 0}.note{background:#f3f6fa;border-left:4px solid #1f77b4;padding:.4em 1em;
font-size:14px}details{margin:1em 0}
summary{font-size:1.3em;font-weight:600;cursor:pointer;border-bottom:2px solid #ddd}"""

SECTIONS = (("every-config", "Every config: accuracy, size, speed and the pareto fronts"),
            ("seeds", "Calibration seeds: changed predictions and McNemar's test, summarised"),
            ("losses", f"Configs losing more than {LOSS_PP:g} points, and runtimes that disagree"),
            ("comparisons", "Scheme comparisons"),
            ("classes", "Per-class accuracy change vs FP32"),
            ("cpu-classes", "Each recipe on each CPU class (native and emulated)"))
ENVIRONMENT = ("environment", "Environment and unscored rows")  # the last section, after the studies'


def _no_absolute_paths(page: str) -> str:
    """Every absolute path left in running text (a note naming a data directory, an error message) shown by its
    last two parts: the page names no machine's directories."""
    return ABSOLUTE_PATH.sub(lambda m: "…/" + "/".join(m.group(0).split("/")[-2:]), page)


def _cpu_classes_section(classes: dict) -> str:
    """Config x CPU class, each cell the shipped Δ with its interval in that class's own view."""
    from ..analysis.classes import table_rows

    return "".join(f"<h3>{html.escape(model)}</h3>" + _table(["config", *t["classes"]], table_rows(t))
                   for model, t in classes.items())


def render_html(view: View, studies: Sequence[tuple[type[Study], dict[str, StudyEntry]]] = (),
                classes: dict | None = None) -> str:
    """The whole page for one view, each study kind with its entries measured alike to the view (`studies`, in
    section order) and the CPU-class matrix (`analysis.classes`)."""
    models = sorted({r.model for r in view.rows})
    quantized = sum(is_quantized(r) for r in view.rows)
    found = answers(view)
    sections = [(anchor, title, body) for (anchor, title), body in zip(SECTIONS, [
        _configs_section(view), _seeds_section(view), _explain_section(view), _comparison_section(view),
        _classes_section(view), _cpu_classes_section(classes or {})])]
    sections += [(kind.anchor, kind.title, _study_section(kind, entries)) for kind, entries in studies]
    sections.append((*ENVIRONMENT, _environment(view)))
    toc = "".join(f'<a href="#answer-{html.escape(m)}">Answer: {html.escape(m)}</a>' for m in models)
    toc += "".join(f'<a href="#model-{html.escape(m)}">{html.escape(m)}: every config against FP32</a>' for m in models)
    toc += "".join(f'<a href="#{anchor}">{html.escape(title)}</a>' for anchor, title, body in sections if body)
    body = "\n".join([
        f"<h1>Which 8-bit recipe to ship: {html.escape(', '.join(models))}</h1>",
        f'<p class="made">Made on {html.escape(made_on(view))}; report written {today()}. '
        f"{view.n_images:,} test images ({html.escape(dataset_label(view.dataset_name))}). Accuracy is each "
        "config's in the runtime it ships in; Δ negative = a loss."
        + "".join(f" <b>{html.escape(note)}.</b>" for note in view.notes) + "</p>",
        '<div class="answers">' + "".join(_answer_block(m, found[m]) for m in models) + "</div>",
        f'<nav class="toc"><b>Contents</b>{toc}</nav>',
        *(f'<p class="note">{html.escape(line)}.</p>' for line in view.set_aside_lines()),
        f"<p>{quantized} quantized configs and {len(models)} FP32 references. Every accuracy is top-1 on the whole "
        "evaluation set, the mean over calibration seeds; Δ is the paired difference from the same model's FP32 "
        f"row in percentage points (pp), with its {level_text()} interval over test images and seeds (Student's t, "
        f"Welch-Satterthwaite degrees of freedom). The {level_text()} confidence set for the best holds the configs "
        "no other config beats by more than the noise allows, family-wise over every pair; configs with identical "
        f"predictions on every seed count once. The pick is the config of the set best on the objective "
        f"({html.escape(view.objective)}) in the runtime it ships in; speed ratios are against the fastest FP32 "
        "runtime.</p>",
        *(_lead_section(view, model) for model in models),
        *(_details(anchor, title, body) for anchor, title, body in sections)])
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>quant-explorer report</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
    return _no_absolute_paths(page)
