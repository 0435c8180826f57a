"""The Python API (`quant_explorer.api`): the README's example on a user's own nn.Module and Dataset (3 classes,
48x48 inputs, already normalized floats), and the CLI taking a 3-class image-folder data set for a 3-output ONNX
model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from .conftest import run_main

README = Path(__file__).resolve().parents[1] / "README.md"
CLASSES = 3
SIZE = 48


def blobs(n: int, seed: int, noise: float = 0.6) -> torch.utils.data.TensorDataset:
    """Normalized float images whose class is a faint colour in a centre square under heavy noise: a head
    fitted on random features gets about 90%, so quantization has predictions to change."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    centre = torch.tensor([[0.3, -0.2, 0.0], [-0.2, 0.3, 0.1], [0.0, -0.1, -0.3]])[labels]
    x = noise * torch.randn(n, 3, SIZE, SIZE, generator=g)
    x[:, :, 12:36, 12:36] += centre[:, :, None, None]
    return torch.utils.data.TensorDataset(x, labels)


class SmallNet(nn.Module):
    """A user's model: ours in no registry, no quant stubs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x):
        return self.head(self.features(x))


def trained(train: torch.utils.data.TensorDataset) -> nn.Module:
    """Seeded random convolutions, batch-norm statistics measured on `train`, and the head fitted to it in closed
    form (ridge regression on one-hot labels): a meaningful classifier without a training loop."""
    torch.manual_seed(0)
    net = SmallNet()
    x, y = train.tensors
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.momentum = None  # one pass sets the statistics exactly
    with torch.no_grad():
        net.train()(x)
        features = torch.cat([net.eval().features(x), torch.ones(len(x), 1)], dim=1)
        targets = nn.functional.one_hot(y, CLASSES).float() * 2 - 1
        solution = torch.linalg.solve(features.T @ features + 1e-3 * torch.eye(features.shape[1]), features.T @ targets)
        net.head.weight.copy_(solution[:-1].T)
        net.head.bias.copy_(solution[-1])
    return net.eval()


def readme_example() -> str:
    """The README's "Use it from Python" code block, as a user would copy it."""
    text = README.read_text()
    section = text[text.index("## Use it from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """The README example run as written, on 300 calibration and 150 evaluation images, with 2 seeds (not 5: the
    one change, to keep the suite fast), in its own working directory."""
    root = tmp_path_factory.mktemp("api")
    train, test = blobs(300, 0), blobs(150, 1)
    namespace = {"model": trained(train), "train_ds": train, "test_ds": test}
    code = readme_example()
    assert "seeds=5" in code
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("QUANT_EXPLORER_CACHE", str(root / "cache"))
        mp.delenv("QUANT_EXPLORER_ARTIFACTS", raising=False)
        exec(compile(code.replace("seeds=5", "seeds=2"), "README.md", "exec"), namespace)
    return root, namespace


def test_the_readme_example_gives_fp32_ort_and_pt2e_rows_with_intervals_and_a_pick(readme_run):
    root, ns = readme_run
    result, rows, pick = ns["result"], ns["rows"], ns["pick"]
    by_config = {r["config"]: r for r in rows}
    assert list(by_config) == ["fp32_baseline", "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_tensor_rr",
                               "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel_rr",
                               "pt2e_u8_per_channel_minmax"]
    fp32 = by_config["fp32_baseline"]
    assert fp32["ci95"] is None and fp32["delta_pp"] == 0.0 and fp32["runtime"] == "onnxruntime"
    assert 0.8 < fp32["accuracy"] < 1.0  # a meaningful classifier, not a trivial one
    assert by_config["pt2e_u8_per_channel_minmax"]["runtime"] == "inductor"
    for row in rows[1:]:
        low, high = row["ci95"]
        assert row["seeds"] == [0, 1] and low <= row["delta_pp"] <= high and row["size_bytes"] > 0
        assert abs(row["accuracy"] - fp32["accuracy"]) < 0.1
    assert pick["config"] in by_config and pick["pick"] and pick["in_best_set"] and "confidence set" in pick["rule"]
    assert sum(r["pick"] for r in rows) == 1
    # The same rows, keys and schema as the CLI's: `summary --json` on that results file gives the same pick.
    stored = json.loads((root / "qe-artifacts" / "results" / "full_results.json").read_text())
    assert stored["schema_version"] == 2 and set(result.keys) <= set(stored["entries"])
    assert {e["model"] for e in stored["entries"].values()} == {"SmallNet"}
    assert list(stored["datasets"].values())[0]["classes"] == ["0", "1", "2"]
    summary = subprocess.run([sys.executable, "-c", "from quant_explorer.cli import main; main()", "summary",
                              "--json", "--objective", "size"], capture_output=True, text=True, cwd=root,
                             env={**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(root / "qe-artifacts")})
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["models"]["SmallNet"]["pick"] == pick["config"]
    # The report of this exploration, and the quantized model the example built from the pick.
    assert "SmallNet" in (root / "qe-report" / "pareto.md").read_text()
    assert (root / "qe-report" / "index.html").stat().st_size > 10_000
    q = ns["q"]
    assert q.config == pick["config"] and q.runtime == pick["runtime"] and q.artifact.is_file()
    x = ns["x"]
    assert q(x).shape == (8, CLASSES)
    metrics = ns["qe"].evaluate(q, ns["test_ds"])
    assert metrics["n_images"] == 150 and abs(metrics["accuracy"] - pick["accuracy"]) < 0.05


def test_a_rerun_reuses_every_row_prints_nothing_and_eager_static_says_why_not(readme_run, capsys):
    root, ns = readme_run
    import quant_explorer as qe

    capsys.readouterr()
    again = qe.explore(ns["model"], calibration=ns["train_ds"], evaluation=ns["test_ds"],
                       configs=["ort_u8_minmax_qdq_per_channel", "static_int8_per_tensor", "dynamic_int8"],
                       seeds=2, calibration_n=256, artifacts_dir=root / "qe-artifacts")
    assert capsys.readouterr().out == ""
    rows = {r["config"]: r for r in again.rows}
    first = {r["config"]: r for r in ns["rows"]}
    for name in ("fp32_baseline", "ort_u8_minmax_qdq_per_channel"):  # stored rows, same identity: same numbers
        assert rows[name]["accuracy"] == first[name]["accuracy"] and rows[name]["seeds"] == first[name]["seeds"]
    static = rows["static_int8_per_tensor"]
    assert static["accuracy"] is None and "QuantStub" in static["not_applicable"]
    assert rows["dynamic_int8"]["accuracy"] is not None  # nn.Linear quantized dynamically: no stubs needed
    assert again.pick is not None


def test_bad_input_is_one_line_before_any_work(tmp_path):
    import quant_explorer as qe
    from quant_explorer.errors import UserError

    train, test = blobs(60, 0), blobs(30, 1)
    net = trained(train)
    with pytest.raises(UserError, match="training mode: call model.eval"):
        qe.explore(SmallNet(), calibration=train, evaluation=test, configs=["ort_u8_minmax_qdq_per_tensor"],
                   artifacts_dir=tmp_path)
    with pytest.raises(UserError, match="calibration_n 256 is larger than the training split"):
        qe.explore(net, calibration=train, evaluation=test, configs=["ort_u8_minmax_qdq_per_tensor"],
                   artifacts_dir=tmp_path)
    four = torch.utils.data.TensorDataset(test.tensors[0], torch.arange(30) % 4)
    with pytest.raises(UserError, match="scores 3 classes .* has 4"):
        qe.explore(net, calibration=train, evaluation=four, calibration_n=30, artifacts_dir=tmp_path)
    with pytest.raises(UserError, match="fails on a batch of the evaluation images"):
        small = torch.utils.data.TensorDataset(torch.zeros(30, 1, 8, 8), torch.arange(30) % 3)
        qe.explore(net, calibration=small, evaluation=small, calibration_n=30, artifacts_dir=tmp_path)
    assert not (tmp_path / "results").exists()


def test_module_identity_is_its_structure_and_weights():
    from quant_explorer.models.loaded import module_sha256

    a, b = trained(blobs(60, 0)), trained(blobs(60, 0))
    assert module_sha256(a) == module_sha256(b)
    with torch.no_grad():
        b.head.bias[0] += 1e-6
    assert module_sha256(a) != module_sha256(b)


def test_importing_the_package_loads_no_torch_and_its_functions_are_not_its_submodules():
    code = ("import sys, quant_explorer as qe; assert 'torch' not in sys.modules; import quant_explorer.evaluate; "
            "import quant_explorer.configs; print(callable(qe.evaluate), callable(qe.configs), "
            "len(qe.configs('pt2e_u8_*')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout == "True True 12\n", done.stderr


# --- the CLI: any class set, any output count --------------------------------------------------------------


def three_class_onnx(path: Path) -> Path:
    """A Flatten + Gemm classifier of 32x32 RGB images with 3 outputs: score k is the mean of channel 2 - k, so
    its classes are blue, green, red (channels 2, 1, 0) in that order, the sorted order of their folder names."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((3 * 32 * 32, CLASSES), dtype=np.float32)
    for k in range(CLASSES):
        channel = 2 - k
        weight[channel * 1024:(channel + 1) * 1024, k] = 1 / 1024
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def three_class_folders(root: Path) -> Path:
    """train/ and test/ with class folders red, green, blue of noisy 32x32 images, each brightest in its colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 15)):
        for i in range(n):
            name, channel = [("red", 0), ("green", 1), ("blue", 2)][i % 3]
            image = rng.integers(0, 120, (32, 32, 3)).astype(np.uint8)
            image[..., channel] += 100
            (root / split / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / split / name / f"{i:03d}.png")
    return root


def test_the_cli_takes_a_three_class_folder_data_set_for_a_three_output_onnx_model(tmp_path, monkeypatch, capfd):
    """Labels follow the sorted folder names (blue 0, green 1, red 2), as torchvision's ImageFolder numbers them:
    the model is right on every image only if that order is honoured."""
    data = three_class_folders(tmp_path / "data")
    model = three_class_onnx(tmp_path / "three.onnx")

    monkeypatch.chdir(tmp_path)

    def cli(*args):
        return run_main(list(args), {"QUANT_EXPLORER_ARTIFACTS": str(tmp_path / "art")}, capfd)

    swept = cli("sweep", "--model", str(model), "--input-scale", "raw255", "--data-dir", str(data), "--configs",
                "fp32_baseline,ort_u8_minmax_qdq_per_tensor", "--seeds", "1", "--calibration-n", "12", "--json")
    assert swept.returncode == 0, swept.stderr
    rows = {r["config_name"]: r for r in json.loads(swept.stdout)}
    assert list(rows["fp32_baseline"]["per_class_accuracy"]) == ["blue", "green", "red"]
    assert rows["fp32_baseline"]["accuracy"] == 1.0 and rows["ort_u8_minmax_qdq_per_tensor"]["accuracy"] > 0.9
    # A model whose outputs do not match the class folders is refused in one line, before any work.
    five = tmp_path / "five"
    for label, name in enumerate("abcde"):
        for split in ("train", "test"):
            (five / split / name).mkdir(parents=True)
            Image.fromarray(np.full((32, 32, 3), label, np.uint8)).save(five / split / name / "0.png")
    refused = cli("evaluate", "--model", str(model), "--data-dir", str(five), "--runtime", "onnxruntime")
    assert refused.returncode == 2 and "scores 3 classes (output [N, 3]), the evaluation set" in refused.stderr
    assert "has 5 (a, b, c, d, e)" in refused.stderr
