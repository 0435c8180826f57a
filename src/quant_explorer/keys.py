"""What names a row: the calibration sample it draws, its identity (everything that can change its numbers), its key
in the results file, its work directory, and whether a stored row under that key can be reused as it is. The sweep,
the bench, the studies and `api.quantize` all name rows here, so a row is named alike whoever makes it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .backends import Calibration, emulation, recipe
from .configs import QuantConfig
from .data import EvalData, calibration_set
from .identity import emulated_class, identity_hash, make_identity
from .paths import models_dir
from .results import entry_key
from .row import Row

if TYPE_CHECKING:
    from .models import LoadedModel


def make_calibration(model: LoadedModel, data: EvalData, n: int, seed: int) -> Calibration:
    """A row's calibration sample: `n` training images of the stratified draw `seed`. Drawn once per row and handed
    to whoever computes it. An imported graph that only runs at batch 1 is calibrated one image at a time."""
    return Calibration(calibration_set(data.train, n, seed), model.preprocessing, seed,
                       batch_size=model.import_info.get("fixed_batch") or 64, pool_fingerprint=data.train.fingerprint)


def row_identity(model: LoadedModel, config: QuantConfig, data: EvalData,
                 calibration: Calibration | None = None) -> dict:
    """Everything that can change this row's numbers (`identity.py`), with the model's preprocessing: `calibration`
    is the sample the row calibrates on, drawn once (`make_calibration`), for a static config."""
    sample = calibration.describe() if calibration is not None and config.is_static else None
    return build_identity(model, config, sample, data.test.describe())


def build_identity(model: LoadedModel, config: QuantConfig, sample: dict | None, evaluation: dict | None) -> dict:
    """A row's identity from the calibration sample it draws (`Calibration.describe()`) and the evaluation set it is
    scored on (None: a model built but not scored, as `api.quantize` builds one); as an emulated CPU class, how it is
    emulated (`backends.emulation`)."""
    return {**make_identity(model.name, model.weights_sha256, evaluation or {"fingerprint": None, "n_images": 0},
                            config.record(), recipe(config.backend), sample,
                            emulation(config.backend) if emulated_class() else None),
            "preprocessing": model.preprocessing.to_dict()}


def artifact_hash(identity: dict) -> str:
    """What names a row's work directory: its identity less the evaluation set, on which the quantized model does
    not depend. A sweep row, the bench and `api.quantize` (which scores nothing) of one recipe, calibration sample,
    model and environment share one artifact."""
    return identity_hash({k: v for k, v in identity.items() if k != "dataset"})


def study_identity(model: LoadedModel, config: QuantConfig, data: EvalData) -> dict:
    """A study's identity: a row's, less the one calibration sample (a study draws many from the same pool)."""
    return {**make_identity(model.name, model.weights_sha256, data.test.describe(), config.record(),
                            recipe(config.backend), None),
            "calibration_pool": data.train.fingerprint, "preprocessing": model.preprocessing.to_dict()}


def row_key(model: LoadedModel, config: QuantConfig, identity: dict) -> str:
    """model|config[|n=|seed=]|identity hash (`identity`: the row's, `row_identity`): a result of other data, CPU
    class or versions has another key."""
    return entry_key(model.name, config.name, *(identity["calibration"] or ()), identity_hash=identity_hash(identity))


def workdir_for(model: LoadedModel, config: QuantConfig, calibration: Calibration | None,
                identity: dict | str) -> Path:
    """Where a row's artifacts go: one folder per artifact identity (`artifact_hash` of the row's `identity`, or a
    tag), so a compiled package found there was built from this very recipe and is reused by the bench and by
    `api.quantize`, never one of another identity."""
    tag = f"n{len(calibration.images)}-s{calibration.seed}" if calibration else "nocal"
    name = identity if isinstance(identity, str) else artifact_hash(identity)
    return models_dir() / f"{model.name}-{model.weights_sha256[:12]}" / config.name / f"{tag}-{name}"


def is_finished(row: Row | None) -> bool:
    """A stored row that can be reused as it is (its key already says it was measured alike): scored, or a config
    that does not apply there."""
    return row is not None and row.error is None and (row.predictions is not None or row.not_applicable is not None)
