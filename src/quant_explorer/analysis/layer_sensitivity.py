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
from pathlib import Path
from typing import Callable

from ..backends import BACKENDS, Calibration, get_backend
from ..configs import QuantConfig
from ..errors import UserError
from ..evaluate import evaluate
from ..experiment import fp32_baseline, row_identity
from ..identity import identity_hash
from ..results import entry_key, save_entries

FILE = "layer_sensitivity.json"  # beside full_results.json
SQNR_IMAGES = 64  # test images whose activations are compared; SQNR is stable well before this


def run(model, config: QuantConfig, data, calibration: Calibration, layers: list[str] | None = None,
        log: Callable[[str], None] = lambda _: None) -> dict:
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

        def score(only: str | None = None, skip: str | None = None) -> dict:
            metrics, _ = evaluate(backend.build(only, skip), data.test, model.preprocessing)
            return {"accuracy": metrics["accuracy"], "correct": metrics["correct"]}

        full = score()
        log(f"all layers quantized: {100 * full['accuracy']:.2f}%")
        rows = []
        for layer in chosen:
            only, skip = score(only=layer["node"]), score(skip=layer["node"])
            rows.append({**layer, "only_this_quantized": only, "all_but_this_quantized": skip,
                         "cost_pp": round(100 * (fp32_row["accuracy"] - only["accuracy"]), 4),
                         "recovery_pp": round(100 * (skip["accuracy"] - full["accuracy"]), 4)})
            log(f"{layer['layer']}: cost {rows[-1]['cost_pp']:+.2f} pp, recovery {rows[-1]['recovery_pp']:+.2f} pp")
        sqnr = backend.sqnr(model.preprocessing(data.test.images[:SQNR_IMAGES]))
    for row in rows:
        row["weight_sqnr_db"] = sqnr["weights"].get(row["layer"])
    identity = row_identity(model, config, data, len(calibration.images), calibration.seed)
    return {"model": model.name, "model_weights_sha256": model.weights_sha256, "config_name": config.name,
            "config": config.to_dict(), "identity": identity, "identity_hash": identity_hash(identity),
            "calibration": calibration.describe(), "method": backend.method,
            "fp32_accuracy": fp32_row["accuracy"], "quantized_accuracy": full["accuracy"],
            "quantized_delta_pp": round(100 * (full["accuracy"] - fp32_row["accuracy"]), 4),
            "n_images": fp32_row["n_images"], "dataset": fp32_row["dataset"], "layers": rows,
            "ranking_by_cost": [r["layer"] for r in sorted(rows, key=lambda r: -r["cost_pp"])],
            "ranking_by_recovery": [r["layer"] for r in sorted(rows, key=lambda r: -r["recovery_pp"])],
            "sqnr": {"method": sqnr["method"], "n_images": min(SQNR_IMAGES, len(data.test)),
                     "activations": sqnr["activations"]},
            "environment": fp32_row["environment"]}


def save(path: Path, entry: dict) -> None:
    cal = entry["calibration"]
    key = entry_key(entry["model"], entry["config_name"], cal["calibration_n"], cal["calibration_seed"],
                    entry["identity_hash"])
    save_entries(path, {key: entry})
