"""The targeted experiments the report shows, each a `Study` (`base.py`): one model x config of one kind.

A kind is one module (`calibration_size`, `layer_sensitivity`): how it runs, where and under which key it stores
its entry, when that entry is current, and its section of the report. Adding a study is that module and a
`register` call. `quant-explorer analyze` (and so `make run`) runs every registered study whose stored entry is
missing or stale (another identity — weights, evaluation set, CPU class, library versions — or other sizes/seeds)
and skips the rest, so the whole report comes from one command and a rerun costs nothing; each entry is stored
where its own command (`calib-sensitivity`, `layer-sensitivity`) would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..executors import Executor
from ..identity import legacy_identity, mismatch
from ..results import Results
from ..row import Row
from .base import Delta, PoolStudy, Study, StudyEntry, measured_alike, read_entries
from .calibration_size import CalibrationSizeStudy
from .layer_sensitivity import LayerSensitivityStudy

__all__ = ["STUDIES", "CalibrationSizeStudy", "Delta", "LayerSensitivityStudy", "PoolStudy", "Study", "StudyEntry",
           "kinds", "measured_alike", "read_entries", "register", "run_studies", "unregister"]

STUDIES: list[Study] = []


def register(study: Study) -> Study:
    """Add a study to those `analyze` runs and the report draws; the same one twice is refused."""
    if study in STUDIES:
        raise ValueError(f"the {study.kind} study of {study.model} / {study.config} is already registered")
    STUDIES.append(study)
    return study


def unregister(study: Study) -> None:
    """For a test's own study: the registry as it was before."""
    if study in STUDIES:
        STUDIES.remove(study)


def kinds() -> list[type[Study]]:
    """Each kind of registered study once, in registration order: one report section each."""
    return list(dict.fromkeys(type(s) for s in STUDIES))


# The report's studies: the reference model our users ship and our own ResNet8, each with the configs whose
# behaviour needs explaining (ORT u8 saturation, ORT symmetric int8, the best PT2E recipe).
for _model in ("resnet8-mlperf", "resnet8"):
    register(CalibrationSizeStudy(_model, "ort_s8asym_minmax_qdq_per_channel"))
    register(CalibrationSizeStudy(_model, "pt2e_u8_per_channel_histogram"))
    register(LayerSensitivityStudy(_model, "ort_u8_minmax_qdq_per_channel"))
    register(LayerSensitivityStudy(_model, "ort_s8_minmax_qdq_per_channel"))
    register(LayerSensitivityStudy(_model, "pt2e_u8_per_channel_minmax"))


def _why_not_reused(entries: dict[str, StudyEntry], study: Study, model, data) -> str:
    """' (the stored entry was computed on another CPU class (avx512-vnni))', or '' when there is none."""
    others = [e for e in entries.values() if e.model == study.model and e.config_name == study.config]
    if not others:
        return ""
    other = others[-1]
    identity = other.identity if other.identity is not None else legacy_identity(other.to_dict())
    reason = mismatch(identity, study.identity(model, data))
    return f" (the stored entry was computed {reason})" if reason else " (the stored entry has other sizes or seeds)"


def run_studies(studies: list[Study], models: dict, data, results_dir: Path, force: bool = False,
                log: Callable[[str], None] = lambda _: None, executor: Executor | None = None
                ) -> Iterator[tuple[Study, StudyEntry, bool]]:
    """Yield (study, entry, skipped) per study: the current ones first, then those missing or stale as each is run
    (on `executor`'s workers when given: one study per task) and saved. A run may take points from the sweep's rows
    in results_dir/full_results.json. In this process, `log` hears each point as it is scored."""
    stale = []
    for study in studies:
        path = results_dir / study.file
        model = models[study.model]
        entries = read_entries(path, type(study))
        existing = entries.get(study.key(model, data))
        if not force and existing and study.is_current(existing, model, data):
            yield study, existing, True
        else:
            log(f"{study.kind}: {study.model} / {study.config}" + _why_not_reused(entries, study, model, data))
            stale.append(study)
    if not stale:
        return
    shared = StudyShared({s.model: models[s.model] for s in stale}, data,
                         Results.load(results_dir / "full_results.json").rows)
    if executor is None:
        done = ((i, study.run(shared.models[study.model], data, shared.sweep_rows, log))
                for i, study in enumerate(stale))
    else:
        done = executor.map_unordered(_run_study, stale, shared)
    for i, entry in done:
        study = stale[i]
        if isinstance(entry, Exception):  # its worker died on every attempt: nothing to save, said as an error
            entry = study.entry_type(model=study.model, config_name=study.config,
                                     error=f"{type(entry).__name__}: {entry}")
        else:
            study.save(results_dir / study.file, entry)
        yield study, entry, False


@dataclass
class StudyShared:
    """What every study task needs, sent to each worker once: the models, the data, the sweep's rows."""

    models: dict
    data: object
    sweep_rows: dict[str, Row]


def _run_study(study: Study, shared: StudyShared) -> StudyEntry:
    return study.run(shared.models[study.model], shared.data, shared.sweep_rows, lambda _: None)
