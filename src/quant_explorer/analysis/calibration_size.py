"""How many calibration images a config needs: accuracy per calibration-set size, spread over seeds.

Each (size, seed) is a different stratified sample of the training split, quantized and scored on every test
image exactly as the sweep does; the spread over seeds is how much the choice of images matters at that size.
Results accumulate in calibration_size.json (one entry per model x config), beside full_results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..configs import QuantConfig
from ..data import MIN_CALIBRATION
from ..errors import UserError
from ..experiment import fp32_baseline, make_calibration, run_config, study_identity
from ..identity import identity_hash
from ..results import entry_key, save_entries

FILE = "calibration_size.json"  # beside full_results.json
DEFAULT_SIZES = (32, 100, 256, 512, 1024)


def parse_sizes(text: str, train_size: int) -> list[int]:
    """'32,100,256' -> [32, 100, 256]; each a whole number from MIN_CALIBRATION to the training split's size."""
    sizes = []
    for item in (t.strip() for t in str(text).split(",")):
        if not item.isdigit():
            raise UserError(f"--sizes must be comma-separated whole numbers, got {item!r} in {text!r}")
        n = int(item)
        if not MIN_CALIBRATION <= n <= train_size:
            raise UserError(f"--sizes: {n} is outside {MIN_CALIBRATION}..{train_size} (at least {MIN_CALIBRATION} "
                            f"images, at most the training split's {train_size})")
        sizes.append(n)
    return sorted(set(sizes))


def spread(accuracies: list[float]) -> dict:
    """Mean, sample std (ddof=1; 0 for one seed), min and max of accuracies, as fractions."""
    a = np.asarray(accuracies, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def summarize(model: str, config: QuantConfig, fp32_accuracy: float, runs: dict[int, dict[int, dict]]) -> dict:
    """The stored entry: per size, every seed's accuracy and the spread over the seeds that ran."""
    sizes = []
    for n, by_seed in sorted(runs.items()):
        scored = {s: r for s, r in sorted(by_seed.items()) if "accuracy" in r}
        entry = {"n": n, "seeds": list(scored), "accuracy": [r["accuracy"] for r in scored.values()],
                 "calibration_images_sha256": [r["calibration"]["calibration_images_sha256"] for r in scored.values()],
                 "errors": {str(s): r.get("error") or r.get("not_applicable") for s, r in by_seed.items() if s not in scored}}
        if scored:
            entry.update(spread(entry["accuracy"]))
            entry["mean_delta_pp"] = round(100 * (entry["mean"] - fp32_accuracy), 4)
        sizes.append(entry)
    return {"model": model, "config_name": config.name, "config": config.to_dict(), "fp32_accuracy": fp32_accuracy,
            "sizes": sizes}


def run(model, config: QuantConfig, data, sizes: list[int], seeds: int,
        log: Callable[[str], None] = lambda _: None) -> dict:
    """Quantize and score `config` once per (size, seed in 0..seeds-1); the summary entry."""
    if not config.is_static:
        raise UserError(f"{config.name} uses no calibration data ({config.backend}); pick a static config")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    baseline, fp32_row = fp32_baseline(model, data)
    runs: dict[int, dict[int, dict]] = {}
    for n in sizes:
        for seed in range(seeds):
            row, _ = run_config(model, config, data, make_calibration(model, data, n, seed), baseline, with_cross_checks=False)
            runs.setdefault(n, {})[seed] = row
            log(f"n={n} seed={seed}: " + (f"{100 * row['accuracy']:.2f}%" if "accuracy" in row else "failed"))
    entry = summarize(model.name, config, fp32_row["accuracy"], runs)
    identity = study_identity(model, config, data)
    entry.update({"model_weights_sha256": model.weights_sha256, "n_images": fp32_row["n_images"],
                  "dataset": fp32_row["dataset"], "environment": fp32_row["environment"], "identity": identity,
                  "identity_hash": identity_hash(identity)})
    return entry


def save(path: Path, entry: dict) -> None:
    """Merge the entry into calibration_size.json, atomically and under the results lock."""
    save_entries(path, {entry_key(entry["model"], entry["config_name"], identity_hash=entry["identity_hash"]): entry})
