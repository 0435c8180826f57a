"""Before any model work, a command fails in one line where it would fail later: every output writable, the data
readable as the models need it (their classes, their image shape), every calibration draw possible, each model fit
for the data, a runtime the FP32 reference runs in; and the flags that describe models (--weights, --input-scale,
--mean, --std) checked as the models are loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .backends import get_backend, get_config
from .configs import REFERENCE
from .data import EvalData, ImageSet, calibration_indices, resolve_data_dir
from .errors import UserError, did_you_mean
from .files import remove_leftovers
from .paths import artifacts_dir, cache_dir
from .results import check_writable

if TYPE_CHECKING:
    from .models import LoadedModel


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
    known = [runtime.name for runtime in get_backend(get_config(REFERENCE).backend).runtimes]
    if name not in known:
        raise UserError(f"unknown runtime {name!r}: {did_you_mean(name, known, n=1)}choose one of {', '.join(known)}")
