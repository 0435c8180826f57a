"""Every backend's quantization sanity check passes on the model it made and fails on a crafted bad copy."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from quant_explorer.backends import get_config, quantize
from quant_explorer.backends.eager import module_checks, quantized_module
from quant_explorer.backends.ort import onnx_checks
from quant_explorer.backends.pt2e import convert, graph_checks, quantizer_for
from quant_explorer.data import EvalData
from quant_explorer.keys import make_calibration
from quant_explorer.models import load_model


@pytest.fixture(scope="module")
def model_and_calibration(tiny):
    model = load_model("resnet8", tiny / "resnet8.pt")
    return model, make_calibration(model, EvalData.load(tiny / "data"), 20, 0)


def _activation_zero_points(proto) -> list:
    """The zero-point initializers of activation QuantizeLinear nodes (weights are initializers themselves)."""
    init = {t.name: t for t in proto.graph.initializer}
    return [init[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in init]


@pytest.mark.parametrize("config, corrupt", [
    ("ort_u8_minmax_qdq_per_channel", lambda zp: numpy_helper.from_array(numpy_helper.to_array(zp).astype(np.int8),
                                                                         zp.name)),  # the wrong dtype
    ("ort_s8_minmax_qdq_per_channel", lambda zp: numpy_helper.from_array(numpy_helper.to_array(zp) + np.int8(3),
                                                                         zp.name)),  # symmetric, off the middle
])
def test_ort_check_fails_on_a_zero_point_the_config_did_not_ask_for(model_and_calibration, tmp_path, config, corrupt):
    model, calibration = model_and_calibration
    cfg = get_config(config)
    quantized = quantize(model, cfg, calibration, tmp_path / "q")
    assert quantized.checks["zero_point_exact_zero"] and quantized.checks["activation_tensors_checked"] > 0
    proto = onnx.load(str(quantized.path))
    bad = _activation_zero_points(proto)[0]
    bad.CopyFrom(corrupt(bad))
    onnx.save(proto, tmp_path / "bad.onnx")
    checks = onnx_checks(tmp_path / "bad.onnx", cfg)
    assert not checks["zero_point_exact_zero"] and len(checks["zero_point_failures"]) == 1


def test_ort_check_fails_on_a_zero_scale(model_and_calibration, tmp_path):
    model, calibration = model_and_calibration
    cfg = get_config("ort_u8_minmax_qdq_per_tensor")
    proto = onnx.load(str(quantize(model, cfg, calibration, tmp_path / "q").path))
    init = {t.name: t for t in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in init)
    init[node.input[1]].CopyFrom(numpy_helper.from_array(np.zeros((), np.float32), node.input[1]))
    onnx.save(proto, tmp_path / "bad.onnx")
    assert onnx_checks(tmp_path / "bad.onnx", cfg)["zero_point_failures"]


def test_pt2e_check_fails_on_a_zero_point_outside_the_quantized_range(model_and_calibration):
    model, calibration = model_and_calibration
    gm = convert(model, quantizer_for(get_config("pt2e_u8_per_tensor_minmax")), calibration)
    assert graph_checks(gm)["zero_point_exact_zero"]
    node = next(n for n in gm.graph.nodes if getattr(n.target, "__name__", "").startswith("quantize_per_tensor"))
    node.args = (node.args[0], node.args[1], 300, *node.args[3:])
    checks = graph_checks(gm)
    assert not checks["zero_point_exact_zero"] and checks["zero_point_failures"] == [node.name]


def test_eager_check_fails_on_a_zero_point_outside_uint8(model_and_calibration):
    model, calibration = model_and_calibration
    module = quantized_module(model, get_config("static_int8_per_channel"), calibration, "qnnpack")
    assert module_checks(module)["zero_point_exact_zero"]
    bad = copy.deepcopy(module)
    name, conv = next((n, m) for n, m in bad.named_modules() if isinstance(m, torch.ao.nn.quantized.Conv2d))
    conv.zero_point = 300
    checks = module_checks(bad)
    assert not checks["zero_point_exact_zero"] and checks["zero_point_failures"] == [name]
