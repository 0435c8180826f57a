"""What every backend and evaluation takes: an FP32 model, its preprocessing, and the identity its results are
keyed by; one type for our registry models, imported ONNX graphs and a user's own `nn.Module` (`from_module`).
A module of its own so that the ONNX import can make one without importing the package: it needs only the
registry (to rebuild our architectures) and, lazily, the ONNX conversion (to rebuild an imported graph)."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import NotApplicable, UserError, first_line
from .preprocessing import Preprocessing
from .registry import get_spec


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
    input_shape: tuple[int, ...] = (3, 32, 32)  # one image as the model takes it (channels, height, width)
    num_classes: int = 10  # scores per image: the evaluation set must have as many classes
    user_module: bool = False  # a user's own nn.Module (`from_module`): copied, never rebuilt from our registry
    # Things derived from the weights once per process and reused by every config and seed (its torch.export)
    derived: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __getstate__(self) -> dict:
        """Sent to a worker process without `derived`: per-process caches (an exported graph does not pickle)."""
        return {**self.__dict__, "derived": {}}

    @property
    def example(self) -> torch.Tensor:
        """What every export traces: a batch of 2 zeros (at batch 1 an export would specialise the batch to 1)."""
        return torch.zeros(2, *self.input_shape)

    @property
    def is_imported(self) -> bool:
        """A user's ONNX graph: no architecture of ours behind it, so no eager (stub-based) quantization."""
        return self.onnx_source is not None

    @classmethod
    def from_module(cls, module: nn.Module, input_shape: tuple[int, ...], num_classes: int, name: str | None = None,
                    preprocessing: Preprocessing | None = None) -> "LoadedModel":
        """A user's FP32 `nn.Module` in eval mode. Its identity (`weights_sha256`) hashes its structure (repr) and
        every parameter and buffer, so rows of other weights or another architecture never mix with its rows.
        `module` is kept as given: pass `private_copy(user_module)`, never the user's own."""
        check_module(module)
        sha = module_sha256(module)
        return cls(name or type(module).__name__, module, preprocessing or Preprocessing("raw255"),
                   Path(f"<module {type(module).__module__}.{type(module).__qualname__}>"), sha,
                   input_shape=tuple(input_shape), num_classes=num_classes, user_module=True)

    def fresh(self, quantizable: bool = False) -> nn.Module:
        """A new copy of the module (quantization mutates modules), optionally with quant stubs."""
        if self.torch_unavailable:
            raise NotApplicable(f"PyTorch configs do not apply to {self.name}: {self.torch_unavailable}")
        if self.user_module:
            if quantizable and not eager_ready(self.module):
                raise NotApplicable(f"{self.name} is a user module without QuantStub/DeQuantStub and a fusion_groups() "
                                    "method: eager static quantization needs both (see README, Use it from Python)")
            return copy.deepcopy(self.module).eval()
        if self.is_imported:
            if quantizable:
                raise ValueError(f"{self.name} is an imported ONNX graph: it has no quantizable (eager) variant")
            from .onnx_convert import convert_file  # onnx2torch only for those who use an imported graph

            return convert_file(self.onnx_source, self.import_info["fixed_batch"])
        spec = get_spec(self.name)
        module = spec.architecture(quantizable=quantizable)
        module.load_state_dict(self.module.state_dict())
        return module.eval()


def check_module(module) -> None:
    """A user's model as the API takes it: an nn.Module in eval mode. Checked before anything runs it."""
    if not isinstance(module, nn.Module):
        raise UserError(f"model must be a torch.nn.Module or a path to an .onnx file, got {type(module).__name__}")
    if module.training:
        raise UserError(f"{type(module).__name__} is in training mode: call model.eval() first (batch norm and "
                        "dropout would otherwise change every answer)")


def private_copy(module) -> nn.Module:
    """A checked deep copy of a user's module, which is all the API ever runs, exports or quantizes: the user's
    own parameters and buffers stay bit for bit as they were, whatever a forward pass or an exporter does."""
    check_module(module)
    try:
        return copy.deepcopy(module)
    except Exception as e:
        raise UserError(f"cannot copy {type(module).__name__} ({first_line(e) or type(e).__name__}): quant-explorer "
                        "works on a copy (copy.deepcopy) so that your model is never changed; make it copyable"
                        ) from None


def module_sha256(module: nn.Module) -> str:
    """sha256 of a module's structure (its repr: layers and their settings) and of every tensor of its state_dict
    (name, dtype, shape, bytes): the same weights in the same architecture give the same hash in any process."""
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def eager_ready(module: nn.Module) -> bool:
    """Can eager static PTQ take this module: a QuantStub and a DeQuantStub in it, and `fusion_groups()` (the
    module-name lists `torch.ao.quantization.fuse_modules` fuses, possibly empty)?"""
    from torch.ao.quantization import DeQuantStub, QuantStub

    kinds = {type(m) for m in module.modules()}
    return QuantStub in kinds and DeQuantStub in kinds and callable(getattr(module, "fusion_groups", None))
