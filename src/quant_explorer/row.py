"""One result row, typed: the schema of every entry of full_results.json, written down in one place.

A row is one (model, config, calibration draw) measured once (`experiment.run_config`), or a config that does
not apply there (`not_applicable`), or one that failed (`error`). Every field is optional because rows of each
kind, and rows of older schemas (`schema`: the version a row was migrated from), hold different subsets; a
field that is None is not stored. `from_dict` / `to_dict` round-trip a stored row exactly, key order included;
keys this version does not know (a row written by a newer one) are kept in `extra` and written back
(`record.Record`). Its runs elsewhere (`reference`, `alternates`) and its speed (`bench`) are typed records; the
other nested ones (identity, config, calibration, environment, checks) stay dicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bench_entry import BenchEntry
from .record import Record


@dataclass
class RuntimeScore(Record):
    """A model scored on every test image in one runtime, or why it could not run: the row's quantized model run
    another way (`experiment.cross_checks`), a layer study's variant."""

    runtime: str | None = None  # a float reference's; an alternate is named by its key
    accuracy: float | None = None
    correct: int | None = None
    agreement: float | None = None  # with the row's own predictions
    images_per_second: float | None = None
    predictions: str | None = None
    error: str | None = None


@dataclass
class Measured(Record):
    """What every stored measurement says of itself (a row, a study entry): the model and its weights, the recipe,
    the identity it was measured under and where it ran, so rows and studies measured alike are told apart alike
    (`analysis.rows`)."""

    model: str | None = None
    model_weights_sha256: str | None = None
    config_name: str | None = None
    config: dict | None = None
    identity: dict | None = None  # everything that can change the numbers (`identity.make_identity`)
    identity_hash: str | None = None
    environment: dict | None = None  # CPU, threads, library versions (`env.environment`)


@dataclass
class Row(Measured):
    # what was measured (`Measured`), and when (`experiment.run_config`)
    created: str | None = None  # ISO time, UTC
    calibration: dict | None = None  # the calibration draw (static configs): calibration_n, calibration_seed...
    quantize_seconds: float | None = None
    # the score on every evaluation image (`evaluate.evaluate`)
    accuracy: float | None = None
    correct: int | None = None
    dataset: str | None = None
    n_images: int | None = None
    fingerprint: str | None = None  # of the evaluation set
    per_class_accuracy: dict[str, float] | None = None
    confusion_matrix: list[list[int]] | None = None
    eval_seconds: float | None = None
    images_per_second: float | None = None
    warnings: list[str] | None = None
    predictions: str | None = None  # per-image classes (`results.encode_classes`)
    runtime: str | None = None  # the runtime the score is of: the one the config ships in
    size_bytes: int | None = None
    checks: dict | None = None
    # paired against the model's FP32 row on the same images (`experiment.compare_with_fp32`)
    delta_pp: float | None = None
    per_class_delta_pp: dict[str, float] | None = None
    agreement_with_fp32: float | None = None
    changed_predictions: int | None = None
    fp32_right_quantized_wrong: int | None = None
    fp32_wrong_quantized_right: int | None = None
    mcnemar_p: float | None = None
    size_ratio_vs_fp32: float | None = None
    # the same quantized model run another way (`experiment.cross_checks`)
    reference: RuntimeScore | None = None  # the recipe's float simulation
    alternates: dict[str, RuntimeScore] | None = None
    seconds: float | None = None  # the whole row: quantize, evaluate, cross-checks
    # rows without a score
    not_applicable: str | None = None
    error: str | None = None
    traceback: str | None = None
    # added after the row is computed
    executor: str | None = None  # where it was computed (`executors.py`)
    bench: BenchEntry | None = None  # its speed (`bench.attach_to_results`)
    schema: int | None = None  # the schema version of a row migrated from an older file

    NESTED = {"bench": BenchEntry, "reference": RuntimeScore, "alternates": (dict, RuntimeScore)}

    @property
    def scored(self) -> bool:
        """A row with a score (not failed, not inapplicable): what summary, compare and the report read."""
        return self.config_name is not None and self.accuracy is not None

    @property
    def seed(self) -> int | None:
        """Its calibration seed; None for configs that do not calibrate."""
        return (self.calibration or {}).get("calibration_seed")

    @property
    def calibration_n(self) -> int | None:
        return (self.calibration or {}).get("calibration_n")
