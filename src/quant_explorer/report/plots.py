"""The report's plots, each returned as PNG bytes for the HTML to embed.

They live apart from the HTML because they are the only part that needs matplotlib (`figures.py`, shared with the
studies' own plots) and because each one draws data the analysis already computed: nothing here decides what is
shown, only how.
"""

from __future__ import annotations

import numpy as np

from ..analysis import is_quantized
from ..analysis.pareto import pareto_front
from ..analysis.pick import choices
from ..analysis.view import PooledRow, View
from ..backends import BACKENDS
from ..figures import FONT, png, pyplot
from ..stats import level_text

ZOOM_PP = 8  # accuracy plots show this many points below the best row; rows further down sit on the floor
FOREST_MARGIN_PP = 1.0  # the forest plot shows the confidence set's intervals, 0, and this much around them


def _color(backend: str) -> str:
    """The backend's own colour; a row of a backend no longer registered is drawn gray."""
    return BACKENDS[backend].color if backend in BACKENDS else "tab:gray"


def plot_tradeoff(rows: list[PooledRow], cost: str, xlabel: str, model: str) -> bytes:
    """One model's accuracy against a cost: every config, the pareto front drawn and its points named, the pick
    starred (one figure per model, so no panel is ever empty)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 5.6), layout="constrained")
    mine = [r for r in rows if r.model == model and isinstance(r.cost(cost), (int, float))]
    scale = 1 / 1024 if cost == "size_bytes" else 1
    xs, ys = [r.cost(cost) * scale for r in mine], [100 * r.accuracy for r in mine]
    for backend in sorted({r.config["backend"] for r in mine}):
        bx, by, group = zip(*((x, y, r) for x, y, r in zip(xs, ys, mine) if r.config["backend"] == backend))
        reference = not is_quantized(group[0])  # a backend quantizes all its rows or none: FP32 is a star
        ax.scatter(bx, by, color=_color(backend), label=backend, marker="*" if reference else "o",
                   s=160 if reference else 40, zorder=3)
    front = sorted((x, y, r.config_name) for x, y, r, on in
                   zip(xs, ys, mine, pareto_front([(r.accuracy, r.cost(cost)) for r in mine])) if on)
    ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="tab:red", lw=1.5,
            label="pareto front", zorder=2)
    floor = max(min(ys), max(ys) - ZOOM_PP)  # far-off rows would squash the interesting part
    for k, (x, y, name) in enumerate(sorted(front, key=lambda f: -f[1])):  # a label column, top row = top point
        ax.annotate(name, (x, max(y, floor)), textcoords="axes fraction", xytext=(0.42, 0.93 - 0.065 * k),
                    arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.6})
    picked = [(x, y, r) for x, y, r in zip(xs, ys, mine) if r.pick]
    for x, y, r in picked:
        ax.scatter([x], [max(y, floor)], marker="*", s=420, color="gold", edgecolor="black", zorder=5,
                   label=f"pick: {r.config_name}")
    below = [(x, y) for x, y in zip(xs, ys) if y < floor]
    if below:
        ax.scatter([x for x, _ in below], [floor] * len(below), marker="v", color="tab:gray", s=50, zorder=3,
                   label=f"{len(below)} below {floor:.0f}% (lowest {min(y for _, y in below):.1f}%)")
    ax.set_ylim(floor - 0.5, max(ys) + 0.5)
    ax.set(xlabel=xlabel, ylabel="top-1 accuracy (%)", title=f"{model}: accuracy vs {xlabel.split(' (')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return png(fig)


def forest_window(rows: list[PooledRow]) -> tuple[float, float]:
    """The forest plot's x range: the intervals of the confidence set for the best, 0 (FP32) and a margin; configs
    far outside it are listed at its edge with their values rather than squashing the decision region."""
    members = [r for r in rows if r.in_best_set] or rows
    lows = [(r.delta_pp_ci or [r.delta_pp] * 2)[0] for r in members] + [0.0]
    highs = [(r.delta_pp_ci or [r.delta_pp] * 2)[1] for r in rows] + [0.0]
    return min(lows) - FOREST_MARGIN_PP, max(highs) + FOREST_MARGIN_PP / 2


def plot_forest(view: View, model: str) -> bytes:
    """Each config's mean delta vs FP32 with its interval, best at the top, zoomed on the decision region (the
    confidence set for the best and 0); configs far below are drawn at the left edge with their values. The set
    is shaded, the pick starred."""
    plt = pyplot()
    choice = choices(view)[model]
    rows = sorted((r for r in view.rows if r.model == model and is_quantized(r) and r.delta_pp is not None),
                  key=lambda r: r.accuracy)
    low, high = forest_window(rows)
    fig, ax = plt.subplots(figsize=(9.5, 0.36 * len(rows) + 1.8), layout="constrained")
    for y, r in enumerate(rows):
        color = _color(r.config["backend"])
        if r.in_best_set:
            ax.axhspan(y - 0.5, y + 0.5, color="tab:green", alpha=0.12, lw=0)
        ci = r.delta_pp_ci
        if ci:
            ax.plot([max(ci[0], low), min(ci[1], high)], [y, y], color=color, lw=2)
        if r.delta_pp < low:  # far outside: at the edge, with its value
            text = f"{r.delta_pp:+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")
            ax.plot([low], [y], marker="<", color=color, ms=8, clip_on=False)
            ax.annotate(text, (low, y), xytext=(8, 0), textcoords="offset points", va="center", color=color)
        else:
            ax.plot([r.delta_pp], [y], "o", color=color, ms=6)
        if r.config_name == choice.pick:
            ax.plot([max(r.delta_pp, low)], [y], marker="*", color="gold", ms=18, mec="black", zorder=5)
    ax.axvline(0, color="black", lw=1)
    ax.set_xlim(low, high)
    ax.set_yticks(range(len(rows)), [r.config_name + ("  ◀ pick" if r.config_name == choice.pick else "")
                                     for r in rows])
    handles = [plt.Line2D([], [], color=_color(b), marker="o", label=b)
               for b in sorted({r.config["backend"] for r in rows})]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.25, label=f"in the {level_text()} set"))
    handles.append(plt.Line2D([], [], color="gold", marker="*", ms=12, mec="black", ls="", label="pick"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1))
    seeds = max((len(r.seeds) for r in rows), default=0) or 1
    ax.set(xlabel=f"Δ top-1 accuracy vs FP32 (pp; negative = loss), mean and {level_text()} interval",
           title=f"{model}: configs against FP32 ({view.n_images:,} images, {seeds} seeds)")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def plot_class_deltas(model: str, confusions: list[dict]) -> bytes:
    """Per-class accuracy change vs FP32 for a few configs of one model, grouped by class name."""
    plt = pyplot()

    classes = confusions[0]["classes"]
    width = 0.8 / len(confusions)
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    for k, c in enumerate(confusions):
        ax.bar(np.arange(len(classes)) + (k - (len(confusions) - 1) / 2) * width,
               [c["per_class_delta_pp"][name] for name in classes], width, label=c["config"])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set(xlabel="class", ylabel="Δ class accuracy vs FP32 (pp)", title=f"{model}: per-class accuracy change "
           "(negative = loss)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return png(fig)


def error_change(difference) -> np.ndarray:
    """quantized − FP32 confusion counts turned into "errors added": off the diagonal as they are (images now
    called that wrong class), on it negated (images no longer right). Positive always means more errors."""
    m = np.array(difference, dtype=float)
    np.fill_diagonal(m, -np.diag(m))
    return m


def plot_confusion(c: dict) -> bytes:
    """FP32's confusion matrix, and the change in errors quantized − FP32 on a diverging map: red where the
    quantized model makes more errors, blue where fewer."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8), layout="constrained")
    panels = (("FP32 (images, mean over seeds)", np.array(c["baseline"]), "Blues", "images"),
              (f"{c['config']}: errors added (red) or removed (blue)\nvs FP32; diagonal: correct images lost",
               error_change(c["difference"]), "RdBu_r", "more errors (images)"))
    for ax, (title, m, cmap, label) in zip(axes, panels):
        limit = max(1.0, float(np.abs(m).max()))
        im = ax.imshow(m, cmap=cmap, vmin=-limit if cmap == "RdBu_r" else 0, vmax=limit)
        for (i, j), v in np.ndenumerate(m):
            if abs(v) >= 0.05:
                ax.text(j, i, f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}", ha="center", va="center",
                        fontsize=FONT - 1 if cmap == "Blues" else FONT,
                        color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_xticks(range(len(c["classes"])), c["classes"], rotation=45, ha="right")
        ax.set_yticks(range(len(c["classes"])), c["classes"])
        ax.set(xlabel="predicted class", ylabel="true class", title=title)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, label=label)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fig.suptitle(f"{c['model']}: confusion (means over calibration seeds), {c['config']} vs FP32")
    return png(fig)
