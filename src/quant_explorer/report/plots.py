"""The report's plots, each returned as PNG bytes for the HTML to embed.

They live apart from the HTML because they are the only part that needs matplotlib (imported lazily, with the
Agg backend, so `build` works headless and the rest of the package never pays for the import) and because each
one draws data the analysis already computed: nothing here decides what is shown, only how.
"""

from __future__ import annotations

import io

from ..analysis import is_quantized
from ..backends import BACKENDS
from ..analysis.pareto import pareto_front
from ..analysis.summary import View, choices

ZOOM_PP = 8  # accuracy plots show this many points below the best row; rows further down sit on the floor


def _color(backend: str) -> str:
    """The backend's own colour; a row of a backend no longer registered is drawn gray."""
    return BACKENDS[backend].color if backend in BACKENDS else "tab:gray"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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
            bx, by, group = zip(*((x, y, r) for x, y, r in zip(xs, ys, mine) if r["config"]["backend"] == backend))
            reference = not is_quantized(group[0])  # a backend quantizes all its rows or none: FP32 is a star
            ax.scatter(bx, by, color=_color(backend), label=backend, marker="*" if reference else "o",
                       s=160 if reference else 40, zorder=3)
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
        color = _color(r["config"]["backend"])
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
    handles = [plt.Line2D([], [], color=_color(b), marker="o", label=b)
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
    panels = (("FP32", np.array(c["baseline"]), "Blues"), (c["config"], np.array(c["quantized"]), "Blues"),
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
