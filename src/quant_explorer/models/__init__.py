"""The model registry: every model a name, an architecture, its preprocessing and where its weights live."""

from __future__ import annotations

import difflib
import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import NotApplicable, UserError
from .cifar_cnn import CifarCNN
from .resnet8 import ResNet8, keras_state_dict

PACKAGED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
MLPERF_WEIGHTS_ENV = "QUANT_EXPLORER_MLPERF_WEIGHTS"


@dataclass(frozen=True)
class Preprocessing:
    """uint8 pixels -> float32 model input, applied identically before every runtime."""

    input_scale: str = "raw255"  # "raw255": 0-255 floats; "unit": divided by 255
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.input_scale not in ("raw255", "unit"):
            raise UserError(f"--input-scale must be raw255 or unit, got {self.input_scale!r}")
        if (self.mean is None) != (self.std is None) or any(len(v) != 3 for v in (self.mean, self.std) if v):
            raise UserError("--mean and --std go together, three comma-separated numbers each")
        if self.mean is not None and not all(map(math.isfinite, (*self.mean, *self.std))):
            raise UserError(f"--mean and --std must be finite numbers, got mean {self.mean} and std {self.std}")
        if self.std is not None and min(self.std) <= 0:
            raise UserError(f"--std must be positive (it divides the input), got {self.std}")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.input_scale == "unit":
            x = x / 255.0
        if self.mean is not None:
            x = (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)
        return x

    def to_dict(self) -> dict:
        return asdict(self)


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _load_torch_weights(module: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read weights file {path}: {e}") from None
    _load_state(module, state, path)


def _load_keras_weights(module: nn.Module, path: Path) -> None:
    try:
        state = keras_state_dict(path)
    except (OSError, KeyError) as e:
        raise UserError(f"{path} is not the MLPerf Tiny ResNet8 Keras h5 file ({e})") from None
    _load_state(module, state, path)


def _mismatch(module: nn.Module, state: dict) -> list[str]:
    """How `state` differs from `module`'s parameters and buffers, one phrase per kind; empty if it fits."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)]
    return [f"{len(keys)} {what}, e.g. {keys[0]}" for keys, what in ((missing, "missing"), (unexpected, "unexpected"),
                                                                   (reshaped, "of another shape")) if keys]


def _load_state(module: nn.Module, state: dict, path: Path) -> None:
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} holds a {type(state).__name__}, not a state_dict; save it with "
                        f"torch.save(model.state_dict(), PATH)")
    problems = _mismatch(module, state)
    if problems:  # one line naming the model the file does fit, not torch's list of every key
        fits = [s.name for s in MODELS.values() if s.load_weights is _load_torch_weights
                and not _mismatch(s.architecture(quantizable=False), state)]
        owner = f"they are {fits[0]} weights: pass --model {fits[0]}, or" if fits else "they are from another model:"
        raise UserError(f"weights file {path} does not fit {type(module).__name__} (tensors: {'; '.join(problems)}); "
                        f"{owner} pass weights trained for this model")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"weights file {path} does not load into {type(module).__name__} "
                        f"({' '.join(str(e).split())[:300]}); pass weights trained for this model") from None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    architecture: Callable[..., nn.Module]  # (quantizable: bool) -> module
    preprocessing: Preprocessing
    load_weights: Callable[[nn.Module, Path], None]
    default_weights: Callable[[], Path | None]
    weights_hint: str  # how to get the weights when they are missing


def _mlperf_default() -> Path | None:
    return Path(os.environ[MLPERF_WEIGHTS_ENV]) if os.environ.get(MLPERF_WEIGHTS_ENV) else None


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet8", "MLPerf Tiny ResNet8 architecture, our own weights (trained here)", ResNet8,
                  Preprocessing("raw255"), _load_torch_weights,
                  lambda: PACKAGED_WEIGHTS / "resnet8" / "fp32_baseline.pt",
                  "train them with `quant-explorer train --model resnet8`"),
        ModelSpec("resnet8-mlperf", "MLPerf Tiny reference ResNet8 (87.19% Keras model), imported from its h5",
                  ResNet8, Preprocessing("raw255"), _load_keras_weights, _mlperf_default,
                  f"pass --weights PATH/pretrainedResnet.h5 or set ${MLPERF_WEIGHTS_ENV}"),
        ModelSpec("cifar_cnn", "small Conv-BN-ReLU CNN, Linear(128, 10) head, our own weights", CifarCNN,
                  Preprocessing("unit", CIFAR_MEAN, CIFAR_STD), _load_torch_weights,
                  lambda: PACKAGED_WEIGHTS / "cifar_cnn" / "fp32_baseline.pt",
                  "train them with `quant-explorer train --model cifar_cnn`"),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        close = difflib.get_close_matches(name, MODELS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown model {name!r}: {hint}known models: {', '.join(MODELS)} (or a path to an .onnx file)")
    return MODELS[name]


@dataclass
class LoadedModel:
    """An FP32 model ready to evaluate or quantize, with the identity results are keyed by."""

    name: str
    module: nn.Module | None  # None: an imported graph onnx2torch cannot convert (`torch_unavailable` says why)
    preprocessing: Preprocessing
    weights_path: Path  # imported models: the user's .onnx file
    weights_sha256: str
    onnx_source: Path | None = None  # imported models: the normalized FP32 ONNX file every runtime starts from
    import_info: dict = field(default_factory=dict)  # imported models: what normalizing the file changed
    torch_unavailable: str | None = None  # why there is no PyTorch module: then only ONNX Runtime configs apply
    # Things derived from the weights once per process and reused by every config and seed (its torch.export)
    derived: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def is_imported(self) -> bool:
        """A user's ONNX graph: no architecture of ours behind it, so no eager (stub-based) quantization."""
        return self.onnx_source is not None

    def fresh(self, quantizable: bool = False) -> nn.Module:
        """A new copy of the module (quantization mutates modules), optionally with quant stubs."""
        if self.torch_unavailable:
            raise NotApplicable(f"PyTorch configs do not apply to {self.name}: {self.torch_unavailable}")
        if self.is_imported:
            if quantizable:
                raise ValueError(f"{self.name} is an imported ONNX graph: it has no quantizable (eager) variant")
            from .onnx_import import fresh_module

            return fresh_module(self)
        spec = get_spec(self.name)
        module = spec.architecture(quantizable=quantizable)
        module.load_state_dict(self.module.state_dict())
        return module.eval()


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
