"""ONNX Runtime static quantization: quant_pre_process, then quantize_static over the calibration set.

Its artifacts run in ONNX Runtime (what users ship; the FP32 reference is scored there too); a QDQ model also runs
as exact simulated quantization through onnx2torch, the float reference that splits a loss into the recipe's share
and the int8 kernels'. Per-layer sensitivity selects layers with quantize_static's nodes_to_quantize /
nodes_to_exclude and measures SQNR with onnxruntime's qdq_loss_debug. Its configs are named
ort_<act>_<calibration>_<format>_<granularity>[_rr], e.g. ort_u8_minmax_qdq_per_channel_rr.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..configs import ACTIVATIONS, GRANULARITIES, Capabilities, QuantConfig
from ..env import u8s8_saturation_warning
from ..files import atomic_path, scratch_dir
from ..models import exported_onnx
from ..provenance import reuse_or_build
from .base import Backend, Calibration, QuantizedModel, Runtime, RuntimeBuild, register
from .ort_graph import calibration_reader, onnx_checks, onnx_layers, ort_sqnr, symmetric_activations

if TYPE_CHECKING:
    import torch

    from ..evaluate import Runner
    from ..models import LoadedModel

CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile",
                       "distribution": "Distribution"}  # config name -> onnxruntime's CalibrationMethod member
FORMATS = ("qdq", "qoperator")
CALIBRATION_NOTES = {"distribution": " (symmetric ranges, whatever the activations: see backends.ort)",
                     "entropy": " (KL search over 2048 histogram bins, 128 quantized bins)",
                     "percentile": " (99.999th percentile of 2048 histogram bins)"}
# The histogram calibrations, as configs record them. Entropy with ORT's default 128/128 bins leaves the KL search
# one candidate threshold, the full range, so it returned MinMax's ranges; TensorRT's 2048 histogram bins over 128
# quantized bins give it 15 candidates per tensor. Percentile: ORT's defaults, written down.
HISTOGRAMS = {"entropy": {"calibration_bins": 2048, "quantized_bins": 128},
              "percentile": {"calibration_bins": 2048, "percentile": 99.999}}
DEFAULTS = {  # the default sweep's
    "ort_s8_minmax_qdq_per_channel", "ort_s8_minmax_qoperator_per_channel",
    "ort_s8asym_minmax_qdq_per_channel", "ort_s8asym_minmax_qdq_per_tensor",
    "ort_s8asym_minmax_qoperator_per_channel", "ort_s8asym_entropy_qdq_per_channel",
    "ort_s8asym_percentile_qdq_per_channel", "ort_s8asym_distribution_qdq_per_channel",
    "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel_rr",
    "ort_u8_minmax_qoperator_per_channel", "ort_u8_minmax_qoperator_per_channel_rr",
}
# How a user loads a quantized model as the bench timed it ({artifact} and {threads} filled in by `load_code`).
LOAD = """import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = {threads}
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession({artifact!r}, options, providers=["CPUExecutionProvider"])
logits = session.run(None, {{session.get_inputs()[0].name: images}})[0]  # float32 NCHW numpy"""


def _fp32_in_ort(model: LoadedModel, workdir: Path) -> RuntimeBuild:
    from ..runtimes.onnx_runners import ort_runner

    path = exported_onnx(model)
    return RuntimeBuild(lambda threads: ort_runner(path, threads))


def _fp32_in_onnx2torch(model: LoadedModel, workdir: Path) -> RuntimeBuild | None:
    """The FP32 export converted back to PyTorch: a cross-check of the converter (not of an imported graph, which
    runs in ONNX Runtime only)."""
    from ..runtimes.onnx_runners import onnx2torch_runner

    if model.module is None:
        return None
    path = exported_onnx(model)
    return RuntimeBuild(lambda _: onnx2torch_runner(path), timed=False, cross_check=True)


ONNXRUNTIME = Runtime("onnxruntime", "ONNX Runtime's kernels", "onnxruntime", threads_at_build=True,
                      threads_word="intra-op thread", load=LOAD, fp32=_fp32_in_ort, scores_fp32=True,
                      loader="quant_explorer.runtimes.onnx_runners:ort_runner")
ONNX2TORCH = Runtime("onnx2torch", "exact simulated quantization (the same QDQ model converted to PyTorch)", None,
                     exact=True, fp32=_fp32_in_onnx2torch, libraries=("onnx2torch",))


def configs() -> list[QuantConfig]:
    """Every activation dtype x calibration x format x granularity x reduce_range."""
    out = []
    for act, (dtype, symmetric) in ACTIVATIONS.items():
        for calibration in CALIBRATION_METHODS:
            for fmt in FORMATS:
                for granularity in GRANULARITIES:
                    for rr in (False, True):
                        name = f"ort_{act}_{calibration}_{fmt}_{granularity}" + ("_rr" if rr else "")
                        out.append(QuantConfig(
                            name, "ort",
                            f"ONNX Runtime quantize_static: {dtype} {'symmetric' if symmetric else 'asymmetric'} "
                            f"activations, int8 {granularity.replace('_', '-')} weights, {calibration} "
                            f"calibration{CALIBRATION_NOTES.get(calibration, '')}, {fmt.upper()}"
                            + (", reduce_range" if rr else ""),
                            activation_dtype=dtype, symmetric_activations=symmetric, weight_dtype="int8",
                            granularity=granularity, calibration=calibration, format=fmt, reduce_range=rr,
                            **HISTOGRAMS.get(calibration, {}), default=name in DEFAULTS))
    return out


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


def quantize_onnx(source: Path, output: Path, config: QuantConfig, calibration: Calibration,
                  nodes_to_exclude: list[str] | None = None, nodes_to_quantize: list[str] | None = None) -> Path:
    """quantize_static with the config's dtypes, method, format and granularity; used by per-layer analysis too."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    proto = onnx.load(str(source))
    if config.reduce_range:
        pad_narrow_conv_inputs(proto)
    reader = calibration_reader(calibration.batches(), proto.graph.input[0].name)
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
    from ..runtimes.onnx_runners import onnx2torch_runner, ort_runner

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


class OrtLayerVariants:
    """quantize_static restricted to some nodes; SQNR from the QDQ form of the same recipe."""

    method = "ORT quantize_static nodes_to_quantize / nodes_to_exclude"

    def __init__(self, model: LoadedModel, config: QuantConfig, calibration: Calibration, workdir: Path) -> None:
        self.config, self.calibration, self.workdir = config, calibration, workdir
        self.source = preprocessed_onnx(model)
        self.layers = onnx_layers(self.source)

    def build(self, only: str | None = None, skip: str | None = None) -> Runner:
        from ..runtimes.onnx_runners import ort_runner

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
                           color="tab:blue", layer_variants=OrtLayerVariants,
                           recipe=("quant_explorer.backends.ort_graph",),
                           capabilities=Capabilities("ort", calibrations=tuple(CALIBRATION_METHODS), formats=FORMATS),
                           configs=configs, libraries=("onnxruntime", "onnx")))
