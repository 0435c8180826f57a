"""PT2E and eager backends: real quantization of small random models, and of the MLPerf ResNet8 on real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from quant_explorer.backends import Calibration, eager, get_backend, get_config, quantize
from quant_explorer.backends.pt2e import quantization_config
from quant_explorer.configs import QuantConfig
from quant_explorer.data import CIFAR10_CLASSES, ImageSet, calibration_set, load_split
from quant_explorer.errors import NotApplicable
from quant_explorer.evaluate import evaluate
from quant_explorer.models import LoadedModel, load_model
from quant_explorer.runtimes import torch_runner

from .conftest import MLPERF_H5, SUBSET, random_model


@pytest.fixture(scope="module")
def images() -> ImageSet:
    """Smooth random images (upsampled noise), so activations have some of the spatial structure of real ones."""
    low = torch.rand(96, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    pixels = nn.functional.interpolate(low, size=32, mode="bilinear") * 255
    return ImageSet(pixels.round().to(torch.uint8), torch.arange(96) % 10, CIFAR10_CLASSES, "synthetic")


@pytest.fixture(scope="module")
def models(images) -> dict[str, LoadedModel]:
    return {name: random_model(name, images.images) for name in ("resnet8", "cifar_cnn")}


def assert_close_to_fp32(model: LoadedModel, runner, images: ImageSet, max_relative_error: float) -> None:
    x = model.preprocessing(images.images)
    with torch.inference_mode():
        want = model.module(x)
    got = torch.as_tensor(runner(x))
    assert (got - want).norm() / want.norm() < max_relative_error
    assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.8


@pytest.mark.parametrize("name,config", [("resnet8", "pt2e_u8_per_channel_minmax"),
                                         ("cifar_cnn", "pt2e_u8_per_tensor_minmax")])
def test_pt2e_quantizes_to_the_configured_dtypes(models, images, tmp_path, name, config):
    model, cfg = models[name], get_config(config)
    q = quantize(model, cfg, Calibration(images, model.preprocessing, seed=0), tmp_path)
    ops = q.checks["quantized_ops"]
    assert q.checks["activation_dtypes"] == [cfg.activation_dtype]
    assert ops["quantize_per_tensor"] == q.checks["activation_tensors_checked"] > 0
    assert ("dequantize_per_channel" in ops) == (cfg.granularity == "per_channel")
    assert q.checks["zero_point_exact_zero"] and q.checks["zero_point_failures"] == []
    assert (q.runtime, q.headline, q.reference) == ("inductor", "aotinductor", "torch")  # scored in int8 kernels
    saved = torch.export.load(q.path)
    assert all(t.dtype == torch.int8 for t in saved.state_dict.values() if t.dim() > 1)  # no float weights left
    x = model.preprocessing(images.images[:5])  # not the export example's batch size
    assert torch.equal(saved.module()(x), q.runtimes["torch"].build(1)(x))  # the saved graph is the reference
    assert_close_to_fp32(model, q.runner, images, 0.05)


def test_pt2e_int8_activations_have_no_kernels_to_ship(models, images, tmp_path):
    model = models["cifar_cnn"]
    with pytest.raises(NotApplicable, match="uint8 activations only"):
        quantize(model, get_config("pt2e_s8_per_tensor_minmax"), Calibration(images, model.preprocessing, seed=0),
                 tmp_path)


def test_every_observer_pt2e_declares_builds_its_own_observer():
    declared = get_backend("pt2e").capabilities.calibrations
    configs = [QuantConfig("probe", "pt2e", "probe", activation_dtype="uint8", weight_dtype="int8",
                           granularity="per_tensor", calibration=observer) for observer in declared]
    built = {type(quantization_config(c).input_activation.observer_or_fake_quant_ctr()).__name__ for c in configs}
    assert len(built) == len(declared)


@pytest.mark.parametrize("name,config", [("resnet8", "static_int8_per_channel"),
                                         ("cifar_cnn", "static_int8_per_tensor")])
def test_eager_static_swaps_in_quantized_modules(models, images, tmp_path, monkeypatch, name, config):
    model = models[name]
    q = quantize(model, get_config(config), Calibration(images, model.preprocessing, seed=0), tmp_path)
    kinds = q.checks["quantized_modules"]
    assert kinds["intrinsic.quantized.ConvReLU2d"] >= 4 and kinds["quantized.Linear"] == 1
    assert kinds["quantized.Quantize"] == kinds["quantized.DeQuantize"] == 1
    assert kinds.get("quantized.QFunctional", 0) == (3 if name == "resnet8" else 0)  # the residual add_relu
    assert q.checks["torch_quantized_engine"] == q.runtime == eager.SHIPPED_ENGINE == "x86"  # what x86 users ship
    assert q.reference == eager.EXACT_ENGINE
    assert q.checks["zero_point_exact_zero"] and q.checks["activation_tensors_checked"] > 0
    x = model.preprocessing(images.images[:5])
    monkeypatch.setattr(torch.backends.quantized, "engine", eager.SHIPPED_ENGINE)  # TorchScript repacks on load
    assert torch.equal(torch.jit.load(q.path)(x), q.runner(x))
    assert_close_to_fp32(model, q.runtimes[q.reference].build(2), images, 0.05)
    assert_close_to_fp32(model, q.runner, images, 0.1)  # may saturate without VNNI


def test_quantized_zero_pad_pads_with_the_zero_point():
    """ResNet8's stride-2 convs pad bottom/right with ZeroPad2d; on a quantized tensor that must still mean 0.0."""
    x = torch.quantize_per_tensor(torch.rand(1, 2, 4, 4), 0.05, 7, torch.quint8)
    padded = nn.ZeroPad2d((0, 1, 0, 1))(x)
    assert padded.q_zero_point() == 7 and torch.equal(padded.dequantize(), nn.ZeroPad2d((0, 1, 0, 1))(x.dequantize()))


def test_eager_dynamic_quantizes_linear_only_without_calibration(models, images, tmp_path):
    model = models["cifar_cnn"]
    q = quantize(model, get_config("dynamic_int8"), None, tmp_path)
    assert q.checks["quantized_modules"] == {"quantized.dynamic.Linear": 1}
    assert_close_to_fp32(model, q.runner, images, 0.02)


def test_eager_static_is_not_applicable_to_imported_graphs(models, tmp_path):
    imported = LoadedModel("onnx:x", models["cifar_cnn"].module, models["cifar_cnn"].preprocessing, Path("x.onnx"),
                           "0" * 64, onnx_source=Path("x.onnx"))
    with pytest.raises(NotApplicable, match="imported ONNX graph"):
        quantize(imported, get_config("static_int8_per_tensor"), None, tmp_path)


def test_residual_blocks_stay_uint8_between_convs(models, images, tmp_path):
    """Each residual sum is quantized once, where it is made, and the stride-2 pads run on that uint8 tensor."""
    model = models["resnet8"]
    q = quantize(model, get_config("pt2e_u8_per_channel_minmax"), Calibration(images, model.preprocessing, 0), tmp_path)
    graph = torch.export.load(q.path).graph
    sums = [n for n in graph.nodes
            if n.target == torch.ops.aten.relu.default and n.args[0].target == torch.ops.aten.add.Tensor]
    users = [[u.target for u in n.users] for n in sums]
    # the first two sums feed the next block's pad and shortcut conv through one quantize; the last, the avg pool
    q_op = torch.ops.quantized_decomposed.quantize_per_tensor.default
    assert users == [[q_op], [q_op], [q_op]]
    pool = next(n for n in graph.nodes if n.target == torch.ops.aten.avg_pool2d.default)
    assert pool.args[0].args[0].args[0] is sums[-1]  # pool(dequantize(quantize(sum)))
    pads = [n for n in graph.nodes if n.target in (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)]
    assert len(pads) == 2 and all(p.meta["val"].dtype == torch.uint8 for p in pads)


def test_fold_quantized_pads_is_exact_and_needs_equal_scales():
    from quant_explorer.backends.x86_quantizer import fold_quantized_pads

    q = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default

    def block(x, out_scale):
        y = torch.ops.aten.pad.default(dq(q(x, 0.05, 7, 0, 255, torch.uint8), 0.05, 7, 0, 255, torch.uint8),
                                       [0, 1, 0, 1])
        return dq(q(y, out_scale, 7, 0, 255, torch.uint8), out_scale, 7, 0, 255, torch.uint8)

    x = torch.randn(2, 3, 5, 5)
    same = torch.fx.symbolic_trace(lambda x: block(x, 0.05))
    want = same(x)
    assert fold_quantized_pads(same) == 1
    assert torch.equal(same(x), want)
    pads = [n for n in same.graph.nodes if n.target == torch.ops.aten.constant_pad_nd.default]
    # the uint8 tensor, with its zero point
    assert len(pads) == 1 and pads[0].args[0].target == q and pads[0].args[2] == 7
    assert fold_quantized_pads(torch.fx.symbolic_trace(lambda x: block(x, 0.06))) == 0  # a requantize is not a pad


def test_per_tensor_weights_are_dequantized_per_channel_for_inductor_with_the_same_numbers(models, images, tmp_path):
    from quant_explorer.runtimes import per_channel_weight_dequantize

    model = models["resnet8"]
    q = quantize(model, get_config("pt2e_u8_per_tensor_minmax"), Calibration(images, model.preprocessing, 0), tmp_path)
    assert "dequantize_per_channel" not in q.checks["quantized_ops"]  # the artifact stays per-tensor
    saved = torch.export.load(q.path).module()
    x = model.preprocessing(images.images[:8])
    want = saved(x)
    rewritten = per_channel_weight_dequantize(saved)
    per_channel = [n for n in rewritten.graph.nodes
                   if n.target == torch.ops.quantized_decomposed.dequantize_per_channel.default]
    assert len(per_channel) == 10  # 9 convs and the classifier
    assert torch.equal(rewritten(x), want)


@pytest.mark.slow
@pytest.mark.parametrize("name,config,convs,pads", [("cifar_cnn", "pt2e_u8_per_channel_minmax", 4, 0),
                                                    ("resnet8", "pt2e_u8_per_channel_minmax", 9, 2),
                                                    ("resnet8", "pt2e_u8_per_tensor_minmax", 9, 2)])
def test_inductor_alternate_compiles_to_int8_kernels(models, images, tmp_path, name, config, convs, pads):
    from torch._dynamo.utils import counters
    from torch._inductor.utils import run_and_get_code

    model = models[name]
    q = quantize(model, get_config(config), Calibration(images, model.preprocessing, 0), tmp_path)
    counters.clear()
    compiled = q.runtimes["inductor"].build(2)
    _, code = run_and_get_code(compiled, model.preprocessing(images.images[:2]))
    assert "".join(code).count("torch.ops.aten.constant_pad_nd.default(") == pads  # the uint8 pads run in ATen
    for n in (4, 7):  # one compile serves every batch size
        x = model.preprocessing(images.images[:n])
        reference, fused = q.runtimes["torch"].build(1)(x), compiled(x)
        assert (fused - reference).norm() / reference.norm() < 0.05  # requantization rounds differently, no more
    assert counters["inductor"]["qconv_weight_prepack_matcher_count"] == convs  # every conv runs as a oneDNN int8 conv


@pytest.fixture(scope="module")
def mlperf():
    """The MLPerf ResNet8, 256 calibration images, every other test image, and FP32's score on those."""
    model = load_model("resnet8-mlperf", MLPERF_H5)
    calibration = Calibration(calibration_set(load_split(SUBSET, "train"), 256, 0), model.preprocessing, seed=0)
    test = load_split(SUBSET, "test")
    test = test.subset(range(0, len(test), 2))
    fp32, _ = evaluate(torch_runner(model.module), test, model.preprocessing)
    return model, calibration, test, fp32["correct"]


@pytest.mark.shared_data
@pytest.mark.parametrize("config,max_drop", [("pt2e_u8_per_channel_histogram", 1), ("static_int8_per_channel", 10)])
def test_mlperf_resnet8_stays_near_fp32(mlperf, tmp_path, config, max_drop):
    """Paired with FP32 on 509 real test images, the recipes (their exact references: the kernels that run them
    saturate on CPUs without VNNI) lose at most 1 image for PT2E's best config, 2 points (10 images) for eager."""
    model, calibration, test, fp32_correct = mlperf
    q = quantize(model, get_config(config), calibration, tmp_path)
    metrics, _ = evaluate(q.runtimes[q.reference].build(2), test, model.preprocessing)
    assert metrics["correct"] >= fp32_correct - max_drop
