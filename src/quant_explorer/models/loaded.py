"""What every backend and evaluation takes: an FP32 model, its preprocessing, and the identity its results are
keyed by; one type for our registry models and for imported ONNX graphs. A module of its own so that the ONNX
import can make one without importing the package: it needs only the registry (to rebuild our architectures)
and, lazily, the ONNX conversion (to rebuild an imported graph)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import NotApplicable
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
            from .onnx_convert import convert_file  # onnx2torch only for those who use an imported graph

            return convert_file(self.onnx_source, self.import_info["fixed_batch"])
        spec = get_spec(self.name)
        module = spec.architecture(quantizable=quantizable)
        module.load_state_dict(self.module.state_dict())
        return module.eval()
