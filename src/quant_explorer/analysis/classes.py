"""What each recipe scores on each x86 CPU class: one view per class (native or emulated), side by side.

A cell is a config's shipped Δ vs FP32 with its interval, taken from that class's own view (its own FP32 row,
seeds and identity): rows of different classes are laid beside each other, never pooled. A recipe whose
intervals on two classes do not overlap scores differently depending on the CPU it runs on, and is flagged.
A class measured natively only by an older quant-explorer (rows without a recipe version) is shown as what it is,
its column "native, older recipe version", and its cells of a config whose record has changed since marked so.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ..backends import CONFIGS
from ..configs import DESCRIPTIVE
from ..errors import UserError
from ..identity import emulation_of
from ..results import Results
from .rows import is_current, is_quantized
from .summary import load_view
from .view import View

OLDER = "native, older recipe version"


def cpu_part(environment: str) -> str:
    """'avx2 (emulated)' of 'avx2 (emulated), numpy 2.4.6, ...': the column a view fills."""
    return environment.split(",")[0]


def same_recipe(stored: dict, name: str) -> bool:
    """A row's config record (`stored`, its `config`) is today's record of config `name`: every field it sets, and
    fields it lacks at their defaults (rows stored before a field existed)."""
    config = CONFIGS.get(name)
    return config is not None and all(stored.get(f.name, f.default) == getattr(config, f.name)
                                      for f in fields(config) if f.name not in (*DESCRIPTIVE, "name"))


def class_views(results: Results, dataset: str | None = None, data_dir: Path | None = None) -> list[View]:
    """The fullest current view of each CPU class (native and emulated apart) on the default view's evaluation
    set: what every column of the matrix is read from. A class with no current native view keeps its fullest older
    native one with per-image predictions (an older quant-explorer's rows), shown as such."""
    default = load_view(results, dataset=dataset, data_dir=data_dir)
    by_class: dict[str, dict] = {}
    for v in default.available:
        if v["dataset"] != default.dataset or (not v.get("current") and "(emulated)" in v["environment"]):
            continue
        best = by_class.get(cpu_part(v["environment"]))
        if best is None or (v["current"], v["rows"], v["latest"]) > (best["current"], best["rows"], best["latest"]):
            by_class[cpu_part(v["environment"])] = v
    views = [default if v["environment"] == default.environment
             else load_view(results, environment=v["environment"], dataset=default.dataset, data_dir=data_dir)
             for _, v in sorted(by_class.items())]
    return [v for v in views if any(r.delta_pp_ci for r in v.rows)]  # older rows without predictions: no cells


def column(view: View) -> str:
    """The matrix column a view fills: 'avx512-vnni', 'avx2 (emulated)', 'avx2 (native, older recipe version)'."""
    part = cpu_part(view.environment)
    return part if "(emulated)" in part or all(is_current(r) for r in view.rows) else f"{part} ({OLDER})"


def matrix(views: list[View]) -> dict[str, dict]:
    """Per model: the classes (columns), and per config its cell in each class ({"delta_pp", "ci_pp", "accuracy",
    "runtime", "kind": "native" | "emulated" | OLDER, "method": how it was emulated, "same_recipe", "in_set", "note":
    why it is not today's recipe as shipped}, None where not measured) and whether its score depends on the class
    (cells of today's recipe as shipped only)."""
    out: dict[str, dict] = {}
    for view in views:
        name = column(view)
        kind = "emulated" if "(emulated)" in name else OLDER if OLDER in name else "native"
        for row in view.rows:
            if not is_quantized(row):
                continue
            model = out.setdefault(row.model, {"classes": [], "configs": {}})
            if name not in model["classes"]:
                model["classes"].append(name)
            cell = None
            if row.delta_pp_ci:
                cell = {"delta_pp": row.delta_pp, "ci_pp": row.delta_pp_ci, "accuracy": row.accuracy,
                        "runtime": row.runtime, "kind": kind, "method": emulation_of(row.identity or {}),
                        "same_recipe": same_recipe(row.config or {}, row.config_name), "in_set": row.in_best_set}
            model["configs"].setdefault(row.config_name, {})[name] = cell
    for model in out.values():
        for cells in model["configs"].values():
            shipped = {c["runtime"] for c in cells.values() if c and c["kind"] != OLDER}
            for c in (c for c in cells.values() if c):
                c["note"] = ("another recipe" if not c["same_recipe"] else f"in {c['runtime']}, not as shipped"
                             if c["kind"] == OLDER and c["runtime"] not in shipped else None)
            measured = [c for c in cells.values() if c and not c["note"]]
            cells["depends_on_class"] = any(a["ci_pp"][1] < b["ci_pp"][0] for a in measured for b in measured)
    return out


def cell_text(cell: dict | None) -> str:
    """'-8.75 [-11.05, -6.46] (qemu Haswell-v4)', '... (another recipe)', or 'not measured'."""
    if not cell:
        return "not measured"
    low, high = cell["ci_pp"]
    return (f"{cell['delta_pp']:+.2f} [{low:+.2f}, {high:+.2f}]" + (f" ({cell['method']})" if cell["method"] else "")
            + (f" ({cell['note']})" if cell.get("note") else ""))


def table_rows(table: dict) -> list[list[str]]:
    """One model's matrix as rows: the config (flagged where its score depends on the class), then a cell per class."""
    return [[config + (" — depends on the CPU class" if cells["depends_on_class"] else ""),
             *(cell_text(cells.get(name)) for name in table["classes"])]
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
