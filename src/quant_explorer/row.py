"""One result row, typed: the schema of every entry of full_results.json, written down in one place.

A row is one (model, config, calibration draw) measured once (`experiment.run_config`), or a config that does
not apply there (`not_applicable`), or one that failed (`error`). Every field is optional because rows of each
kind, and rows of older schemas (`schema`: the version a row was migrated from), hold different subsets; a
field that is None is not stored. `from_dict` / `to_dict` round-trip a stored row exactly, key order included;
keys this version does not know (a row written by a newer one) are kept in `extra` and written back.
Nested records (identity, config, calibration, reference, alternates, bench, environment, checks) stay dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class Row:
    # what was measured: the model, the recipe, its identity and where it ran (`experiment.run_config`)
    model: str | None = None
    model_weights_sha256: str | None = None
    config_name: str | None = None
    config: dict | None = None
    identity: dict | None = None  # everything that can change the numbers (`identity.make_identity`)
    identity_hash: str | None = None
    environment: dict | None = None  # CPU, threads, library versions (`env.environment`)
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
    reference: dict | None = None  # the recipe's float simulation: {runtime, accuracy, agreement, ...} or {error}
    alternates: dict[str, dict] | None = None
    seconds: float | None = None  # the whole row: quantize, evaluate, cross-checks
    # rows without a score
    not_applicable: str | None = None
    error: str | None = None
    traceback: str | None = None
    # added after the row is computed
    executor: str | None = None  # where it was computed (`executors.py`)
    bench: dict | None = None  # its speed (`bench.attach_to_results`)
    schema: int | None = None  # the schema version of a row migrated from an older file
    extra: dict = field(default_factory=dict)  # keys of a newer version, kept as they were
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the stored key order

    @classmethod
    def from_dict(cls, stored: dict) -> Row:
        known = {k: v for k, v in stored.items() if k in _FIELDS and v is not None}
        extra = {k: v for k, v in stored.items() if k not in known}  # unknown keys, and a null stored as null
        return cls(**known, extra=extra, _order=tuple(stored))

    def to_dict(self) -> dict:
        """The row as stored: set fields (then `extra`) in the order it was read in, new fields after."""
        out = {**self.extra, **{k: v for k in _FIELDS if (v := getattr(self, k)) is not None}}
        rank = {k: i for i, k in enumerate(self._order)}
        return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))

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


_FIELDS = tuple(f.name for f in fields(Row) if f.name not in ("extra", "_order"))
