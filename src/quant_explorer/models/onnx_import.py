"""Bring your own ONNX model: validate a foreign FP32 CIFAR-10 classifier and normalize it to our one form.

Everything downstream (ORT quantize_static, onnx2torch for the PyTorch paths, evaluation) sees the same
thing an export of ours gives it: one float32 NCHW [N, 3, 32, 32] input with a dynamic batch and one
[N, 10] output, at opset 13 or newer. A normalized copy is written under `models_dir()` keyed by the
file's content; the original is never modified. How its input is scaled is remembered in a small model
card beside it (`model.onnx.card.json`), so the user says it once.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..files import atomic_path, write_text_atomic
from . import LoadedModel, Preprocessing

# ORT's quantizer refuses opsets below 10 (it cannot express QuantizeLinear); per-channel QuantizeLinear
# (its `axis` attribute) needs 13, so 10-12 are upgraded to 13 with onnx.version_converter.
MIN_OPSET = 10
TARGET_OPSET = 13
CARD_SCHEMA_VERSION = 1
NUM_CLASSES = 10
NCHW, NHWC = (3, 32, 32), (32, 32, 3)
PROBE_BATCH = 2  # a dynamic batch is trusted once batch 2 gives the same rows as two batches of 1
MAGIC = {b"\x89HDF": "an HDF5 file (a Keras .h5 model?)", b"PK\x03\x04": "a zip archive (a PyTorch .pt checkpoint?)"}
PREPROCESSING_HINT = ("pass --input-scale raw255 (the graph takes 0-255 pixels) or unit (0-1), plus --mean/--std "
                      "when it expects normalized input")


def card_path(path: Path) -> Path:
    return path.with_name(path.name + ".card.json")


class OnnxModule(nn.Module):
    """A converted graph behind `forward(x)`, fed `fixed_batch` images at a time when the graph hard-codes it."""

    def __init__(self, net: nn.Module, fixed_batch: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.fixed_batch = fixed_batch

    def forward(self, x):
        if self.fixed_batch is None:
            return self.net(x)
        return torch.cat([self.net(x[i:i + self.fixed_batch]) for i in range(0, len(x), self.fixed_batch)])


def load_onnx_model(path: Path, preprocessing: Preprocessing | None = None) -> LoadedModel:
    """Validate `path`, write its normalized copy, convert it for PyTorch; one-line UserError on anything wrong."""
    from ..paths import models_dir

    path = Path(path)
    model, data = _read(path)
    sha = hashlib.sha256(data).hexdigest()
    preprocessing = _preprocessing(path, sha, preprocessing)
    normalized, info = normalize(model, path, preprocessing)
    # Converted now, but only ever needed by the PyTorch configs: ONNX Runtime runs what onnx2torch cannot.
    module, unavailable = None, None
    try:
        module = _convert(normalized, info["fixed_batch"])
    except Exception as e:
        unavailable = f"onnx2torch cannot convert it ({_first_line(e)}); ONNX Runtime configs still run it"
    if module is not None and (disagreement := _torch_disagreement(module, normalized, preprocessing)):
        module, unavailable = None, disagreement
    standard = normalized.SerializeToString()
    # Keyed by both files: a change in how we normalize gets a new directory, never a stale derived cache.
    target = models_dir() / f"imported-{sha[:12]}-{hashlib.sha256(standard).hexdigest()[:8]}" / "fp32.onnx"
    if not target.exists():
        with atomic_path(target) as tmp:
            tmp.write_bytes(standard)
    _write_card(path, sha, preprocessing, info)
    return LoadedModel(f"onnx:{sha[:12]}", module, preprocessing, path, sha, onnx_source=target, import_info=info,
                       torch_unavailable=unavailable)


def fresh_module(model: LoadedModel) -> nn.Module:
    """A new onnx2torch conversion of an imported model's normalized file."""
    import onnx

    return _convert(onnx.load(str(model.onnx_source)), model.import_info["fixed_batch"])


# --- reading and validating ------------------------------------------------------------------------------


def _read(path: Path):
    import onnx

    if not path.is_file():
        raise UserError(f"{path} is not a file: pass the path to an .onnx model")
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path} is empty (0 bytes): export or copy the model again")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError, among others
        raise UserError(_unparsable(path, data, e)) from None
    if not model.graph.node:
        raise UserError(f"{path} is not an ONNX model (it parses, but holds no graph): pass a .onnx model file")
    data += _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise UserError(f"{path} fails the ONNX checker ({_first_line(e)}): re-export the model") from None
    return model, data


def _load_external_data(model, path: Path) -> bytes:
    """Pull weights kept in side files (`model.onnx.data`) into `model`, looked up beside the model file — as
    ONNX does — not in the working directory; returns their bytes, which are part of the model's identity."""
    from onnx import TensorProto
    from onnx.external_data_helper import load_external_data_for_model

    locations = sorted({entry.value for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL
                        for entry in t.external_data if entry.key == "location"})
    for location in locations:
        side = path.parent / location
        if not side.is_file():
            raise UserError(f"{path} keeps its weights in {location}, which is not beside it ({side} is missing): "
                            f"copy {location} with the model")
    if not locations:
        return b""
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as e:
        raise UserError(f"cannot read the weights {path} keeps in {', '.join(locations)} ({_first_line(e)}): "
                        f"copy them with the model again") from None
    return b"".join((path.parent / location).read_bytes() for location in locations)


def _unparsable(path: Path, data: bytes, error: Exception) -> str:
    stop = _truncated_at(data)
    if stop is not None:
        return (f"{path} is truncated: its ONNX data needs {stop:,} bytes but the file ends at {len(data):,} "
                f"(an interrupted download or copy?); copy the file again")
    for magic, what in MAGIC.items():
        if data.startswith(magic):
            return f"{path} is not an ONNX model, it is {what}: convert it to ONNX first"
    return (f"{path} is not an ONNX model ({_first_line(error)}): pass a model exported with torch.onnx.export "
            f"or tf2onnx")


def _truncated_at(data: bytes) -> int | None:
    """Where a cut-short ONNX file should have ended, reading only ModelProto's top-level fields; None if
    `data` does not begin like one (an ONNX file opens with field 1, ir_version, a varint)."""

    def varint(pos: int) -> tuple[int | None, int]:
        value, shift = 0, 0
        while pos < len(data):
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                return value, pos
        return None, pos

    if data[:1] != b"\x08":
        return None
    pos = 0
    while pos < len(data):
        key, pos = varint(pos)
        if key is None:
            return pos + 1
        if key & 7 == 0:  # varint field
            value, pos = varint(pos)
            if value is None:
                return pos + 1
        elif key & 7 == 2:  # length-delimited field: the graph, opset imports, strings
            length, pos = varint(pos)
            if length is None or pos + length > len(data):
                return pos + (length or 1)
            pos += length
        else:  # ModelProto has no other wire types at the top level: this is not a cut-short ONNX file
            return None
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _dims(value_info) -> list[int | str | None] | None:
    """A tensor's shape as ints (fixed), strings (named dynamic) or None (unnamed dynamic); None if unknown."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def _show(dims) -> str:
    return "[" + ", ".join("N" if i == 0 and not isinstance(d, int) else str(d if d is not None else "?")
                           for i, d in enumerate(dims)) + "]"


def _inputs(model):
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _check_io(model, path: Path) -> tuple[str, int | None]:
    """The input layout ("NCHW" | "NHWC") and its fixed batch size (None: dynamic)."""
    from onnx import TensorProto

    inputs, outputs = _inputs(model), list(model.graph.output)
    expected = "[N, 3, 32, 32] (NCHW) or [N, 32, 32, 3] (NHWC)"
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UserError(f"{path} has {len(inputs)} inputs ({names}): expected exactly one image input {expected}")
    image = inputs[0]
    if image.type.tensor_type.elem_type != TensorProto.FLOAT:
        dtype = TensorProto.DataType.Name(image.type.tensor_type.elem_type).lower()
        raise UserError(f"{path}: input {image.name!r} is {dtype}, expected float32 {expected}: export it with a "
                        f"float32 input")
    dims = _dims(image)
    if dims is None:
        raise UserError(f"{path}: input {image.name!r} has no shape: expected {expected}; export it with one")
    layout = "NCHW" if _fits(dims, NCHW) else "NHWC" if _fits(dims, NHWC) else None
    if layout is None:
        raise UserError(f"{path}: input {image.name!r} is {_show(dims)}, expected {expected}: this tool takes "
                        f"32x32 RGB CIFAR-10 classifiers")
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        raise UserError(f"{path} has {len(outputs)} outputs ({names}): expected one [N, 10] logits output; "
                        f"export only the logits")
    out = _dims(outputs[0])
    if out is not None and (len(out) != 2 or isinstance(out[1], int) and out[1] != NUM_CLASSES):
        raise UserError(f"{path}: output {outputs[0].name!r} is {_show(out)}, expected [N, 10] (one score per "
                        f"CIFAR-10 class): this tool takes 10-class CIFAR-10 classifiers")
    return layout, dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None


def _fits(dims, expected: tuple[int, ...]) -> bool:
    """Rank 4 with the expected channel/height/width wherever those dims are fixed."""
    return len(dims) == 4 and all(not isinstance(d, int) or d == e for d, e in zip(dims[1:], expected))


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


# --- normalizing ----------------------------------------------------------------------------------------


def normalize(model, path: Path, preprocessing: Preprocessing):
    """The standard form of `model` (NCHW input, dynamic batch when the graph allows, opset >= 13, constants
    folded) and what was done to get it. Every step is checked against the original's own answers."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never touch the caller's copy
    layout, batch = _check_io(model, path)
    source_opset = _opset(model)
    if source_opset < MIN_OPSET:
        raise UserError(f"{path} uses ONNX opset {source_opset}, older than ONNX Runtime's quantizer supports "
                        f"({MIN_OPSET}+): re-export it with opset {TARGET_OPSET} or newer")
    probe = preprocessing(torch.randint(0, 256, (PROBE_BATCH, 3, 32, 32), dtype=torch.uint8,
                                        generator=torch.Generator().manual_seed(0))).numpy()
    reference = _original_answers(model, probe.transpose(0, 2, 3, 1) if layout == "NHWC" else probe, batch, path)

    changes: list[str] = []
    if source_opset < TARGET_OPSET:
        model = _upgrade(model, path, source_opset)
        changes.append(f"upgraded opset {source_opset} -> {TARGET_OPSET} (per-channel quantization needs it)")
    if model.ir_version >= 4:  # inputs that are initializers (old exporters list them) are weights, not inputs
        initializers = {t.name for t in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(keep)
    if layout == "NHWC":
        _to_nchw(model)
        changes.append("added a Transpose so the NHWC graph takes NCHW input")

    changes.append("folded constants and fused Conv-BN/Conv-Add (ONNX Runtime's basic optimizations)")
    made = [f"made the fixed batch of {batch} dynamic"] if batch is not None else []
    freed = _free_batch(model) if batch is not None else model
    candidates = [(lambda: _optimize(freed), made),  # least invasive first
                  (lambda: _copy_batch_in_reshapes(_optimize(freed), batch or 1), made + [
                      f"rewrote the Reshape(s) that hard-coded batch {batch or 1} to copy the batch instead"])]
    for build, what in candidates:
        candidate = _try(build)
        if candidate is not None and _answers(candidate, probe, reference):
            model, fixed_batch = candidate, None
            changes += what
            break
    else:
        if batch is None:
            raise UserError(f"{path} declares a dynamic batch but fails or mixes images at batch {PROBE_BATCH}: "
                            f"re-export it with a working dynamic batch (or with batch 1)")
        if batch != 1:
            raise UserError(f"{path} hard-codes a batch of {batch} that cannot be made dynamic: re-export it with a "
                            f"dynamic batch (or with batch 1)")
        model, fixed_batch = _optimize(model), 1
        if not _answers(model, probe, reference, fixed_batch):
            raise RuntimeError(f"normalizing {path} changed its outputs")  # a bug of ours, not the user's
        changes.append("kept the fixed batch of 1 the graph hard-codes: it runs one image at a time")
    changes += _fix_allowzero(model)
    onnx.checker.check_model(model)
    info = {"source_opset": source_opset, "opset": _opset(model), "input_layout": layout,
            "batch": "fixed" if fixed_batch else "made_dynamic" if batch is not None else "dynamic",
            "fixed_batch": fixed_batch, "changes": changes}
    return model, info


def _upgrade(model, path: Path, opset: int):
    import onnx
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, TARGET_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as e:
        raise UserError(f"{path} uses ONNX opset {opset} and onnx cannot upgrade it to {TARGET_OPSET} "
                        f"({_first_line(e)}): re-export it with opset {TARGET_OPSET} or newer") from None
    return upgraded


def _to_nchw(model) -> None:
    """A new NCHW graph input feeding Transpose(0, 2, 3, 1) into the NHWC input's old name."""
    from onnx import helper

    old = model.graph.input[0]
    used = {name for node in model.graph.node for name in (*node.input, *node.output)} | {old.name}
    name = "input" if "input" not in used else f"{old.name}_nchw"
    dims = _dims(old)
    new = helper.make_tensor_value_info(name, old.type.tensor_type.elem_type,
                                        [dims[0] if dims[0] is not None else "N", *NCHW])
    model.graph.node.insert(0, helper.make_node("Transpose", [name], [old.name], perm=[0, 2, 3, 1],
                                                name="quant_explorer_nchw_to_nhwc"))
    model.graph.input.remove(old)
    model.graph.input.insert(0, new)


def _free_batch(model):
    """A copy whose input and output say batch "N" instead of a fixed number (intermediate shapes dropped)."""
    import onnx

    freed = onnx.ModelProto.FromString(model.SerializeToString())
    for value in (*freed.graph.input, *freed.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "N"
    del freed.graph.value_info[:]
    return freed


def _optimize(model):
    """ONNX Runtime's basic graph optimizations: constant folding (exporters compute pads and shapes with
    small subgraphs that onnx2torch and torch.export cannot trace) and Conv-BN/Conv-Add fusion; standard ops
    only. ORT applies the same at run time, and quant_pre_process before quantizing."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 4
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    used = {node.domain for node in optimized.graph.node} | {""}
    kept = [o for o in optimized.opset_import if o.domain in used]  # ORT lists every domain it knows
    del optimized.opset_import[:]
    optimized.opset_import.extend(kept)
    return optimized


def _copy_batch_in_reshapes(model, batch: int):
    """Reshapes to a constant shape starting with the fixed batch start with 0 (copy the input's) instead."""
    from onnx import numpy_helper

    constants = _constants(model)
    count = 0
    for node in model.graph.node:
        shape = constants.get(node.input[1]) if node.op_type == "Reshape" else None
        allowzero = next((a.i for a in node.attribute if a.name == "allowzero"), 0)
        if shape is None or shape.ndim != 1 or len(shape) < 2 or shape[0] != batch or allowzero:
            continue
        name = f"{node.input[1]}_copy_batch_{count}"
        model.graph.initializer.append(numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(np.int64), name))
        node.input[1] = name
        count += 1
    if not count:
        raise ValueError("no Reshape hard-codes the batch")
    return model


def _fix_allowzero(model) -> list[str]:
    """Reshape allowzero=1 with a constant shape holding no 0 computes the same as allowzero=0, which is
    the only form onnx2torch converts (PyTorch's dynamo exporter writes allowzero=1)."""
    constants = _constants(model)
    fixed = 0
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Reshape" and attr.name == "allowzero" and attr.i == 1:
                shape = constants.get(node.input[1])
                if shape is not None and not (shape == 0).any():
                    attr.i, fixed = 0, fixed + 1
    if not fixed:
        return []
    return [f"set allowzero=0 on {fixed} Reshape(s) with constant shapes (same result; onnx2torch needs it)"]


def _constants(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # probes are expected to fail on some graphs: no error lines on stderr
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _rows(session, x: np.ndarray, size: int | None) -> np.ndarray:
    """`x` through the session `size` rows at a time (None: all at once)."""
    name = session.get_inputs()[0].name
    size = size or len(x)
    return np.concatenate([session.run(None, {name: x[i:i + size]})[0] for i in range(0, len(x), size)])


def _original_answers(model, x: np.ndarray, batch: int | None, path: Path) -> np.ndarray:
    """The unmodified model's logits for `x`, one image at a time (its fixed batch at a time, images
    repeated to fill it), after checking ONNX Runtime runs it and the output is [N, 10]."""
    try:
        session = _session(model)
        if batch is None or batch == 1:
            logits = _rows(session, x, 1)
        else:
            logits = _rows(session, np.resize(x, (batch, *x.shape[1:])), batch)[:len(x)]
    except Exception as e:
        import onnxruntime

        raise UserError(f"ONNX Runtime {onnxruntime.__version__} cannot run {path} ({_first_line(e)}): export it "
                        f"with standard ONNX ops") from None
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise UserError(f"{path}: output is [N, {', '.join(map(str, logits.shape[1:]))}], expected [N, 10] (one "
                        f"score per CIFAR-10 class): this tool takes 10-class CIFAR-10 classifiers")
    return logits


def _answers(model, probe: np.ndarray, reference: np.ndarray, size: int | None = None) -> bool:
    """Does `model` give the original's answers on the probe images, all at once (or `size` at a time)?"""
    try:
        got = _rows(_session(model), probe, size)
    except Exception:
        return False
    return got.shape == reference.shape and _close(got, reference)


def _try(build):
    try:
        return build()
    except Exception:
        return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(b).max()))))


# --- the PyTorch side --------------------------------------------------------------------------------------


class StaticReshape(nn.Module):
    """onnx2torch's Reshape takes its shape as a tensor, which torch.export (PT2E) cannot trace; a constant
    shape becomes Python ints (0 still copies the input's dim)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])


class Div(nn.Module):
    """onnx2torch's Div chooses float or integer division by dtype, which FX cannot trace: a leaf instead."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.is_floating_point() or b.is_floating_point():
            return torch.div(a, b)
        return torch.div(a, b, rounding_mode="trunc")


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, Div) or super().is_leaf_module(module, name)


def _convert(model, fixed_batch: int | None) -> nn.Module:
    """onnx2torch's conversion made plain for the PyTorch configs: forward(x) and identifier layer names (for
    torch.export, i.e. PT2E), flattened to torch ops and nn layers when it traces (for TorchScript)."""
    from onnx2torch import convert

    from .. import onnx2torch_ops  # noqa: F401  (registers ReduceMean-18 and Pad-18: what torch.onnx writes)

    graph = _tidy(convert(model))
    try:
        graph = torch.fx.GraphModule(graph, _Tracer().trace(graph))
    except Exception:  # an onnx2torch op that branches on values: torch.export still takes it, TorchScript not
        pass
    return (graph if fixed_batch is None else OnnxModule(graph, fixed_batch)).eval()


def _tidy(graph):
    """Constant Reshape shapes as Python ints (onnx2torch keeps a tensor, which neither FX nor torch.export
    traces), Div as a leaf, layers named as identifiers (ONNX names hold '/', which torch.export cannot
    resolve), and the input named x, as our own models name it."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation
    from onnx2torch.node_converters.constant import OnnxConstant
    from onnx2torch.node_converters.reshape import OnnxReshape

    names = {node.name for node in graph.graph.nodes}
    for node in list(graph.graph.nodes):
        if node.op == "placeholder" and "x" not in names:
            node.target = node.name = "x"
        if node.op != "call_module":
            continue
        module = graph.get_submodule(node.target)
        if isinstance(module, OnnxReshape):
            source = node.args[1]
            shape = (graph.get_buffer(source.target) if source.op == "get_attr" else
                     graph.get_submodule(source.target).value if source.op == "call_module"
                     and isinstance(graph.get_submodule(source.target), OnnxConstant) else None)
            if shape is not None:
                module = StaticReshape(tuple(int(s) for s in shape.tolist()))
                node.args = (node.args[0],)
        elif (isinstance(module, OnnxBinaryMathOperation) and module.math_op_function.__name__ == "_onnx_div"
              and module.broadcast != 1):
            module = Div()
        name = base = re.sub(r"\W", "_", node.target).strip("_") or "layer"
        suffix = 0
        while name != node.target and hasattr(graph, name):
            suffix += 1
            name = f"{base}_{suffix}"
        graph.add_submodule(name, module)
        node.target = name
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _torch_disagreement(module: nn.Module, model, preprocessing: Preprocessing) -> str | None:
    """Why onnx2torch's conversion cannot stand for the model (it disagrees with ONNX Runtime), or None: else
    the PyTorch configs would measure another model."""
    x = preprocessing(torch.randint(0, 256, (PROBE_BATCH, 3, 32, 32), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(1)))
    with torch.inference_mode():
        got = module(x).numpy()
    want = _rows(_session(model), x.numpy(), 1)
    if _close(got, want):
        return None
    return (f"onnx2torch converts it into a model that disagrees with ONNX Runtime (max difference "
            f"{np.abs(got - want).max():.3g}); ONNX Runtime configs still run it")


# --- the model card and the normalized file ---------------------------------------------------------------


def _preprocessing(path: Path, sha: str, given: Preprocessing | None) -> Preprocessing:
    """The preprocessing given now, else the one the model card beside the file remembers."""
    if given is not None:
        return given
    card = card_path(path)
    if not card.exists():
        raise UserError(f"{path} does not say how its input is scaled: {PREPROCESSING_HINT} "
                        f"(remembered in {card.name} for next time)")
    try:
        saved = json.loads(card.read_text())
        remembered = Preprocessing(saved["preprocessing"]["input_scale"],
                                   *(tuple(v) if v else None for v in (saved["preprocessing"]["mean"],
                                                                       saved["preprocessing"]["std"])))
    except (ValueError, KeyError, TypeError, UserError) as e:
        raise UserError(f"model card {card} is unreadable ({_first_line(e)}): {PREPROCESSING_HINT} "
                        f"to rewrite it") from None
    if saved.get("sha256") != sha:
        raise UserError(f"model card {card} was written for another version of {path.name} (sha256 "
                        f"{str(saved.get('sha256'))[:12]}, the file is now {sha[:12]}): {PREPROCESSING_HINT} "
                        f"to confirm it")
    return remembered


def _write_card(path: Path, sha: str, preprocessing: Preprocessing, info: dict) -> None:
    card = card_path(path)
    text = json.dumps({"schema_version": CARD_SCHEMA_VERSION, "file": path.name, "sha256": sha,
                       "preprocessing": preprocessing.to_dict(), "import": info}, indent=2) + "\n"
    try:
        if not card.exists() or card.read_text() != text:
            write_text_atomic(card, text)
    except (OSError, UserError) as e:
        warnings.warn(f"cannot write model card {card} ({e}): pass --input-scale again next time", stacklevel=3)



