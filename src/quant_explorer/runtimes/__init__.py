"""The ways an FP32 or quantized model runs: PyTorch (eager or compiled by Inductor), ONNX Runtime, and
PyTorch via onnx2torch, one module per concern; this package only puts their names in one place.

Each `*_runner` returns a callable from a float32 NCHW batch to logits, which is all `evaluate` needs; each
`Runtime` record says what a runtime is, for the bench's baselines and the explanations.
"""

from .export import DYNAMIC_BATCH, export_onnx, onnx_opset
from .inductor_patches import pad_uint8_in_aten, per_channel_weight_dequantize, qconv_output_channels_last
from .onnx_runners import onnx2torch_runner, ort_runner, ort_session
from .records import AOTINDUCTOR, INDUCTOR, ONNX2TORCH, ONNXRUNTIME, TORCH, TORCHSCRIPT_LOAD, Runtime
from .torch_runners import inductor_runner, torch_runner

__all__ = ["AOTINDUCTOR", "DYNAMIC_BATCH", "INDUCTOR", "ONNX2TORCH", "ONNXRUNTIME", "TORCH", "TORCHSCRIPT_LOAD",
           "Runtime", "export_onnx", "inductor_runner", "onnx2torch_runner", "onnx_opset", "ort_runner", "ort_session",
           "pad_uint8_in_aten", "per_channel_weight_dequantize", "qconv_output_channels_last", "torch_runner"]
