"""What each recipe scores on each x86 CPU class: one view per class (native or emulated), side by side.

A cell is a config's shipped Δ vs FP32 with its interval, taken from that class's own view (its own FP32 row,
seeds and identity): rows of different classes are laid beside each other, never pooled. A recipe whose
intervals on two classes do not overlap scores differently depending on the CPU it runs on, and is flagged.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..results import Results
from .rows import is_quantized
from .summary import load_view
from .view import View


def cpu_part(environment: str) -> str:
    """'avx2 (emulated)' of 'avx2 (emulated), numpy 2.4.6, ...': the column a view fills."""
    return environment.split(",")[0]


def class_views(results: Results, dataset: str | None = None, data_dir: Path | None = None) -> list[View]:
    """The fullest current view of each CPU class (native and emulated apart) on the default view's evaluation
    set: what every column of the matrix is read from."""
    default = load_view(results, dataset=dataset, data_dir=data_dir)
    by_class: dict[str, dict] = {}
    for v in default.available:
        if v["dataset"] != default.dataset or not v.get("current"):
            continue
        best = by_class.get(cpu_part(v["environment"]))
        if best is None or (v["current"], v["latest"]) > (best["current"], best["latest"]):
            by_class[cpu_part(v["environment"])] = v
    return [default if v["environment"] == default.environment
            else load_view(results, environment=v["environment"], dataset=default.dataset, data_dir=data_dir)
            for _, v in sorted(by_class.items())]


def matrix(views: list[View]) -> dict[str, dict]:
    """Per model: the classes (columns), and per config its cell in each class ({"delta_pp", "ci_pp", "accuracy",
    "kind": "native" | "emulated"}, None where not measured) and whether its score depends on the class."""
    out: dict[str, dict] = {}
    for view in views:
        column, kind = cpu_part(view.environment), "emulated" if "emulated" in view.environment else "native"
        for row in view.rows:
            if not is_quantized(row):
                continue
            model = out.setdefault(row.model, {"classes": [], "configs": {}})
            if column not in model["classes"]:
                model["classes"].append(column)
            cell = None
            if row.delta_pp_ci:
                cell = {"delta_pp": row.delta_pp, "ci_pp": row.delta_pp_ci, "accuracy": row.accuracy,
                        "runtime": row.runtime, "kind": kind}
            model["configs"].setdefault(row.config_name, {})[column] = cell
    for model in out.values():
        for cells in model["configs"].values():
            measured = [c for c in cells.values() if c]
            cells["depends_on_class"] = any(a["ci_pp"][1] < b["ci_pp"][0] for a in measured for b in measured)
    return out


def cell_text(cell: dict | None) -> str:
    """'-8.75 [-11.05, -6.46] (emulated)', or 'not measured'."""
    if not cell:
        return "not measured"
    low, high = cell["ci_pp"]
    return f"{cell['delta_pp']:+.2f} [{low:+.2f}, {high:+.2f}]" + (" (emulated)" if cell["kind"] == "emulated" else "")


def table_rows(table: dict) -> list[list[str]]:
    """One model's matrix as rows: the config (flagged where its score depends on the class), then a cell per class."""
    return [[config + (" — depends on the CPU class" if cells["depends_on_class"] else ""),
             *(cell_text(cells.get(column)) for column in table["classes"])]
            for config, cells in table["configs"].items()]


def environment_for(results: Results, isa: str, dataset: str | None = None) -> str:
    """The environment id of CPU class `isa` (`summary --for-isa`): its native view, else its emulated one."""
    environments = [v["environment"] for v in load_view(results, dataset=dataset).available if v.get("current")]
    for wanted in (isa, f"{isa} (emulated)"):
        found = [e for e in environments if cpu_part(e) == wanted]
        if found:
            return found[0]
    known = sorted({cpu_part(e) for e in environments})
    raise UserError(f"no current results for CPU class {isa}: the file has {', '.join(known) or 'none'}; "
                    f"`quant-explorer sweep --isa {isa}` computes them on a CPU of a higher class")
