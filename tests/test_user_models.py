"""Users' own models of any shape, from the CLI and the API alike: 8x8 greyscale images in folders (read as
greyscale), a 1-channel ONNX model in NCHW and NHWC, --mean/--std of its one channel, a head that ONNX Runtime's
pre-processing trips on (any class count), and PT2E compiled for a 1-channel model at any batch size."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from .conftest import run_main
from .digits import digits, export, trained, write_folders

SCALING = ["--input-scale", "unit", "--mean", "0", "--std", "0.0625"]  # PNG pixel p = 16 x ink / 255 -> ink


class ChannelsLast(nn.Module):
    """Takes [N, 8, 8, 1], as tf2onnx writes Keras models."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2))


class HalvesHead(nn.Module):
    """10 logits folded into 2 classes (digit < 5, digit >= 5) by a logsumexp over each half, stacked: the head whose
    symbolic shape inference fails in ONNX Runtime's quant_pre_process."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        z = self.net(x)
        return torch.stack([z[:, :5].logsumexp(1), z[:, 5:].logsumexp(1)], dim=1)


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    """8x8 greyscale digit folders (200 train, 100 test), the CNN trained on them, exported NCHW and NHWC, and the
    number of test images it gets right, counted here in eager PyTorch on the pixels the PNGs hold."""
    root = tmp_path_factory.mktemp("grey")
    net = trained(digits(200, 0)).eval()
    write_folders(root / "data")
    correct = 0
    for path in (root / "data" / "test").rglob("*.png"):
        ink = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32)[None, None]) / 255 / 0.0625
        correct += int(net(ink).argmax(1)) == int(path.parent.name)
    return SimpleNamespace(root=root, net=net, data=root / "data", correct=correct,
                           nchw=export(net, root / "grey.onnx"),
                           nhwc=export(ChannelsLast(net), root / "nhwc.onnx", (8, 8, 1)))


def test_the_cli_scores_a_greyscale_8x8_model_from_its_folders_in_either_layout(grey, tmp_path, capfd):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "art")}
    assert grey.correct > 80  # a meaningful classifier
    for model in (grey.nchw, grey.nhwc):
        done = run_main(["evaluate", "--model", str(model), *SCALING, "--data-dir", str(grey.data), "--runtime",
                         "onnxruntime", "--json"], env, capfd)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["n_images"] == 100 and list(result["per_class_accuracy"]) == [str(i) for i in range(10)]
        assert abs(result["correct"] - grey.correct) <= 1  # ORT's float rounding may flip one close call
        assert "warning" not in done.stderr  # greyscale kept greyscale: nothing converted
    swept = run_main(["sweep", "--model", str(grey.nchw), "--data-dir", str(grey.data), "--configs",
                      "fp32_baseline,ort_u8_minmax_qdq_per_channel", "--seeds", "1", "--calibration-n", "50",
                      "--json"], env, capfd)
    assert swept.returncode == 0, swept.stderr
    assert all(r["accuracy"] > 0.8 for r in json.loads(swept.stdout))


def test_mean_and_std_take_one_value_per_channel_of_the_model(grey, tmp_path, capfd):
    env = {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "art")}
    rgb = run_main(["evaluate", "--model", str(grey.nchw), "--input-scale", "unit", "--mean", "0,0,0", "--std",
                    "1,1,1", "--data-dir", str(grey.data), "--runtime", "onnxruntime"], env, capfd)
    assert rgb.returncode == 2 and rgb.stderr.count("\n") == 1
    assert "--mean/--std give 3 values, " in rgb.stderr and "takes images of 1 channel: give 1 value each" in rgb.stderr
    uneven = run_main(["evaluate", "--model", str(grey.nchw), "--input-scale", "unit", "--mean", "0", "--std",
                       "1,1", "--data-dir", str(grey.data)], env, capfd)
    assert uneven.returncode == 2 and "one comma-separated number per channel of the model each" in uneven.stderr


def test_the_api_evaluates_the_onnx_file_on_the_folder_as_the_cli_does(grey):
    import quant_explorer as qe
    from quant_explorer.models import Preprocessing

    metrics = qe.evaluate(grey.nchw, grey.data / "test", preprocessing=Preprocessing("unit", (0.0,), (0.0625,)))
    assert metrics["n_images"] == 100 and abs(metrics["correct"] - grey.correct) <= 1


def test_folders_are_read_with_the_models_channels_at_their_own_size(tmp_path):
    from quant_explorer.data import load_split
    from quant_explorer.errors import UserError

    root = write_folders(tmp_path / "rgb", n_train=20, n_test=20, channels=3)
    as_grey = load_split(root, "test", tuple(str(i) for i in range(10)), channels=1)
    as_rgba = load_split(root, "test", tuple(str(i) for i in range(10)), channels=4)
    assert as_grey.images.shape == (20, 1, 8, 8) and as_rgba.images.shape == (20, 4, 8, 8)
    assert bool((as_rgba.images[:, 3] == 255).all())  # RGB read for an RGBA model: opaque
    odd = root / "test" / "3" / "odd.png"
    Image.new("RGB", (9, 8)).save(odd)
    with pytest.raises(UserError, match=r"odd.png is 9x8 but .*0000.png is 8x8: every image must have the size"):
        load_split(root, "test", tuple(str(i) for i in range(10)))


def test_a_head_onnx_runtimes_pre_processing_trips_on_is_quantized_after_a_fallback(tmp_path):
    """Two classes from ten logits through torch.stack of logsumexps: quant_pre_process's symbolic shape
    inference raises on it; the rows are scored anyway, and say which pre-processing they had."""
    import quant_explorer as qe
    from quant_explorer.results import Results

    train, test = digits(200, 0), digits(100, 1)
    halves = lambda d: torch.utils.data.TensorDataset(d.tensors[0], (d.tensors[1] >= 5).long())  # noqa: E731
    result = qe.explore(HalvesHead(trained(train)).eval(), calibration=halves(train), evaluation=halves(test),
                        configs=["ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_tensor"], seeds=1,
                        calibration_n=50, artifacts_dir=tmp_path)
    assert [r["config"] for r in result.rows if r["accuracy"] is not None and r["accuracy"] > 0.8] == [
        "fp32_baseline", "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_tensor"]
    stored = [r for r in Results.load(result.results_path).rows.values() if r.config_name != "fp32_baseline"]
    for row in stored:
        said = row.checks["pre_processing"]
        assert said.startswith("quant_pre_process without symbolic shape inference (quant_pre_process failed: ")
        assert any(w.startswith("ONNX Runtime's pre-processing: quant_pre_process without") for w in row.warnings)


@pytest.mark.slow
def test_pt2e_compiles_a_one_channel_model_for_every_batch_size(grey, tmp_path):
    """Inductor predicted contiguous output for oneDNN's int8 convolution of a 1-channel input under a dynamic batch
    (which writes channels-last), and failed at batch 2 and above: "expected size 16==16, stride 1==64"."""
    import quant_explorer as qe

    train = digits(200, 0)
    q = qe.quantize(grey.net, "pt2e_u8_per_channel_minmax", train, calibration_n=50, artifacts_dir=tmp_path)
    assert q.runtime == "inductor" and q.quantized.checks["activation_tensors_checked"] > 0
    images = digits(40, 1).tensors[0]
    reference = q.quantized.runtimes["torch"].build(1)(images).argmax(1)  # the Q/DQ graph in eager PyTorch
    for batch in (1, 16, 33):
        assert torch.equal(q(images[:batch]).argmax(1), reference[:batch])
    package = q.quantized.runtimes["aotinductor"].build(1)
    assert torch.equal(package(images).argmax(1), reference)
