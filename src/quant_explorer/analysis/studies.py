"""The targeted experiments the report shows, as data: which analysis, on which model and config.

`quant-explorer analyze` (and so `make run`) runs every study whose stored entry is missing or stale (another
identity — weights, evaluation set, CPU class, library versions — or other sizes/seeds), and skips the rest, so the whole report comes from one command
and a rerun costs nothing. Each study stores its entry where its own command (`calib-sensitivity`,
`layer-sensitivity`) would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..configs import CALIBRATION_N, get_config
from ..experiment import make_calibration, row_identity, study_identity
from ..identity import identity_hash, legacy_identity, mismatch
from ..results import entry_key, load_results
from . import calibration_size, layer_sensitivity


@dataclass(frozen=True)
class CalibrationSizeStudy:
    model: str
    config: str
    sizes: tuple[int, ...] = calibration_size.DEFAULT_SIZES
    seeds: int = 5

    file = calibration_size.FILE
    kind = "calibration size"

    def identity(self, model, data) -> dict:
        return study_identity(model, get_config(self.config), data)

    def key(self, model, data) -> str:
        return entry_key(self.model, self.config, identity_hash=identity_hash(self.identity(model, data)))

    def is_current(self, entry: dict, model, data) -> bool:
        return (entry.get("identity") == self.identity(model, data)
                and [s["n"] for s in entry["sizes"]] == list(self.sizes)
                and all(s["seeds"] == list(range(self.seeds)) for s in entry["sizes"]))

    def run(self, model, data, log: Callable[[str], None]) -> dict:
        return calibration_size.run(model, get_config(self.config), data, list(self.sizes), self.seeds, log)

    def save(self, path: Path, entry: dict) -> None:
        calibration_size.save(path, entry)


@dataclass(frozen=True)
class LayerSensitivityStudy:
    model: str
    config: str
    calibration_n: int = CALIBRATION_N
    seed: int = 0

    file = layer_sensitivity.FILE
    kind = "per-layer sensitivity"

    def identity(self, model, data) -> dict:
        return row_identity(model, get_config(self.config), data, self.calibration_n, self.seed)

    def key(self, model, data) -> str:
        return entry_key(self.model, self.config, self.calibration_n, self.seed,
                         identity_hash(self.identity(model, data)))

    def is_current(self, entry: dict, model, data) -> bool:
        return entry.get("identity") == self.identity(model, data)

    def run(self, model, data, log: Callable[[str], None]) -> dict:
        calibration = make_calibration(model, data, self.calibration_n, self.seed)
        return layer_sensitivity.run(model, get_config(self.config), data, calibration, log=log)

    def save(self, path: Path, entry: dict) -> None:
        layer_sensitivity.save(path, entry)


Study = CalibrationSizeStudy | LayerSensitivityStudy

# The report's studies: the reference model our users ship and our own ResNet8, each with the configs whose
# behaviour needs explaining (ORT u8 saturation, ORT symmetric int8, the best PT2E recipe).
STUDIES: tuple[Study, ...] = tuple(
    study
    for model in ("resnet8-mlperf", "resnet8")
    for study in (
        CalibrationSizeStudy(model, "ort_s8asym_minmax_qdq_per_channel"),
        CalibrationSizeStudy(model, "pt2e_u8_per_channel_histogram"),
        LayerSensitivityStudy(model, "ort_u8_minmax_qdq_per_channel"),
        LayerSensitivityStudy(model, "ort_s8_minmax_qdq_per_channel"),
        LayerSensitivityStudy(model, "pt2e_u8_per_channel_minmax"),
    )
)


def _why_not_reused(entries: dict, study: Study, model, data) -> str:
    """' (the stored entry was computed on another CPU class (avx512-vnni))', or '' when there is none."""
    others = [e for e in entries.values() if e.get("model") == study.model and e.get("config_name") == study.config]
    if not others:
        return ""
    other = others[-1]
    reason = mismatch(other["identity"] if "identity" in other else legacy_identity(other), study.identity(model, data))
    return f" (the stored entry was computed {reason})" if reason else " (the stored entry has other sizes or seeds)"


def run_studies(studies: list[Study], models: dict, data, results_dir: Path, force: bool = False,
                log: Callable[[str], None] = lambda _: None) -> Iterator[tuple[Study, dict, bool]]:
    """Yield (study, entry, skipped) per study, running (and saving at once) those missing or stale."""
    for study in studies:
        path = results_dir / study.file
        model = models[study.model]
        entries = load_results(path)["entries"]
        existing = entries.get(study.key(model, data))
        if not force and existing and study.is_current(existing, model, data):
            yield study, existing, True
            continue
        log(f"{study.kind}: {study.model} / {study.config}" + _why_not_reused(entries, study, model, data))
        entry = study.run(model, data, log)
        study.save(path, entry)
        yield study, entry, False
