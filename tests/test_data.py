import numpy as np
import pytest
import torch

from quant_explorer.data import (
    CIFAR10_CLASSES,
    calibration_indices,
    calibration_set,
    detect_layout,
    load_split,
    resolve_data_dir,
)
from quant_explorer.errors import UserError

from .conftest import SUBSET, synthetic_images


def test_both_layouts_load_the_same_pixels(cifar_python_dir, image_folder_dir):
    assert detect_layout(cifar_python_dir) == "cifar-python"
    assert detect_layout(image_folder_dir) == "image-folder"
    for split, n, seed in (("train", 50, 0), ("test", 20, 1)):
        a, b = load_split(cifar_python_dir, split), load_split(image_folder_dir, split)
        expected, labels = synthetic_images(n, seed)
        order = np.argsort(b.labels.numpy(), kind="stable")  # image folders come grouped by class
        assert a.images.dtype == torch.uint8 and a.images.shape == (n, 3, 32, 32)
        assert torch.equal(a.images, torch.from_numpy(expected.transpose(0, 3, 1, 2)))
        assert sorted(map(tuple, a.images.flatten(1).tolist())) == sorted(map(tuple, b.images.flatten(1).tolist()))
        assert a.labels.tolist() == labels.tolist() and sorted(b.labels.tolist()) == sorted(labels.tolist())
        assert a.classes == b.classes == CIFAR10_CLASSES
        assert b.labels[order].tolist() == sorted(labels.tolist())


def test_decoded_images_are_cached_and_refreshed_on_change(image_folder_dir, isolated_dirs):
    first = load_split(image_folder_dir, "test")
    cached = list((isolated_dirs / "cache" / "decoded").glob("*.pt"))
    assert len(cached) == 1
    assert torch.equal(load_split(image_folder_dir, "test").images, first.images)
    victim = sorted((image_folder_dir / "test" / "cat").iterdir())[0]
    victim.unlink()
    assert len(load_split(image_folder_dir, "test")) == len(first) - 1


def test_empty_ambiguous_and_corrupt_data_errors(tmp_path, image_folder_dir, cifar_python_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no CIFAR-10 data"):
        detect_layout(tmp_path / "empty")
    (image_folder_dir / "cifar-10-batches-py").mkdir()
    with pytest.raises(UserError, match="ambiguous"):
        detect_layout(image_folder_dir)
    (image_folder_dir / "cifar-10-batches-py").rmdir()
    (image_folder_dir / "test" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        load_split(image_folder_dir, "test")


def test_data_dir_resolution_order(tmp_path, monkeypatch, isolated_dirs):
    assert resolve_data_dir(None) == isolated_dirs / "cache" / "cifar10"
    monkeypatch.setenv("QUANT_EXPLORER_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"


def test_calibration_sample_is_stratified_seeded_and_validated():
    labels = torch.arange(1000) % 10
    a = calibration_indices(labels, 256, seed=3)
    assert len(a) == len(set(a)) == 256
    counts = np.bincount(labels[a].numpy(), minlength=10)
    assert counts.min() == 25 and counts.max() == 26
    assert np.array_equal(a, calibration_indices(labels, 256, seed=3))
    assert not np.array_equal(a, calibration_indices(labels, 256, seed=4))
    for bad, message in ((9, "too small"), (1001, "larger than"), (2.5, "whole number"), ("7", "whole number")):
        with pytest.raises(UserError, match=message):
            calibration_indices(labels, bad, seed=0)


@pytest.mark.shared_data
def test_shared_subset_counts_and_calibration_comes_from_train():
    test, train = load_split(SUBSET, "test"), load_split(SUBSET, "train")
    assert (len(test), len(train)) == (1017, 8068)
    calibration = calibration_set(train, 100, seed=0)
    assert calibration.dataset.endswith("/train") and len(calibration) == 100


def test_non_rgb_images_are_converted_with_one_warning_on_stderr_and_json_stdout_stays_json(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from PIL import Image

    from .conftest import write_image_folder

    root = write_image_folder(tmp_path / "folders", n_test=2000)  # large enough for the decode progress bar
    grey = sorted((root / "test").rglob("*.png"))[:3]
    for path in grey:
        Image.open(path).convert("L").save(path)
    Image.open(grey[0].parent / sorted(p.name for p in grey[0].parent.iterdir())[-1]).convert("RGBA").save(
        grey[0].parent / "rgba.png")
    result = subprocess.run([sys.executable, "-c", "from quant_explorer.cli import main; main()", "data", "info",
                             "--data-dir", str(root), "--json"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "QUANT_EXPLORER_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{") and json.loads(result.stdout)["test"]["n_images"] == 2001  # JSON only
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: 4 of 2001 images under {root / 'test'} were not RGB (greyscale, palette or RGBA) "
                        "and were converted to RGB"]
