"""Are two results files the same answers? For every row key both hold, compare accuracy and the per-image
predictions; print one line per difference and a count, exit 1 if any differ or nothing was compared.

    python tools/same_results.py BEFORE.json AFTER.json

Row keys end with the identity hash (data, calibration sample, config record, weights, CPU class, library
versions), so a key in both files names the same experiment: its numbers must be identical, bit for bit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quant_explorer.results import Results
from quant_explorer.row import Row


def compare(before: dict[str, Row], after: dict[str, Row]) -> tuple[int, list[str]]:
    common = sorted(k for k in before.keys() & after.keys() if before[k].scored and after[k].scored)
    differences = []
    for key in common:
        a, b = before[key], after[key]
        if a.accuracy != b.accuracy or a.predictions != b.predictions:
            differences.append(f"{key}: accuracy {a.accuracy:.4f} -> {b.accuracy:.4f}"
                               + ("" if a.predictions == b.predictions else ", predictions differ"))
    return len(common), differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    compared, differences = compare(Results.load(args.before).rows, Results.load(args.after).rows)
    for line in differences:
        print(line)
    print(f"{compared} rows in both files, {len(differences)} differ")
    sys.exit(1 if differences or not compared else 0)


if __name__ == "__main__":
    main()
