"""ARM classes under qemu-aarch64: ONNX Runtime, FP32 and the eager qnnpack engine measured in the arm64 environment
`make arm` builds, keyed by their method, PT2E "not measured" in one line, and ARM rows through the product's own
path."""

from __future__ import annotations

import numpy as np
import pytest

from quant_explorer import aarch64, emulation, env, identity
from quant_explorer.backends import Calibration, get_config, quantize
from quant_explorer.backends import emulation as method_of
from quant_explorer.errors import NotApplicable

from .test_emulation import host  # noqa: F401  (the fixture: an AVX-512 VNNI host with qemu-user)

READY = aarch64.ready()
needs_arm = pytest.mark.skipif(READY is None, reason=f"{aarch64.missing()}")


def _tiny(tmp_path):
    from quant_explorer.data import load_split

    from .conftest import random_model, write_image_folder

    images = load_split(write_image_folder(tmp_path / "data", n_train=20, n_test=10), "train")
    return images, random_model("cifar_cnn", images.images)


def test_arm_classes_run_onnx_runtime_fp32_and_qnnpack_in_qemu_aarch64_and_say_why_not_the_rest(host,  # noqa: F811
                                                                                                  tmp_path):
    host.setattr(aarch64, "ready", lambda: "/x/qemu-aarch64")
    host.setattr(aarch64, "has_torch", lambda: True)
    host.setattr(aarch64, "versions", lambda: {"numpy": "2", "onnxruntime": "1", "torch": "2.9.1"})
    assert identity.emulable() == ("avx512", "avx2", "sse4", "arm64-dotprod", "arm64")
    for isa, cpu in (("arm64-dotprod", "neoverse-n1"), ("arm64", "cortex-a53")):
        assert identity.emulate(isa) == isa and "ONEDNN_MAX_CPU_ISA" not in identity.os.environ
        assert {b: method_of(b) for b in ("ort", "fp32", "pt2e", "eager_static")} == {
            "ort": f"qemu-aarch64 {cpu}", "fp32": f"qemu-aarch64 {cpu}", "pt2e": None,
            "eager_static": f"qemu-aarch64 {cpu}, torch 2.9.1"}  # the arm64 process's torch, not this venv's
    images, model = _tiny(tmp_path)
    calibration = Calibration(images, model.preprocessing, 0)
    with pytest.raises(NotApplicable, match=r"^not measured on arm64: torch, inductor, aotinductor load in no arm64 "
                                            r"process \(an AOTInductor package is an x86 program; never guessed\)$"):
        quantize(model, get_config("pt2e_u8_per_channel_minmax"), calibration, tmp_path)
    host.setattr(aarch64, "has_torch", lambda: False)  # an environment built before torch was part of it
    assert method_of("eager_static") is None
    with pytest.raises(NotApplicable, match=r"^not measured on arm64: qnnpack, x86 need torch, which the aarch64 "
                                            r"environment does not have \(rebuild it: make arm; never guessed\)$"):
        quantize(model, get_config("static_int8_per_channel"), calibration, tmp_path)


def test_without_the_aarch64_environment_arm_rows_say_not_measured_and_how_to_build_it(host, tmp_path):  # noqa: F811
    host.setattr(aarch64, "ready", lambda: None)
    assert "arm64" not in identity.emulable()  # `make classes` leaves them out
    assert identity.emulate("arm64") == "arm64"  # --isa arm64 still runs: its rows say why they are not measured
    images, model = _tiny(tmp_path)
    with pytest.raises(NotApplicable, match=r"^not measured: the aarch64 environment is not built here \(make arm: "):
        quantize(model, get_config("ort_u8_minmax_qdq_per_channel"), Calibration(images, model.preprocessing, 0),
                 tmp_path)


def test_the_arm64_process_loads_onnx_runtime_as_a_user_ships_it(tmp_path):
    """Its torch-free twin of `ort_runner` builds the session the shipped one does and runs it alike (here natively)."""
    import torch

    from quant_explorer.backends import runtime_info
    from quant_explorer.runtimes import ort_runner, ort_session

    from .test_api import three_class_onnx

    path = three_class_onnx(tmp_path / "m.onnx")
    assert emulation.loader("arm64", runtime_info("onnxruntime")) == "quant_explorer.aarch64:ort_runner"
    assert emulation.loader("avx2", runtime_info("onnxruntime")) == runtime_info("onnxruntime").loader
    fields = ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level", "log_severity_level",
              "execution_mode")
    ours, theirs = aarch64.ort_session(path, 2).get_session_options(), ort_session(path, 2).get_session_options()
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(aarch64.ort_runner(path, 1)(x), ort_runner(path, 1)(torch.from_numpy(x)))


@pytest.mark.process
@pytest.mark.slow
@needs_arm
def test_an_arm_row_is_scored_in_the_arm64_process_through_the_products_own_path(tmp_path):
    """`explore(..., isa="arm64-dotprod")`: FP32 and ONNX Runtime scored in the arm64 Python under qemu-aarch64 as a
    Neoverse N1 (its class checked by numpy's HWCAP detection there: ASIMDDP), PT2E not measured in one line, the
    rows keyed as emulated with their method."""
    import quant_explorer as qe
    from quant_explorer.results import Results

    from .test_api import blobs, trained

    train, test = blobs(120, 0), blobs(60, 1)
    result = qe.explore(trained(train), calibration=train, evaluation=test, seeds=1, calibration_n=60,
                        configs=["ort_u8_minmax_qdq_per_channel", "pt2e_u8_per_channel_minmax"],
                        artifacts_dir=tmp_path, isa="arm64-dotprod")
    assert result.view.environment.startswith("arm64-dotprod (emulated), ")
    rows = {r["config"]: r for r in result.rows}
    assert rows["fp32_baseline"]["runtime"] == rows["ort_u8_minmax_qdq_per_channel"]["runtime"] == "onnxruntime"
    assert rows["ort_u8_minmax_qdq_per_channel"]["accuracy"] > 0.5
    assert "load in no arm64 process" in rows["pt2e_u8_per_channel_minmax"]["not_applicable"]
    stored = [row for key, row in Results.load(result.results_path).rows.items() if key in result.keys and row.scored]
    assert stored and {(r.identity["cpu_class"], r.identity["emulated"], r.identity["emulation"]) for r in stored} == {
        ("arm64-dotprod", True, "qemu-aarch64 neoverse-n1")}


@pytest.mark.process
@needs_arm
def test_an_arm_process_without_the_dot_product_extension_is_not_arm64_dotprod(monkeypatch):
    """Its class is what the arm64 process's numpy reads from the emulated CPU's feature bits (HWCAP), not a name."""
    monkeypatch.setitem(emulation.QEMU_CPU, "arm64-dotprod", "cortex-a53")  # Armv8.0: no ASIMDDP
    with pytest.raises(emulation.EmulationError, match=r"^qemu-aarch64 -cpu cortex-a53 runs as arm64 \(numpy's CPUID "
                                                       r"detection\), not arm64-dotprod"):
        emulation.probe("arm64-dotprod")


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.skipif(READY is None or not aarch64.has_torch(), reason=f"{aarch64.missing()}, with torch")
def test_the_eager_engine_on_arm_is_qnnpack_and_its_logits_are_x86_qnnpacks_bit_for_bit(tmp_path):
    """As arm64-dotprod, an eager static config is scored in the arm64 process's torch with the qnnpack engine (the
    saved TorchScript, packed again there): the logits qnnpack computes natively on x86, to the last bit."""
    images, model = _tiny(tmp_path)
    config, calibration = get_config("static_int8_per_channel"), Calibration(images, model.preprocessing, 0)
    x = model.preprocessing(images.images[:8]).contiguous()
    native = quantize(model, config, calibration, tmp_path / "native")
    with identity.emulating("arm64-dotprod"):
        on_arm = quantize(model, config, calibration, tmp_path / "arm")
        logits = on_arm.runtimes[on_arm.runtime].build(1)(x.numpy())
    assert on_arm.runtime == "qnnpack"
    np.testing.assert_array_equal(np.asarray(logits), native.runtimes["qnnpack"].build(1)(x).numpy())


def test_a_native_arm_machine_is_classed_by_its_features_line(tmp_path):
    """ARM's /proc/cpuinfo lists its SIMD extensions under "Features", not "flags": a Neoverse N1 is arm64-dotprod,
    a Cortex-A53 arm64, and an x86 CPU's record gains no ARM keys."""
    line = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop{}\n"
    for extra, expected in ((" asimddp", "arm64-dotprod"), ("", "arm64")):  # a file each: cpu_info is cached
        (tmp_path / expected).write_text("processor\t: 0\nBogoMIPS\t: 50.00\n" + line.format(extra))
        assert identity.cpu_class(env.cpu_info(tmp_path / expected)) == expected
    (tmp_path / "x86").write_text("processor\t: 0\nmodel name\t: x\nflags\t\t: fpu sse4_2 avx2 fma\n")
    x86 = env.cpu_info(tmp_path / "x86")
    assert identity.cpu_class(x86) == "avx2" and set(x86["flags"]) == set(env.SIMD_FLAGS)
