"""ONNX files as runtimes: an ONNX Runtime session, or the graph converted to PyTorch by onnx2torch (a QDQ model's
exact float simulation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .torch_runners import torch_runner


def ort_session(path: Path, threads: int | None = None, profile_prefix: str | None = None):
    """An InferenceSession with full graph optimisation and a pinned intra-op thread count; with
    `profile_prefix`, ORT's per-node profiling on (session.end_profiling() returns the trace file)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def in_batches_of(run, size: int | None):
    """`run` fed `size` images at a time: imported graphs may hard-code batch 1 (None: any batch, as is)."""
    if size is None:
        return run

    def run_chunked(x: torch.Tensor) -> np.ndarray:
        return np.concatenate([np.asarray(run(x[i:i + size])) for i in range(0, len(x), size)])

    return run_chunked


def ort_runner(path: Path, threads: int | None = None):
    session = ort_session(path, threads)
    image = session.get_inputs()[0]

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {image.name: np.ascontiguousarray(x.numpy())})[0]

    return in_batches_of(run, image.shape[0] if isinstance(image.shape[0], int) else None)


def onnx2torch_runner(path: Path):
    import onnx
    from onnx2torch import convert

    from .onnx2torch_ops import fold_weight_dequantize  # also registers the missing converters

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return in_batches_of(torch_runner(convert(fold_weight_dequantize(model))),
                         dims[0].dim_value if dims and dims[0].dim_value else None)
