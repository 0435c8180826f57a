"""Do emulated rows reproduce what a real CPU of the class measured? For every row scored natively on a CPU of the
class (`--isa`, default avx2) and emulated by qemu on another, with the same model weights and calibration sample:
how many per-image predictions are equal, per model and config (seeds pooled), and whether the two rows are one
recipe (the native row's config record is today's: rows stored before a recipe changed are listed, not counted).
An older native row scored in another runtime (its float reference) is compared by the correct count its bench
measured in the emulated row's runtime. `--against CLASS` compares the emulated rows with the native rows of another
class instead (ARM's against this machine's: an eager row, qnnpack on ARM, against the native row's qnnpack run).

    quant-explorer sweep --isa avx2 --configs 'ort_*' --executor processes     # the emulated rows
    python tools/emulated_vs_native.py [RESULTS.json] [--native NATIVE.json] [--isa avx2] [--against CLASS] [--json]

Both may be one file (the committed one holds native AVX2 rows of an AVX2 machine). Exit 1 if a row of the same
recipe differs on any image, or nothing was compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from quant_explorer.analysis.classes import same_recipe
from quant_explorer.identity import emulation_of
from quant_explorer.paths import results_file
from quant_explorer.results import Results, decode_classes
from quant_explorer.row import Row


def _draw(row: Row) -> tuple:
    """What makes two rows the same experiment but for the CPU: model, weights, config, calibration sample."""
    return (row.model, row.model_weights_sha256, row.config_name, row.seed,
            (row.calibration or {}).get("calibration_images_sha256"))


def compare(native: dict[str, Row], emulated: dict[str, Row], isa: str, against: str | None = None) -> list[dict]:
    """One record per (model, config): seeds compared, images, equal predictions, correct counts on each side (the
    native rows of class `against`, by default `isa`)."""
    def of(rows: dict[str, Row], want_emulated: bool) -> dict[tuple, Row]:
        found, cpu = {}, isa if want_emulated else against or isa
        for row in rows.values():
            identity = row.identity or {}
            method = emulation_of(identity)
            if (row.scored and row.predictions and identity.get("cpu_class") == cpu
                    and (str(method).startswith("qemu") if want_emulated else method is None)):
                found[_draw(row)] = row
        return found

    mine, theirs = of(native, False), of(emulated, True)
    table: dict[tuple, dict] = defaultdict(lambda: {"seeds": 0, "images": 0, "equal": 0, "native_correct": [],
                                                    "emulated_correct": [], "same_recipe": True, "method": None,
                                                    "native_runtime": None, "runtime": None})
    for draw in sorted(mine.keys() & theirs.keys(), key=str):
        a, b = mine[draw], theirs[draw]
        entry = table[(a.model, a.config_name)]
        entry.update(method=emulation_of(b.identity), native_runtime=a.runtime, runtime=b.runtime)
        entry["same_recipe"] &= same_recipe(a.config or {}, a.config_name)
        # b's runtime run natively: a itself, or a's run of that engine (ARM's qnnpack: the native row's reference)
        native = a if a.runtime == b.runtime else a.reference if a.reference and a.reference.runtime == b.runtime \
            else None
        native_correct = native.correct if native else a.correct
        if native is not None and native.predictions:  # per image
            pa, pb = decode_classes(native.predictions), decode_classes(b.predictions)
            entry["images"] += len(pa)
            entry["equal"] += int((pa == pb).sum()) if len(pa) == len(pb) else 0
        else:  # an older row scored its float reference: the AVX2 CPU's own run of b's runtime is in its bench
            benched = ((a.bench and a.bench.runtimes) or {}).get(b.runtime)
            native_correct = benched.correct if benched else None
            if native_correct is None:
                continue  # not benched (the bench times the first seed)
        entry["seeds"] += 1
        entry["native_correct"].append(native_correct)
        entry["emulated_correct"].append(b.correct)
    return [{"model": m, "config": c, **v} for (m, c), v in sorted(table.items()) if v["seeds"]]


def _span(values: list) -> str:
    """'806-822', '822', or '—' where none is known."""
    known = [v for v in values if v is not None]
    return "—" if not known else f"{min(known)}-{max(known)}" if min(known) != max(known) else str(known[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=None, help="the emulated rows (default: this "
                        "checkout's results file)")
    parser.add_argument("--native", type=Path, default=None, help="the native rows (default: the same file)")
    parser.add_argument("--isa", default="avx2")
    parser.add_argument("--against", default=None, help="the native rows' class (default: --isa)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emulated = Results.load(args.results or results_file()).rows
    native = Results.load(args.native).rows if args.native else emulated
    table = compare(native, emulated, args.isa, args.against)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print("| model | config | runtime | seeds | equal predictions | correct, native | correct, emulated | "
              "same recipe |")
        print("|---|---|---|---|---|---|---|---|")
        for t in table:
            equal = f"{t['equal']:,} of {t['images']:,}" if t["images"] else \
                f"— (native row in {t['native_runtime']}: its bench's {t['runtime']} count)"
            print(f"| {t['model']} | `{t['config']}` | {t['runtime']} | {t['seeds']} | {equal} | "
                  f"{_span(t['native_correct'])} | {_span(t['emulated_correct'])} | "
                  f"{'yes' if t['same_recipe'] else 'no'} |")
    counted = [t for t in table if t["same_recipe"] and t["images"]]
    differ = [t for t in counted if t["equal"] != t["images"]]
    images = sum(t["images"] for t in counted)
    print(f"{len(counted)} (model, config) of the same recipe, {sum(t['seeds'] for t in counted)} rows: "
          f"{sum(t['equal'] for t in counted):,} of {images:,} predictions equal; "
          f"{len(table) - len(counted)} of another recipe or runtime listed, not counted", file=sys.stderr)
    sys.exit(1 if differ or not counted else 0)


if __name__ == "__main__":
    main()
