"""ONNX Runtime static quantization: quant_pre_process, then quantize_static over the calibration set."""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..configs import QuantConfig
from ..files import atomic_path
from ..models import LoadedModel, exported_onnx
from ..runtimes import onnx2torch_runner, ort_runner
from . import Calibration, QuantizedModel


def _reader(calibration: Calibration, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """ORT's calibration protocol over ours: one feed dict per batch, then None."""

        def __init__(self) -> None:
            self._batches = iter(calibration.batches())

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch.numpy())}

        def __len__(self) -> int:
            return -(-len(calibration.images) // calibration.batch_size)

    return Reader()


@contextlib.contextmanager
def _quiet():
    """quantize_static prints calibration progress and logs format advice on the root logger: keep it off our output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def preprocessed_onnx(model: LoadedModel) -> Path:
    """The FP32 export after ORT's quant_pre_process (shape inference + graph optimisation), cached."""
    from onnxruntime.quantization import quant_pre_process

    source = exported_onnx(model)
    path = source.with_name("fp32.preprocessed.onnx")
    if not path.exists():
        with atomic_path(path, ".onnx") as tmp:  # a private name: parallel workers share this cache
            quant_pre_process(str(source), str(tmp))
    return path


def pad_narrow_conv_inputs(model, channels: int = 4) -> list[str]:
    """Give each convolution that reads fewer than `channels` input channels (an RGB stem) zero channels up to
    `channels`, with zero weights for them; returns the convolutions changed.

    On x86 without VNNI, MLAS's int8 convolution handles 3 input channels poorly. The ResNet8 stem took
    5.2 ms per batch of 256 in int8 and 2.3 ms in FP32. With a zero fourth channel, the whole int8 model went
    from 1.46x to 1.56x FP32's throughput (paired runs). The maths is unchanged, but the AVX2 kernel sums
    products in int16 pairs, and the padding changes which products it pairs. So this is exact only where
    a pair cannot overflow, i.e. with reduce_range's 7-bit weights. Without reduce_range, the u8 MinMax
    models lost 112 more test images. Graphs whose opset predates Pad's `pads` input (11) are left alone.
    """
    from onnx import helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)
    changed = []
    for node in list(graph.node):
        weight = initializers.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if opset < 11 or weight is None or group != 1 or uses[weight.name] != 1 or len(weight.dims) != 4 \
                or weight.dims[1] >= channels:
            continue
        w = numpy_helper.to_array(weight)
        padded = np.zeros((w.shape[0], channels, *w.shape[2:]), w.dtype)
        padded[:, :w.shape[1]] = w
        weight.CopyFrom(numpy_helper.from_array(padded, weight.name))
        pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, channels - w.shape[1], 0, 0], np.int64),
                                       f"{node.name}_channel_pads")
        graph.initializer.append(pads)
        padded_input = f"{node.input[0]}_padded_to_{channels}_channels"
        pad = helper.make_node("Pad", [node.input[0], pads.name], [padded_input], name=f"{node.name}_channel_pad")
        graph.node.insert(list(graph.node).index(node), pad)
        node.input[0] = padded_input
        changed.append(node.name)
    return changed


def symmetric_activations(config: QuantConfig) -> bool:
    """Distribution calibration's ranges are symmetric whatever the config asks: ORT histograms every tensor over
    [-max|x|, max|x|] and takes the histogram's edges as the range. Declared asymmetric, ORT drops each ReLU
    whose input it quantizes, trusting a range that starts at 0 to clip the negatives, and the model falls to
    chance (10% measured on all three models); declared symmetric, the ReLUs stay."""
    return config.symmetric_activations or config.calibration == "distribution"


def quantize_onnx(source: Path, output: Path, config: QuantConfig, calibration: Calibration,
                  nodes_to_exclude: list[str] | None = None, nodes_to_quantize: list[str] | None = None) -> Path:
    """quantize_static with the config's dtypes, method, format and granularity; used by per-layer analysis too."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution}
    proto = onnx.load(str(source))
    if config.reduce_range:
        pad_narrow_conv_inputs(proto)
    with _quiet(), atomic_path(output, ".onnx") as tmp:
        quantize_static(
            # A ModelProto, not the path: given a path, ORT writes `<source>-inferred.onnx` beside it, which
            # parallel workers quantizing the same source would race on.
            proto, str(tmp), _reader(calibration, proto.graph.input[0].name),
            quant_format=QuantFormat.QDQ if config.format == "qdq" else QuantFormat.QOperator,
            per_channel=config.granularity == "per_channel",
            reduce_range=config.reduce_range,
            activation_type=QuantType.QInt8 if config.activation_dtype == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=nodes_to_exclude,
            nodes_to_quantize=nodes_to_quantize,
            calibrate_method=methods[config.calibration],
            calibration_providers=["CPUExecutionProvider"],
            extra_options={"ActivationSymmetric": symmetric_activations(config), "WeightSymmetric": True},
        )
    return output


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    path = quantize_onnx(preprocessed_onnx(model), workdir / "model.onnx", config, calibration)
    alternates = {"onnx2torch": lambda: onnx2torch_runner(path)} if config.format == "qdq" else {}
    return QuantizedModel(ort_runner(path), path, "onnxruntime", checks=onnx_checks(path), alternates=alternates)


QUANTIZED_OPS = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QGemm", "QLinearAveragePool",
                 "QLinearGlobalAveragePool", "QLinearMul", "ConvInteger", "MatMulInteger"}


# QOperator ops carry their output's (scale, zero point) as inputs at these positions.
OUTPUT_QPARAMS = {"QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QLinearAdd": (6, 7), "QLinearMul": (6, 7),
                  "QLinearAveragePool": (3, 4), "QLinearGlobalAveragePool": (3, 4), "QGemm": (7, 8)}


def onnx_checks(path: Path) -> dict:
    """What the quantized graph holds, and whether every activation zero point represents 0.0 exactly.

    Zero maps to the zero point exactly when the zero point is an integer inside its dtype's range and
    the scale is a positive finite number: then quantize(0.0) = zp and dequantize(zp) = 0.0.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    checked, bad = 0, []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in init:  # weights are not activations
            scale_at, zp_at = 1, 2
        elif node.op_type in OUTPUT_QPARAMS:
            scale_at, zp_at = OUTPUT_QPARAMS[node.op_type]
        else:
            continue
        scale = init.get(node.input[scale_at])
        zp = init.get(node.input[zp_at]) if len(node.input) > zp_at else None
        checked += 1
        info = np.iinfo(zp.dtype) if zp is not None else np.iinfo(np.uint8)
        zp_ok = zp is None or bool(np.all((zp >= info.min) & (zp <= info.max)))
        scale_ok = scale is not None and bool(np.all(np.isfinite(scale) & (scale > 0)))
        if not (zp_ok and scale_ok):
            bad.append(node.input[0])
    return {
        "quantized_ops": {k: v for k, v in sorted(ops.items()) if k in QUANTIZED_OPS or k == "DequantizeLinear"},
        "activation_tensors_checked": checked,
        "zero_point_exact_zero": not bad,
        "zero_point_failures": bad,
    }
