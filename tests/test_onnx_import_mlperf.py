"""The MLPerf reference ResNet8 in foreign ONNX forms: exactly 895/1,017 in FP32, within a few points once
quantized. Nothing derived from the MLPerf weights is written outside tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

from quant_explorer.backends import Calibration, get_config, quantize
from quant_explorer.data import calibration_set, load_split
from quant_explorer.evaluate import evaluate
from quant_explorer.models import load_model
from quant_explorer.runtimes import torch_runner

from .conftest import MLPERF_H5, SUBSET
from .onnx_forms import NHWC, NORMALIZED, RAW, BakedNormalization, ExpectsNormalized, export

needs_mlperf = pytest.mark.skipif(not MLPERF_H5.is_file(), reason=f"MLPerf ResNet8 weights not found at {MLPERF_H5}")
MLPERF_CORRECT = 895  # of 1,017: the Keras reference, reproduced by our port
MLPERF_FORMS = {
    "nhwc-opset17": (NHWC, {"nhwc": True, "opset": 17}, RAW),
    "fixed-batch-1": (lambda m: m, {"dynamic": False}, RAW),
    "baked-normalization": (BakedNormalization, {}, RAW),
    "expects-normalized-opset11": (ExpectsNormalized, {"opset": 11}, NORMALIZED),
}
QUANT_CONFIGS = ("ort_u8_minmax_qdq_per_channel_rr", "ort_s8asym_minmax_qdq_per_tensor")


@pytest.fixture(scope="module")
def mlperf(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANT_EXPLORER_ARTIFACTS", str(tmp_path_factory.mktemp("artifacts")))
        reference = load_model("resnet8-mlperf", MLPERF_H5)
        test = load_split(SUBSET, "test")
        calibration = calibration_set(load_split(SUBSET, "train"), 256, 0)
        yield reference, test, calibration


@pytest.mark.shared_data
@needs_mlperf
@pytest.mark.parametrize("form", MLPERF_FORMS)
def test_mlperf_resnet8_in_a_foreign_form_scores_the_same(form, mlperf, tmp_path):
    """Exactly 895/1,017 in FP32 (ORT); the same predictions from onnx2torch; quantized within 3 points.

    The PyTorch and quantized runs use every other test image, to keep the suite fast on a busy machine.
    """
    reference, test, calibration = mlperf
    wrap, options, preprocessing = MLPERF_FORMS[form]
    loaded = load_model(export(wrap(reference.module), tmp_path / f"{form}.onnx", **options), None, preprocessing)
    fp32 = quantize(loaded, get_config("fp32_baseline"), None, tmp_path / "fp32")
    metrics, preds = evaluate(fp32.runner, test, preprocessing)
    assert metrics["correct"] == MLPERF_CORRECT
    half = test.subset(range(0, len(test), 2))
    baseline = (preds[::2] == half.labels.numpy()).mean()
    torch_preds = evaluate(torch_runner(loaded.module), half, preprocessing)[1]
    assert np.array_equal(torch_preds, preds[::2])
    for name in QUANT_CONFIGS:
        quantized = quantize(loaded, get_config(name), Calibration(calibration, preprocessing, 0), tmp_path / name)
        accuracy = evaluate(quantized.runner, half, preprocessing)[0]["accuracy"]
        assert abs(accuracy - baseline) <= 0.03, f"{name}: {accuracy:.4f} vs FP32 {baseline:.4f}"
        assert quantized.checks["zero_point_exact_zero"]
