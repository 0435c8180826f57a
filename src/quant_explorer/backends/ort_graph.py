"""What the ORT backend reads in ONNX graphs: ORT's calibration protocol over any batches, the sanity checks on a
quantized graph, its weighted layers and per-tensor SQNR (`backends.ort`'s; apart so that module stays readable)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..configs import QuantConfig

if TYPE_CHECKING:
    import torch

WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")  # the ops per-layer sensitivity calls layers



def symmetric_activations(config: QuantConfig) -> bool:
    """Distribution calibration's ranges are symmetric whatever the config asks: ORT histograms every tensor over
    [-max|x|, max|x|] and takes the histogram's edges as the range. Declared asymmetric, ORT drops each ReLU
    whose input it quantizes, trusting a range that starts at 0 to clip the negatives, and the model falls to
    chance (10% measured on all three models); declared symmetric, the ReLUs stay."""
    return config.symmetric_activations or config.calibration == "distribution"


def calibration_reader(batches: Iterable[torch.Tensor], input_name: str):
    """ORT's calibration protocol over any batches (calibration images, or test images for SQNR): one feed
    dict per batch, then None."""
    from onnxruntime.quantization import CalibrationDataReader

    feeds = [{input_name: np.ascontiguousarray(batch.numpy())} for batch in batches]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

        def __len__(self) -> int:
            return len(feeds)

    return Reader()


QUANTIZED_OPS = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QGemm", "QLinearAveragePool",
                 "QLinearGlobalAveragePool", "QLinearMul", "ConvInteger", "MatMulInteger"}


# QOperator ops carry their output's (scale, zero point) as inputs at these positions.
OUTPUT_QPARAMS = {"QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QLinearAdd": (6, 7), "QLinearMul": (6, 7),
                  "QLinearAveragePool": (3, 4), "QLinearGlobalAveragePool": (3, 4), "QGemm": (7, 8)}


def onnx_checks(path: Path, config: QuantConfig) -> dict:
    """What the quantized graph holds, and whether every activation's quantization is the one the config asked
    for and represents 0.0 exactly.

    Per activation: its zero point has the config's dtype (ONNX reads a missing one as uint8 0); with symmetric
    activations it sits at the middle of the range (0 for int8, 128 for uint8); the scale is positive and
    finite. Then quantize(0.0) = zp and dequantize(zp) = 0.0, and ReLU's zeros and padding stay exact.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    ops = Counter(node.op_type for node in graph.node)
    expected = np.dtype(config.activation_dtype)
    symmetric_zp = 0 if expected == np.int8 else 128
    checked, dtypes, bad = 0, set(), []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in init:  # weights are not activations
            scale_at, zp_at = 1, 2
        elif node.op_type in OUTPUT_QPARAMS:
            scale_at, zp_at = OUTPUT_QPARAMS[node.op_type]
        else:
            continue
        scale = init.get(node.input[scale_at])
        zp = init.get(node.input[zp_at]) if len(node.input) > zp_at else np.zeros((), np.uint8)
        checked += 1
        dtypes.add(str(zp.dtype) if zp is not None else "unknown")
        zp_ok = zp is not None and zp.dtype == expected and (not symmetric_activations(config)
                                                             or bool(np.all(zp == symmetric_zp)))
        scale_ok = scale is not None and bool(np.all(np.isfinite(scale) & (scale > 0)))
        if not (zp_ok and scale_ok):
            bad.append(node.input[0])
    return {
        "quantized_ops": {k: v for k, v in sorted(ops.items()) if k in QUANTIZED_OPS or k == "DequantizeLinear"},
        "activation_dtypes": sorted(dtypes),
        "activation_tensors_checked": checked,
        "zero_point_exact_zero": not bad,
        "zero_point_failures": bad,
    }


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


def _tensor_labels(path: Path) -> dict[str, str]:
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
        acts[name] = qdq.collect_activations(str(augmented), calibration_reader([images], input_name))
    errors = qdq.compute_activation_error(qdq.create_activation_matching(acts["qdq"], acts["float"]))
    labels = _tensor_labels(source)
    order = {t: i for i, t in enumerate(labels)}
    activations = [{"tensor": t, "label": labels.get(t, t), "sqnr_db": round(float(e["xmodel_err"]), 3)}
                   for t, e in errors.items() if "xmodel_err" in e and t in order and labels.get(t) != "input"]
    weights = qdq.compute_weight_error(qdq.create_weight_matching(str(source), str(quantized_qdq)))
    weight_sqnr = {n.removesuffix(".weight"): round(float(v), 3) for n, v in weights.items() if n.endswith(".weight")}
    return sorted(activations, key=lambda a: order[a["tensor"]]), weight_sqnr
