"""One experiment, one result row: calibrate, quantize, evaluate on every test image, compare with FP32.

Everything that makes or names a single row lives here — its calibration sample, its identity and key, its
work directory, the FP32 baseline it is paired against — so the sweep, the bench and the analyses all make
rows the same way. `prepare` is the pre-flight every command runs before any model work: outputs writable,
data readable, the calibration sample drawable.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .backends import CONFIGS, Calibration, QuantizedModel, RuntimeBuild, emulation, get_backend, quantize, recipe
from .configs import REFERENCE, QuantConfig
from .data import EvalData, ImageSet, cache_dir, calibration_indices, calibration_set, resolve_data_dir
from .env import environment
from .errors import NotApplicable, UserError, did_you_mean, first_line, one_line
from .evaluate import evaluate
from .files import remove_leftovers
from .identity import emulated_class, identity_hash, make_identity
from .models import LoadedModel
from .paths import artifacts_dir, models_dir
from .results import check_writable, encode_classes, entry_key
from .row import Row
from .stats import mcnemar

FP32 = CONFIGS[REFERENCE]


def prepare(data_dir: Path | None, outputs: list[Path], calibration_n: int | None = None,
            seeds: int | Iterable[int] = 0, models: Iterable[str | Path] = ()) -> EvalData:
    """Fail in one line before any model work: every output writable, the data readable, and (for commands
    that calibrate) `calibration_n` images drawable from the training split with every seed the run will use.
    Temporary files that killed runs left behind are removed first. `models`: the names or .onnx paths the
    command will load, which decide the classes image folders are read with (`folder_classes`) and the shape of
    their images (`folder_shape`)."""
    for folder in (artifacts_dir(), cache_dir()):
        remove_leftovers(folder)
    for path in outputs:
        check_writable(path)
    root = resolve_data_dir(data_dir)
    data = EvalData.load(root, folder_classes(models, root), folder_shape(models))
    if calibration_n is not None:
        check_draws(data, calibration_n, [seeds] if isinstance(seeds, int) else seeds)
    return data


def check_draws(data: EvalData, calibration_n: int, seeds: Iterable[int]) -> None:
    """Every seed's stratified calibration sample drawable from the training split, or one line naming the class."""
    for seed in seeds:
        calibration_indices(data.train.labels, calibration_n, seed, data.train.classes)


def folder_classes(models: Iterable[str | Path], root: Path) -> tuple[str, ...] | None:
    """The classes an image-folder data set is read with when every model is a user's .onnx file: its sorted
    class folders, as torchvision's ImageFolder orders them (label i is the i-th name). None (CIFAR-10's ten,
    checked by name) for our own models, which are CIFAR-10 classifiers, and for the CIFAR-10 batches."""
    from .data import detect_layout

    names = [str(m) for m in models]
    if not names or not all(n.lower().endswith(".onnx") for n in names):
        return None
    root = Path(root)
    if not root.is_dir() or detect_layout(root) != "image-folder" or not (root / "test").is_dir():
        return None  # data.py says what is wrong with it
    return tuple(sorted(p.name for p in (root / "test").iterdir() if p.is_dir())) or None


def folder_shape(models: Iterable[str | Path]) -> tuple[int, int, int]:
    """(channels, height, width) image folders are read as: the users' .onnx models' input (greyscale images stay
    greyscale for a 1-channel model), else (3, 32, 32), our models' CIFAR-10 images. A file that cannot be read
    here is refused in one line when it is loaded."""
    from .models.onnx_validate import NCHW, check_io, read_model

    shapes = set()
    for name in (Path(str(m)) for m in models):
        if str(name).lower().endswith(".onnx"):
            try:
                shapes.add(tuple(check_io(read_model(name)[0], name)[2]))
            except UserError:
                continue
        else:
            shapes.add(NCHW)
    if len(shapes) > 1:
        raise UserError(f"the models take images of {' and '.join(str(list(s)) for s in sorted(shapes))} (channels, "
                        "height, width), and one data set is read for all of them: run them in separate commands")
    return shapes.pop() if shapes else NCHW


def check_fits(model: LoadedModel, images: ImageSet) -> None:
    """One line before any work when the data cannot be the model's: images of another shape than it takes, or
    another number of classes than it scores."""
    shape, who = tuple(images.images.shape[1:]), model.weights_path if model.is_imported else model.name
    if shape != tuple(model.input_shape):
        raise UserError(f"{who} takes images of {list(model.input_shape)} (channels, height, width), the "
                        f"evaluation set {images.dataset} has {list(shape)}: pass data of the model's input size")
    if len(images.classes) != model.num_classes:
        names = ", ".join(images.classes[:10]) + (", ..." if len(images.classes) > 10 else "")
        raise UserError(f"{who} scores {model.num_classes} classes (output [N, {model.num_classes}]), the "
                        f"evaluation set {images.dataset} has {len(images.classes)} ({names}): pass data with "
                        f"{model.num_classes} classes (image folders: one per class, in sorted order as "
                        "torchvision's ImageFolder) or a model with as many outputs")


@dataclass
class Baseline:
    """A model's FP32 reference on the evaluation set: every delta is paired against these predictions."""

    row: Row  # the FP32 row: accuracy and per-class accuracy
    preds: np.ndarray
    size_bytes: int


def make_calibration(model: LoadedModel, data: EvalData, n: int, seed: int) -> Calibration:
    # An imported graph that only runs at batch 1 must be calibrated one image at a time.
    return Calibration(calibration_set(data.train, n, seed), model.preprocessing, seed,
                       batch_size=model.import_info.get("fixed_batch") or 64, pool_fingerprint=data.train.fingerprint)


def row_identity(model: LoadedModel, config: QuantConfig, data: EvalData, calibration_n: int | None,
                 seed: int | None) -> dict:
    """Everything that can change this row's numbers (`identity.py`), with the model's preprocessing."""
    sample = make_calibration(model, data, calibration_n, seed).describe() if config.is_static else None
    return build_identity(model, config, sample, data.test.describe())


def build_identity(model: LoadedModel, config: QuantConfig, sample: dict | None, evaluation: dict | None) -> dict:
    """A row's identity from the calibration sample it draws (`Calibration.describe()`) and the evaluation set it is
    scored on (None: a model built but not scored, as `api.quantize` builds one); as an emulated CPU class, how it is
    emulated (`backends.emulation`)."""
    return {**make_identity(model.name, model.weights_sha256, evaluation or {"fingerprint": None, "n_images": 0},
                            config.record(), recipe(config.backend), sample,
                            emulation(config.backend) if emulated_class() else None),
            "preprocessing": model.preprocessing.to_dict()}


def artifact_hash(identity: dict) -> str:
    """What names a row's work directory: its identity less the evaluation set, on which the quantized model does
    not depend. A sweep row, the bench and `api.quantize` (which scores nothing) of one recipe, calibration sample,
    model and environment share one artifact."""
    return identity_hash({k: v for k, v in identity.items() if k != "dataset"})


def study_identity(model: LoadedModel, config: QuantConfig, data: EvalData) -> dict:
    """A study's identity: a row's, less the one calibration sample (a study draws many from the same pool)."""
    return {**make_identity(model.name, model.weights_sha256, data.test.describe(), config.record(),
                            recipe(config.backend), None),
            "calibration_pool": data.train.fingerprint, "preprocessing": model.preprocessing.to_dict()}


def row_key(model: LoadedModel, config: QuantConfig, data: EvalData, calibration_n: int, seed: int,
            identity: dict | None = None) -> str:
    """model|config[|n=|seed=]|identity hash: a result of other data, CPU class or versions has another key.
    `identity`: the row's, when the caller has it already (it is computed once per row)."""
    identity = identity or row_identity(model, config, data, calibration_n, seed)
    return entry_key(model.name, config.name, *((calibration_n, seed) if config.is_static else ()),
                     identity_hash=identity_hash(identity))


def workdir_for(model: LoadedModel, config: QuantConfig, calibration: Calibration | None,
                identity: dict | str) -> Path:
    """Where a row's artifacts go: one folder per artifact identity (`artifact_hash` of the row's `identity`, or a
    tag), so a compiled package found there was built from this very recipe and is reused by the bench and by
    `api.quantize`, never one of another identity."""
    tag = f"n{len(calibration.images)}-s{calibration.seed}" if calibration else "nocal"
    name = identity if isinstance(identity, str) else artifact_hash(identity)
    return models_dir() / f"{model.name}-{model.weights_sha256[:12]}" / config.name / f"{tag}-{name}"


def is_finished(row: Row | None) -> bool:
    """A stored row that can be reused as it is (its key already says it was measured alike): scored, or a config
    that does not apply there."""
    return row is not None and row.error is None and (row.predictions is not None or row.not_applicable is not None)


def cross_checks(quantized: QuantizedModel, data: EvalData, model: LoadedModel, preds: np.ndarray) -> dict:
    """Accuracy of the same model run another way (an AOTInductor package, eager torch...), and agreement with
    the stored run."""
    return {name: _scored_elsewhere(runtime, data, model, preds) for name, runtime in quantized.runtimes.items()
            if runtime.cross_check and name != quantized.runtime}


def _scored_elsewhere(runtime: RuntimeBuild, data: EvalData, model: LoadedModel, preds: np.ndarray) -> dict:
    """One other runtime on every test image: accuracy and agreement with `preds`; its error, if it cannot run."""
    try:
        metrics, other = evaluate(runtime.build(torch.get_num_threads()), data.test, model.preprocessing)
    except Exception as e:  # a runtime that cannot run is a finding, not a failed row
        return {"error": one_line(e)}
    return {"accuracy": metrics["accuracy"], "correct": metrics["correct"],
            "agreement": float((other == preds).mean()), "images_per_second": metrics["images_per_second"],
            "predictions": encode_classes(other)}


def compare_with_fp32(preds: np.ndarray, labels: np.ndarray, baseline: Baseline, row: Row) -> Row:
    """`row` paired against the FP32 predictions on the same images: delta, discordant counts and exact McNemar p."""
    fp32 = baseline.row
    return replace(row, delta_pp=round(100 * (row.accuracy - fp32.accuracy), 4),
                   per_class_delta_pp={c: round(100 * (row.per_class_accuracy[c] - fp32.per_class_accuracy[c]), 4)
                                       for c in row.per_class_accuracy},
                   agreement_with_fp32=float((preds == baseline.preds).mean()),
                   changed_predictions=int((preds != baseline.preds).sum()),
                   **mcnemar(baseline.preds == labels, preds == labels))


def run_config(model: LoadedModel, config: QuantConfig, data: EvalData, calibration: Calibration | None,
               baseline: Baseline | None, with_cross_checks: bool = True,
               identity: dict | None = None) -> tuple[Row, np.ndarray | None]:
    """Quantize, evaluate on every test image and compare with the FP32 baseline: one result row (`identity`: the
    row's, when the caller computed it for its key).

    Whatever fails — quantizing, or running the quantized model — becomes the row's `error`; the sweep goes on.
    """
    calibration = calibration if config.is_static else None
    n, seed = (len(calibration.images), calibration.seed) if calibration else (None, None)
    identity = identity or row_identity(model, config, data, n, seed)
    hashed = identity_hash(identity)
    row = Row(model=model.name, model_weights_sha256=model.weights_sha256, config_name=config.name,
              config=config.to_dict(), identity=identity, identity_hash=hashed,
              environment=environment(torch.get_num_threads()),
              created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
              calibration=calibration.describe() if calibration else None)
    started = time.perf_counter()
    try:
        quantized = quantize(model, config, calibration, workdir_for(model, config, calibration, identity))
        row.quantize_seconds = round(time.perf_counter() - started, 3)
        metrics, preds = evaluate(quantized.runner, data.test, model.preprocessing)
    except NotApplicable as e:
        return replace(row, warnings=[], not_applicable=str(e)), None
    except Exception as e:
        return replace(row, warnings=[], error=one_line(e), traceback=traceback.format_exc(limit=4)), None
    row = replace(row, **metrics, warnings=quantized.warnings, predictions=encode_classes(preds),
                  runtime=quantized.runtime, size_bytes=quantized.size_bytes, checks=quantized.checks)
    if baseline is not None:
        row = compare_with_fp32(preds, data.test.labels.numpy(), baseline, row)
        row.size_ratio_vs_fp32 = round(quantized.size_bytes / baseline.size_bytes, 4)
    reference = quantized.runtimes.get(quantized.reference)
    if reference and (with_cross_checks or reference.every_seed):  # the recipe's float simulation, same images
        row.reference = {"runtime": quantized.reference,
                         **_scored_elsewhere(quantized.runtimes[quantized.reference], data, model, preds)}
    row.alternates = cross_checks(quantized, data, model, preds) if with_cross_checks else {}
    row.seconds = round(time.perf_counter() - started, 3)  # the whole row: quantize, evaluate, cross-checks
    return row, preds


def fp32_baseline(model: LoadedModel, data: EvalData) -> tuple[Baseline, Row]:
    row, preds = run_config(model, FP32, data, None, None)
    if row.error is not None:  # nothing can be compared without it: the whole run stops, in one line
        raise UserError(f"FP32 evaluation of {model.name} failed: {first_line(row.error)}")
    baseline = Baseline(row, preds, row.size_bytes)
    row = replace(compare_with_fp32(preds, data.test.labels.numpy(), baseline, row), size_ratio_vs_fp32=1.0)
    return baseline, row


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def load_models(names: list[str], weights: Path | None = None, input_scale: str | None = None,
                mean: str | None = None, std: str | None = None, data: EvalData | ImageSet | None = None
                ) -> list[LoadedModel]:
    """Registered models by name and users' .onnx files by path. `weights` goes with exactly one model; the
    preprocessing options (--input-scale, --mean, --std as typed) describe the .onnx files only; each model
    must fit `data` (`check_fits`) where given."""
    test = data.test if isinstance(data, EvalData) else data
    check = (lambda model: check_fits(model, test)) if test is not None else None
    loaded = _load_models(names, weights, input_scale, mean, std, check)
    for model in loaded if check else ():  # imported ones were checked before their normalized copy was written
        check(model)
    return loaded


def _load_models(names: list[str], weights: Path | None, input_scale: str | None, mean: str | None,
                 std: str | None, check) -> list[LoadedModel]:
    from .models import Preprocessing, load_model

    if weights and len(names) != 1:
        raise UserError("--weights goes with exactly one --model")
    if input_scale is None and (mean or std):
        raise UserError("--mean/--std need --input-scale (raw255 or unit)")
    preprocessing = Preprocessing(input_scale, _floats(mean), _floats(std)) if input_scale else None
    if len(names) == 1:  # load_model says so when a registered model is given preprocessing options
        return [load_model(names[0], weights, preprocessing, check)]
    return [load_model(n, None, preprocessing if str(n).lower().endswith(".onnx") else None, check) for n in names]


def check_fp32_runtime(name: str) -> None:
    """Fail before any work on a runtime the FP32 reference does not run in."""
    known = [runtime.name for runtime in get_backend(FP32.backend).runtimes]
    if name not in known:
        raise UserError(f"unknown runtime {name!r}: {did_you_mean(name, known, n=1)}choose one of {', '.join(known)}")


def fp32_runner(model: LoadedModel, name: str):
    """The FP32 model in one of its runtimes (ONNX Runtime on its export, eager PyTorch, onnx2torch...)."""
    check_fp32_runtime(name)
    workdir = workdir_for(model, FP32, None, recipe(FP32.backend).replace(' ', '-'))
    runtimes = quantize(model, FP32, None, workdir).runtimes
    if name not in runtimes:
        raise UserError(f"--runtime {name} cannot run {model.name}: {model.torch_unavailable or 'not built'}; "
                        f"choose one of {', '.join(runtimes)}")
    return runtimes[name].build(torch.get_num_threads())
