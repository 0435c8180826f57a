"""The models: registry models by name, a user's ONNX file by path, and each one's FP32 ONNX export.

The pieces live in leaf modules (preprocessing, registry, loaded, the onnx_* import steps) that never import
this package; it only puts the names everyone uses in one place and dispatches `load_model`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import UserError
from .loaded import LoadedModel
from .preprocessing import CIFAR_MEAN, CIFAR_STD, Preprocessing
from .registry import MODELS, PACKAGED_WEIGHTS, SHIPPED, get_spec

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "MODELS", "PACKAGED_WEIGHTS", "SHIPPED", "LoadedModel", "Preprocessing", "exported_onnx",
           "file_sha256", "get_spec", "load_model"]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(name: str | Path, weights: Path | None = None, preprocessing: Preprocessing | None = None) -> LoadedModel:
    """A registry model by name, or a user's .onnx file by path (`preprocessing` is for those only)."""
    if str(name).lower().endswith(".onnx"):
        if weights is not None:
            raise UserError(f"--weights does not apply to {name}: an ONNX file holds its own weights")
        from .onnx_import import load_onnx_model

        return load_onnx_model(Path(name), preprocessing)
    if preprocessing is not None:
        raise UserError(f"--input-scale/--mean/--std are for imported .onnx models: {name} has its own preprocessing")
    spec = get_spec(name)
    path = Path(weights) if weights else spec.default_weights()
    if path is None or not path.is_file():
        where = f" at {path}" if path else ""
        raise UserError(f"no weights for model {name!r}{where}: {spec.weights_hint}")
    module = spec.architecture(quantizable=False)
    spec.load_weights(module, path)
    return LoadedModel(name, module.eval(), spec.preprocessing, path, file_sha256(path))


def exported_onnx(model: LoadedModel) -> Path:
    """The model's FP32 ONNX export, regenerated when missing (keyed by model name and weights hash)."""
    if model.onnx_source is not None:
        return model.onnx_source
    from ..paths import models_dir
    from ..runtimes import export_onnx

    path = models_dir() / f"{model.name}-{model.weights_sha256[:12]}" / "fp32.onnx"
    return path if path.exists() else export_onnx(model.module, path)
