"""The Python API leaves what the user gave it as it was and says only what it means: a model (batch norm, in
training or eval mode) bit-identical after every call, data of every Python shape read or refused in one line,
nothing from torch or ONNX Runtime on the terminal, and a report (paths, the reproduce line, no CIFAR-10 words)
that fits this model; `quantize` and `explore` share one artifact per recipe."""

from __future__ import annotations

import copy
import html
import re

import pytest
import torch
from PIL import Image

import quant_explorer as qe
from quant_explorer.errors import UserError

from .digits import digits, trained

ORT = "ort_u8_minmax_qdq_per_channel"


@pytest.fixture(scope="module")
def setting():
    train, test = digits(200, 0), digits(100, 1)
    return trained(train).eval(), train, test


def state(module: torch.nn.Module) -> dict:
    """Every parameter and buffer (batch norm's running statistics and batch count among them), and the modes."""
    return {**{k: v.clone() for k, v in module.state_dict().items()},
            "modes": [m.training for m in module.modules()],
            "grads": [p.requires_grad for p in module.parameters()]}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                        for k in a)


def test_a_model_in_training_mode_is_refused_before_anything_runs_it(setting, tmp_path):
    net, train, test = setting
    training = copy.deepcopy(net).train()
    before = state(training)
    for call in (lambda: qe.explore(training, train, test, configs=[ORT], seeds=1, calibration_n=50,
                                    artifacts_dir=tmp_path),
                 lambda: qe.quantize(training, ORT, train, calibration_n=50, artifacts_dir=tmp_path),
                 lambda: qe.evaluate(training, test)):
        with pytest.raises(UserError, match="TwoConv is in training mode: call model.eval"):
            call()
        assert same(state(training), before)  # batch norm's statistics and batch count untouched


def test_every_api_call_leaves_the_model_bit_identical(setting, tmp_path):
    net, train, test = setting
    before = state(net)
    result = qe.explore(net, train, test, configs=[ORT, "dynamic_int8"], seeds=2, calibration_n=50,
                        artifacts_dir=tmp_path)
    assert all(r["accuracy"] is not None for r in result.rows)
    assert same(state(net), before)
    q = qe.quantize(net, ORT, train, calibration_n=50, artifacts_dir=tmp_path)
    assert same(state(net), before)
    assert qe.evaluate(net, test)["n_images"] == 100 and qe.evaluate(q, test)["n_images"] == 100
    assert same(state(net), before)


def test_a_dataloader_is_its_dataset_and_other_python_data_is_refused_in_one_line(setting, tmp_path):
    net, train, test = setting
    plain = qe.explore(net, train, test, configs=[ORT], seeds=1, calibration_n=50, artifacts_dir=tmp_path)
    shuffled = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    loaded = qe.explore(net, shuffled, torch.utils.data.DataLoader(test, batch_size=7), configs=[ORT], seeds=1,
                        calibration_n=50, artifacts_dir=tmp_path)
    assert loaded.keys == plain.keys  # the same images in the same order: the same rows, reused

    class Pictures(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return Image.new("L", (8, 8)), i % 10

    class Named(Pictures):
        def __getitem__(self, i):
            return train[i][0], ["zero", "one"][i % 2]

    class Ragged(Pictures):
        def __getitem__(self, i):
            return torch.zeros(1, 8 if i < 5 else 9, 8), i % 10

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(train)

    cases = {"generator": ((x for x in train), "calibration (generator) cannot be read by index: pass a map-style"),
             "loader over a stream": (torch.utils.data.DataLoader(Stream()), "is a DataLoader over an IterableDataset"),
             "PIL images": (Pictures(), "item 0 is a PIL image: give the dataset a transform that makes tensors"),
             "string labels": (Named(), "item 0 has the label 'zero': labels are class ids 0, 1, ...; name the "
                                        "classes in the dataset's `.classes`"),
             "mixed sizes": (Ragged(), "item 5 is an image of [1, 9, 8], item 0 of [1, 8, 8]: every image must")}
    for name, (data, message) in cases.items():
        with pytest.raises(UserError, match=re.escape(message)) as refused:
            qe.explore(net, data, test, configs=[ORT], seeds=1, calibration_n=10, artifacts_dir=tmp_path)
        assert "\n" not in str(refused.value), name


def test_the_api_prints_nothing_of_torch_or_onnx_runtime(setting, tmp_path, capfd):
    """dynamic_int8's TorchScript save (FutureWarnings) and its qnnpack reference (a C++ `[W ...]` line on file
    descriptor 2) are the noisiest rows; progress=True prints our lines only, one per row."""
    net, train, test = setting
    capfd.readouterr()
    qe.explore(net, train, test, configs=[ORT, "dynamic_int8"], seeds=1, calibration_n=50, artifacts_dir=tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    qe.explore(net, train, test, configs=[ORT, "dynamic_int8"], seeds=1, calibration_n=50, artifacts_dir=tmp_path,
               progress=True, force=True)
    out, err = capfd.readouterr()
    assert out == "" and len(err.splitlines()) == 3 and all(line.startswith("TwoConv ") for line in err.splitlines())


def test_the_report_of_an_exploration_fits_the_model_and_quantize_reuses_its_artifact(setting, tmp_path,
                                                                                      monkeypatch):
    """Run from a working directory with $QUANT_EXPLORER_ARTIFACTS pointing elsewhere: the report names the
    artifacts_dir's model, a Python reproduce line and no CIFAR-10 test set; `quantize` of the same recipe, seed and
    data writes into the sweep's folder, not a second one."""
    net, train, test = setting
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tmp_path / "elsewhere"))
    result = qe.explore(net, train, test, configs=[ORT], seeds=1, calibration_n=50, artifacts_dir="mine")
    page = html.unescape(result.report("report")["html"].read_text().replace("<wbr>", ""))
    assert "CIFAR-10" not in page and "CIFAR-10" not in (tmp_path / "report" / "pareto.md").read_text()
    assert f'qe.quantize(model, "{ORT}", train_ds, seed=0, calibration_n=50)' in page
    assert f"mine/models/TwoConv-{result.view.rows[0].model_weights_sha256[:12]}/{ORT}/n50-s0-" in page
    assert "elsewhere" not in page
    q = qe.quantize(net, ORT, train, calibration_n=50, artifacts_dir="mine")
    assert len(list((tmp_path / "mine" / "models").glob(f"TwoConv-*/{ORT}/*"))) == 1
    assert q.artifact.parent.name.startswith("n50-s0-") and q.artifact.is_relative_to(tmp_path / "mine")
    assert not (tmp_path / "elsewhere").exists()
