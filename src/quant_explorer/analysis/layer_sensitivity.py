"""Which layers the accuracy loss comes from: quantize one layer alone, or keep one layer FP32, and measure SQNR.

A layer is an op with weights (Conv, Gemm/Linear), named by its weight (`stack2.conv1`), so ORT and PT2E name
it alike. Per layer, two experiments on every test image:
  cost      = FP32 accuracy - accuracy with only this layer quantized (the rest FP32): what it costs alone;
  recovery  = accuracy with only this layer FP32 - accuracy fully quantized: what keeping it FP32 buys back.
ORT selects layers with quantize_static's nodes_to_quantize / nodes_to_exclude; PT2E with
X86InductorQuantizer.set_module_name_qconfig. Alongside, the SQNR (dB) between FP32 and quantized activations
at each tensor (ORT's qdq_loss_debug; torchao's numeric debugger) shows where the error builds up.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backends import Calibration
from ..configs import QuantConfig
from ..errors import UserError
from ..evaluate import Runner, evaluate
from ..identity import identity_hash
from ..results import entry_key, save_entries

SQNR_IMAGES = 64  # test images whose activations are compared; SQNR is stable well before this
WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def onnx_layers(path: Path) -> list[dict]:
    """Weighted nodes of an ONNX graph in graph order: layer (the weight's name minus '.weight'), node, op."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {t.name for t in graph.initializer}
    out = []
    for node in graph.node:
        weight = next((i for i in node.input[1:2] if i in weights), None)
        if node.op_type in WEIGHT_OPS and weight:
            out.append({"layer": weight.removesuffix(".weight"), "node": node.name, "op_type": node.op_type})
    return out


def torch_layers(module: torch.nn.Module) -> list[dict]:
    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    return [{"layer": name, "node": name, "op_type": type(m).__name__} for name, m in module.named_modules()
            if isinstance(m, kinds)]


def _reader(images: torch.Tensor, input_name: str):
    """A one-batch CalibrationDataReader that can be read twice (once per model)."""
    feeds = [{input_name: np.ascontiguousarray(images.numpy())}]

    class Reader:
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def __iter__(self):
            return iter(feeds)

    return Reader()


def _onnx_labels(path: Path) -> dict[str, str]:
    """Tensor name -> readable label: the layer producing it, or 'Relu after stack1.conv1'."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {t.name for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    labels: dict[str, str] = {graph.input[0].name: "input"}

    def layer_of(tensor: str, hops: int = 0) -> str | None:
        node = producer.get(tensor)
        if node is None or hops > 20:
            return None
        weight = next((i for i in node.input[1:2] if i in weights), None)
        if node.op_type in WEIGHT_OPS and weight:
            return weight.removesuffix(".weight")
        return layer_of(node.input[0], hops + 1)

    for tensor, node in producer.items():
        layer = layer_of(tensor)
        direct = node.op_type in WEIGHT_OPS and layer and node.input[1].removesuffix(".weight") == layer
        labels[tensor] = layer if direct else f"{node.op_type} after {layer}" if layer else node.op_type
    return labels


def ort_sqnr(source: Path, quantized_qdq: Path, images: torch.Tensor, workdir: Path) -> tuple[list[dict], dict]:
    """Per-tensor SQNR (dB) of the QDQ model's activations against the FP32 model's, and per-layer weight SQNR."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as qdq

    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    acts = {}
    for name, path in (("float", source), ("qdq", quantized_qdq)):
        augmented = workdir / f"{name}.augmented.onnx"
        qdq.modify_model_output_intermediate_tensors(str(path), str(augmented))
        acts[name] = qdq.collect_activations(str(augmented), _reader(images, input_name))
    errors = qdq.compute_activation_error(qdq.create_activation_matching(acts["qdq"], acts["float"]))
    labels = _onnx_labels(source)
    order = {t: i for i, t in enumerate(labels)}
    activations = [{"tensor": t, "label": labels.get(t, t), "sqnr_db": round(float(e["xmodel_err"]), 3)}
                   for t, e in errors.items() if "xmodel_err" in e and t in order and labels.get(t) != "input"]
    weights = qdq.compute_weight_error(qdq.create_weight_matching(str(source), str(quantized_qdq)))
    weight_sqnr = {n.removesuffix(".weight"): round(float(v), 3) for n, v in weights.items() if n.endswith(".weight")}
    return sorted(activations, key=lambda a: order[a["tensor"]]), weight_sqnr


class _Ort:
    """quantize_static restricted to some nodes; SQNR from the QDQ form of the same recipe."""

    def __init__(self, model, config: QuantConfig, calibration: Calibration, workdir: Path) -> None:
        from ..backends.ort import preprocessed_onnx

        self.model, self.config, self.calibration, self.workdir = model, config, calibration, workdir
        self.source = preprocessed_onnx(model)
        self.layers = onnx_layers(self.source)
        self.method = "ORT quantize_static nodes_to_quantize / nodes_to_exclude"

    def build(self, only: str | None = None, skip: str | None = None) -> Runner:
        from ..backends.ort import quantize_onnx
        from ..runtimes import ort_runner

        path = quantize_onnx(self.source, self.workdir / "variant.onnx", self.config, self.calibration,
                             nodes_to_exclude=[skip] if skip else None, nodes_to_quantize=[only] if only else None)
        return ort_runner(path)

    def sqnr(self, images: torch.Tensor) -> dict:
        from ..backends.ort import quantize_onnx

        qdq_config = replace(self.config, format="qdq")
        path = quantize_onnx(self.source, self.workdir / "qdq.onnx", qdq_config, self.calibration)
        activations, weights = ort_sqnr(self.source, path, images, self.workdir)
        note = "" if self.config.format == "qdq" else " (measured on the QDQ form of the same recipe: same scales)"
        # collect_activations turns graph optimisation off, so Q/DQ run as separate float ops: this is the
        # recipe's error, not what the fused int8 kernels add (the accuracy experiments above include those).
        return {"activations": activations, "weights": weights,
                "method": "onnxruntime.quantization.qdq_loss_debug, Q/DQ evaluated as float ops (the recipe's error, "
                          "not the int8 kernels')" + note}


class _Pt2e:
    """prepare_pt2e with X86InductorQuantizer configured per module; SQNR from torchao's numeric debugger."""

    def __init__(self, model, config: QuantConfig, calibration: Calibration, workdir: Path) -> None:
        from ..backends.pt2e import quantization_config

        self.model, self.calibration = model, calibration
        self.qconfig = quantization_config(config)
        self.layers = torch_layers(model.fresh())
        self.method = "PT2E X86InductorQuantizer.set_module_name_qconfig"

    def _export(self) -> torch.fx.GraphModule:
        from ..backends.pt2e import export_fp32

        return export_fp32(self.model)

    def _convert(self, exported, only: str | None = None, skip: str | None = None) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        from ..backends.pt2e import in_eval_mode
        from ..backends.x86_quantizer import SharedOutputX86InductorQuantizer

        quantizer = SharedOutputX86InductorQuantizer()
        if only:
            quantizer.set_module_name_qconfig(only, self.qconfig)
        else:
            quantizer.set_global(self.qconfig)
            if skip:
                quantizer.set_module_name_qconfig(skip, None)
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for batch in self.calibration.batches():
                prepared(batch)
        return in_eval_mode(convert_pt2e(prepared))

    def build(self, only: str | None = None, skip: str | None = None) -> Runner:
        from ..runtimes import torch_runner

        return torch_runner(self._convert(self._export(), only, skip))

    def sqnr(self, images: torch.Tensor) -> dict:
        from torchao.quantization.pt2e import (compare_results, extract_results_from_loggers,
                                               prepare_for_propagation_comparison)

        exported = self._export()
        # A conv followed by BatchNorm computes something else once the BN is folded into it: not comparable.
        folded = {n.name for n in exported.graph.nodes
                  if any("batch_norm" in str(u.target) for u in n.users)}
        reference = prepare_for_propagation_comparison(exported)  # a copy, before prepare_pt2e changes the graph
        actual = prepare_for_propagation_comparison(self._convert(exported))
        with torch.no_grad():
            reference(images)
            actual(images)
        results = compare_results(extract_results_from_loggers(reference), extract_results_from_loggers(actual))
        activations = [{"tensor": s.ref_node_name, "label": f"{s.ref_module_stack} ({s.ref_node_name})",
                        "sqnr_db": round(float(s.results[0].sqnr), 3)}
                       for info, s in results.items() if s.results and info.name not in folded]
        return {"activations": activations, "weights": {}, "method": "torchao.quantization.pt2e numeric debugger"}


BACKENDS = {"ort": _Ort, "pt2e": _Pt2e}


def run(model, config: QuantConfig, data, calibration: Calibration, layers: list[str] | None = None,
        log: Callable[[str], None] = lambda _: None) -> dict:
    """Both experiments for every layer (or the named ones), the SQNR per tensor, and the rankings."""
    from ..sweep import fp32_baseline, row_identity

    if config.backend not in BACKENDS:
        raise UserError(f"layer sensitivity needs an ORT or PT2E config; {config.name} is {config.backend}")
    with tempfile.TemporaryDirectory(prefix="layers-") as tmp:
        backend = BACKENDS[config.backend](model, config, calibration, Path(tmp))
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
