"""The pick on the CPUs users deploy to (`--deploy`): a member of the confidence set for the best on every
deployment class, not only on the machine that measured it.

Each class is read from its own view (`classes.class_views`: its own FP32 row, seeds and confidence set). The pick
of this view stands when it is in the set on every deployment class that measured it; a class that did not (a
runtime no method can emulate there) is named, never guessed. Otherwise the pick is made again, by the same rules
(`pick.pick_among`), among the members of this view's set that are in every class's set, and the recipe that would
have won here is named in one line with its numbers ("...: -1.10 pp here, -7.40 pp on avx2 (emulated): not
picked"). Where no member is in every class's set, the member whose worst Δ vs FP32 over the classes is the least
bad is picked, and the answer says so.
"""

from __future__ import annotations

from ..errors import UserError
from .classes import class_views, column, matrix
from .pick import pick_among
from .view import Choice, Deployment, View


def class_of(name: str) -> str:
    """'avx2' of the column 'avx2 (emulated)'."""
    return name.split(" ")[0]


def columns_for(available: list[str], deploy: list[str] | None) -> list[str]:
    """The matrix columns that stand for the deployment classes (default: every class there), one per class:
    native where measured natively with today's recipes, else emulated, else an older quant-explorer's rows."""
    chosen: dict[str, str] = {}
    for name in sorted(available, key=lambda n: 0 if "(" not in n else 1 if "(emulated)" in n else 2):
        chosen.setdefault(class_of(name), name)
    if deploy:
        unknown = [k for k in deploy if k not in chosen]
        if unknown:
            raise UserError(f"--deploy {', '.join(unknown)}: no results for that class here (the results hold "
                            f"{', '.join(sorted(chosen)) or 'none'}; `quant-explorer sweep --isa CLASS` measures one)")
        return [chosen[k] for k in dict.fromkeys(deploy)]
    return list(chosen.values())


def _pp(cell: dict) -> str:
    return f"{cell['delta_pp']:+.2f} pp"


def _measured(cells: dict, col: str) -> dict | None:
    """A config's cell on a class where it stands for today's recipe as shipped; None: not measured there."""
    cell = cells.get(col)
    return cell if cell and not cell.get("note") else None


def _holds(cells: dict, cols: list[str]) -> bool:
    """In the confidence set on every class of `cols` that measured it (`cells`: one config's matrix cells)."""
    return all(not _measured(cells, c) or cells[c]["in_set"] for c in cols)


def _worst(row, cells: dict, cols: list[str]) -> float:
    """A config's worst Δ vs FP32, here or on a class of `cols`."""
    return min([row.delta_pp, *(cells[c]["delta_pp"] for c in cols if _measured(cells, c))])


def apply(view: View, table: dict[str, dict], deploy: list[str] | None = None) -> None:
    """Make each model's pick in `view` (`view.choices`) hold on the deployment classes of `table` (`classes.matrix`),
    setting each choice's `deploy` (`Deployment`)."""
    here = column(view)
    for model, choice in view.choices.items():
        if choice and choice.pick and model in table:
            cols = [c for c in columns_for(table[model]["classes"], deploy) if c != here]
            if cols:
                _hold(view, model, choice, table[model]["configs"], cols, here)


def _hold(view: View, model: str, choice: Choice, cells: dict, cols: list[str], here: str) -> None:
    members = [r for r in view.rows if r.model == model and r.config_name in choice.best_set_with_identical]
    first, said = choice.pick, []
    losses = [c for c in cols if _measured(cells[first], c) and not cells[first][c]["in_set"]]
    if losses:
        mine = next(r for r in members if r.config_name == first)
        said.append(f"{first}: {mine.delta_pp:+.2f} pp here, " + ", ".join(
            f"{_pp(cells[first][c])} on {c}" for c in losses) + ": not picked (out of the confidence set there)")
        kept = [r for r in members if _holds(cells[r.config_name], cols)]
        if kept:
            pick, why = pick_among(view, kept)
            said.append(f"{len(kept)} of the {len(members)} members are in the set on every deployment class "
                        f"({', '.join(cols)}); " + "; ".join(why))
        else:
            pick = max(members, key=lambda r: _worst(r, cells[r.config_name], cols))
            said.append(f"no member is in the set on every deployment class ({', '.join(cols)}): {pick.config_name} "
                        f"loses least (worst Δ {_worst(pick, cells[pick.config_name], cols):+.2f} pp)")
        for r in view.rows:
            if r.model == model:
                r.pick = r is pick
        choice.pick = pick.config_name
        choice.rule += "; " + "; ".join(said)
    unmeasured = [c for c in cols if not _measured(cells[choice.pick], c)]
    if unmeasured:
        said.append(f"{choice.pick} is not measured on {', '.join(unmeasured)}")
    choice.deploy = Deployment(cols, first, said, {c: _measured(cells[choice.pick], c) for c in cols}, here)


def deployment(view: View, results, deploy: list[str] | None = None, data_dir=None) -> dict[str, dict]:
    """The CPU-class matrix of `results` on the view's evaluation set, with every pick of `view` made to hold on
    the deployment classes (`apply`); the matrix is returned (`classes.matrix`)."""
    table = matrix(class_views(results, view.dataset, data_dir))
    apply(view, table, deploy)
    return table


def classes_text(choice: Choice | None) -> str | None:
    """The pick on each deployment class, in one line: 'on each deployment class: avx2 (emulated) -0.30 pp
    [-1.12, +0.52] (qemu Haswell-v4), in the set; avx512 (emulated) not measured'; None without classes."""
    if not choice or not choice.deploy:
        return None
    parts = []
    for name, cell in choice.deploy.cells.items():
        if not cell:
            parts.append(f"{name} not measured")
            continue
        low, high = cell["ci_pp"]
        parts.append(f"{name} {cell['delta_pp']:+.2f} pp [{low:+.2f}, {high:+.2f}]"
                     + (f" ({cell['method']})" if cell.get("method") else "")
                     + (", in the set" if cell["in_set"] else ", out of the set"))
    return f"{choice.pick} on each deployment class: " + "; ".join(parts)
