"""benchmarks/peak.py: the peak of each SIMD path, the path a library picks for given CPU flags, oneDNN's verbose
output parsed from a real run here, perf's view of a real kernel, and fractions of peak taken against the path
that ran."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from quant_explorer.backends import get_config
from quant_explorer.env import cpu_info

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NONE = dict.fromkeys(("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16",
                      "amx_tile"), False)
AVX2 = {**NONE, "avx2": True, "fma": True}  # this project's 2-core AMD EPYC
ZEN4 = {**AVX2, "avx512f": True, "avx512bw": True, "avx512_vnni": True}
SAPPHIRE_RAPIDS = {**ZEN4, "amx_int8": True, "amx_bf16": True, "amx_tile": True}
ALDER_LAKE = {**AVX2, "avx_vnni": True}


@pytest.fixture(scope="module")
def peak():
    spec = importlib.util.spec_from_file_location("peak", BENCHMARKS / "peak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.PROBE_ITERATIONS, module.AMX_PROBE_ITERATIONS = 5_000_000, 500_000  # a tenth: ~20 ms per try
    return module


def test_each_path_peak_follows_from_the_flags_and_the_probes(peak):
    assert {p: r for p, (r, _) in peak.path_rates(AVX2, {}).items()} == {"fp32_avx2": 16, "int8_avx2": 32}
    zen4 = peak.path_rates(ZEN4, {"fp32_fma_zmm": 15.7, "int8_vnni_zmm": 63.1})  # 512-bit ops as two halves
    assert {p: r for p, (r, _) in zen4.items()} == {"fp32_avx2": 16, "fp32_avx512": 16, "int8_avx2": 32,
                                                    "int8_avx512bw": 32, "int8_avx512_vnni": 64}
    assert zen4["int8_avx512_vnni"][1].startswith("measured")
    spr = peak.path_rates(SAPPHIRE_RAPIDS, {"fp32_fma_zmm": 31.9, "int8_vnni_zmm": 127.5})
    assert spr["int8_amx"][0] == 16 * 16 * 64 // 16 and spr["bf16_amx"][0] == 512  # derived: no tile probe ran
    assert "derived" in spr["int8_amx"][1] and spr["int8_avx512_vnni"][0] == 128
    assert peak.path_rates(SAPPHIRE_RAPIDS, {"int8_amx": 1010.0})["int8_amx"] == (
        1024, "measured: int8_amx 1010.0 MACs/cycle")
    assert peak.path_rates(ALDER_LAKE, {})["int8_avx_vnni"][0] == 64


@pytest.mark.parametrize("flags,runtime,want", [
    (AVX2, "onnxruntime", "int8_avx2"), (AVX2, "inductor", "int8_avx2"), (AVX2, "x86", "int8_avx2"),
    (ALDER_LAKE, "onnxruntime", "int8_avx_vnni"), (ALDER_LAKE, "aotinductor", "int8_avx_vnni"),
    (ZEN4, "onnxruntime", "int8_avx512_vnni"), (ZEN4, "x86", "int8_avx512_vnni"),
    (SAPPHIRE_RAPIDS, "inductor", "int8_amx"), (SAPPHIRE_RAPIDS, "x86", "int8_amx"),
    (SAPPHIRE_RAPIDS, "onnxruntime", "int8_avx512_vnni"),  # MLAS's AMX kernel is QGEMM only, not ConvSym
    ({**ZEN4, "avx512_vnni": False}, "x86", "int8_avx512bw"),  # FBGEMM's AVX-512 kernels
    (SAPPHIRE_RAPIDS, "qnnpack", None)])  # SSE kernels: no modelled peak
def test_the_derived_path_is_the_libraries_dispatch_rule(peak, flags, runtime, want):
    assert peak.expected_path(runtime, True, flags) == want


def test_fp32_derived_path_is_the_widest_fma(peak):
    assert [peak.expected_path("torch", False, f) for f in (AVX2, ZEN4, NONE)] == ["fp32_avx2", "fp32_avx512", None]


def test_onednn_verbose_of_a_real_int8_and_fp32_convolution_is_parsed(peak):
    """oneDNN runs a u8 x s8 convolution (the 'onednn' quantized engine) and an fp32 one; the parser finds both,
    each on the path of the ISA in its implementation name, and that ISA is one this CPU has."""
    previous, torch.backends.quantized.engine = torch.backends.quantized.engine, "onednn"
    try:
        qconv = torch.ao.nn.quantized.Conv2d(8, 16, 3, padding=1)
        qconv.set_weight_bias(torch.quantize_per_tensor(torch.randn(16, 8, 3, 3), 0.05, 0, torch.qint8),
                              torch.zeros(16))
        conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        x = torch.quantize_per_tensor(torch.rand(2, 8, 16, 16), 0.01, 0, torch.quint8)
        with torch.no_grad():
            text = peak.onednn_verbose(lambda v: (qconv(v), conv(v.dequantize())), x)
    finally:
        torch.backends.quantized.engine = previous
    parsed = peak.parse_onednn_verbose(text)
    convs = {name: e for name, e in parsed["implementations"].items() if name.startswith("convolution")}
    int8 = [e for name, e in convs.items() if name.endswith(" u8")]
    fp32 = [e for name, e in convs.items() if name.endswith(" f32")]
    assert len(int8) == 1 and len(fp32) == 1, text
    available = peak.path_rates(peak.flags_now(), {})
    assert int8[0]["path"].startswith("int8_") and int8[0]["path"] in available
    assert fp32[0]["path"].startswith("fp32_") and fp32[0]["path"] in available
    assert abs(sum(parsed["path_shares"].values()) - 1) < 1e-3


def test_onednn_implementation_names_map_to_paths(peak):
    lines = "\n".join([
        "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
        ("onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_inference,"
         "src:u8::blocked:acdb::f0 wei:s8:a:blocked:AcdB64a4b::f0 dst:u8::blocked:acdb::f0,,"
         "alg:convolution_direct,mb256,3.0"),
        ("onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_vnni,forward_inference,"
         "src:u8::blocked:acdb::f0 wei:s8:a:blocked:AcdB16a4b::f0 dst:u8::blocked:acdb::f0,,"
         "alg:convolution_direct,mb256,1.0"),
        "onednn_verbose,exec,cpu,inner_product,brgemm:avx2_vnni,forward_inference,src_f32::blocked:ab:f0,,,mb1,0.5",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:abcd::f0,,,1x1,9.0"])
    parsed = peak.parse_onednn_verbose(lines)
    assert parsed["onednn_isa"].startswith("Intel AVX-512")
    assert {e["path"] for e in parsed["implementations"].values()} == {"int8_amx", "int8_avx512_vnni", "fp32_avx2"}
    # reorders left out
    assert parsed["path_shares"] == {"int8_amx": 0.6667, "int8_avx512_vnni": 0.2222, "fp32_avx2": 0.1111}
    assert peak.onednn_isa_path("jit_uni_int8:avx2", "u8") == "int8_avx2"
    assert peak.onednn_isa_path("brg_conv_fwd:avx512_core", "s8") == "int8_avx512bw"
    assert peak.onednn_isa_path("ref:any", "u8") is None


def test_instructions_name_their_path(peak):
    assert peak.instruction_path("tdpbusd %tmm5,%tmm4,%tmm0") == (0, "int8_amx")
    assert peak.instruction_path("vpdpbusd %zmm1,%zmm2,%zmm3")[1] == "int8_avx512_vnni"
    assert peak.instruction_path("{vex} vpdpbusd %ymm1,%ymm2,%ymm3")[1] == "int8_avx_vnni"
    assert peak.instruction_path("vpmaddubsw %ymm1,%ymm2,%ymm2")[1] == "int8_avx2"
    assert peak.instruction_path("vpmaddwd %zmm12,%zmm2,%zmm2")[1] == "int8_avx512bw"
    assert peak.instruction_path("vfmadd231ps (%rax),%ymm1,%ymm0")[1] == "fp32_avx2"
    assert peak.instruction_path("vfmadd231ss %xmm1,%xmm2,%xmm0") is None  # scalar tail
    assert peak.instruction_path("mov %rax,%rbx") is None


def perf_refused() -> str | None:
    if not (shutil.which("perf") and shutil.which("objdump")):
        return "needs perf and objdump"
    probe = subprocess.run(["perf", "stat", "-e", "cpu-clock:u", "true"], check=False, capture_output=True, text=True)
    return None if probe.returncode == 0 else f"perf refused: {probe.stderr.strip()[:80]}"


def test_perf_samples_see_the_fma_loop_of_an_fp32_matrix_multiply(peak):
    """MKL's sgemm is a loop of vfmadd ps: the samples land there, on an fp32 FMA path this CPU has (MKL may take
    AVX2 on an AMD CPU with AVX-512, so not necessarily the widest)."""
    if perf_refused():
        pytest.skip(perf_refused())
    a = torch.randn(1024, 1024)
    seen = peak.sampled_paths(lambda x: x @ x, a, seconds=0.5)
    assert seen["samples"] > 100 and seen["in_multiply_loops"] > seen["samples"] / 10, seen  # the rest: spin, Python
    path, share = next(iter(seen["path_shares"].items()))  # the largest share
    assert path in {p for p in peak.path_rates(peak.flags_now(), {}) if p.startswith("fp32")} and share > 0.9, seen


def test_fraction_of_peak_is_against_the_path_that_ran(peak):
    configs = {"fp32_baseline": get_config("fp32_baseline"), "ort_u8": get_config("ort_u8_minmax_qdq_per_channel"),
               "pt2e_u8": get_config("pt2e_u8_per_channel_minmax")}
    document = {"entries": {k: {"config_name": k, "runtimes": runtimes} for k, runtimes in {
        "fp32_baseline": {"onnxruntime": {"throughput_b256": 1000.0}},
        "ort_u8": {"onnxruntime": {"throughput_b256": 2000.0}},
        "pt2e_u8": {"inductor": {"throughput_b256": 4000.0}, "torch": {"error": "x"}}}.items()}}
    paths = {p: {"peak_macs_per_s": r * 1e9} for p, r in {"fp32_avx2": 100, "int8_avx2": 200, "int8_amx": 800}.items()}
    peak_doc = {"flags": AVX2, "paths": paths}
    dispatch = {("pt2e_u8", "inductor"): {"path": "int8_amx", "path_how": "observed: oneDNN verbose"}}
    rows = {r["config_name"]: r for r in peak.fractions_of_peak(document, 10_000_000, peak_doc, configs, dispatch)}
    assert rows["fp32_baseline"]["path"] == "fp32_avx2" and rows["fp32_baseline"]["fraction_of_peak"] == 0.1
    assert rows["ort_u8"]["path"] == "int8_avx2" and rows["ort_u8"]["path_how"].startswith("derived")
    assert rows["ort_u8"]["fraction_of_peak"] == 0.1
    assert rows["pt2e_u8"]["path"] == "int8_amx" and rows["pt2e_u8"]["fraction_of_peak"] == 0.05
    assert len(rows) == 3  # an errored runtime has no throughput, so no row


def test_simd_probes_measure_a_plausible_clock_and_peaks(peak):
    """simd_peak.c builds, its FMA rate gives a clock a real CPU can have, and each path's MACs per cycle is one a
    real core can retire."""
    flags = cpu_info()["flags"]
    if not (shutil.which(os.environ.get("CC", "cc")) and flags["avx2"] and flags["fma"]):
        pytest.skip("needs a C compiler and AVX2+FMA")
    result = peak.cpu_peak(1)
    assert result["clock_source"].startswith("measured") and 500 < result["clock_mhz"] < 7000
    rates = {p: v["macs_per_cycle_per_core"] for p, v in result["paths"].items()}
    assert rates["fp32_avx2"] == 16 and rates["int8_avx2"] == 32
    assert rates.get("fp32_avx512", 16) in (16, 32) and rates.get("int8_avx512_vnni", 64) in (64, 128)
    assert result["int8_over_fp32_peak_ratio"] >= 2


def test_amx_probes_build_and_refuse_cleanly_without_amx(peak, tmp_path):
    """The tile probes compile behind their guard and, where Linux grants no tile state, return -1 without
    executing a tile instruction (which would be SIGILL on this CPU); simd_rates then leaves them out."""
    if not shutil.which(os.environ.get("CC", "cc")) or not cpu_info()["flags"]["avx2"]:
        pytest.skip("needs a C compiler and AVX2")
    library = tmp_path / "simd_peak.so"
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", "-o",
                    str(library), str(BENCHMARKS / "simd_peak.c")], check=True)
    compiled = ctypes.CDLL(str(library))
    if not hasattr(compiled, "int8_amx"):
        pytest.skip("compiler without the AMX intrinsics: the probes are left out")
    if peak.flags_now()["amx_int8"]:
        pytest.skip("this CPU has AMX: the probe runs for real in test_simd_probes_measure_a_plausible_clock_and_peaks")
    for name in ("int8_amx", "bf16_amx"):
        probe = getattr(compiled, name)
        probe.restype, probe.argtypes = ctypes.c_double, [ctypes.c_long, ctypes.c_int]
        assert probe(1000, 1) == -1.0
    rates = peak.simd_rates(1, {**peak.flags_now(), "amx_int8": True, "amx_bf16": True, "amx_tile": True})
    assert "fp32_fma_ymm" in rates and not {"int8_amx", "bf16_amx"} & set(rates)
