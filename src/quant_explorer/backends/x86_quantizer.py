"""Keep a PT2E ResNet in uint8 between Inductor's oneDNN convolutions: quantizer annotations and a graph fold.

Stock X86InductorQuantizer (torchao 0.18) gives each consumer's input edge its own observer. It never observes
the output of a conv + add pattern, and it leaves a zero pad unquantized. In a ResNet block, the residual sum
feeds a pad (Keras "same" padding of a stride-2 conv) and a 1x1 shortcut conv. So Inductor cannot fold a
quantize into the conv that makes the sum. The sum is written in float32, then dequantized, padded, and
requantized twice in generated code. On ResNet8 (2 cores, AVX2) that work took 40% of the int8 model's time.

The fix has two parts:
- `SharedOutputX86InductorQuantizer` observes each such output once, at its producer, and treats a zero pad
  like max_pool2d: its output shares its input's observer. The conv then writes uint8 with the ReLU fused,
  and the shortcut conv reads that tensor as is. It also quantizes the input of the final average pool,
  which upstream leaves float, so the last block writes uint8 too.
- `fold_quantized_pads` rewrites the remaining quantize(pad(dequantize(x))), whose scales are now equal, as
  a pad of the uint8 tensor with its zero point. It is exact, and it avoids a float round trip that
  Inductor's generated code makes slowly (runtimes.inductor_runner also has ATen do the pad itself).
Measured on resnet8-mlperf, batch 256: int8 glue from 15 to 6 ms per batch. Accuracy is unchanged within
one image on every PT2E config.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

ANNOTATION = "quantization_annotation"
RELU = (torch.ops.aten.relu.default, torch.ops.aten.relu_.default)
PADS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)
POOLS = (torch.ops.aten.avg_pool2d.default, torch.ops.aten.adaptive_avg_pool2d.default)


class SharedOutputX86InductorQuantizer(X86InductorQuantizer):
    def annotate(self, model: GraphModule) -> GraphModule:
        super().annotate(model)
        for node in list(model.graph.nodes):
            _pass_through_zero_pad(node)
            _quantize_pool_input(node, self.global_config)
        for node in list(model.graph.nodes):
            _quantize_output_once(node)
        return model


def _consumer_spec(node: Node):
    """The spec the first consumer that quantizes `node`'s output asks for, or None."""
    return next((u.meta[ANNOTATION].input_qspec_map[node] for u in node.users
                 if ANNOTATION in u.meta and node in u.meta[ANNOTATION].input_qspec_map), None)


def _is_zero_pad(node: Node) -> bool:
    if node.target not in PADS:
        return False
    if node.target == torch.ops.aten.constant_pad_nd.default:
        return node.args[2:] in ((), (0,), (0.0,))
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    return mode == "constant" and value in (None, 0, 0.0)


def _pass_through_zero_pad(node: Node) -> None:
    """A zero pad whose output a consumer quantizes: quantize its input instead, and share that observer."""
    if not _is_zero_pad(node) or ANNOTATION in node.meta or (spec := _consumer_spec(node)) is None:
        return
    source = node.args[0]
    node.meta[ANNOTATION] = QuantizationAnnotation(
        input_qspec_map={source: spec}, output_qspec=SharedQuantizationSpec((source, node)), _annotated=True)


def _quantize_pool_input(node: Node, config) -> None:
    """An average pool after a quantized conv pattern, which upstream leaves float: quantize its input with an
    observer of its own, so that conv writes uint8 instead of float32. Not shared with the pool's output: the
    mean of 64 values needs a finer scale than its inputs (sharing it cost 8 of 1,017 images on resnet8-mlperf).
    uint8 activations only: int8 ones do not run on oneDNN, and would only lose half their range to the ReLU."""
    if node.target not in POOLS or ANNOTATION in node.meta or config is None \
            or config.input_activation.dtype != torch.uint8:
        return
    producer = node.args[0]
    if producer.target in RELU and ANNOTATION not in producer.meta:
        producer = producer.args[0]
    if getattr(producer.meta.get(ANNOTATION), "_is_output_of_quantized_pattern", False):
        node.meta[ANNOTATION] = QuantizationAnnotation(
            input_qspec_map={node.args[0]: config.input_activation}, _annotated=True)


def _quantize_output_once(node: Node) -> None:
    """Give a pattern's output the observer its consumers ask for; equal specs then share that one observer."""
    annotation = node.meta.get(ANNOTATION)
    if not getattr(annotation, "_is_output_of_quantized_pattern", False) or annotation.output_qspec is not None:
        return
    output = node
    users = list(node.users)
    # conv + add then a ReLU the stock patterns miss (FloatFunctional.add_relu exports as add, relu): the output
    # to quantize is the ReLU's, which Inductor fuses into the conv as a post-op.
    if len(users) == 1 and users[0].target in RELU and ANNOTATION not in users[0].meta:
        output = users[0]
    if (spec := _consumer_spec(output)) is None:
        return  # no consumer quantizes it: the pattern stays float out, as upstream has it
    if output is node:
        annotation.output_qspec = spec
    else:
        annotation._is_output_of_quantized_pattern = False
        output.meta[ANNOTATION] = QuantizationAnnotation(output_qspec=spec, _annotated=True)


def fold_quantized_pads(gm: GraphModule) -> int:
    """quantize(zero_pad(dequantize(x))) with one scale and zero point -> pad x with its zero point; returns how
    many."""
    decomposed = torch.ops.quantized_decomposed
    folded = 0
    for pad in list(gm.graph.nodes):
        if not _is_zero_pad(pad) or len(pad.users) != 1:
            continue
        dq, q = pad.args[0], next(iter(pad.users))
        if (getattr(dq, "target", None) != decomposed.dequantize_per_tensor.default
                or q.target != decomposed.quantize_per_tensor.default or tuple(q.args[1:]) != tuple(dq.args[1:])
                or not isinstance(dq.args[2], int)):
            continue
        with gm.graph.inserting_before(q):
            padded = gm.graph.call_function(torch.ops.aten.constant_pad_nd.default,
                                            (dq.args[0], pad.args[1], dq.args[2]))
        padded.meta = dict(q.meta)
        q.replace_all_uses_with(padded)
        folded += 1
    if folded:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return folded
