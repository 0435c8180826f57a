"""The code that runs an FP32 or quantized model: PyTorch (eager or compiled by Inductor), an AOTInductor package,
ONNX Runtime, and PyTorch via onnx2torch, one module per concern; this package only puts their names in one place.

Each `*_runner` returns a callable from a float32 NCHW batch to logits, which is all `evaluate` needs. What each
runtime is (its record: baseline, how a user loads it, how the FP32 reference runs in it) is declared by the backend
whose artifacts run in it (`backends.Runtime`).
"""

from .aot import aot_runner, compile_package, package_info
from .export import DYNAMIC_BATCH, export_onnx, onnx_opset
from .inductor_patches import pad_uint8_in_aten, per_channel_weight_dequantize, qconv_output_channels_last
from .onnx_runners import onnx2torch_runner, ort_runner, ort_session
from .torch_runners import inductor_runner, torch_runner, torchscript_runner

__all__ = ["DYNAMIC_BATCH", "aot_runner", "compile_package", "export_onnx", "inductor_runner", "onnx2torch_runner",
           "onnx_opset", "ort_runner", "ort_session", "package_info", "pad_uint8_in_aten",
           "per_channel_weight_dequantize", "qconv_output_channels_last", "torch_runner", "torchscript_runner"]
