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

LOAD_BATCH = 256  # items per batch when a Dataset is read into one tensor


def _tensors(dataset, role: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images [N, C, H, W], int64 labels [N], a name) of a Dataset yielding (tensor, int label), read once."""
    if isinstance(dataset, ImageSet):
        return dataset.images, dataset.labels, dataset.dataset
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) == 2:
        images, labels = dataset.tensors
    else:
        try:
            n = len(dataset)
        except TypeError:
            raise UserError(f"{role} must be a torch.utils.data.Dataset with a length (or an image-folder path), got "
                            f"{type(dataset).__name__}") from None
        if n == 0:
            raise UserError(f"{role} dataset is empty")
        loader = torch.utils.data.DataLoader(dataset, batch_size=LOAD_BATCH, shuffle=False, num_workers=0)
        batches = []
        for batch in loader:
            if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                raise UserError(f"{role} dataset must yield (image tensor, int label) pairs, got "
                                f"{type(batch).__name__} batches")
            batches.append(batch)
        images = torch.cat([torch.as_tensor(b[0]) for b in batches])
        labels = torch.cat([torch.as_tensor(b[1]).reshape(-1) for b in batches])
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if images.ndim != 4 or len(images) != len(labels):
        raise UserError(f"{role} dataset must yield images of shape [C, H, W] and one label each, got images of "
                        f"shape {list(images.shape[1:])} for {len(labels)} labels")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise UserError(f"{role} dataset labels must be integers (class ids), got {labels.dtype}")
    if images.is_floating_point() and images.dtype != torch.float32:
        images = images.float()
    labels = labels.to(torch.int64)
    if int(labels.min()) < 0:
        raise UserError(f"{role} dataset has a negative label ({int(labels.min())}): labels are class ids 0, 1, ...")
    return images.contiguous(), labels.contiguous(), f"python:{type(dataset).__name__}:{role}"


def _folder(path: Path, role: str) -> tuple[torch.Tensor, torch.Tensor, str, tuple[str, ...]]:
    """An image folder PATH/<class>/*.png (or a data set root with train/ and test/: the split `role` reads),
    its classes the sorted folder names, as torchvision's ImageFolder; decoded to uint8 as the CLI does."""
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
    images = load_split(root, name, classes)
    return images.images, images.labels, images.dataset, classes


def read_dataset(dataset, role: str) -> tuple[torch.Tensor, torch.Tensor, str, tuple[str, ...] | None]:
    """(images, labels, a name, the class names where the data names them) of a Dataset or an image folder."""
    if isinstance(dataset, (str, Path)):
        return _folder(Path(dataset), role)
    images, labels, name = _tensors(dataset, role)
    classes = getattr(dataset, "classes", None)
    return images, labels, name, tuple(str(c) for c in classes) if classes is not None else None


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
    from .experiment import check_fits

    cal = read_dataset(calibration, "calibration")
    ev = cal if evaluation is calibration else read_dataset(evaluation, "evaluation")
    if cal[0].shape[1:] != ev[0].shape[1:] or cal[0].dtype != ev[0].dtype:
        raise UserError(f"calibration and evaluation images differ: {list(cal[0].shape[1:])} {cal[0].dtype} vs "
                        f"{list(ev[0].shape[1:])} {ev[0].dtype}; preprocess both as the model expects")
    if isinstance(model, nn.Module):
        scores, loaded = count_scores(model, preprocessing or Preprocessing("raw255"), ev[0][:2]), None
    else:
        loaded = load_model_file(model, preprocessing)
        scores = loaded.num_classes
    classes = class_names([cal, ev], scores)
    data = EvalData(ImageSet(ev[0], ev[1], classes, ev[2]), ImageSet(cal[0], cal[1], classes, cal[2]))
    if loaded is None:
        loaded = LoadedModel.from_module(model, tuple(ev[0].shape[1:]), scores, name, preprocessing)
    check_fits(loaded, data.test)
    return loaded, data


def check_calibration(data: EvalData, n: int, seeds: list[int]) -> None:
    """Every seed's stratified sample drawable, said in the API's words (`calibration_n`, not --calibration-n)."""
    from .experiment import check_draws

    try:
        check_draws(data, n, seeds)
    except UserError as e:
        raise UserError(str(e).replace("--calibration-n", "calibration_n")) from None
