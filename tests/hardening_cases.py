"""The catalogue of bad inputs `test_hardening.py` runs: the inputs (built once per module), the artifacts
directory every case must leave untouched, and one `Case` per bad input with the substrings its error must name."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from quant_explorer.models import PACKAGED_WEIGHTS
from quant_explorer.results import SCHEMA_VERSION

from .conftest import write_cifar_python, write_image_folder

STATIC = "ort_u8_minmax_qdq_per_tensor"  # a static ORT config: quantize, calib-sensitivity, layer-sensitivity


# --- the inputs, built once for the module -------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    root: Path  # everything below, left untouched by every case (no model card beside a refused .onnx file)
    folders: Path  # tiny image-folder data set: 50 train, 20 test images
    cifar: Path  # the CIFAR-10 python batches of the same size, intact
    cifar_md5: dict[str, str]
    onnx: dict[str, Path]  # "classifier" (valid), "empty", "truncated", "five-classes", "mnist-input", "nan"
    weights: dict[str, Path]  # "garbage" (not a checkpoint), "keras" (an HDF5 file, as the MLPerf .h5 starts)


def _onnx_classifier(path: Path, input_shape=("N", 3, 32, 32), classes: int = 10, nan: bool = False) -> Path:
    """A Flatten + Gemm graph, as an exporter writes one: [N, 3, 32, 32] -> [N, 10] unless told otherwise (`nan`:
    one weight NaN, as a diverged training run leaves it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    features = int(np.prod(input_shape[1:]))
    weight = np.random.default_rng(0).normal(0, 0.01, (features, classes)).astype(np.float32)
    weight[0, 0] = np.nan if nan else weight[0, 0]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])]
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    graph = helper.make_graph(nodes, "classifier", [image], [logits], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_inputs(tmp_path_factory) -> Inputs:
    """The module's inputs (`test_hardening.inputs`): CIFAR batches, image folders, ONNX classifiers, weights."""
    root = tmp_path_factory.mktemp("hardening-inputs")
    md5 = write_cifar_python(root / "cifar")
    onnx_dir = root / "onnx"
    onnx_dir.mkdir()
    valid = _onnx_classifier(onnx_dir / "classifier.onnx")
    (onnx_dir / "empty.onnx").write_bytes(b"")
    data = valid.read_bytes()
    (onnx_dir / "truncated.onnx").write_bytes(data[:len(data) // 2])
    onnx_files = {"classifier": valid, "empty": onnx_dir / "empty.onnx", "truncated": onnx_dir / "truncated.onnx",
                  "five-classes": _onnx_classifier(onnx_dir / "five-classes.onnx", classes=5),
                  "mnist-input": _onnx_classifier(onnx_dir / "mnist-input.onnx", input_shape=("N", 1, 28, 28)),
                  "nan": _onnx_classifier(onnx_dir / "nan.onnx", nan=True)}
    weights = {"garbage": root / "weights" / "garbage.pt", "keras": root / "weights" / "pretrainedResnet.h5"}
    weights["garbage"].parent.mkdir()
    weights["garbage"].write_bytes(b"these are not weights\n" * 10)
    weights["keras"].write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    return Inputs(root, write_image_folder(root / "folders"), root / "cifar", md5, onnx_files, weights)


def _damaged_cifar(w: Inputs, tmp: Path, name: str, how: str) -> Path:
    """A copy of the intact batches with one file damaged: `flip` one pixel byte (still a valid pickle, so only its
    md5 is wrong) or `truncate` it to half its size."""
    root = tmp / "cifar"
    shutil.copytree(w.cifar, root)
    path = root / "cifar-10-batches-py" / name
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2:]
    path.write_bytes(bytes(data))
    return root


# --- the artifacts directory every case must leave untouched --------------------------------------------------


SCORED_ROW = {"model": "resnet8", "config_name": "fp32_baseline", "accuracy": 0.85, "n_images": 20,
              "confusion_matrix": [[2]], "per_class_accuracy": {"airplane": 1.0}}


def _document(key: str, entry: dict) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "entries": {key: entry}}, indent=1) + "\n"


def write_artifacts(root: Path) -> Path:
    """Valid results files with an entry each, as earlier runs leave them."""
    results = root / "results"
    results.mkdir(parents=True)
    (results / "full_results.json").write_text(_document("resnet8|fp32_baseline", SCORED_ROW))
    (results / "calibration_size.json").write_text(_document(
        f"resnet8|{STATIC}", {"model": "resnet8", "config_name": STATIC, "sizes": [{"n": 32, "accuracy": [0.8]}]}))
    (results / "layer_sensitivity.json").write_text(_document(
        f"resnet8|{STATIC}", {"model": "resnet8", "config_name": STATIC, "layers": [{"layer": "conv"}]}))
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (lock files aside: taking the lock before refusing is fine)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def _replace(name: str, content: str) -> Callable[[Path], None]:
    return lambda artifacts: (artifacts / "results" / name).write_text(content)


def _results_file_is_a_directory(artifacts: Path) -> None:
    (artifacts / "results" / "full_results.json").unlink()
    (artifacts / "results" / "full_results.json").mkdir()


def _lock_is_a_directory(artifacts: Path) -> None:
    (artifacts / "results" / "full_results.json.lock").mkdir()


def _results_read_only(artifacts: Path) -> None:
    (artifacts / "results" / "full_results.json").chmod(0o444)


def _results_dir_is_a_file(artifacts: Path) -> None:
    shutil.rmtree(artifacts / "results")
    (artifacts / "results").write_text("a file where the results folder should be\n")


# --- the catalogue --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Inputs, Path], list[str]]  # (inputs, this case's tmp dir) -> CLI arguments
    expect: tuple[str, ...]  # substrings naming the problem and the fix
    setup: Callable[[Path], None] | None = None  # changes the artifacts directory before the snapshot
    cifar_md5: bool = False  # point torchvision's md5 table at the test's intact batches (in-process cases only)
    read_only_results: bool = False  # results/ read-only (mode 0o555)
    env: tuple[tuple[str, str], ...] = ()  # more environment variables


def quantize(*extra: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["quantize", "--config", STATIC, "--data-dir", str(w.folders), *extra]


def evaluate(*extra: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["evaluate", "--data-dir", str(w.folders), *extra]


def classifier(command: str, *extra: str) -> Callable[[Inputs, Path], list[str]]:
    """`command` on the valid ONNX classifier, which has no model card yet."""
    return lambda w, tmp: [command, "--model", str(w.onnx["classifier"]), *extra, "--data-dir", str(w.folders)]


def evaluate_onnx(name: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["evaluate", "--model", str(w.onnx[name]), "--input-scale", "raw255",
                           "--data-dir", str(w.folders)]


def calib_sensitivity(sizes: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["calib-sensitivity", "--config", STATIC, "--sizes", sizes, "--data-dir", str(w.folders)]


def layer_sensitivity(*extra: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["layer-sensitivity", "--config", STATIC, "--data-dir", str(w.folders), *extra]


def sweep(*extra: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["sweep", "--model", "resnet8", "--data-dir", str(w.folders), *extra]


def evaluate_damaged_cifar(name: str, how: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda w, tmp: ["evaluate", "--data-dir", str(_damaged_cifar(w, tmp, name, how))]


def _folders_with(how: str) -> Callable[[Inputs, Path], list[str]]:
    """`data info` on a copy of the tiny image folders with one class folder renamed, added, removed or emptied."""
    def argv(w: Inputs, tmp: Path) -> list[str]:
        root = tmp / "bad-folders"
        shutil.copytree(w.folders, root)
        if how == "renamed":
            (root / "test" / "airplane").rename(root / "test" / "plane")
        elif how == "extra":
            shutil.copytree(root / "test" / "cat", root / "test" / "zebra")
        elif how == "missing":
            shutil.rmtree(root / "test" / "cat")
        elif how == "empty":
            for image in (root / "train" / "dog").iterdir():
                image.unlink()
        elif how == "dangling-symlink":
            (root / "test" / "cat" / "gone.png").symlink_to(root / "nowhere.png")
        elif how == "symlink-loop":
            (root / "test" / "cat" / "a.png").symlink_to(root / "test" / "cat" / "b.png")
            (root / "test" / "cat" / "b.png").symlink_to(root / "test" / "cat" / "a.png")
        elif how == "one-folder-two-classes":
            shutil.rmtree(root / "test" / "dog")
            (root / "test" / "dog").symlink_to(root / "test" / "cat")
        elif how == "image-in-two-classes":
            shutil.copy(next((root / "train" / "cat").iterdir()), root / "train" / "dog" / "copy.png")
        elif how == "transparent":
            from PIL import Image
            Image.new("RGBA", (32, 32), (255, 0, 0, 128)).save(root / "test" / "cat" / "glass.png")
        elif how == "cat-short":  # 4 cats in the training split, 5 of every other class
            next((root / "train" / "cat").iterdir()).unlink()
            return ["sweep", "--model", "resnet8", "--configs", STATIC, "--calibration-n", "43", "--seeds", "2",
                    "--data-dir", str(root)]
        return ["data", "info", "--data-dir", str(root)]
    return argv


MOVE_ASIDE = ("move it aside (e.g. `mv ", ".bak`) and rerun")
CANNOT_WRITE = ("cannot write to ", "or set $QUANT_EXPLORER_ARTIFACTS (results, models, reports)")

CASES = [
    # data
    Case("missing-data-dir", lambda w, tmp: ["evaluate", "--data-dir", str(tmp / "missing")],
         ("does not exist", "pass --data-dir or set $QUANT_EXPLORER_DATA")),
    Case("cifar-wrong-md5", evaluate_damaged_cifar("data_batch_3", "flip"),
         ("cifar-10-batches-py/data_batch_3 is corrupted or truncated (", "md5 check failed",
          "re-download the batches with `quant-explorer data fetch"), cifar_md5=True),
    Case("cifar-truncated", evaluate_damaged_cifar("test_batch", "truncate"),
         ("cifar-10-batches-py/test_batch is corrupted or truncated (", "md5 check failed",
          "re-download the batches with `quant-explorer data fetch"), cifar_md5=True),
    Case("class-folder-renamed", _folders_with("renamed"),
         ("test has class folders that differ from the 10 classes expected",
          "missing ['airplane'], unexpected ['plane']", "rename or remove them")),
    Case("class-folder-extra", _folders_with("extra"), ("missing [], unexpected ['zebra']",)),
    Case("class-folder-missing", _folders_with("missing"), ("missing ['cat'], unexpected []",)),
    Case("class-folder-empty", _folders_with("empty"),
         ("class folders ['dog'] under ", "train hold no .png/.jpg images: every class needs images")),
    # names, with close matches
    Case("unknown-model", evaluate("--model", "resnet9"),
         ("unknown model 'resnet9'", "did you mean resnet8", "known models: resnet8, resnet8-mlperf, cifar_cnn")),
    Case("unknown-config",
         lambda w, tmp: ["quantize", "--config", "static_int8_per_chanel", "--data-dir", str(w.folders)],
         ("unknown config 'static_int8_per_chanel'", "did you mean static_int8_per_channel",
          "`quant-explorer configs` lists all")),
    Case("unknown-config-in-sweep", sweep("--configs", "ort_u8_minmax_qdq_per_chanel"),
         ("unknown config 'ort_u8_minmax_qdq_per_chanel'", "did you mean ort_u8_minmax_qdq_per_channel")),
    Case("unknown-runtime", evaluate("--runtime", "tourch"),
         ("unknown runtime 'tourch'", "did you mean torch?",
          "choose one of onnxruntime, torch, inductor, aotinductor, onnx2torch")),
    # --calibration-n
    Case("calibration-n-zero", quantize("--calibration-n", "0"),
         ("--calibration-n 0 is too small", "use at least 10 images")),
    Case("calibration-n-negative", quantize("--calibration-n", "-5"),
         ("--calibration-n -5 is too small", "use at least 10 images")),
    Case("calibration-n-not-an-integer", quantize("--calibration-n", "abc"),
         ("Invalid value for '--calibration-n'", "valid integer", "see `quant-explorer quantize --help`")),
    Case("calibration-n-fraction", quantize("--calibration-n", "2.5"),
         ("Invalid value for '--calibration-n'", "valid integer", "see `quant-explorer quantize --help`")),
    Case("calibration-n-larger-than-train", quantize("--calibration-n", "5000"),
         ("--calibration-n 5000 is larger than the training split (50 images)", "use at most 50")),
    Case("calibration-n-zero-in-layer-sensitivity", layer_sensitivity("--calibration-n", "0"),
         ("--calibration-n 0 is too small", "use at least 10 images")),
    # --sizes
    Case("sizes-garbage", calib_sensitivity("32,abc"),
         ("--sizes must be comma-separated whole numbers, got 'abc' in '32,abc'",)),
    Case("sizes-zero", calib_sensitivity("0,100"),
         ("--sizes: 0 is outside 10..50", "at least 10 images, at most the training split's 50")),
    Case("sizes-empty", calib_sensitivity(""), ("--sizes must be comma-separated whole numbers, got ''",)),
    # ONNX files
    Case("onnx-std-zero", classifier("evaluate", "--input-scale", "unit", "--mean", "0,0,0", "--std", "0,0,0"),
         ("--std must be positive (it divides the input), got (0.0, 0.0, 0.0)",)),
    Case("onnx-mean-nan", classifier("evaluate", "--input-scale", "unit", "--mean", "nan,0,0", "--std", "1,1,1"),
         ("--mean and --std must be finite numbers",)),
    Case("onnx-without-card-in-sweep", classifier("sweep", "--calibration-n", "20"),
         ("does not say how its input is scaled: pass --input-scale raw255",)),
    Case("onnx-std-negative-in-sweep", classifier("sweep", "--calibration-n", "20", "--input-scale", "unit", "--mean",
                                                  "0,0,0", "--std", "1,-1,1"),
         ("--std must be positive",)),
    Case("onnx-empty", evaluate_onnx("empty"), ("empty.onnx is empty (0 bytes)", "export or copy the model again")),
    Case("onnx-truncated", evaluate_onnx("truncated"),
         ("truncated.onnx is truncated: its ONNX data needs", "copy the file again")),
    Case("onnx-five-classes", evaluate_onnx("five-classes"),
         ("five-classes.onnx scores 5 classes (output [N, 5]), the evaluation set", "has 10 (airplane, automobile,",
          "pass data with 5 classes")),
    Case("onnx-mnist-input", evaluate_onnx("mnist-input"),
         ("00000.png is 32x32 but the model takes 28x28 images: every image must have the size the model takes",)),
    # results files: refused, never overwritten
    Case("results-not-json", quantize(), ("full_results.json is not valid JSON", *MOVE_ASIDE),
         setup=_replace("full_results.json", "{not json")),
    Case("results-unknown-schema", quantize(),
         (f"full_results.json has schema version 99, this quant-explorer writes {SCHEMA_VERSION}", *MOVE_ASIDE),
         setup=_replace("full_results.json", json.dumps({"schema_version": 99, "entries": {"k": {}}}))),
    Case("results-unknown-schema-in-sweep", sweep("--configs", "fp32_baseline"),
         ("full_results.json has schema version 99", *MOVE_ASIDE),
         setup=_replace("full_results.json", json.dumps({"schema_version": 99, "entries": {"k": {}}}))),
    Case("calibration-size-not-json", calib_sensitivity("32"), ("calibration_size.json is not valid JSON", *MOVE_ASIDE),
         setup=_replace("calibration_size.json", '{"schema_version": 1, "entries": {')),
    Case("layer-sensitivity-unknown-schema", layer_sensitivity(),
         ("layer_sensitivity.json has schema version 3", *MOVE_ASIDE),
         setup=_replace("layer_sensitivity.json", json.dumps({"schema_version": 3, "entries": {}}))),
    # output directory
    Case("results-dir-is-a-file", quantize(), (*CANNOT_WRITE, "File exists"), setup=_results_dir_is_a_file),
    Case("results-dir-read-only", quantize(), (*CANNOT_WRITE, "Permission denied"), read_only_results=True),
    # calibration seeds and result views
    Case("seeds-zero-in-sweep", sweep("--seeds", "0"),
         ("Invalid value for '--seeds': Input should be greater than or equal to 1",
          "see `quant-explorer sweep --help`")),
    Case("seed-negative", quantize("--seed", "-1"),
         ("Invalid value for '--seed': Input should be greater than or equal to 0",)),
    Case("workers-absurd", sweep("--executor", "processes", "--workers", "100000"),
         ("Invalid value for '--workers': Input should be less than or equal to 1024",)),
    Case("bench-runs-zero", lambda w, tmp: ["bench", "--runs", "0", "--data-dir", str(w.folders)],
         ("Invalid value for '--runs': Input should be greater than or equal to 1",)),
    Case("train-epochs-negative", lambda w, tmp: ["train", "--model", "resnet8", "--train-data", str(w.folders),
                                                  "--epochs", "-3"],
         ("Invalid value for '--epochs': Input should be greater than or equal to 1",)),
    Case("configs-empty-selection", sweep("--configs", ""), ("--configs selects no config",)),
    Case("data-dir-is-a-file", lambda w, tmp: ["evaluate", "--data-dir", str(w.onnx["classifier"])],
         ("is a file, expected a directory",)),
    Case("summary-seeds-garbage", lambda w, tmp: ["summary", "--seeds", "five"],
         ("--seeds takes seeds like 0-4 or 0,2,4, got 'five'",)),
    Case("summary-unknown-environment", lambda w, tmp: ["summary", "--environment", "sse9"],
         ("no results for environment 'sse9' and dataset None", "the file has: ")),
    # bounds: what a flag or a setting may ask for
    Case("summary-seeds-above-the-largest", lambda w, tmp: ["summary", "--seeds", "0-99999999999"],
         ("--seeds 0-99999999999: 0-99999999999 goes above the largest seed, 2,147,483,647",)),
    Case("summary-seeds-backwards", lambda w, tmp: ["summary", "--seeds", "0,5-2"], ("the range 5-2 runs backwards",)),
    Case("seed-above-the-largest", quantize("--seed", "2147483648"),
         ("Invalid value for '--seed': Input should be less than or equal to 2147483647",)),
    Case("first-seed-past-the-largest", sweep("--first-seed", "2147483647", "--seeds", "2"),
         ("--first-seed 2147483647 with --seeds 2 goes above the largest seed, 2,147,483,647",)),
    Case("lock-timeout-infinite", quantize(), ("$QUANT_EXPLORER_LOCK_TIMEOUT must be a number of seconds from 0 to "
                                               "86,400, got 'inf'",), env=(("QUANT_EXPLORER_LOCK_TIMEOUT", "inf"),)),
    # weights
    Case("data-dangling-symlink", _folders_with("dangling-symlink"),
         ("cannot read image ", "gone.png (No such file or directory)", "remove it or replace it by an image")),
    Case("data-symlink-loop", _folders_with("symlink-loop"), ("a.png (Too many levels of symbolic links)",)),
    Case("data-one-folder-two-classes", _folders_with("one-folder-two-classes"),
         ("class folders cat and dog under ", "are the same folder", "each class needs its own images")),
    Case("data-image-in-two-classes", _folders_with("image-in-two-classes"),
         ("copy.png are the same image under two classes (cat, dog)", "keep it in the class it belongs to")),
    Case("data-transparent-image", _folders_with("transparent"),
         ("glass.png has transparent pixels", "flatten it onto a background")),
    Case("calibration-draw-of-a-later-seed", _folders_with("cat-short"),
         ("--calibration-n 43 with seed 1 needs 5 images of cat, the training split has 4",
          "use --calibration-n 40 or less, or add cat images")),
    Case("onnx-nan-weights", evaluate_onnx("nan"), ("nan.onnx has NaN or infinite weights (1 in 'w')",
                                                   "re-export it from a trained checkpoint")),
    Case("results-entry-not-an-object", quantize(), ("full_results.json is damaged: entry 'k' is a int, not an object",
                                                    *MOVE_ASIDE),
         setup=_replace("full_results.json", json.dumps({"schema_version": 2, "entries": {"k": 5}}))),
    Case("results-datasets-a-list", quantize(), ('is damaged: its "datasets" is a list, not an object', *MOVE_ASIDE),
         setup=_replace("full_results.json", json.dumps({"schema_version": 2, "datasets": [], "entries": {}}))),
    Case("results-entry-missing-fields", lambda w, tmp: ["summary"],
         ("is damaged: entry 'k' lacks n_images, confusion_matrix, per_class_accuracy", *MOVE_ASIDE),
         setup=_replace("full_results.json", _document("k", {"model": "m", "config_name": "c", "accuracy": 0.5}))),
    Case("results-duplicated-key", quantize(), ("full_results.json has the key 'k' twice", "keep one and rerun"),
         setup=_replace("full_results.json", '{"schema_version": 2, "entries": {"k": {"a": 1}, "k": {"a": 2}}}')),
    Case("results-file-is-a-directory", quantize(), ("full_results.json is a directory", *MOVE_ASIDE),
         setup=_results_file_is_a_directory),
    Case("results-file-read-only", quantize(), (*CANNOT_WRITE, "full_results.json (the file is read-only, mode 444)"),
         setup=_results_read_only),
    Case("results-lock-is-a-directory", quantize(), ("full_results.json.lock is a directory; remove it (`rmdir ",),
         setup=_lock_is_a_directory),
    Case("ray-address-unreachable", sweep("--executor", "ray", "--ray-address", "127.0.0.1:1"),
         ("cannot reach a Ray cluster at 127.0.0.1:1 (Connection refused)", "start one with `ray start --head`")),
    Case("weights-garbage", lambda w, tmp: ["evaluate", "--weights", str(w.weights["garbage"]), "--data-dir",
                                            str(w.folders)],
         ("garbage.pt is not a PyTorch state_dict that torch.load can read", "torch.save(model.state_dict(), PATH)")),
    Case("weights-a-directory", lambda w, tmp: ["evaluate", "--weights", str(w.weights["garbage"].parent),
                                                "--data-dir", str(w.folders)],
         ("weights is a directory: pass the weights file in it",)),
    Case("weights-mlperf-h5-given-to-resnet8", lambda w, tmp: ["evaluate", "--model", "resnet8", "--weights",
                                                               str(w.weights["keras"]), "--data-dir", str(w.folders)],
         ("pretrainedResnet.h5 is a Keras .h5 file, not PyTorch weights", "is --model resnet8-mlperf --weights ")),
    Case("train-mlperf-model", lambda w, tmp: ["train", "--model", "resnet8-mlperf", "--train-data", str(w.folders)],
         ("resnet8-mlperf is not trainable here", "train one of resnet8, cifar_cnn instead")),
    Case("train-over-shipped-weights", lambda w, tmp: ["train", "--model", "resnet8", "--train-data", str(w.folders),
                                                       "--data-dir", str(w.folders), "--out",
                                                       str(PACKAGED_WEIGHTS / "resnet8")],
         ("holds the weights shipped with quant-explorer: pass --force to replace them",)),
    Case("weights-from-another-model", evaluate("--model", "resnet8", "--weights",
                                                str(PACKAGED_WEIGHTS / "cifar_cnn" / "fp32_baseline.pt")),
         ("cifar_cnn/fp32_baseline.pt does not fit ResNet8 (", "they are cifar_cnn weights: pass --model cifar_cnn",
          "or pass weights trained for this model")),
]
