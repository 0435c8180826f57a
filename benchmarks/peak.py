"""The CPU's peak multiply-adds per second on each SIMD path, and which path a runtime's kernels ran, so that a
'fraction of peak' is measured against the limit of the code that actually executed.

    peak = cores x clock x MACs per cycle per core of the path
  - cores: CPUs this process may run on (sched_getaffinity); the fraction uses min(cores, --threads).
  - clock: measured. simd_peak.c runs register-only loops of one multiply-add instruction on every thread;
    AVX2 cores retire 2 vfmadd ymm (8 fp32 lanes) per cycle, so that loop's rate / (16 x threads) is the clock
    the cores hold under full vector load. Without a C compiler or AVX2, /proc/cpuinfo's 'cpu MHz': under a
    hypervisor the nominal (TSC) clock, below the boost clock, so peaks from it are too low.
Paths (MACs per cycle per core; a fused multiply-add is one MAC):
  fp32_avx2         vfmadd ymm: 2 FMA units x 8 lanes = 16.
  fp32_avx512       vfmadd zmm: measured, since cores differ: 32 with two 512-bit FMA units, 16 where 512-bit
                    ops run as two 256-bit halves (AMD Zen 4).
  int8_avx2         vpmaddubsw (u8 x s8 pairs -> int16, saturating) + vpmaddwd (-> int32) + vpaddd, or
  int8_avx512bw     vpmaddwd on widened int16: two multiply uops per 32 (ymm) MACs on the 2 vector-multiply
                    ports, 2x the fp32 rate at that width (derived, not measured).
  int8_avx_vnni     vpdpbusd ymm (VEX) / zmm (EVEX): 4 u8 x s8 MACs per int32 lane in one instruction, up to
  int8_avx512_vnni  4x the fp32 rate; measured.
  int8_amx          AMX-INT8: one tdpbusd is a 16x64 by 64x16 tile product, 16,384 MACs; Sapphire Rapids
                    issues one per 16 cycles per core: 1,024 MACs/cycle (Intel's "2,048 int8 ops per cycle"),
                    8x AVX512-VNNI on two FMA units.
  bf16_amx          AMX-BF16 tdpbf16ps: 16x16x32 = 8,192 MACs per 16 cycles: 512. Both are measured with
                    simd_peak.c's tile probes where the CPU has AMX and Linux grants tile state, else derived
                    from that throughput and the AVX2 clock (AMX runs at a lower licence clock: an upper bound).
MACs per image are counted exactly from the model: every Conv2d output element costs in_channels/groups x kH x kW
MACs, every Linear output in_features (ResNet8: 12,501,632; additions, BN, pooling not counted).
Measured MACs per cycle are rounded to a power of two (lanes x units); the raw rates are in "probe_macs_per_s".

Which path ran, per runtime (`dispatched`), most direct evidence first:
  - oneDNN (PyTorch eager convolutions, Inductor and AOTInductor's int8 and FP32 convolutions, the x86 quantized
    engine where it picks oneDNN): its verbose mode prints every primitive it executes with the implementation's
    name, e.g. jit_uni_int8:avx2, brg_conv_fwd:avx512_core_vnni, brg_conv_fwd:avx512_core_amx. It writes to
    the C stdout, so it is captured at the file-descriptor level; shares are by the primitives' own times.
  - every runtime, oneDNN included: perf samples this process's threads while the runner runs; each sampled
    instruction pointer's next 48 bytes are read from memory (JIT code too) and disassembled with objdump, and
    the sample takes the path of the multiply instruction found there (tdpbusd, vpdpbusd zmm/ymm, vpmaddubsw,
    vpmaddwd, vfmadd). This is how ONNX Runtime's MLAS and PyTorch's FBGEMM (x86 engine without VNNI) are
    seen: neither has a verbose switch, and the wheel's libonnxruntime is stripped of symbols.
  - derived from CPUID (when perf or objdump is missing or refused): the library's dispatch rule. MLAS picks
    its u8s8 QLinearConv kernels AVX2 -> AVX-VNNI -> AVX512BW -> AVX512-VNNI, later flags winning; its AMX
    kernel serves only U8S8 QGEMM, not the symmetric-weight convolution (ConvSym) a per-channel int8 conv
    uses. oneDNN takes the highest ISA (AMX for int8 where granted). FBGEMM has AVX2, AVX-512 and
    AVX512-VNNI kernels, no AMX.
"""

from __future__ import annotations

import collections
import ctypes
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quant_explorer.env import cpu_info

PROBE_ITERATIONS = 50_000_000  # ~0.2 s per try at 3 GHz
AMX_PROBE_ITERATIONS = 5_000_000  # 4 tile products of 16 cycles each per iteration: ~0.1 s
# runtimes that compute in int8 for int8 configs
INT8_RUNTIMES = {"onnxruntime", "inductor", "aotinductor", "x86", "qnnpack"}
AMX_MACS_PER_CYCLE = {"int8_amx": 16 * 16 * 64 // 16, "bf16_amx": 16 * 16 * 32 // 16}  # per tile product / 16 cycles
COMPUTE_PRIMITIVES = ("convolution", "inner_product", "matmul", "deconvolution")
SAMPLE_WINDOW = 48  # bytes disassembled from each sampled instruction pointer: a kernel loop's next few instructions
RUNTIME_LIBRARY = {"onnxruntime": "mlas", "torch": "onednn", "inductor": "onednn", "aotinductor": "onednn",
                   "x86": "onednn_or_fbgemm", "qnnpack": "qnnpack"}


def count_macs(module: nn.Module, shape=(1, 3, 32, 32)) -> dict:
    """Multiply-adds per image of every Conv2d and Linear, from a forward pass with hooks."""
    per_layer = {}

    def hook(name):
        def count(layer, inputs, output):
            if isinstance(layer, nn.Conv2d):
                k = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            else:
                k = layer.in_features
            per_layer[name] = output.numel() // output.shape[0] * k
        return count

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(shape))
    finally:
        for h in handles:
            h.remove()
    return {"macs_per_image": sum(per_layer.values()), "per_layer": per_layer}


def flags_now() -> dict[str, bool]:
    """This CPU's SIMD flags (quant_explorer.env), AMX-BF16 and AMX-TILE read here until env lists them."""
    flags = dict(cpu_info()["flags"])
    cpuinfo = Path("/proc/cpuinfo")
    present = set(next((line.split(":")[1].split() for line in cpuinfo.read_text().splitlines()
                        if line.startswith("flags")), [])) if cpuinfo.exists() else set()
    for flag in ("amx_bf16", "amx_tile"):
        flags.setdefault(flag, flag in present)
    return flags


def simd_rates(threads: int, flags: dict[str, bool]) -> dict[str, float]:
    """MACs/s of each simd_peak.c loop this CPU can run, best of 5; empty without a C compiler or AVX2+FMA."""
    probes = {"fp32_fma_ymm": flags["avx2"] and flags["fma"], "fp32_fma_zmm": flags["avx512f"],
              "int8_vnni_zmm": flags["avx512f"] and flags["avx512_vnni"], "int8_vnni_ymm": flags["avx_vnni"],
              "int8_amx": flags.get("amx_tile", False) and flags["amx_int8"],
              "bf16_amx": flags.get("amx_tile", False) and flags.get("amx_bf16", False)}
    if not probes["fp32_fma_ymm"]:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "simd_peak.so"
        try:
            subprocess.run([os.environ.get("CC", "cc"), "-O2", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC",
                            "-o", str(library), str(Path(__file__).with_name("simd_peak.c"))],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return {}
        compiled = ctypes.CDLL(str(library))
        runnable = [getattr(compiled, name) for name, runs_here in probes.items()
                    if runs_here and hasattr(compiled, name)]  # the AMX probes exist only where the compiler has AMX
        for probe in runnable:
            probe.restype, probe.argtypes = ctypes.c_double, [ctypes.c_long, ctypes.c_int]
        rounds = [[probe(AMX_PROBE_ITERATIONS if "amx" in probe.__name__ else PROBE_ITERATIONS, threads)
                   for probe in runnable] for _ in range(5)]  # interleaved
        rates = {probe.__name__: max(r) for probe, r in zip(runnable, zip(*rounds))}
    return {name: rate for name, rate in rates.items() if rate > 0}  # an AMX probe refused tile state: -1


def power_of_two(x: float) -> int:
    """The nearest power of two: SIMD lanes x execution units, what a core's MACs per cycle always is."""
    return 2 ** round(math.log2(x))


def path_rates(flags: dict[str, bool], measured: dict[str, float]) -> dict[str, tuple[int, str]]:
    """Path -> (MACs per cycle per core, how it is known) for each path this CPU has; `measured` holds the probes'
    MACs per cycle per core (simd_rates / clock / threads)."""
    def probe(name, fallback, assumed):
        if name in measured:
            return power_of_two(measured[name]), f"measured: {name} {measured[name]:.1f} MACs/cycle"
        return fallback, assumed

    paths = {"fp32_avx2": (16, "2 FMA units x 8 fp32 lanes")} if flags["avx2"] and flags["fma"] else {}
    if flags["avx512f"]:
        fp32_zmm, how = probe("fp32_fma_zmm", 32, "2 FMA units x 16 fp32 lanes (assumed)")
        paths["fp32_avx512"] = (max(16, fp32_zmm), how)
    if "fp32_avx2" in paths:
        paths["int8_avx2"] = (32, "vpmaddubsw + vpmaddwd on the 2 multiply ports: 2x fp32 ymm (derived)")
    if flags["avx512bw"] and "fp32_avx512" in paths:
        paths["int8_avx512bw"] = (2 * paths["fp32_avx512"][0], "vpmaddubsw zmm: 2x fp32 zmm (derived)")
    if flags["avx_vnni"]:
        paths["int8_avx_vnni"] = probe("int8_vnni_ymm", 64, "vpdpbusd ymm: 4x fp32 ymm (assumed)")
    if flags["avx512_vnni"] and "fp32_avx512" in paths:
        paths["int8_avx512_vnni"] = probe("int8_vnni_zmm", 4 * paths["fp32_avx512"][0],
                                          "vpdpbusd zmm: 4x fp32 zmm (assumed)")
    for name, flag in (("int8_amx", "amx_int8"), ("bf16_amx", "amx_bf16")):
        if flags.get(flag):
            paths[name] = probe(name, AMX_MACS_PER_CYCLE[name], "tile product per 16 cycles (derived, see docstring)")
    return paths


def cpu_peak(threads: int, flags: dict[str, bool] | None = None) -> dict:
    """Peak MACs/s of every path this CPU has: cores x measured clock x MACs per cycle (module docstring)."""
    flags = flags or flags_now()
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
           if line.startswith("cpu MHz")] if Path("/proc/cpuinfo").exists() else []
    nominal_hz = float(np.median(mhz)) * 1e6 if mhz else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    used = min(threads, cores)
    rates = simd_rates(used, flags)
    clock_hz = rates["fp32_fma_ymm"] / (16 * used) if rates else nominal_hz
    measured = {name: rate / (clock_hz * used) for name, rate in rates.items()}  # MACs per cycle per core
    paths = path_rates(flags, measured)
    fp32 = max((p for p in paths if p.startswith("fp32_")), key=lambda p: paths[p][0], default=None)
    int8 = max((p for p in paths if p.startswith("int8_")), key=lambda p: paths[p][0], default=None)
    out = {"cpu": cpu_info()["model"], "flags": flags, "cores_available": cores, "threads_used": used,
           "clock_mhz": round(clock_hz / 1e6, 1) if clock_hz else None,
           "clock_source": "measured (simd_peak.c: vfmadd ymm rate / 16 MACs per cycle)" if rates else "/proc/cpuinfo",
           "clock_mhz_proc_cpuinfo": round(nominal_hz / 1e6, 1) if nominal_hz else None,
           "probe_macs_per_s": {name: round(rate) for name, rate in rates.items()},
           "paths": {name: {"macs_per_cycle_per_core": per_cycle, "how": how,
                            **({"peak_macs_per_s": per_cycle * clock_hz * used} if clock_hz else {})}
                     for name, (per_cycle, how) in paths.items()},
           "best_fp32_path": fp32, "best_int8_path": int8}
    if fp32 and int8:  # the best paths, as the speed targets' ceiling
        out.update({"fp32_macs_per_cycle_per_core": paths[fp32][0], "int8_macs_per_cycle_per_core": paths[int8][0],
                    "int8_over_fp32_peak_ratio": paths[int8][0] / paths[fp32][0], "int8_how": paths[int8][1]})
    return out


def expected_path(runtime: str, int8: bool, flags: dict[str, bool]) -> str | None:
    """The path a runtime's library picks on a CPU with `flags` for int8 (else float) compute, by its dispatch
    rule (module docstring)."""
    if not int8:
        return "fp32_avx512" if flags["avx512f"] else "fp32_avx2" if flags["avx2"] and flags["fma"] else None
    library = RUNTIME_LIBRARY.get(runtime)
    if library == "onednn_or_fbgemm":  # PyTorch's x86 engine: oneDNN where the CPU has VNNI, else FBGEMM
        library = "onednn" if flags["avx512_vnni"] else "fbgemm"
    if library == "qnnpack" or not flags["avx2"]:
        return None  # SSE kernels: not modelled
    ladder = {"onednn": ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw"),
              "fbgemm": ("avx512_vnni", "avx512bw"), "mlas": ("avx512_vnni", "avx512bw", "avx_vnni")}[library]
    flag = next((f for f in ladder if flags.get(f)), None)
    return {"amx_int8": "int8_amx", "avx512_vnni": "int8_avx512_vnni", "avx_vnni": "int8_avx_vnni",
            "avx512bw": "int8_avx512bw", None: "int8_avx2"}[flag]


def onednn_isa_path(implementation: str, dtype: str) -> str | None:
    """A oneDNN implementation name (e.g. brg_conv_fwd:avx512_core_amx) and source data type as a path."""
    isa = implementation.rpartition(":")[2]
    wide = isa.startswith(("avx512", "avx10"))
    if dtype in ("u8", "s8"):
        if "amx" in isa:
            return "int8_amx"
        if "vnni" in isa or isa.startswith(("avx512_core_bf16", "avx512_core_fp16", "avx10")):
            return "int8_avx512_vnni" if wide else "int8_avx_vnni"
        return "int8_avx512bw" if wide else "int8_avx2" if isa.startswith("avx2") else None
    if dtype == "bf16" and "amx" in isa:
        return "bf16_amx"
    if dtype == "f32":
        return "fp32_avx512" if wide else "fp32_avx2" if isa.startswith("avx2") else None
    return None


def parse_onednn_verbose(text: str) -> dict:
    """oneDNN verbose lines -> the ISA oneDNN detected, the compute primitives by implementation, and the
    share of their time on each path. Handles v3 ('onednn_verbose,v1,primitive,exec,cpu,...') and older lines."""
    isa, implementations = None, {}
    for line in text.splitlines():
        fields = line.strip().split(",")
        if not fields[0].endswith("_verbose"):
            continue
        if "info" in fields and ",isa:" in line:  # the ISA's name has commas of its own
            isa = line.split(",isa:", 1)[1].strip()
        if "exec" not in fields:
            continue
        engine, primitive, implementation = fields[fields.index("exec") + 1:fields.index("exec") + 4]
        if engine != "cpu" or primitive not in COMPUTE_PRIMITIVES:
            continue
        src = re.search(r"[ ,]src[:_](?:(?:iter|layer)[:_])?([a-z]+\d*)", line)  # v3 src:u8, older src_u8
        dtype = src.group(1) if src else "?"
        entry = implementations.setdefault(f"{primitive} {implementation} {dtype}",
                                           {"calls": 0, "ms": 0.0, "path": onednn_isa_path(implementation, dtype)})
        entry["calls"] += 1
        try:
            entry["ms"] += float(fields[-1])
        except ValueError:
            pass
    total = sum(e["ms"] for e in implementations.values()) or 1.0
    shares: dict[str, float] = {}
    for e in implementations.values():
        shares[str(e["path"])] = shares.get(str(e["path"]), 0.0) + e["ms"] / total
    return {"onednn_isa": isa, "implementations": implementations,
            "path_shares": {p: round(s, 4) for p, s in sorted(shares.items(), key=lambda kv: -kv[1])}}


def onednn_verbose(run, x: torch.Tensor) -> str:
    """What oneDNN prints while `run(x)` runs once with verbose on, read from file descriptor 1."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                run(x)
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace")


INSTRUCTION_PATHS = [  # strongest first: (mnemonic pattern, operand width -> path)
    (re.compile(r"tdpb[su][su]d"), lambda width: "int8_amx"),
    (re.compile(r"tdpbf16ps"), lambda width: "bf16_amx"),
    (re.compile(r"vpdpbusds?"), lambda width: "int8_avx512_vnni" if width == "zmm" else "int8_avx_vnni"),
    (re.compile(r"vpmadd(ubsw|wd)"), lambda width: "int8_avx512bw" if width == "zmm" else "int8_avx2"),
    (re.compile(r"vfn?m(add|sub)\d+[ps]s"), lambda width: "fp32_avx512" if width == "zmm" else "fp32_avx2"),
]


def instruction_path(instruction: str) -> tuple[int, str] | None:
    """(rank, path) of one disassembled instruction ('vpdpbusd %zmm1,%zmm2,%zmm3'); xmm-only forms and scalar
    ones are left out (tails and bookkeeping, not a kernel's main loop)."""
    for rank, (pattern, path) in enumerate(INSTRUCTION_PATHS):
        if pattern.search(instruction):
            width = next((w for w in ("zmm", "ymm", "tmm") if f"%{w}" in instruction), None)
            return (rank, path(width)) if width else None
    return None


def executable_ranges() -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, perms = line.split()[:2]
        if "x" in perms:
            start, end = (int(v, 16) for v in span.split("-"))
            ranges.append((start, end))
    return ranges


def perf_record(run, x, seconds: float, data: Path, event: str, frequency: int) -> bytes:
    """Samples of this process by `perf record` into `data` while `run(x)` repeats for `seconds`; perf's stderr."""
    perf = subprocess.Popen(["perf", "record", "-q", "-e", event, "-F", str(frequency), "-p", str(os.getpid()),
                             "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and perf.poll() is None:
        run(x)
    perf.send_signal(signal.SIGINT)
    return perf.communicate(timeout=60)[1]


def sampled_paths(run, x: torch.Tensor, seconds: float = 1.0, top: int = 400) -> dict:
    """Share of on-CPU samples in each path's multiply instructions while `run(x)` repeats (module docstring)."""
    if not (shutil.which("perf") and shutil.which("objdump")):
        return {"error": "perf or objdump not found"}
    run(x)  # thread pools exist before perf attaches: it follows the threads there when it starts
    with tempfile.TemporaryDirectory() as tmp:
        data, blob = Path(tmp) / "perf.data", Path(tmp) / "code.bin"
        err = perf_record(run, x, seconds, data, "cpu-clock:u", 2000)
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip", f"--symfs={tmp}/none"],
                                check=False, capture_output=True, text=True)  # no symbol files: libtorch's take seconds
        if not data.exists() or script.returncode:
            return {"error": f"perf: {(err.decode() + script.stderr).strip().splitlines()[-1:] or 'no samples'}"}
        samples = collections.Counter(int(ip, 16) for ip in script.stdout.split())
        ranges = executable_ranges()
        windows = []
        for ip, _ in samples.most_common(top):
            end_of_map = next((end for start, end in ranges if start <= ip < end), None)
            if end_of_map:
                windows.append((ip, ctypes.string_at(ip, min(SAMPLE_WINDOW, end_of_map - ip))))
        stride = SAMPLE_WINDOW + 16  # each window padded with nops so that the next decodes from its first byte
        blob.write_bytes(b"".join(code.ljust(stride, b"\x90") for _, code in windows))
        listing = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", "--no-show-raw-insn",
                                  str(blob)], check=False, capture_output=True, text=True).stdout
    best: dict[int, tuple[int, str]] = {}
    for line in listing.splitlines():
        offset, _, instruction = line.strip().partition(":\t")
        if not re.fullmatch(r"[0-9a-f]+", offset) or int(offset, 16) % stride >= SAMPLE_WINDOW:
            continue
        found = instruction_path(instruction)
        index = int(offset, 16) // stride
        if found and (index not in best or found < best[index]):
            best[index] = found
    by_path: dict[str, int] = {}
    for index, (ip, _) in enumerate(windows):
        if index in best:
            by_path[best[index][1]] = by_path.get(best[index][1], 0) + samples[ip]
    total = sum(samples.values())
    return {"samples": total, "in_multiply_loops": sum(by_path.values()),
            "path_shares": {p: round(n / max(1, sum(by_path.values())), 4)
                            for p, n in sorted(by_path.items(), key=lambda kv: -kv[1])}}


def dispatched(runtime: str, run, x: torch.Tensor) -> dict:
    """Which path `run` (a runner of `runtime`) executed on `x`, with the evidence: oneDNN's verbose output where
    oneDNN ran the convolutions (its word wins), perf samples for every runtime. No "path" when neither saw one."""
    record: dict = {}
    if RUNTIME_LIBRARY.get(runtime, "").startswith("onednn"):
        verbose = parse_onednn_verbose(onednn_verbose(run, x))
        if any(name.startswith("convolution") for name in verbose["implementations"]):  # where a CNN's MACs are
            record["onednn"] = verbose
    record["perf"] = sampled_paths(run, x)
    for source, how in (("onednn", "observed: oneDNN verbose"), ("perf", "observed: perf samples")):
        named = [p for p in record.get(source, {}).get("path_shares", {}) if p != "None"]  # by share, largest first
        if named:
            record.update(path=named[0], path_how=how)
            break
    return record


def fractions_of_peak(document: dict, macs: int, peak: dict, configs: dict, dispatch: dict) -> list[dict]:
    """Per timed runtime: achieved MACs/s at batch 256 against the peak of the path that ran, the path named.
    `dispatch` maps (config name, runtime) to a `dispatched` record; without a path there, it is derived."""
    rows = []
    for entry in document["entries"].values():
        config = configs.get(entry["config_name"])
        for runtime, r in entry.get("runtimes", {}).items():
            if "throughput_b256" not in r:
                continue
            record = dispatch.get((entry["config_name"], runtime), {})
            if "path" not in record:
                int8 = config.is_static and runtime in INT8_RUNTIMES  # int8 activations: int8 kernels
                record = {"path": expected_path(runtime, int8, peak["flags"]),
                          "path_how": "derived from CPUID (not observed)"}
            limit = peak["paths"].get(record["path"] or "", {}).get("peak_macs_per_s")
            achieved = r["throughput_b256"] * macs
            rows.append({"config_name": entry["config_name"], "runtime": runtime, "path": record["path"],
                         "path_how": record["path_how"], "achieved_gmacs_per_s": round(achieved / 1e9, 2),
                         "peak_gmacs_per_s": round(limit / 1e9, 1) if limit else None,
                         "fraction_of_peak": round(achieved / limit, 4) if limit else None})
    return rows
