"""The model registry: every model of ours a name, an architecture, its preprocessing and where its weights
live, and the loaders that refuse a weights file in one line naming the model it does fit.

Apart from the package's `__init__` so that `LoadedModel` can rebuild an architecture by name without the
package and its leaves importing each other. Listing it imports no torch: the architectures and the loaders
import it when they run, so `quant-explorer models` answers at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import UserError
from ..registry import Registry
from .preprocessing import CIFAR_MEAN, CIFAR_STD, Preprocessing

if TYPE_CHECKING:
    from torch import nn

PACKAGED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
MLPERF_WEIGHTS_ENV = "QUANT_EXPLORER_MLPERF_WEIGHTS"


def _load_torch_weights(module: nn.Module, path: Path) -> None:
    with open(path, "rb") as f:
        if f.read(4) == b"\x89HDF":
            raise UserError(f"weights file {path} is a Keras .h5 file, not PyTorch weights: the MLPerf Tiny reference "
                            f"ResNet8 is --model resnet8-mlperf --weights {path}")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's message is a page about weights_only (or an IndexError); the fix is one thing
        raise UserError(f"weights file {path} is not a PyTorch state_dict that torch.load can read; pass the "
                        f"fp32_baseline.pt that `quant-explorer train` writes, or a file saved with "
                        f"torch.save(model.state_dict(), PATH)") from None
    _load_state(module, state, path)


def _load_keras_weights(module: nn.Module, path: Path) -> None:
    from .resnet8 import keras_state_dict

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
    trainable: bool = True  # False: its weights come from elsewhere, `train` refuses it


def ResNet8(quantizable: bool = False) -> nn.Module:  # noqa: N802  (named as the class it builds)
    from .resnet8 import ResNet8 as architecture

    return architecture(quantizable=quantizable)


def CifarCNN(quantizable: bool = False) -> nn.Module:  # noqa: N802
    from .cifar_cnn import CifarCNN as architecture

    return architecture(quantizable=quantizable)


def _mlperf_default() -> Path | None:
    from ..paths import env_path

    return env_path(MLPERF_WEIGHTS_ENV, "") if os.environ.get(MLPERF_WEIGHTS_ENV) else None


MODELS: Registry[ModelSpec] = Registry("model", lambda r: f"known models: {', '.join(r)} (or a path to an .onnx file)")
for _spec in (
    ModelSpec("resnet8", "MLPerf Tiny ResNet8 architecture, our own weights (trained here)", ResNet8,
              Preprocessing("raw255"), _load_torch_weights,
              lambda: PACKAGED_WEIGHTS / "resnet8" / "fp32_baseline.pt",
              "train them with `quant-explorer train --model resnet8`"),
    ModelSpec("resnet8-mlperf", "MLPerf Tiny reference ResNet8 (87.19% Keras model), imported from its h5",
              ResNet8, Preprocessing("raw255"), _load_keras_weights, _mlperf_default,
              f"pass --weights PATH/pretrainedResnet.h5 or set ${MLPERF_WEIGHTS_ENV}", trainable=False),
    ModelSpec("cifar_cnn", "small Conv-BN-ReLU CNN, Linear(128, 10) head, our own weights", CifarCNN,
              Preprocessing("unit", CIFAR_MEAN, CIFAR_STD), _load_torch_weights,
              lambda: PACKAGED_WEIGHTS / "cifar_cnn" / "fp32_baseline.pt",
              "train them with `quant-explorer train --model cifar_cnn`"),
):
    MODELS.register(_spec)

SHIPPED = tuple(MODELS)  # what the default sweep and `make run` cover: every registered model
get_spec = MODELS.lookup
