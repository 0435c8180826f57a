import pytest
import torch

from quant_explorer.data import load_split
from quant_explorer.errors import UserError
from quant_explorer.evaluate import evaluate
from quant_explorer.models import MODELS, exported_onnx, get_spec, load_model
from quant_explorer.runtimes import onnx2torch_runner, onnx_opset, ort_runner, torch_runner

from .conftest import MLPERF_H5, SUBSET


@pytest.mark.parametrize("name", list(MODELS))
def test_architectures_map_a_batch_to_ten_logits(name):
    for quantizable in (False, True):
        module = get_spec(name).architecture(quantizable=quantizable).eval()
        assert module(torch.rand(3, 3, 32, 32) * 255).shape == (3, 10)


def test_resnet8_has_the_reference_parameter_count():
    assert sum(p.numel() for p in get_spec("resnet8").architecture().parameters()) == 78_186


def test_unreadable_or_foreign_weights_are_refused(tmp_path):
    path = tmp_path / "cnn.pt"
    torch.save(get_spec("cifar_cnn").architecture().state_dict(), path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="is not a PyTorch state_dict that torch.load can read"):
        load_model("resnet8", tmp_path / "junk.pt")
    with pytest.raises(UserError, match="not the MLPerf Tiny ResNet8"):
        load_model("resnet8-mlperf", path)


def test_missing_weights(monkeypatch):
    monkeypatch.delenv("QUANT_EXPLORER_MLPERF_WEIGHTS", raising=False)
    with pytest.raises(UserError, match="--weights"):
        load_model("resnet8-mlperf")


@pytest.mark.shared_data
def test_mlperf_reference_scores_895_in_all_three_runtimes():
    test = load_split(SUBSET, "test")
    model = load_model("resnet8-mlperf", MLPERF_H5)
    onnx_path = exported_onnx(model)
    assert onnx_opset(onnx_path) >= 13
    results = {}
    for name, runner in (("torch", torch_runner(model.module)), ("ort", ort_runner(onnx_path)),
                         ("onnx2torch", onnx2torch_runner(onnx_path))):
        metrics, preds = evaluate(runner, test, model.preprocessing)
        results[name] = (metrics["correct"], preds)
    assert {name: correct for name, (correct, _) in results.items()} == {"torch": 895, "ort": 895, "onnx2torch": 895}
    assert (results["torch"][1] == results["ort"][1]).mean() >= 0.999
    assert (results["torch"][1] == results["onnx2torch"][1]).mean() >= 0.999


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["resnet8", "cifar_cnn"])
def test_shipped_weights_agree_across_runtimes(name):
    test = load_split(SUBSET, "test")
    model = load_model(name)
    path = exported_onnx(model)
    accuracies, predictions = [], []
    for runner in (torch_runner(model.module), ort_runner(path), onnx2torch_runner(path)):
        metrics, preds = evaluate(runner, test, model.preprocessing)
        accuracies.append(metrics["accuracy"])
        predictions.append(preds)
    assert max(accuracies) - min(accuracies) <= 0.001
    assert all((p == predictions[0]).mean() >= 0.999 for p in predictions)
