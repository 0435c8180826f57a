"""A user's model and datasets as every row takes them: a `Dataset` (or an image folder) read once into tensors,
class names found, an `nn.Module` or .onnx file made a `LoadedModel`, each checked against the others.

What the Python API (`api.py`) does before it hands anything to the sweep, the backends or the evaluator;
errors are `UserError`s that name the argument (calibration, evaluation, model) in the API's words.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .data import EvalData, ImageSet
from .errors import UserError, first_line
from .models import LoadedModel, Preprocessing

WHAT_TO_PASS = ("pass a map-style torch.utils.data.Dataset (with __len__ and __getitem__) yielding (image tensor "
                "[C, H, W], int label), a DataLoader over one, or an image-folder path")


def _tensors(dataset, role: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images [N, C, H, W], int64 labels [N], a name) of a Dataset yielding (tensor, int label), read once, item
    by item in index order. A DataLoader is read through its dataset: its batching and shuffling change no answer,
    and a shuffled order would make every run another data set."""
    from torch.utils.data import IterableDataset, TensorDataset

    if isinstance(dataset, ImageSet):
        return dataset.images, dataset.labels, dataset.dataset
    dataset = _unwrapped(dataset, role)
    name = f"python:{type(dataset).__name__}:{role}"
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        images, labels = (torch.as_tensor(t) for t in dataset.tensors)
        if images.ndim != 4 or len(images) != len(labels):
            raise UserError(f"{role} dataset must yield images of shape [C, H, W] and one label each, got images of "
                            f"shape {list(images.shape[1:])} for {len(labels)} labels")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise UserError(f"{role} dataset labels must be integers (class ids), got {labels.dtype}")
    else:
        if isinstance(dataset, (IterableDataset, str, bytes, dict)) or not (
                hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise UserError(f"{role} ({type(dataset).__name__}) cannot be read by index: {WHAT_TO_PASS}")
        if len(dataset) == 0:
            raise UserError(f"{role} dataset is empty")
        items = [_item(dataset, i, role) for i in range(len(dataset))]
        first = items[0][0]
        odd = next((i for i, (image, _) in enumerate(items) if image.shape != first.shape), None)
        if odd is not None:
            raise UserError(f"{role} dataset item {odd} is an image of {list(items[odd][0].shape)}, item 0 of "
                            f"{list(first.shape)}: every image must have the model's input size; resize them in the "
                            "dataset's transform")
        images = torch.stack([image for image, _ in items])
        labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    if images.is_floating_point() and images.dtype != torch.float32:
        images = images.float()
    labels = labels.to(torch.int64)
    if int(labels.min()) < 0:
        raise UserError(f"{role} dataset has a negative label ({int(labels.min())}): labels are class ids 0, 1, ...")
    return images.contiguous(), labels.contiguous(), name


def _unwrapped(dataset, role: str):
    """A DataLoader's dataset (its batching and shuffling change no answer); anything else as it is."""
    from torch.utils.data import DataLoader, IterableDataset

    if not isinstance(dataset, DataLoader):
        return dataset
    if isinstance(dataset.dataset, IterableDataset):
        raise UserError(f"{role} is a DataLoader over an IterableDataset, which reads in its own order, perhaps "
                        f"once: {WHAT_TO_PASS}")
    return dataset.dataset


def _item(dataset, i: int, role: str) -> tuple[torch.Tensor, int]:
    """Item `i` as (image tensor [C, H, W], int label), or one line saying what it is instead."""
    item = dataset[i]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UserError(f"{role} dataset item {i} is a {type(item).__name__}, expected an (image tensor [C, H, W], "
                        "int label) pair")
    image, label = item
    if type(image).__module__.startswith("PIL."):
        raise UserError(f"{role} dataset item {i} is a PIL image: give the dataset a transform that makes tensors as "
                        "the model takes them (torchvision.transforms.PILToTensor() keeps 0-255 pixels, ToTensor() "
                        "scales to 0-1), or pass the image-folder path")
    try:
        image = torch.as_tensor(image)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{role} dataset item {i}'s image is a {type(image).__name__}, expected a tensor [C, H, W]"
                        ) from None
    if image.ndim != 3:
        raise UserError(f"{role} dataset item {i}'s image has shape {list(image.shape)}, expected [C, H, W]")
    if isinstance(label, str):
        raise UserError(f"{role} dataset item {i} has the label {label!r}: labels are class ids 0, 1, ...; name the "
                        "classes in the dataset's `.classes` (label k is classes[k])")
    try:
        value = torch.as_tensor(label)
    except (TypeError, ValueError, RuntimeError):
        value = None
    if value is None or value.numel() != 1 or value.is_floating_point() or value.is_complex() or \
            value.dtype == torch.bool:
        raise UserError(f"{role} dataset item {i} has the label {label!r}: labels must be integers (class ids)")
    return image, int(value)


def _folder(path: Path, role: str, shape: tuple) -> tuple[torch.Tensor, torch.Tensor, str, tuple[str, ...]]:
    """An image folder PATH/<class>/*.png (or a data set root with train/ and test/: the split `role` reads),
    its classes the sorted folder names, as torchvision's ImageFolder; decoded to uint8 as the CLI does, as images
    of the model's `shape` (`input_shape`)."""
    from .data import load_split

    path = Path(path)
    split = "train" if role == "calibration" else "test"
    root, name = (path, split) if (path / split).is_dir() else (path.parent, path.name)
    if not (root / name).is_dir():
        raise UserError(f"{role} path {path} is not an image folder (PATH/<class>/*.png, or a root holding "
                        f"{split}/<class>/*.png)")
    classes = tuple(sorted(p.name for p in (root / name).iterdir() if p.is_dir()))
    if not classes:
        raise UserError(f"{role} path {root / name} has no class folders: expected {root / name}/<class>/*.png")
    images = load_split(root, name, classes, shape[0], shape[1])
    return images.images, images.labels, images.dataset, classes


def read_dataset(dataset, role: str, shape: tuple = (3, None)
                 ) -> tuple[torch.Tensor, torch.Tensor, str, tuple[str, ...] | None]:
    """(images, labels, a name, the class names where the data names them) of a Dataset or an image folder (read
    as images of the model's `shape`, `input_shape`)."""
    if isinstance(dataset, (str, Path)):
        return _folder(Path(dataset), role, shape)
    images, labels, name = _tensors(dataset, role)
    classes = getattr(_unwrapped(dataset, role), "classes", None)
    return images, labels, name, tuple(str(c) for c in classes) if classes is not None else None


def input_shape(model) -> tuple[int, tuple[int, int] | None]:
    """(channels, (height, width) or None) of what a model takes, which image folders are read as: a LoadedModel's
    input shape; an nn.Module's first convolution's input channels (else 3, RGB), at the images' own size."""
    if isinstance(model, LoadedModel):
        return model.input_shape[0], tuple(model.input_shape[1:])
    first = next((m for m in model.modules() if isinstance(getattr(m, "in_channels", None), int)), None)
    return (first.in_channels if first is not None and first.in_channels in (1, 3, 4) else 3), None


def class_names(sets: list[tuple], scores: int | None) -> tuple[str, ...]:
    """The class names: a dataset's `.classes`, else "0", "1", ... up to the largest label (or the model's
    number of scores, when its labels show fewer classes than it scores)."""
    named = next((s[3] for s in sets if s[3]), None)
    top = max(int(s[1].max()) for s in sets) + 1
    if named is not None:
        if top > len(named):
            raise UserError(f"a label is {top - 1} but the dataset names {len(named)} classes ({', '.join(named[:5])}"
                            f"{', ...' if len(named) > 5 else ''}): labels are indices into `.classes`")
        return named
    return tuple(str(i) for i in range(max(top, scores or 0)))


def count_scores(module: nn.Module, preprocessing: Preprocessing, images: torch.Tensor) -> int:
    """How many scores `module` gives per image, found by running it on a couple of the evaluation images."""
    try:
        with torch.inference_mode():
            out = module(preprocessing(images))
    except Exception as e:
        raise UserError(f"{type(module).__name__} fails on a batch of the evaluation images {list(images.shape)} "
                        f"({first_line(e) or type(e).__name__}): the datasets must yield tensors the model "
                        "takes") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise UserError(f"{type(module).__name__} must return [N, classes] logits, got "
                        f"{list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return int(out.shape[1])


def load_model_file(model, preprocessing: Preprocessing | None) -> LoadedModel:
    """An .onnx path (its input as the datasets give it: `preprocessing`, by default none) or a model name."""
    from .models import load_model
    from .models.onnx_import import load_onnx_model

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        # No model card written: that is how the CLI remembers the file's own input scaling, not the datasets'.
        return load_onnx_model(Path(model), preprocessing or Preprocessing("raw255"), remember=False)
    if isinstance(model, str):
        return load_model(model)
    raise UserError(f"model must be a torch.nn.Module or a path to an .onnx file, got {type(model).__name__}")


def prepare(model, calibration, evaluation, name: str | None,
            preprocessing: Preprocessing | None) -> tuple[LoadedModel, EvalData]:
    """The model and the data as every row takes them, checked against each other: images of the size the model
    takes, as many classes as it scores."""
    from .models.loaded import private_copy
    from .preflight import check_fits

    # Checked and copied before anything else: the user's module is never run, so never changed.
    module = private_copy(model) if isinstance(model, nn.Module) else None
    loaded = load_model_file(model, preprocessing) if module is None else None
    shape = input_shape(module if module is not None else loaded)
    cal = read_dataset(calibration, "calibration", shape)
    ev = cal if evaluation is calibration else read_dataset(evaluation, "evaluation", shape)
    if cal[0].shape[1:] != ev[0].shape[1:] or cal[0].dtype != ev[0].dtype:
        raise UserError(f"calibration and evaluation images differ: {list(cal[0].shape[1:])} {cal[0].dtype} vs "
                        f"{list(ev[0].shape[1:])} {ev[0].dtype}; preprocess both as the model expects")
    if module is not None:
        prep = preprocessing or Preprocessing("raw255")
        prep.check_channels(int(ev[0].shape[1]), f"{type(model).__name__} (given these datasets)")
        scores = count_scores(module, prep, ev[0][:2])
    else:
        scores = loaded.num_classes
    classes = class_names([cal, ev], scores)
    data = EvalData(ImageSet(ev[0], ev[1], classes, ev[2]), ImageSet(cal[0], cal[1], classes, cal[2]))
    if loaded is None:
        loaded = LoadedModel.from_module(module, tuple(ev[0].shape[1:]), scores, name, preprocessing)
    check_fits(loaded, data.test)
    return loaded, data


def check_calibration(data: EvalData, n: int, seeds: list[int]) -> None:
    """Every seed's stratified sample drawable, said in the API's words (`calibration_n`, not --calibration-n)."""
    from .preflight import check_draws

    try:
        check_draws(data, n, seeds)
    except UserError as e:
        raise UserError(str(e).replace("--calibration-n", "calibration_n")) from None
