import os
import shutil

import numpy as np
import pytest
import torch

from quant_explorer.data import (
    CIFAR10_CLASSES,
    EvalData,
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


@pytest.mark.process
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
    assert warnings == [f"warning: 4 of 2001 images under {root / 'test'} were not 8-bit RGB (greyscale, palette, "
                        "16-bit, CMYK or opaque RGBA) and were converted to RGB as a viewer shows them"]


def test_the_cache_is_keyed_by_content_not_by_name_size_and_mtime(image_folder_dir):
    from PIL import Image

    cats = sorted((image_folder_dir / "test" / "cat").iterdir())
    for path in cats[:2]:  # stored, not compressed: any 32x32 RGB image has the same size
        Image.open(path).save(path, compress_level=0)
    first = load_split(image_folder_dir, "test")
    victim, other = cats
    stat = victim.stat()
    victim.write_bytes(other.read_bytes())  # another image, same name and size, its mtime restored
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_split(image_folder_dir, "test")
    assert not torch.equal(again.images, first.images)
    assert torch.equal(again.images, load_split(image_folder_dir, "test").images)


def test_sixteen_bit_images_are_scaled_as_a_viewer_shows_them(image_folder_dir):
    from PIL import Image

    grey = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64)  # 0..65472
    path = sorted((image_folder_dir / "test" / "cat").iterdir())[0]
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")
    split = load_split(image_folder_dir, "test")
    decoded = split.images[int((split.labels < 3).sum())]  # the first cat: folders in class order, files sorted
    expected = torch.from_numpy(((grey.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))
    assert torch.equal(decoded, expected.expand(3, 32, 32))


def test_test_images_in_the_training_split_and_files_that_are_not_images_are_counted(image_folder_dir, capsys):
    from PIL import Image

    for i, path in enumerate(sorted((image_folder_dir / "test" / "cat").iterdir())[:2]):
        shutil.copy(path, image_folder_dir / "train" / "cat" / f"leak{i}.png")
    Image.new("RGB", (32, 32), (9, 9, 9)).save(image_folder_dir / "train" / "dog" / "extra.bmp")
    (image_folder_dir / "train" / "dog" / "notes.txt").write_text("x")
    (image_folder_dir / "train" / "README").write_text("x")
    data = EvalData.load(image_folder_dir)
    assert len(data.train) == 53  # 50, two copies, the .bmp
    assert capsys.readouterr().err.splitlines() == [
        f"warning: 2 files under {image_folder_dir / 'train'} are not images and were skipped (e.g. README); images "
        "are .bmp/.gif/.jpeg/.jpg/.png/.ppm/.tif/.tiff/.webp",
        f"warning: 2 of the 20 test images are also in the training split of {image_folder_dir} (pixel for pixel): "
        "calibration samples may contain test images"]


def test_an_impossible_draw_names_the_class_and_the_seed():
    labels = torch.tensor([c for c in range(10) for _ in range(5 if c != 3 else 4)])
    calibration_indices(labels, 43, seed=0, classes=CIFAR10_CLASSES)
    with pytest.raises(UserError, match=r"--calibration-n 43 with seed 1 needs 5 images of cat, the training split "
                                        r"has 4: use --calibration-n 40 or less"):
        calibration_indices(labels, 43, seed=1, classes=CIFAR10_CLASSES)
