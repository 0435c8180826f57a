"""How many calibration images a config needs: accuracy per calibration-set size, spread over seeds.

Each (size, seed) is a different stratified sample of the training split, quantized and scored on every test
image exactly as the sweep does; the spread over seeds is how much the choice of images matters at that size.
A (size, seed) the sweep already stored under the same identity (its key, `keys.row_key`) is that row,
taken from full_results.json rather than computed again. Results accumulate in calibration_size.json (one entry
per model x config), beside full_results.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ..backends import get_config
from ..configs import QuantConfig
from ..data import MIN_CALIBRATION
from ..errors import UserError
from ..experiment import FP32, fp32_baseline, run_config
from ..identity import identity_hash
from ..keys import is_finished, make_calibration, row_identity, row_key, study_identity
from ..record import Record
from ..results import entry_key, save_entries
from ..row import Row
from .base import PoolStudy, StudyEntry

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


@dataclass
class SizePoint(Record):
    """One calibration-set size: every seed's accuracy, the spread over the seeds that ran, and what failed."""

    n: int | None = None
    seeds: list[int] = field(default_factory=list)  # those scored
    accuracy: list[float] = field(default_factory=list)
    calibration_images_sha256: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # seed -> why it has no score
    mean: float | None = None
    std: float | None = None  # sample std over seeds (ddof=1; 0 for one seed)
    min: float | None = None
    max: float | None = None
    mean_delta_pp: float | None = None  # vs FP32


@dataclass
class CalibrationSizeEntry(StudyEntry):
    """One model x config at each calibration-set size (calibration_size.json)."""

    fp32_accuracy: float | None = None
    sizes: list[SizePoint] = field(default_factory=list)

    NESTED = {"sizes": (list, SizePoint)}


def summarize(model: str, config: QuantConfig, fp32_accuracy: float,
              runs: dict[int, dict[int, Row]]) -> CalibrationSizeEntry:
    """The stored entry: per size, every seed's accuracy and the spread over the seeds that ran."""
    sizes = []
    for n, by_seed in sorted(runs.items()):
        scored = {s: r for s, r in sorted(by_seed.items()) if r.accuracy is not None}
        point = SizePoint(n=n, seeds=list(scored), accuracy=[r.accuracy for r in scored.values()],
                          calibration_images_sha256=[r.calibration["calibration_images_sha256"]
                                                     for r in scored.values()],
                          errors={str(s): r.error or r.not_applicable for s, r in by_seed.items() if s not in scored})
        if scored:
            point = replace(point, **spread(point.accuracy))
            point.mean_delta_pp = round(100 * (point.mean - fp32_accuracy), 4)
        sizes.append(point)
    return CalibrationSizeEntry(model=model, config_name=config.name, config=config.to_dict(),
                                fp32_accuracy=fp32_accuracy, sizes=sizes)


def run(model, config: QuantConfig, data, sizes: list[int], seeds: int,
        log: Callable[[str], None] = lambda _: None, stored: dict[str, Row] | None = None) -> CalibrationSizeEntry:
    """Quantize and score `config` once per (size, seed in 0..seeds-1); the summary entry. `stored`: the sweep's
    rows (full_results.json's entries); a finished one under a point's own key is taken as that point."""
    if not config.is_static:
        raise UserError(f"{config.name} uses no calibration data ({config.backend}); pick a static config")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    stored = stored or {}
    fp32_row = stored.get(row_key(model, FP32, row_identity(model, FP32, data)))
    if not is_finished(fp32_row):
        _, fp32_row = fp32_baseline(model, data)
    runs: dict[int, dict[int, Row]] = {}
    for n in sizes:
        for seed in range(seeds):
            calibration = make_calibration(model, data, n, seed)
            identity = row_identity(model, config, data, calibration)
            row = stored.get(row_key(model, config, identity))
            reused = is_finished(row)
            if not reused:  # the study needs only the shipped accuracy: no baseline, no cross-checks
                row, _ = run_config(model, config, data, calibration, None, with_cross_checks=False, identity=identity)
            runs.setdefault(n, {})[seed] = row
            log(f"n={n} seed={seed}: " + (f"{100 * row.accuracy:.2f}%" if row.accuracy is not None else "failed")
                + (" (the sweep's row)" if reused else ""))
    entry = summarize(model.name, config, fp32_row.accuracy, runs)
    identity = study_identity(model, config, data)
    return replace(entry, model_weights_sha256=model.weights_sha256, n_images=fp32_row.n_images,
                   dataset=fp32_row.dataset, environment=fp32_row.environment, identity=identity,
                   identity_hash=identity_hash(identity))


def save(path: Path, entry: CalibrationSizeEntry) -> None:
    """Merge the entry into calibration_size.json, atomically and under the results lock."""
    save_entries(path, {entry_key(entry.model, entry.config_name, identity_hash=entry.identity_hash): entry.to_dict()})


def plot(entry: CalibrationSizeEntry) -> bytes | None:
    """Mean accuracy ± std over seeds per calibration-set size, min-max band, FP32 for reference."""
    from ..figures import png, pyplot

    sizes = [s for s in entry.sizes if s.seeds]
    if not sizes:
        return None
    plt = pyplot()
    n = [s.n for s in sizes]
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    ax.fill_between(n, [100 * s.min for s in sizes], [100 * s.max for s in sizes], alpha=0.2,
                    label="min–max over seeds")
    ax.errorbar(n, [100 * s.mean for s in sizes], yerr=[100 * s.std for s in sizes], marker="o", capsize=4,
                label="mean ± std over seeds")
    ax.axhline(100 * entry.fp32_accuracy, color="black", ls="--", lw=1, label="FP32")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(v) for v in n])
    seeds = max(len(s.seeds) for s in sizes)
    ax.set(xlabel="calibration images (log scale)", ylabel="top-1 accuracy (%)",
           title=f"{entry.model} / {entry.config_name}: accuracy vs calibration-set size ({seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    return png(fig)


@dataclass(frozen=True)
class CalibrationSizeStudy(PoolStudy):
    """Accuracy of one model x config at each calibration-set size, over seeds 0..seeds-1."""

    model: str
    config: str
    sizes: tuple[int, ...] = DEFAULT_SIZES
    seeds: int = 5

    kind: ClassVar[str] = "calibration size"
    file: ClassVar[str] = FILE
    title: ClassVar[str] = "Calibration-set size"
    anchor: ClassVar[str] = "calibration"
    intro: ClassVar[str] = ("Each size is quantized once per seed, each seed a different stratified sample of the "
                            "training split; std is the sample standard deviation over seeds. A size and seed the "
                            "sweep measured alike is the sweep's row.")
    figure: ClassVar[str] = "calibration-size curve"
    entry_type: ClassVar[type[StudyEntry]] = CalibrationSizeEntry

    def is_current(self, entry: CalibrationSizeEntry, model, data) -> bool:
        return (super().is_current(entry, model, data)
                and [s.n for s in entry.sizes] == list(self.sizes)
                and all(s.seeds == list(range(self.seeds)) for s in entry.sizes))

    def run(self, model, data, stored: dict[str, Row], log: Callable[[str], None]) -> CalibrationSizeEntry:
        return run(model, get_config(self.config), data, list(self.sizes), self.seeds, log, stored)

    def save(self, path: Path, entry: CalibrationSizeEntry) -> None:
        save(path, entry)

    @staticmethod
    def heading(entry: CalibrationSizeEntry) -> str:
        return f"{entry.model} / {entry.config_name} (FP32 {100 * entry.fp32_accuracy:.2f}%)"

    @staticmethod
    def text(entry: CalibrationSizeEntry) -> str:
        return ""

    @staticmethod
    def table(entry: CalibrationSizeEntry) -> tuple[list[str], list[list]]:
        """Per size: its seeds, mean, std, min, max and mean Δ vs FP32; a size with no scored seed says so."""
        return (["images", "seeds", "mean", "std", "min", "max", "Δ mean vs FP32"],
                [[str(s.n), str(len(s.seeds)), f"{100 * s.mean:.2f}%", f"{100 * s.std:.2f} pp",
                  f"{100 * s.min:.2f}%", f"{100 * s.max:.2f}%", f"{s.mean_delta_pp:+.2f} pp"]
                 if s.seeds else [str(s.n), "0", "failed", "", "", "", ""] for s in entry.sizes])

    plot = staticmethod(plot)
