"""Which layers the accuracy loss comes from: quantize one layer alone, or keep one layer FP32, and measure SQNR.

A layer is an op with weights (Conv, Gemm/Linear), named by its weight (`stack2.conv1`), so ORT and PT2E name
it alike. Per layer, two experiments on every test image:
  cost      = FP32 accuracy - accuracy with only this layer quantized (the rest FP32): what it costs alone;
  recovery  = accuracy with only this layer FP32 - accuracy fully quantized: what keeping it FP32 buys back.
Each backend selects its own layers (`Backend.layer_variants`: ORT with quantize_static's nodes_to_quantize /
nodes_to_exclude, PT2E with X86InductorQuantizer.set_module_name_qconfig) and measures the SQNR (dB) between
FP32 and quantized activations at each tensor (ORT's qdq_loss_debug; torchao's numeric debugger), which shows
where the error builds up.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ..backends import BACKENDS, Calibration, get_backend, get_config
from ..configs import CALIBRATION_N, QuantConfig
from ..errors import UserError
from ..evaluate import evaluate
from ..experiment import fp32_baseline
from ..identity import identity_hash
from ..keys import make_calibration, row_identity
from ..record import Record
from ..results import entry_key, save_entries
from ..row import Row, RuntimeScore
from .base import Delta, StudyEntry, measured_alike

FILE = "layer_sensitivity.json"  # beside full_results.json
SQNR_IMAGES = 64  # test images whose activations are compared; SQNR is stable well before this


@dataclass
class LayerScore(Record):
    """One layer: accuracy with only it quantized (its cost alone), with only it FP32 (what that recovers), and its
    weights' SQNR."""

    layer: str | None = None  # named by its weight (`stack2.conv1`)
    node: str | None = None
    op_type: str | None = None
    only_this_quantized: RuntimeScore | None = None
    all_but_this_quantized: RuntimeScore | None = None
    cost_pp: float | None = None  # FP32 minus only-this-quantized
    recovery_pp: float | None = None  # all-but-this-quantized minus fully quantized
    weight_sqnr_db: float | None = None

    NESTED = {"only_this_quantized": RuntimeScore, "all_but_this_quantized": RuntimeScore}


@dataclass
class LayerSensitivityEntry(StudyEntry):
    """One model x config on one calibration sample, per layer (layer_sensitivity.json)."""

    calibration: dict | None = None  # the sample (`Calibration.describe`)
    method: str | None = None
    fp32_accuracy: float | None = None
    quantized_accuracy: float | None = None
    quantized_delta_pp: float | None = None
    layers: list[LayerScore] = field(default_factory=list)
    ranking_by_cost: list[str] = field(default_factory=list)
    ranking_by_recovery: list[str] = field(default_factory=list)
    sqnr: dict | None = None  # {method, n_images, activations: [{tensor, label, sqnr_db}]}

    NESTED = {"layers": (list, LayerScore)}


def run(model, config: QuantConfig, data, calibration: Calibration, layers: list[str] | None = None,
        log: Callable[[str], None] = lambda _: None) -> LayerSensitivityEntry:
    """Both experiments for every layer (or the named ones), the SQNR per tensor, and the rankings."""
    variants = get_backend(config.backend).layer_variants
    if variants is None:
        able = [name for name, b in BACKENDS.items() if b.layer_variants]
        raise UserError(f"layer sensitivity needs a config of a backend that can select layers ({', '.join(able)}); "
                        f"{config.name} is {config.backend}")
    with tempfile.TemporaryDirectory(prefix="layers-") as tmp:
        backend = variants(model, config, calibration, Path(tmp))
        chosen = backend.layers
        if layers:
            unknown = sorted(set(layers) - {layer["layer"] for layer in chosen})
            if unknown:
                raise UserError(f"unknown layers {unknown}: {model.name} has {[la['layer'] for la in chosen]}")
            chosen = [la for la in chosen if la["layer"] in layers]
        _, fp32_row = fp32_baseline(model, data)

        def score(only: str | None = None, skip: str | None = None) -> RuntimeScore:
            _, preds = evaluate(backend.build(only, skip), data.test, model.preprocessing)
            right = preds == data.test.labels.numpy()
            return RuntimeScore(accuracy=float(right.mean()), correct=int(right.sum()))

        full = score()
        log(f"all layers quantized: {100 * full.accuracy:.2f}%")
        rows = []
        for layer in chosen:
            only, skip = score(only=layer["node"]), score(skip=layer["node"])
            rows.append(replace(LayerScore.from_dict(layer), only_this_quantized=only, all_but_this_quantized=skip,
                                cost_pp=round(100 * (fp32_row.accuracy - only.accuracy), 4),
                                recovery_pp=round(100 * (skip.accuracy - full.accuracy), 4)))
            log(f"{layer['layer']}: cost {rows[-1].cost_pp:+.2f} pp, recovery {rows[-1].recovery_pp:+.2f} pp")
        sqnr = backend.sqnr(model.preprocessing(data.test.images[:SQNR_IMAGES]))
    for row in rows:
        row.weight_sqnr_db = sqnr["weights"].get(row.layer)
    identity = row_identity(model, config, data, calibration)
    return LayerSensitivityEntry(
        model=model.name, model_weights_sha256=model.weights_sha256, config_name=config.name,
        config=config.to_dict(), identity=identity, identity_hash=identity_hash(identity),
        calibration=calibration.describe(), method=backend.method,
        fp32_accuracy=fp32_row.accuracy, quantized_accuracy=full.accuracy,
        quantized_delta_pp=round(100 * (full.accuracy - fp32_row.accuracy), 4),
        n_images=fp32_row.n_images, dataset=fp32_row.dataset, layers=rows,
        ranking_by_cost=[r.layer for r in sorted(rows, key=lambda r: -r.cost_pp)],
        ranking_by_recovery=[r.layer for r in sorted(rows, key=lambda r: -r.recovery_pp)],
        sqnr={"method": sqnr["method"], "n_images": min(SQNR_IMAGES, len(data.test)),
              "activations": sqnr["activations"]},
        environment=fp32_row.environment)


def save(path: Path, entry: LayerSensitivityEntry) -> None:
    """Merge the entry into layer_sensitivity.json under its (model, config, n, seed, identity) key."""
    cal = entry.calibration
    key = entry_key(entry.model, entry.config_name, cal["calibration_n"], cal["calibration_seed"],
                    entry.identity_hash)
    save_entries(path, {key: entry.to_dict()})


def plot(entry: LayerSensitivityEntry) -> bytes:
    """Per layer, in model order: the accuracy change with only it quantized (negative = loss, as everywhere) and
    the change from keeping only it FP32 (positive = recovered), plus the SQNR of each activation against FP32."""
    from ..figures import png, pyplot

    plt = pyplot()
    layers = entry.layers
    acts = entry.sqnr["activations"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(4.5, 0.34 * max(len(layers), len(acts)))),
                                      layout="constrained")
    y = np.arange(len(layers))
    left.barh(y - 0.2, [-r.cost_pp for r in layers], 0.4, color="tab:red",
              label="only this layer quantized: Δ vs FP32")
    left.barh(y + 0.2, [r.recovery_pp for r in layers], 0.4, color="tab:blue",
              label="only this layer FP32: Δ vs all quantized")
    left.set_yticks(y, [r.layer for r in layers])
    left.invert_yaxis()
    left.axvline(0, color="black", lw=0.8)
    left.set(xlabel="Δ accuracy (pp; negative = loss)", title=f"{entry.model} / {entry.config_name}")
    left.legend(loc="lower left", bbox_to_anchor=(0, 1.06), ncol=1)
    left.grid(axis="x", alpha=0.3)
    right.barh(range(len(acts)), [a["sqnr_db"] for a in acts], color="tab:gray")
    right.set_yticks(range(len(acts)), [a["label"] for a in acts])
    right.invert_yaxis()
    right.set(xlabel="SQNR vs FP32 activations (dB, higher is better)",
              title=f"activation SQNR over {entry.sqnr['n_images']} test images")
    right.grid(axis="x", alpha=0.3)
    return png(fig)


@dataclass(frozen=True)
class LayerSensitivityStudy:
    """Per layer of one model x config, on one calibration sample: its cost alone, its recovery kept FP32, SQNR."""

    model: str
    config: str
    calibration_n: int = CALIBRATION_N
    seed: int = 0

    kind: ClassVar[str] = "per-layer sensitivity"
    file: ClassVar[str] = FILE
    title: ClassVar[str] = "Per-layer sensitivity"
    anchor: ClassVar[str] = "layers"
    intro: ClassVar[str] = ""
    figure: ClassVar[str] = "per-layer sensitivity"
    entry_type: ClassVar[type[StudyEntry]] = LayerSensitivityEntry

    def identity(self, model, data) -> dict:
        return row_identity(model, get_config(self.config), data,
                            make_calibration(model, data, self.calibration_n, self.seed))

    def key(self, model, data) -> str:
        return entry_key(self.model, self.config, self.calibration_n, self.seed,
                         identity_hash(self.identity(model, data)))

    def is_current(self, entry: LayerSensitivityEntry, model, data) -> bool:
        return measured_alike(entry, self.identity(model, data))

    def run(self, model, data, stored: dict[str, Row], log: Callable[[str], None]) -> LayerSensitivityEntry:
        calibration = make_calibration(model, data, self.calibration_n, self.seed)
        return run(model, get_config(self.config), data, calibration, log=log)

    def save(self, path: Path, entry: LayerSensitivityEntry) -> None:
        save(path, entry)

    @staticmethod
    def heading(entry: LayerSensitivityEntry) -> str:
        return (f"{entry.model} / {entry.config_name}: FP32 {100 * entry.fp32_accuracy:.2f}%, all layers "
                f"quantized {100 * entry.quantized_accuracy:.2f}%")

    @staticmethod
    def text(entry: LayerSensitivityEntry) -> str:
        top = ", ".join(f"{r.layer} ({-r.cost_pp:+.2f} pp)" for r in sorted(entry.layers, key=lambda r: -r.cost_pp)[:3])
        return (f"Method: {entry.method}; SQNR: {entry.sqnr['method']}. Most costly alone (Δ vs FP32, "
                f"negative = loss): {top}")

    @staticmethod
    def table(entry: LayerSensitivityEntry) -> tuple[list[str], list[list]]:
        """Per layer: accuracy with only it quantized and its Δ vs FP32, with only it FP32 and what that recovers,
        and its weights' SQNR."""
        return (["layer", "op", "only it quantized", "Δ vs FP32 pp", "only it FP32", "recovery pp", "weight SQNR dB"],
                [[r.layer, r.op_type, f"{100 * r.only_this_quantized.accuracy:.2f}%", Delta(-r.cost_pp),
                  f"{100 * r.all_but_this_quantized.accuracy:.2f}%", f"{r.recovery_pp:+.2f}",
                  "—" if r.weight_sqnr_db is None else f"{r.weight_sqnr_db:.1f}"] for r in entry.layers])

    plot = staticmethod(plot)
