"""Bring your own ONNX model: foreign files (`onnx_forms.py`) normalized, validated and quantized.

A tiny random CNN, numbers checked against the torch module it was exported from; the MLPerf ResNet8 in the
same forms is test_onnx_import_mlperf.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from quant_explorer.backends import Calibration, get_config, quantize
from quant_explorer.data import CIFAR10_CLASSES, ImageSet
from quant_explorer.errors import NotApplicable, UserError
from quant_explorer.models import exported_onnx, file_sha256, load_model
from quant_explorer.models.model_card import card_path
from quant_explorer.models.onnx_import import load_onnx_model
from quant_explorer.runtimes import torch_runner

from .onnx_forms import (
    NHWC,
    NORMALIZED,
    RAW,
    BakedNormalization,
    ExpectsNormalized,
    FlattenByReshape,
    FoldsTheBatch,
    Tiny,
    ViewBatchOne,
    assert_same_model,
    export,
    images,
)

# --- the forms a foreign file comes in -----------------------------------------------------------------------


FORMS = {
    # name: (wrapper, export options, preprocessing the user passes, what normalizing must report);
    # the legacy exporter writes Flatten + Gemm heads and computes pads and shapes in small subgraphs.
    "nchw-dynamic": (lambda m: m, {}, RAW, {"input_layout": "NCHW", "batch": "dynamic", "opset": 13}),
    "nhwc-opset17": (NHWC, {"nhwc": True, "opset": 17}, RAW, {"input_layout": "NHWC", "opset": 17}),
    "fixed-batch-1": (lambda m: m, {"dynamic": False}, RAW, {"batch": "made_dynamic", "fixed_batch": None}),
    "view-batch-1": (ViewBatchOne, {"dynamic": False}, RAW, {"batch": "made_dynamic"}),
    "opset-11": (lambda m: m, {"opset": 11}, RAW, {"source_opset": 11, "opset": 13}),
    "baked-normalization": (BakedNormalization, {}, RAW, {}),
    "expects-normalized": (ExpectsNormalized, {}, NORMALIZED, {}),
}


@pytest.mark.parametrize("form", FORMS)
def test_foreign_forms_normalize_to_the_same_model(form, tmp_path):
    wrap, options, preprocessing, expected = FORMS[form]
    reference = wrap(Tiny())
    loaded = load_model(export(reference, tmp_path / f"{form}.onnx", **options), None, preprocessing)
    assert {k: loaded.import_info[k] for k in expected} == expected
    standard = onnx.load(str(exported_onnx(loaded)))
    (image,) = standard.graph.input
    assert [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim][1:] == [3, 32, 32]
    assert image.type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    if wrap is ViewBatchOne:
        assert any("rewrote the Reshape" in change for change in loaded.import_info["changes"])
    assert_same_model(loaded, reference, preprocessing, nhwc=options.get("nhwc", False))


def test_a_graph_that_folds_batch_one_into_its_arithmetic_runs_one_image_at_a_time(tmp_path):
    reference = FoldsTheBatch()
    loaded = load_model(export(reference, tmp_path / "folds.onnx", dynamic=False), None, RAW)
    assert loaded.import_info["batch"] == "fixed" and loaded.import_info["fixed_batch"] == 1
    assert_same_model(loaded, reference, RAW)
    x = RAW(images(5))
    # Quantized, it keeps the fixed batch: calibration and the runner go one image at a time.
    calibration = Calibration(ImageSet(images(20, 1), torch.arange(20) % 10, CIFAR10_CLASSES, "random"), RAW, 0,
                              batch_size=1)
    quantized = quantize(loaded, get_config("ort_u8_minmax_qdq_per_channel_rr"), calibration, tmp_path / "q")
    assert quantized.checks["zero_point_exact_zero"]
    assert quantized.runner(x).shape == (5, 10)


def test_opset_18_with_allowzero_reshapes_as_the_dynamo_exporter_writes(tmp_path):
    reference = FlattenByReshape()
    path = export(reference, tmp_path / "m.onnx", opset=18)
    model = onnx.load(str(path))
    reshape = next(node for node in model.graph.node if node.op_type == "Reshape")
    del reshape.attribute[:]
    reshape.attribute.append(helper.make_attribute("allowzero", 1))
    onnx.save(model, str(path))
    loaded = load_model(path, None, RAW)
    assert loaded.import_info["opset"] == 18 and any("allowzero=0" in c for c in loaded.import_info["changes"])
    assert_same_model(loaded, reference, RAW)


def test_our_own_fp32_export_imports_back_with_the_same_predictions(tmp_path):
    """What `exported_onnx` writes (opset 18, ReduceMean-18 for CifarCNN's global pool) is a valid import."""
    ours = load_model("cifar_cnn")
    source = exported_onnx(ours)
    copy = tmp_path / "cifar_cnn.onnx"
    shutil.copy(source, copy)
    loaded = load_model(copy, None, ours.preprocessing)
    assert loaded.import_info["opset"] == 18
    x = ours.preprocessing(images(16))
    with torch.inference_mode():
        assert torch.equal(loaded.module(x).argmax(1), ours.module(x).argmax(1))


def test_pytorch_configs_take_the_converted_module_and_eager_static_does_not_apply(tmp_path):
    """PT2E runs torch.export on `fresh()` with a dynamic batch named x, eager dynamic saves it with
    TorchScript: both need plain torch ops and layers, not onnx2torch's wrappers."""
    reference = Tiny()
    loaded = load_model(export(reference, tmp_path / "m.onnx"), None, RAW)
    calibration = Calibration(ImageSet(images(32, 1), torch.arange(32) % 10, CIFAR10_CLASSES, "random"), RAW, 0)
    x = RAW(images(8))
    with torch.inference_mode():
        want = reference.eval()(x).numpy()
    for name in ("pt2e_u8_per_channel_minmax", "dynamic_int8"):
        got = np.asarray(quantize(loaded, get_config(name), calibration, tmp_path / name).runner(x))
        assert got.shape == (8, 10) and np.abs(got - want).max() < 0.1 * np.abs(want).max(), name
    with pytest.raises(NotApplicable, match="imported"):
        quantize(loaded, get_config("static_int8_per_channel"), calibration, tmp_path / "eager")


# --- identity, the model card, and the registry's entry point -------------------------------------------------


def test_results_are_keyed_by_file_content_not_path(tmp_path):
    path = export(Tiny(), tmp_path / "a.onnx")
    loaded = load_model(str(path), None, RAW)
    sha = file_sha256(path)
    assert (loaded.name, loaded.weights_sha256, loaded.weights_path) == (f"onnx:{sha[:12]}", sha, path)
    assert loaded.is_imported and exported_onnx(loaded) == loaded.onnx_source != path
    copy = tmp_path / "elsewhere" / "b.onnx"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert load_model(copy, None, RAW).name == loaded.name


def test_fresh_is_a_new_conversion_and_has_no_eager_variant(tmp_path):
    loaded = load_model(export(Tiny(), tmp_path / "m.onnx"), None, RAW)
    fresh = loaded.fresh()
    assert fresh is not loaded.module
    x = RAW(images(3))
    torch.testing.assert_close(torch_runner(fresh)(x), torch_runner(loaded.module)(x))
    with pytest.raises(ValueError, match="no quantizable"):
        loaded.fresh(quantizable=True)


def test_the_card_remembers_preprocessing_so_the_user_says_it_once(tmp_path):
    path = export(ExpectsNormalized(Tiny()), tmp_path / "m.onnx")
    with pytest.raises(UserError, match="--input-scale raw255 .* or unit") as e:
        load_model(path)
    assert "m.onnx.card.json" in str(e.value) and "\n" not in str(e.value)
    assert load_model(path, None, NORMALIZED).preprocessing == NORMALIZED
    card = json.loads(card_path(path).read_text())
    assert card["sha256"] == file_sha256(path) and card["import"]["input_layout"] == "NCHW"
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob("*.tmp*"))  # written atomically
    assert load_model(path).preprocessing == NORMALIZED
    assert load_model(path, None, RAW).preprocessing == RAW  # saying it again replaces it
    assert load_model(path).preprocessing == RAW


def test_a_card_for_another_version_of_the_file_is_not_trusted(tmp_path):
    path = export(Tiny(), tmp_path / "m.onnx")
    load_model(path, None, RAW)
    export(ExpectsNormalized(Tiny()), path)  # retrained or replaced in place
    with pytest.raises(UserError, match="written for another version of m.onnx.*--input-scale"):
        load_model(path)
    card_path(path).write_text("{not json")
    with pytest.raises(UserError, match="card .* is unreadable"):
        load_model(path)


def test_load_model_dispatches_on_the_onnx_suffix(tmp_path):
    path = export(Tiny(), tmp_path / "m.onnx")
    with pytest.raises(UserError, match="--weights does not apply"):
        load_model(path, tmp_path / "w.pt", RAW)
    with pytest.raises(UserError, match="--input-scale/--mean/--std are for imported .onnx models"):
        load_model("resnet8", None, RAW)


# --- validation: each problem named, with its fix, in one line ---------------------------------------------


def _two_outputs(path: Path) -> Path:
    class TwoOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Tiny()

        def forward(self, x):
            logits = self.net(x)
            return logits, logits.softmax(1)

    return export(TwoOutputs(), path, dynamic=False)


def _two_inputs(path: Path) -> Path:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Tiny()

        def forward(self, x, y):
            return self.net(x + y)

    return export(TwoInputs(), path, n_inputs=2)


def _save_classifier(path: Path, nodes, weights, input_type=TensorProto.FLOAT, opsets=(("", 13),)) -> Path:
    """x [N, 3, 32, 32] -> `nodes` -> logits [N, 10], written node by node."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", input_type, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, v) for domain, v in opsets])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def _helper_model(path: Path, input_type=TensorProto.FLOAT, broken: bool = False) -> Path:
    """A Flatten + Gemm classifier; `broken` feeds a node from a tensor nobody makes."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3 * 32 * 32, 10], np.zeros(3 * 32 * 32 * 10, np.float32))
    nodes = [helper.make_node("Flatten", ["missing" if broken else "x"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w"], ["logits"])]
    return _save_classifier(path, nodes, [weight], input_type)


def _contrib_op_model(path: Path) -> Path:
    """Flatten, Gemm, com.microsoft Gelu, Gemm: an op ONNX Runtime runs and onnx2torch has no converter for."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [3 * 32 * 32, 16], rng.normal(0, 0.01, 3 * 32 * 32 * 16))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [16, 10], rng.normal(0, 0.3, 160))
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "w1"], ["h"]),
             helper.make_node("Gelu", ["h"], ["g"], domain="com.microsoft"),
             helper.make_node("Gemm", ["g", "w2"], ["logits"])]
    return _save_classifier(path, nodes, [w1, w2], opsets=(("", 13), ("com.microsoft", 1)))


def test_a_graph_onnx2torch_cannot_convert_still_runs_every_onnx_runtime_config(tmp_path):
    from quant_explorer.data import EvalData
    from quant_explorer.experiment import fp32_baseline, run_config
    from quant_explorer.keys import make_calibration

    from .conftest import write_image_folder

    loaded = load_onnx_model(_contrib_op_model(tmp_path / "contrib.onnx"), RAW)
    assert loaded.module is None and "onnx2torch cannot convert it" in loaded.torch_unavailable
    data = EvalData.load(write_image_folder(tmp_path / "data", n_train=30, n_test=20))
    baseline, fp32 = fp32_baseline(loaded, data)
    assert fp32.n_images == 20 and not fp32.alternates
    ort, _ = run_config(loaded, get_config("ort_u8_minmax_qdq_per_tensor_rr"), data,
                        make_calibration(loaded, data, 10, 0), baseline)
    assert ort.accuracy is not None and ort.error is None
    pt2e, _ = run_config(loaded, get_config("pt2e_u8_per_tensor_minmax"), data, make_calibration(loaded, data, 10, 0),
                         baseline)
    assert pt2e.not_applicable.startswith(f"PyTorch configs do not apply to {loaded.name}: onnx2torch cannot")


def test_weights_in_a_side_file_are_found_beside_the_model_wherever_the_user_stands(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    path = export(Tiny(), tmp_path / "models" / "m.onnx")
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data",
              size_threshold=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_onnx_model(path, RAW)
    assert_same_model(loaded, Tiny(), RAW)
    (tmp_path / "models" / "m.onnx.data").rename(tmp_path / "m.onnx.data")
    with pytest.raises(UserError, match=r"keeps its weights in m.onnx.data, which is not beside it .*copy m.onnx.data"):
        load_onnx_model(path, RAW)


def _bytes(data: bytes):
    return lambda path: (path.write_bytes(data), path)[1]


VALIDATION = {  # problem: (how to make the file, what the one-line error must say); empty, truncated and
    # not-a-CIFAR-classifier files go through the CLI in tests/test_hardening.py
    "missing": (lambda path: path, "is not a file"),
    "not-onnx": (_bytes(b"hello, I am a text file\n"), "is not an ONNX model .*exported with"),
    "keras-h5": (_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100)), "not an ONNX model, it is an HDF5 file"),
    "fails-checker": (lambda path: _helper_model(path, broken=True), "fails the ONNX checker .*re-export"),
    "two-inputs": (_two_inputs, r"has 2 inputs \(x, y\): expected exactly one image input"),
    "two-outputs": (_two_outputs, r"has 2 outputs .*expected one \[N, classes\] logits output"),
    "uint8-input": (lambda path: _helper_model(path, TensorProto.UINT8), "input 'x' is uint8, expected float32"),
    "opset-9": (lambda path: export(Tiny(), path, opset=9),
                r"opset 9, older than ONNX Runtime's quantizer supports \(10\+\): re-export it with opset 13"),
}


@pytest.mark.parametrize("problem", VALIDATION)
def test_validation_names_the_problem_and_the_fix(problem, tmp_path):
    make, message = VALIDATION[problem]
    path = make(tmp_path / "model.onnx")
    with pytest.raises(UserError, match=message) as e:
        load_onnx_model(path, RAW)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert not (tmp_path / "model.onnx.card.json").exists()


