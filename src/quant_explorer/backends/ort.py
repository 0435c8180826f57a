"""ONNX Runtime static quantization: quant_pre_process, then quantize_static over the calibration set.

Its artifacts run in ONNX Runtime (what users ship); a QDQ model also runs as exact simulated quantization
through onnx2torch, the float reference that splits a loss into the recipe's share and the int8 kernels'.
Per-layer sensitivity selects layers with quantize_static's nodes_to_quantize / nodes_to_exclude and measures
SQNR with onnxruntime's qdq_loss_debug.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..configs import CAPABILITIES, QuantConfig
from ..env import u8s8_saturation_warning
from ..evaluate import Runner
from ..files import atomic_path, scratch_dir
from ..models import LoadedModel, exported_onnx
from ..provenance import reuse_or_build
from ..runtimes import ONNX2TORCH, ONNXRUNTIME, onnx2torch_runner, ort_runner
from .base import Backend, Calibration, QuantizedModel, RuntimeBuild, register

WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")  # the ops per-layer sensitivity calls layers

CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile",
                       "distribution": "Distribution"}  # config name -> onnxruntime's CalibrationMethod member


def _reader(batches: Iterable[torch.Tensor], input_name: str):
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


PRE_PROCESSING = "quant_explorer.pre_processing"  # the metadata key saying which pre-processing a file had
# ORT's pre-processing, then the fallbacks it offers, in order: a user's graph that ONNX Runtime can quantize must
# not fail in a step before quantizing. The step taken depends only on the export and the library versions, both
# in every row's identity, and a graph that pre-processes takes the first: no stored number changes.
PRE_PROCESSING_STEPS = (("quant_pre_process", {}),
                        ("quant_pre_process without symbolic shape inference", {"skip_symbolic_shape": True}),
                        ("none", None))


def preprocessed_onnx(model: LoadedModel) -> Path:
    """The FP32 export after ORT's quant_pre_process (shape inference + graph optimisation), cached with its record
    (`provenance`): made once, by one of parallel workers, and reused while it proves itself. Where it fails
    (symbolic shape inference raises on some heads, e.g. torch.stack of logsumexps), the first fallback of
    `PRE_PROCESSING_STEPS` that works, said in the file's metadata (`pre_processing`)."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    from ..errors import one_line

    source = exported_onnx(model)

    def build(path: Path) -> None:
        failures = []
        with scratch_dir(path.parent, "qe-ort-pre"), atomic_path(path, ".onnx") as tmp:  # its pre.quant.* go there
            for step, options in PRE_PROCESSING_STEPS:
                try:
                    if options is None:
                        tmp.write_bytes(source.read_bytes())
                    else:
                        quant_pre_process(str(source), str(tmp), **options)
                    break
                except Exception as e:
                    failures.append(f"{step} failed: {one_line(e)}")
            if failures:
                proto = onnx.load(str(tmp))
                onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                                    PRE_PROCESSING: f"{step} ({'; '.join(failures)})"})
                onnx.save(proto, str(tmp))

    # the export's name carries what made it (weights, exporter, versions)
    path = source.with_name(f"{source.stem}.preprocessed.onnx")
    return reuse_or_build(path, {"source": source.name}, build, "preprocessed FP32 model")


def pre_processing(path: Path) -> str:
    """Which pre-processing the cached file `path` had: quant_pre_process, or a fallback and why."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return props.get(PRE_PROCESSING, PRE_PROCESSING_STEPS[0][0])


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
    from onnxruntime.quantization.calibrate import save_tensors_data

    proto = onnx.load(str(source))
    if config.reduce_range:
        pad_narrow_conv_inputs(proto)
    reader = _reader(calibration.batches(), proto.graph.input[0].name)
    # ORT's own temporary folders go in the scratch folder too: a run killed mid-calibration leaves them where the
    # next start removes them (`files.remove_leftovers`), never in the system's temporary directory.
    with _quiet(), scratch_dir(Path(output).parent, "qe-ort") as scratch, atomic_path(output, ".onnx") as tmp:
        if config.calibration_bins:  # a histogram method: its bins are the config's, handed over as ORT's cache
            cache = scratch / "calibration.json"
            save_tensors_data(histogram_ranges(proto, config, reader, scratch), cache)
            reader = None
        quantize_static(
            # A ModelProto, not the path: given a path, ORT writes `<source>-inferred.onnx` beside it, which
            # parallel workers quantizing the same source would race on.
            proto, str(tmp), reader,
            quant_format=QuantFormat.QDQ if config.format == "qdq" else QuantFormat.QOperator,
            per_channel=config.granularity == "per_channel",
            reduce_range=config.reduce_range,
            activation_type=QuantType.QInt8 if config.activation_dtype == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=nodes_to_exclude,
            nodes_to_quantize=nodes_to_quantize,
            calibrate_method=CalibrationMethod[CALIBRATION_METHODS[config.calibration]],
            calibration_providers=["CPUExecutionProvider"],
            calibration_cache_path=cache if config.calibration_bins else None,
            extra_options={"ActivationSymmetric": symmetric_activations(config), "WeightSymmetric": True},
        )
    return output


def histogram_ranges(proto, config: QuantConfig, reader, scratch: Path):
    """ORT's calibrator for a histogram method with the config's bins (quantize_static passes no bin settings
    through): collect the histograms over the calibration batches, compute each tensor's range."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    source = scratch / "model.onnx"
    onnx.save(proto, str(source))
    options = {"num_bins": config.calibration_bins, "symmetric": symmetric_activations(config),
               **({"num_quantized_bins": config.quantized_bins} if config.quantized_bins else {}),
               **({"percentile": config.percentile} if config.percentile else {})}
    calibrator = create_calibrator(source, None, augmented_model_path=str(scratch / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod[CALIBRATION_METHODS[config.calibration]],
                                   providers=["CPUExecutionProvider"], extra_options=options)
    calibrator.collect_data(reader)
    return calibrator.compute_data()


def quantize(model: LoadedModel, config: QuantConfig, calibration: Calibration | None, workdir: Path) -> QuantizedModel:
    # Quantized once per workdir (one row identity; the file is written whole or not at all), then reused while its
    # record proves it: the bench and a repeated `quantize` load the sweep's model instead of calibrating it again.
    source = preprocessed_onnx(model)
    path = reuse_or_build(workdir / "model.onnx", {"row": workdir.name, "source": source.name},
                          lambda out: quantize_onnx(source, out, config, calibration), "quantized model")
    runtimes = {ONNXRUNTIME.name: RuntimeBuild(lambda threads: ort_runner(path, threads))}
    if config.format == "qdq":  # onnx2torch converts Q/DQ pairs; QOperator ops have no float form there
        runtimes[ONNX2TORCH.name] = RuntimeBuild(lambda _: onnx2torch_runner(path), timed=False)
    warnings = [u8s8_saturation_warning(config.activation_dtype, config.weight_dtype, config.reduce_range)]
    prepared = pre_processing(source)
    if prepared != PRE_PROCESSING_STEPS[0][0]:
        warnings.append(f"ONNX Runtime's pre-processing: {prepared}")
    return QuantizedModel(path, ONNXRUNTIME.name, runtimes, checks={**onnx_checks(path, config),
                                                                    "pre_processing": prepared},
                          reference=ONNX2TORCH.name if ONNX2TORCH.name in runtimes else None,
                          warnings=[w for w in warnings if w])


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
        acts[name] = qdq.collect_activations(str(augmented), _reader([images], input_name))
    errors = qdq.compute_activation_error(qdq.create_activation_matching(acts["qdq"], acts["float"]))
    labels = _tensor_labels(source)
    order = {t: i for i, t in enumerate(labels)}
    activations = [{"tensor": t, "label": labels.get(t, t), "sqnr_db": round(float(e["xmodel_err"]), 3)}
                   for t, e in errors.items() if "xmodel_err" in e and t in order and labels.get(t) != "input"]
    weights = qdq.compute_weight_error(qdq.create_weight_matching(str(source), str(quantized_qdq)))
    weight_sqnr = {n.removesuffix(".weight"): round(float(v), 3) for n, v in weights.items() if n.endswith(".weight")}
    return sorted(activations, key=lambda a: order[a["tensor"]]), weight_sqnr


class OrtLayerVariants:
    """quantize_static restricted to some nodes; SQNR from the QDQ form of the same recipe."""

    method = "ORT quantize_static nodes_to_quantize / nodes_to_exclude"

    def __init__(self, model: LoadedModel, config: QuantConfig, calibration: Calibration, workdir: Path) -> None:
        self.config, self.calibration, self.workdir = config, calibration, workdir
        self.source = preprocessed_onnx(model)
        self.layers = onnx_layers(self.source)

    def build(self, only: str | None = None, skip: str | None = None) -> Runner:
        path = quantize_onnx(self.source, self.workdir / "variant.onnx", self.config, self.calibration,
                             nodes_to_exclude=[skip] if skip else None, nodes_to_quantize=[only] if only else None)
        return ort_runner(path)

    def sqnr(self, images: torch.Tensor) -> dict:
        path = quantize_onnx(self.source, self.workdir / "qdq.onnx", replace(self.config, format="qdq"),
                             self.calibration)
        activations, weights = ort_sqnr(self._float_alike(), path, images, self.workdir)
        note = "" if self.config.format == "qdq" else " (measured on the QDQ form of the same recipe: same scales)"
        # collect_activations turns graph optimisation off, so Q/DQ run as separate float ops: this is the
        # recipe's error, not what the fused int8 kernels add (the accuracy experiments include those).
        return {"activations": activations, "weights": weights,
                "method": "onnxruntime.quantization.qdq_loss_debug, Q/DQ evaluated as float ops (the recipe's error, "
                          "not the int8 kernels')" + note}

    def _float_alike(self) -> Path:
        """The FP32 model with the graph changes the recipe makes before quantizing (reduce_range pads the RGB stem
        to 4 channels), so its tensors and weights match the quantized model's one for one."""
        if not self.config.reduce_range:
            return self.source
        import onnx

        proto = onnx.load(str(self.source))
        pad_narrow_conv_inputs(proto)
        path = self.workdir / "float.padded.onnx"
        onnx.save(proto, str(path))
        return path


BACKEND = register(Backend("ort", "ONNX Runtime quantize_static", quantize, (ONNXRUNTIME, ONNX2TORCH),
                           color="tab:blue", layer_variants=OrtLayerVariants, recipe=("quant_explorer.onnx2torch_ops",),
                           capabilities=CAPABILITIES["ort"]))
