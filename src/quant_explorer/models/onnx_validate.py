"""Is this file an image classifier in ONNX (one image input, one logits output)? Reading a foreign file and
refusing it in one line that names the problem and the fix, before anything rewrites it.

A file that fails to parse is told apart from one that was cut short (read from the protobuf's own framing)
and from another format altogether (a Keras .h5, a PyTorch .pt), because the fix differs: copy it again,
or convert it. Weights kept in side files are read from beside the model, as ONNX itself does.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError, first_line

NCHW = (3, 32, 32)  # (channels, height, width) where the graph leaves a dim dynamic: CIFAR-10's
CHANNELS = (1, 3, 4)  # what a channel dim can be: greyscale, RGB, RGBA (or RGB padded to 4)
MAGIC = {b"\x89HDF": "an HDF5 file (a Keras .h5 model?)", b"PK\x03\x04": "a zip archive (a PyTorch .pt checkpoint?)"}


def read_model(path: Path):
    """The parsed, checker-clean ModelProto with its external data loaded, and the bytes that identify it
    (the file's, then its side files')."""
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
        raise UserError(f"{path} fails the ONNX checker ({first_line(e)}): re-export the model") from None
    _check_finite(model, path)
    return model, data


def _check_finite(model, path: Path) -> None:
    """NaN or infinite weights make every output NaN: said as such, not as a failure to run at some batch size."""
    import numpy as np
    from onnx import numpy_helper

    broken = [(t.name, int((~np.isfinite(a)).sum())) for t in model.graph.initializer
              if np.issubdtype((a := numpy_helper.to_array(t)).dtype, np.floating) and not np.isfinite(a).all()]
    if broken:
        name, count = broken[0]
        raise UserError(f"{path} has NaN or infinite weights ({count:,} in {name!r}"
                        f"{f' and {len(broken) - 1} more tensors' if len(broken) > 1 else ''}): the model is broken; "
                        "re-export it from a trained checkpoint")


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
        raise UserError(f"cannot read the weights {path} keeps in {', '.join(locations)} ({first_line(e)}): "
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
    return (f"{path} is not an ONNX model ({first_line(error)}): pass a model exported with torch.onnx.export "
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


def dims(value_info) -> list[int | str | None] | None:
    """A tensor's shape as ints (fixed), strings (named dynamic) or None (unnamed dynamic); None if unknown."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def _show(shape) -> str:
    return "[" + ", ".join("N" if i == 0 and not isinstance(d, int) else str(d if d is not None else "?")
                           for i, d in enumerate(shape)) + "]"


def graph_inputs(model) -> list:
    """The graph's real inputs: old exporters also list every initializer (weight) as one."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def check_io(model, path: Path) -> tuple[str, int | None, tuple[int, int, int], int | None]:
    """The input layout ("NCHW" | "NHWC"), its fixed batch size (None: dynamic), one image's (channels, height,
    width) as NCHW (CIFAR-10's where the graph leaves a dim dynamic) and the number of classes the output
    declares (None: not declared; ONNX Runtime tells)."""
    from onnx import TensorProto

    inputs, outputs = graph_inputs(model), list(model.graph.output)
    expected = "[N, C, H, W] (NCHW) or [N, H, W, C] (NHWC), C one of 1, 3, 4"
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UserError(f"{path} has {len(inputs)} inputs ({names}): expected exactly one image input {expected}")
    image = inputs[0]
    if image.type.tensor_type.elem_type != TensorProto.FLOAT:
        dtype = TensorProto.DataType.Name(image.type.tensor_type.elem_type).lower()
        raise UserError(f"{path}: input {image.name!r} is {dtype}, expected float32 {expected}: export it with a "
                        f"float32 input")
    shape = dims(image)
    if shape is None:
        raise UserError(f"{path}: input {image.name!r} has no shape: expected {expected}; export it with one")
    layout = _layout(shape)
    if layout is None:
        raise UserError(f"{path}: input {image.name!r} is {_show(shape)}, expected {expected}: this tool takes "
                        f"image classifiers")
    c, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
    chw = tuple(d if isinstance(d, int) and d > 0 else default for d, default in zip((c, h, w), NCHW))
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        raise UserError(f"{path} has {len(outputs)} outputs ({names}): expected one [N, classes] logits output; "
                        f"export only the logits")
    out = dims(outputs[0])
    if out is not None and (len(out) != 2 or isinstance(out[1], int) and out[1] < 2):
        raise UserError(f"{path}: output {outputs[0].name!r} is {_show(out)}, expected [N, classes] (one score per "
                        f"class, at least 2): this tool takes image classifiers")
    classes = out[1] if out is not None and isinstance(out[1], int) and out[1] > 0 else None
    return layout, shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None, chw, classes


def _layout(shape) -> str | None:
    """NCHW or NHWC, told by where a channel count (1, 3, 4) sits (NCHW when both could be it, or when the
    channel dim is dynamic); None when the input is no batch of images (not rank 4, or no dim can be the
    channels)."""
    if len(shape) != 4:
        return None
    fixed = lambda d: isinstance(d, int) and d > 0  # noqa: E731
    first, last = shape[1], shape[3]
    if fixed(first) and first in CHANNELS:
        return "NCHW"
    if fixed(last) and last in CHANNELS:
        return "NHWC"
    return None if fixed(first) else "NCHW"
