"""The models: registry models by name, a user's ONNX file by path, and each one's FP32 ONNX export.

The pieces live in leaf modules (preprocessing, registry, loaded, the onnx_* import steps) that never import
this package; it only puts the names everyone uses in one place and dispatches `load_model`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..files import file_sha256
from .preprocessing import CIFAR_MEAN, CIFAR_STD, Preprocessing
from .registry import MODELS, PACKAGED_WEIGHTS, SHIPPED, get_spec

if TYPE_CHECKING:
    from .loaded import LoadedModel


def __getattr__(name: str):
    """`LoadedModel` (and with it torch) is imported on first use, so listing the registry stays instant."""
    if name == "LoadedModel":
        from .loaded import LoadedModel

        return LoadedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CIFAR_MEAN", "CIFAR_STD", "MODELS", "PACKAGED_WEIGHTS", "SHIPPED", "LoadedModel", "Preprocessing",
           "exported_onnx", "file_sha256", "get_spec", "load_model"]


def load_model(name: str | Path, weights: Path | None = None, preprocessing: Preprocessing | None = None,
               check=None) -> LoadedModel:
    """A registry model by name, or a user's .onnx file by path (`preprocessing` is for those only; `check`, e.g.
    does it fit the data, sees it before its normalized copy is written)."""
    if str(name).lower().endswith(".onnx"):
        if weights is not None:
            raise UserError(f"--weights does not apply to {name}: an ONNX file holds its own weights")
        from .onnx_import import load_onnx_model

        return load_onnx_model(Path(name), preprocessing, check)
    if preprocessing is not None:
        raise UserError(f"--input-scale/--mean/--std are for imported .onnx models: {name} has its own preprocessing")
    spec = get_spec(name)
    if weights is not None and Path(weights).is_dir():
        raise UserError(f"--weights {weights} is a directory: pass the weights file in it (e.g. "
                        f"{Path(weights) / 'fp32_baseline.pt'})")
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"weights file {weights} does not exist: check the --weights path")
    path = Path(weights) if weights else spec.default_weights()
    if path is None or not path.is_file():
        where = f" at {path}" if path else ""
        raise UserError(f"no weights for model {name!r}{where}: {spec.weights_hint}")
    from .loaded import LoadedModel

    module = spec.architecture(quantizable=False)
    spec.load_weights(module, path)
    return LoadedModel(name, module.eval(), spec.preprocessing, path, file_sha256(path))


def exported_onnx(model: LoadedModel) -> Path:
    """The model's FP32 ONNX export, made again when missing or when its record does not prove it (`provenance`).
    Its name is keyed by all it depends on: the weights (the folder), the exporter's code and the versions of
    torch, onnx and onnxruntime."""
    if model.onnx_source is not None:
        return model.onnx_source
    import importlib.util
    import json

    from ..identity import versions
    from ..paths import models_dir
    from ..provenance import reuse_or_build
    from ..runtimes.export import export_onnx

    digest = hashlib.sha256(json.dumps(versions(), sort_keys=True).encode())
    digest.update(Path(importlib.util.find_spec("quant_explorer.runtimes.export").origin).read_bytes())
    path = models_dir() / f"{model.name}-{model.weights_sha256[:12]}" / f"fp32-{digest.hexdigest()[:12]}.onnx"
    made_from = {"model": model.name, "weights_sha256": model.weights_sha256, "exporter": digest.hexdigest()[:12]}
    return reuse_or_build(path, made_from, lambda out: export_onnx(model.module, out, model.example), "FP32 export")
