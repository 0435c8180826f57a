"""Fixtures: tiny CIFAR-10 data written in both real layouts, and paths to the shared data when present."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_explorer.data import CIFAR10_CLASSES

SHARED = Path(__file__).resolve().parents[2] / "shared"
SUBSET = SHARED / "data" / "cifar10-subset"
MLPERF_H5 = SHARED / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet.h5"
# What a fresh interpreter does with a Python warning (`python -W` unset): shown, except these categories.
INTERPRETER_IGNORES = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def pytest_collection_modifyitems(config, items):
    if SUBSET.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared CIFAR-10 subset not found at {SUBSET}")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own cache and artifacts directories, and no ambient data directory."""
    root = tmp_path_factory.mktemp("qe")
    monkeypatch.setenv("QUANT_EXPLORER_CACHE", str(root / "cache"))
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(root / "artifacts"))
    monkeypatch.delenv("QUANT_EXPLORER_DATA", raising=False)
    return root


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """NHWC uint8 images whose class is visible in the pixels (a per-class colour), labels cycling 0-9."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    base = (np.stack([labels * 25, 255 - labels * 25, (labels * 70) % 256], axis=1)[:, None, None, :])
    images = np.clip(base + rng.integers(-20, 21, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return images, labels


def write_cifar_python(root: Path, n_train: int = 50, n_test: int = 20) -> dict[str, str]:
    """The CIFAR-10 python layout (pickled dicts with str keys, as python-2 pickles load); returns md5s."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    md5 = {}

    def dump(name, obj):
        (folder / name).write_bytes(pickle.dumps(obj))
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()

    images, labels = synthetic_images(n_train, 0)
    for k, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        data = images[chunk].transpose(0, 3, 1, 2).reshape(len(chunk), -1)
        dump(f"data_batch_{k}", {"data": data, "labels": labels[chunk].tolist(), "batch_label": "x"})
    images, labels = synthetic_images(n_test, 1)
    dump("test_batch", {"data": images.transpose(0, 3, 1, 2).reshape(n_test, -1), "labels": labels.tolist()})
    dump("batches.meta", {"label_names": list(CIFAR10_CLASSES)})
    return md5


def write_image_folder(root: Path, n_train: int = 50, n_test: int = 20, suffix: str = ".png") -> Path:
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = synthetic_images(n, seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}{suffix}")
    return root


def trust_cifar_md5(md5: dict[str, str], monkeypatch) -> None:
    """Point torchvision's CIFAR-10 md5 table at batches `write_cifar_python` wrote, so only damage fails it."""
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", md5[f"data_batch_{k}"]] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})


@pytest.fixture
def cifar_python_dir(tmp_path, monkeypatch):
    """Real-format CIFAR-10 batches; torchvision's md5 table points at these files' checksums."""
    trust_cifar_md5(write_cifar_python(tmp_path / "cifar"), monkeypatch)
    return tmp_path / "cifar"


@pytest.fixture
def image_folder_dir(tmp_path):
    return write_image_folder(tmp_path / "folders")


def random_model(name: str, images):
    """Model `name` with seeded random weights and BatchNorm statistics measured on `images` (uint8 NCHW), so
    activations have a realistic range."""
    import torch
    from torch import nn

    from quant_explorer.models import LoadedModel, get_spec

    torch.manual_seed(0)
    spec = get_spec(name)
    module = spec.architecture()
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.momentum = None  # cumulative average: one pass sets the statistics exactly
    with torch.no_grad():
        module.train()(spec.preprocessing(images))
    return LoadedModel(name, module.eval(), spec.preprocessing, Path("random"), "0" * 64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tests' one tiny setting: a ResNet8 with seeded random weights (resnet8.pt) and tiny image folders
    (data/: 60 train, 30 test), one per test module."""
    import torch

    from quant_explorer.models import get_spec

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    torch.save(get_spec("resnet8").architecture().state_dict(), root / "resnet8.pt")
    write_image_folder(root / "data", n_train=60, n_test=30)
    return root


@pytest.fixture
def tiny_env(tiny, monkeypatch):
    """`tiny`, with the module's artifacts (exported and quantized models) kept beside it."""
    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tiny / "artifacts"))
    return tiny


TINY_CONFIGS = ("fp32_baseline", "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_channel",
                "ort_u8_minmax_qdq_per_tensor_rr", "ort_s8asym_minmax_qdq_per_tensor",
                "ort_u8_minmax_qoperator_per_tensor")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> dict:
    """A real results file, made once per session: TINY_CONFIGS on a random ResNet8, tiny folders, seeds 0 and 1."""
    from quant_explorer.backends import get_config
    from quant_explorer.data import EvalData
    from quant_explorer.sweep import run_sweep

    root = tmp_path_factory.mktemp("tiny-sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANT_EXPLORER_ARTIFACTS", str(root / "artifacts"))
        mp.setenv("QUANT_EXPLORER_CACHE", str(root / "cache"))
        data = EvalData.load(write_image_folder(root / "data"))
        model = random_model("resnet8", data.train.images)
        results = root / "artifacts" / "results" / "full_results.json"
        list(run_sweep([model], [get_config(c) for c in TINY_CONFIGS], data, 20, [0, 1], results))
    return {"data": data, "model": model, "results": results}


@pytest.fixture
def tiny_run(tiny_sweep, isolated_dirs):
    """The session's tiny sweep, its results file copied into this test's artifacts directory."""
    import shutil

    results = isolated_dirs / "artifacts" / "results" / "full_results.json"
    results.parent.mkdir(parents=True)
    shutil.copy(tiny_sweep["results"], results)
    shutil.copytree(tiny_sweep["results"].parent.parent / "cache", results.parent.parent / "cache")  # the labels
    return {**tiny_sweep, "results": results}


def run_main(argv: list[str], env: dict[str, str], capfd) -> subprocess.CompletedProcess:
    """`main()` in this process, as the console script calls it: its exit status and what reached file descriptors
    1 and 2, with the Python warnings a fresh interpreter would have printed appended to stderr. The environment
    and signal handlers it changes are restored afterwards."""
    from quant_explorer.cli import main

    environ, handlers = dict(os.environ), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv_before, code = sys.argv, 0
    capfd.readouterr()
    try:
        os.environ.update(env)
        sys.argv = ["quant-explorer", *argv]
        with warnings.catch_warnings(record=True) as caught:
            warnings.resetwarnings()
            for category in INTERPRETER_IGNORES:
                warnings.simplefilter("ignore", category)
            try:
                main()
            except SystemExit as e:
                code = e.code or 0
    finally:
        sys.argv = argv_before
        os.environ.clear()
        os.environ.update(environ)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    out, err = capfd.readouterr()
    err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return subprocess.CompletedProcess(argv, code, out, err)
