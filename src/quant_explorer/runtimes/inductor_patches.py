"""Three changes that make Inductor compile a PT2E graph to oneDNN int8 kernels, right and fast: `inductor_runner`
and the AOTInductor packages (`aot.compile_package`) apply all three, so the two run the same kernels."""

from __future__ import annotations

import operator

import torch


def pad_uint8_in_aten() -> None:
    """Have Inductor call ATen's constant_pad_nd for uint8 tensors; every other dtype keeps Inductor's lowering.

    A PT2E ResNet pads uint8 activations before each stride-2 conv (x86_quantizer.fold_quantized_pads).
    Inductor's generated pad steps through them 8 bytes at a time behind a mask: 3.1 ms for a 4 MB
    channels-last tensor on 2 cores, against 0.25 ms in ATen, with the same bytes out. Installed once per process.
    """
    from torch._inductor import lowering

    target = torch.ops.aten.constant_pad_nd.default
    inductor_pad = lowering.lowerings[target]
    if getattr(inductor_pad, "uint8_in_aten", False):
        return
    aten_pad = lowering.fallback_handler(target, add_to_fallback_set=False)

    def pad(x, padding, value=0):
        return (aten_pad if x.get_dtype() == torch.uint8 else inductor_pad)(x, padding, value)

    pad.uint8_in_aten = True
    lowering.lowerings[target] = pad


def qconv_output_channels_last() -> None:
    """Have Inductor expect the channels-last output oneDNN's int8 convolution always writes.

    With a dynamic batch, Inductor predicts contiguous output for a convolution whose input has one channel: a
    rule for float convolutions, whose unpacked kernel follows its input's layout (pytorch/pytorch#121400), which
    Inductor also applies to the quantized one (`mkldnn_ir._prepare_convolution_fusion_create`). Its size check then
    failed every PT2E model of greyscale images at batch 2 and above ("expected size 16==16, stride 1==64 at
    dim=1"). Quantized convolutions only; the int8 kernels and their outputs are unchanged. Installed once per
    process."""
    from torch._inductor import mkldnn_ir
    from torch._prims_common import make_channels_last_strides_for

    prepare = mkldnn_ir._prepare_convolution_fusion_create
    if getattr(prepare, "qconv_channels_last", False):
        return

    def channels_last(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        quantized = kwargs.get("quantize_args", args[10] if len(args) > 10 else None) is not None
        layout = prepared[2]
        if quantized and len(layout.size) in (4, 5):
            layout.stride = list(make_channels_last_strides_for(layout.size))
        return prepared

    channels_last.qconv_channels_last = True
    mkldnn_ir._prepare_convolution_fusion_create = channels_last


def per_channel_weight_dequantize(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A PT2E graph's dequantize_per_tensor of each constant weight as dequantize_per_channel, its one scale
    repeated per output channel: the same numbers, but Inductor's int8 conv and linear lowerings match only
    per-channel weights, so per-tensor ones stayed float convolutions (resnet8-mlperf: 0.94x FP32, not 3.0x)."""
    decomposed = torch.ops.quantized_decomposed
    for dq in list(gm.graph.nodes):
        weight = dq.args[0] if dq.target == decomposed.dequantize_per_tensor.default else None
        if getattr(weight, "op", None) != "get_attr" or not all(isinstance(a, (int, float)) for a in dq.args[1:3]):
            continue
        channels = operator.attrgetter(weight.target)(gm).shape[0]
        prefix = weight.target.replace(".", "_")
        gm.register_buffer(f"{prefix}_scales", torch.full((channels,), float(dq.args[1])))
        gm.register_buffer(f"{prefix}_zero_points", torch.full((channels,), int(dq.args[2]), dtype=torch.int64))
        with gm.graph.inserting_before(dq):
            scales, zero_points = gm.graph.get_attr(f"{prefix}_scales"), gm.graph.get_attr(f"{prefix}_zero_points")
            per_channel = gm.graph.call_function(decomposed.dequantize_per_channel.default,
                                                 (weight, scales, zero_points, 0, *dq.args[3:]))
        per_channel.meta = dict(dq.meta)
        dq.replace_all_uses_with(per_channel)
        gm.graph.erase_node(dq)
    gm.recompile()
    return gm
