"""Rewrite a valid foreign classifier into the one form everything downstream expects: one float32 NCHW
[N, C, H, W] input with a dynamic batch, one [N, classes] output, opset 13 or newer, constants folded.

Exporters differ in ways that change no answer (layout, opset, a batch baked into a Reshape, allowzero), and
ORT's quantizer, onnx2torch and torch.export each trip on some of them. Every rewrite is kept only if ONNX
Runtime gives the original's own answers on probe images afterwards: a rewrite that changed the model would
make every later number describe another model. The ORT probes here are also what the PyTorch conversion is
checked against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, first_line
from .onnx_validate import check_io, dims, graph_inputs
from .preprocessing import Preprocessing

# ORT's quantizer refuses opsets below 10 (it cannot express QuantizeLinear); per-channel QuantizeLinear
# (its `axis` attribute) needs 13, so 10-12 are upgraded to 13 with onnx.version_converter.
MIN_OPSET = 10
TARGET_OPSET = 13
PROBE_BATCH = 2  # a dynamic batch is trusted once batch 2 gives the same rows as two batches of 1


def normalize(model, path: Path, preprocessing: Preprocessing):
    """The standard form of `model` (NCHW input, dynamic batch when the graph allows, opset >= 13, constants
    folded) and what was done to get it. Every step is checked against the original's own answers."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never touch the caller's copy
    layout, batch, chw, declared = check_io(model, path)
    preprocessing.check_channels(chw[0], path)
    source_opset = _opset(model)
    if source_opset < MIN_OPSET:
        raise UserError(f"{path} uses ONNX opset {source_opset}, older than ONNX Runtime's quantizer supports "
                        f"({MIN_OPSET}+): re-export it with opset {TARGET_OPSET} or newer")
    probe = probe_images(preprocessing, 0, chw).numpy()
    reference = _original_answers(model, probe.transpose(0, 2, 3, 1) if layout == "NHWC" else probe, batch, path,
                                  declared)

    changes: list[str] = []
    if source_opset < TARGET_OPSET:
        model = _upgrade(model, path, source_opset)
        changes.append(f"upgraded opset {source_opset} -> {TARGET_OPSET} (per-channel quantization needs it)")
    if model.ir_version >= 4:  # inputs that are initializers (old exporters list them) are weights, not inputs
        keep = graph_inputs(model)
        del model.graph.input[:]
        model.graph.input.extend(keep)
    if layout == "NHWC":
        _to_nchw(model, chw)
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
            "input_shape": list(chw), "num_classes": int(reference.shape[1]),
            "batch": "fixed" if fixed_batch else "made_dynamic" if batch is not None else "dynamic",
            "fixed_batch": fixed_batch, "changes": changes}
    return model, info


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


# --- the rewrites ---------------------------------------------------------------------------------------


def _upgrade(model, path: Path, opset: int):
    import onnx
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, TARGET_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as e:
        raise UserError(f"{path} uses ONNX opset {opset} and onnx cannot upgrade it to {TARGET_OPSET} "
                        f"({first_line(e)}): re-export it with opset {TARGET_OPSET} or newer") from None
    return upgraded


def _to_nchw(model, chw: tuple[int, int, int]) -> None:
    """A new NCHW graph input feeding Transpose(0, 2, 3, 1) into the NHWC input's old name."""
    from onnx import helper

    old = model.graph.input[0]
    used = {name for node in model.graph.node for name in (*node.input, *node.output)} | {old.name}
    name = "input" if "input" not in used else f"{old.name}_nchw"
    batch = dims(old)[0]
    new = helper.make_tensor_value_info(name, old.type.tensor_type.elem_type,
                                        [batch if batch is not None else "N", *chw])
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


def _try(build):
    try:
        return build()
    except Exception:
        return None


# --- the answers every rewrite (and the PyTorch conversion) is checked against ----------------------------


def probe_images(preprocessing: Preprocessing, seed: int, chw: tuple[int, ...] = (3, 32, 32)) -> torch.Tensor:
    """PROBE_BATCH seeded random images of `chw` (channels, height, width), preprocessed: the same probe on every
    run."""
    return preprocessing(torch.randint(0, 256, (PROBE_BATCH, *chw), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(seed)))


def ort_logits(model, x: np.ndarray, size: int | None) -> np.ndarray:
    """`x` through a fresh single-threaded ONNX Runtime session of `model`, `size` rows at a time (None: all
    at once)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # probes are expected to fail on some graphs: no error lines on stderr
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    size = size or len(x)
    return np.concatenate([session.run(None, {name: x[i:i + size]})[0] for i in range(0, len(x), size)])


def _original_answers(model, x: np.ndarray, batch: int | None, path: Path, classes: int | None) -> np.ndarray:
    """The unmodified model's logits for `x`, one image at a time (its fixed batch at a time, images
    repeated to fill it), after checking ONNX Runtime runs it and the output is [N, classes] (`classes` as the
    graph declares it, if it does)."""
    try:
        if batch is None or batch == 1:
            logits = ort_logits(model, x, 1)
        else:
            logits = ort_logits(model, np.resize(x, (batch, *x.shape[1:])), batch)[:len(x)]
    except Exception as e:
        import onnxruntime

        raise UserError(f"ONNX Runtime {onnxruntime.__version__} cannot run {path} ({first_line(e)}): export it "
                        f"with standard ONNX ops") from None
    if logits.ndim != 2 or logits.shape[1] < 2 or classes is not None and logits.shape[1] != classes:
        expected = f"[N, {classes}] as the graph declares" if classes else "[N, classes], at least 2"
        raise UserError(f"{path}: output is [N, {', '.join(map(str, logits.shape[1:]))}], expected {expected} (one "
                        f"score per class): this tool takes image classifiers")
    return logits


def _answers(model, probe: np.ndarray, reference: np.ndarray, size: int | None = None) -> bool:
    """Does `model` give the original's answers on the probe images, all at once (or `size` at a time)?"""
    try:
        got = ort_logits(model, probe, size)
    except Exception:
        return False
    return got.shape == reference.shape and close(got, reference)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(b).max()))))
