"""AOTInductor packages: a PT2E model compiled ahead of time runs the same oneDNN int8 kernels as the Inductor
runner, with the same outputs, at any batch from one package; an FP32 module compiles to oneDNN's packed
convolutions. Each compile is ~15-25 s on 2 cores (g++ on the generated wrapper)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from quant_explorer.runtimes import inductor_runner
from quant_explorer.runtimes.aot import aot_runner, compile_package, package_info


class Tiny(nn.Module):
    """Two convolutions (the second strided) and a classifier: every kind of kernel a ResNet's package calls."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3)))


@pytest.fixture(scope="module")
def images():
    return torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def pt2e_tiny(images):
    """Tiny, PT2E-quantized with X86InductorQuantizer: uint8 activations, per-tensor int8 weights (which the
    Inductor passes match only after per_channel_weight_dequantize, so a package without it stays float)."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    torch.manual_seed(0)
    per_tensor = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_symmetric,
                                  is_dynamic=False, observer_or_fake_quant_ctr=MinMaxObserver)
    config = dataclasses.replace(x86.get_default_x86_inductor_quantization_config(), weight=per_tensor)
    exported = torch.export.export(Tiny().eval(), (images[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    prepared = prepare_pt2e(exported.module(), x86.X86InductorQuantizer().set_global(config))
    prepared(images)
    return convert_pt2e(prepared)


@pytest.mark.slow
def test_pt2e_package_runs_the_inductor_runners_int8_kernels_with_its_outputs(pt2e_tiny, images, tmp_path):
    path = compile_package(pt2e_tiny, tmp_path / "tiny.pt2", images[:2])
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt2"]  # written atomically: no temporary left
    info = package_info(path)
    # oneDNN int8, no float conv
    assert info["shim_calls"] == {"_qconv_pointwise_tensor": 2, "_qlinear_pointwise_tensor": 1}
    assert 0 < info["library_bytes"] < info["size_bytes"] < 2_000_000
    packaged, compiled = aot_runner(path), inductor_runner(pt2e_tiny)
    assert torch.equal(packaged(images), compiled(images))
    # One package serves every batch: a batch of 1 gives row 0 of the batch of 16. (The JIT runner compiles
    # batch 1 as a graph of its own, Dynamo specialising sizes 0 and 1, where Inductor may split the pooling's
    # sum differently and a value on a rounding boundary requantizes one step apart; the bench's evaluation
    # runs batches of 256, which both serve with their dynamic graph.)
    assert torch.allclose(packaged(images[:1]), packaged(images)[:1], atol=1e-6)
    assert torch.equal(packaged(images[:7]), compiled(images[:7]))
    for layout in (images[3:11:2], images.to(memory_format=torch.channels_last)):  # read right, not as NCHW
        assert torch.equal(packaged(layout), packaged(layout.contiguous()))


@pytest.mark.slow
def test_fp32_package_runs_onednn_convolutions_and_matches_eager(images, tmp_path):
    module = Tiny().eval()
    path = compile_package(module, tmp_path / "fp32.pt2", images[:2])
    calls = package_info(path)["shim_calls"]
    assert calls.get("mkldnn__convolution_pointwise") == 2 and "convolution" not in calls  # packed, under no_grad
    with torch.no_grad():
        want = module(images)
    got = aot_runner(path)(images)
    assert not got.requires_grad and torch.allclose(got, want, atol=1e-5)
