"""ORT backend: the RGB stem's zero channel (pad_narrow_conv_inputs) on real graphs and real quantize_static."""

import numpy as np
import onnx
import pytest
import torch

from quant_explorer.backends import get_backend, get_config
from quant_explorer.backends import ort as ort_backend
from quant_explorer.backends.ort import pad_narrow_conv_inputs, preprocessed_onnx, quantize_onnx
from quant_explorer.data import EvalData
from quant_explorer.keys import make_calibration
from quant_explorer.models import load_model
from quant_explorer.runtimes import ort_runner


@pytest.fixture
def resnet8(tiny_env):
    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    x = model.preprocessing(data.test.images)
    return model, make_calibration(model, data, 20, 0), x


def test_stem_gets_a_fourth_zero_channel_and_the_fp32_model_is_unchanged(resnet8, tmp_path):
    model, _, x = resnet8
    source = preprocessed_onnx(model)
    proto = onnx.load(str(source))
    changed = pad_narrow_conv_inputs(proto)
    assert len(changed) == 1  # the stem; every other conv reads 16+ channels
    stem = next(n for n in proto.graph.node if n.name == changed[0])
    weight = next(t for t in proto.graph.initializer if t.name == stem.input[1])
    assert list(weight.dims[:2]) == [16, 4]
    onnx.save(proto, tmp_path / "padded.onnx")
    np.testing.assert_allclose(ort_runner(tmp_path / "padded.onnx")(x), ort_runner(source)(x), rtol=1e-5, atol=1e-4)
    assert pad_narrow_conv_inputs(proto) == []  # idempotent: the stem now reads 4 channels


@pytest.mark.parametrize("config", ["ort_u8_minmax_qoperator_per_channel_rr", "ort_u8_minmax_qdq_per_channel_rr"])
def test_reduce_range_models_pad_the_stem_and_predict_exactly_as_without(resnet8, tmp_path, monkeypatch, config):
    """7-bit weights: no int16 pair can overflow, so the padded int8 model computes the very same numbers."""
    model, calibration, x = resnet8
    padded = quantize_onnx(preprocessed_onnx(model), tmp_path / "padded.onnx", get_config(config), calibration)
    assert "Pad" in {n.op_type for n in onnx.load(str(padded)).graph.node}
    monkeypatch.setattr(ort_backend, "pad_narrow_conv_inputs", lambda proto: [])
    plain = quantize_onnx(preprocessed_onnx(model), tmp_path / "plain.onnx", get_config(config), calibration)
    assert "Pad" not in {n.op_type for n in onnx.load(str(plain)).graph.node}
    np.testing.assert_array_equal(ort_runner(padded)(x), ort_runner(plain)(x))


def test_without_reduce_range_the_stem_is_left_alone(resnet8, tmp_path):
    model, calibration, _ = resnet8
    path = quantize_onnx(preprocessed_onnx(model), tmp_path / "q.onnx", get_config("ort_u8_minmax_qdq_per_channel"),
                         calibration)
    assert "Pad" not in {n.op_type for n in onnx.load(str(path)).graph.node}


def test_onnx2torch_runs_the_padded_qdq_graph(resnet8, tmp_path):
    from quant_explorer.runtimes import onnx2torch_runner

    model, calibration, x = resnet8
    path = quantize_onnx(preprocessed_onnx(model), tmp_path / "q.onnx", get_config("ort_u8_minmax_qdq_per_channel_rr"),
                         calibration)
    simulated, kernels = torch.as_tensor(onnx2torch_runner(path)(x)), torch.as_tensor(ort_runner(path)(x))
    assert (simulated.argmax(1) == kernels.argmax(1)).float().mean() >= 0.9


@pytest.mark.parametrize("config", ["ort_s8asym_distribution_qdq_per_channel",
                                    "ort_u8_distribution_qoperator_per_channel"])
def test_distribution_calibration_keeps_the_relus_and_tracks_fp32(resnet8, tmp_path, config):
    """ORT's Distribution ranges straddle 0 even after a ReLU: the ReLUs must stay for negatives to be clipped.

    Without them the activations grew 16x and the output error exceeded the output itself. With them it is 0.2
    of the FP32 output's norm or less on VNNI CPUs, and 0.28 (s8 QDQ) and 0.40 (u8 QOperator) on an AVX2-only one,
    whose int8 kernels lose more."""
    model, calibration, x = resnet8
    source = preprocessed_onnx(model)
    relus = sum(n.op_type == "Relu" for n in onnx.load(str(source)).graph.node)
    path = quantize_onnx(source, tmp_path / "q.onnx", get_config(config), calibration)
    assert sum(n.op_type == "Relu" for n in onnx.load(str(path)).graph.node) == relus > 0
    reference, quantized = ort_runner(source)(x), ort_runner(path)(x)
    assert np.linalg.norm(quantized - reference) < 0.5 * np.linalg.norm(reference)


def test_the_calibrations_ort_declares_are_the_ones_it_implements():
    assert set(get_backend("ort").capabilities.calibrations) == set(ort_backend.CALIBRATION_METHODS)
