"""What a stored result depends on, so it is reused only where it would come out the same.

A result's identity is a flat record of everything that can change its numbers: the model's weights, the
evaluation set (a fingerprint of its decoded pixels and labels), the calibration pool and the content of its
sample, the config record (what it sets, not its words), the backend's recipe version (bumped when its code
changes a number), the CPU's integer-kernel class and the versions of the libraries that quantize and run it.
Its hash is part of the row's key; rows whose identities differ live side by side in one results file.

The CPU class is what changes int8 numerics. MLAS (ORT) and oneDNN (PyTorch) pick their u8s8 kernels by
ISA: without VNNI they multiply with vpmaddubsw, whose int16 pair sums saturate (about 3 points lost on
ResNet8), with AVX-VNNI or AVX512-VNNI they use vpdpbusd (exact int32 sums), with AMX tile instructions.
Each of those is its own class; two CPUs of one class give the same predictions.

A lower class can be emulated on a higher one (`emulate`), by one of two methods, per backend
(`backends.emulation`): oneDNN's dispatcher cap (ONEDNN_MAX_CPU_ISA, read when oneDNN first runs) makes PyTorch's
oneDNN kernels those of the lower class, instruction for instruction (PT2E; FP32 where qemu is absent); qemu-user
runs the shipped runtime's evaluation as a CPU model of the class (`emulation.py`: ONNX Runtime, the eager x86
engine, FP32 in ONNX Runtime). Rows made so carry that class, `"emulated": true` and the method (`"emulation"`),
which keeps them apart from native rows of it. Rows made before the method was recorded were all made by oneDNN's
cap, and the hash leaves that method out: their keys stay as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import TYPE_CHECKING

import numpy as np

from . import aarch64, emulation
from .emulation import INSTALL, QEMU_CPU
from .env import cpu_info, library_versions, versioned_libraries
from .errors import UserError

if TYPE_CHECKING:  # listing configs and backends imports no torch
    import torch

# (class, the flags it needs): the first that the CPU has all flags of is its class
CPU_CLASSES = (("amx", ("amx_int8",)), ("avx512-vnni", ("avx512_vnni",)), ("avx-vnni", ("avx_vnni",)),
               ("avx512", ("avx512bw",)), ("avx2", ("avx2",)), ("sse4", ("sse4_2",)),
               ("arm64-dotprod", ("asimddp",)), ("arm64", ("asimd",)))  # ARM: emulated from any x86 class (qemu)
# identity field -> how a mismatch is said ("computed on another CPU class (avx2)"), in the order they are told
FIELD_WORDS = {"cpu_class": "on another CPU class", "emulated": "on an emulated CPU class",
               "emulation": "by another emulation method",
               "versions": "with other library versions",
               "model_weights_sha256": "with other weights of the model", "dataset": "on another evaluation set",
               "calibration_pool": "calibrated from another training split", "config": "with another config record",
               "recipe": "by another version of its backend's code",
               "calibration_sample": "calibrated on other images",
               "preprocessing": "with other input preprocessing"}
LEGACY = "by an older quant-explorer (no identity or per-image predictions)"
ISA_ENV = "QUANT_EXPLORER_ISA"  # the CPU class this process emulates (set by `emulate`, inherited by workers)
ONEDNN_ISA = {"avx2": "AVX2", "avx-vnni": "AVX2_VNNI", "avx512": "AVX512_CORE", "avx512-vnni": "AVX512_CORE_VNNI",
              "amx": "AVX512_CORE_AMX"}  # class -> oneDNN's name for its highest ISA
# The classes oneDNN's cap emulates on each class (what its instructions include); qemu adds `QEMU_CPU`'s below it.
CAPPED = {"amx": ("avx512-vnni", "avx-vnni", "avx512", "avx2"), "avx512-vnni": ("avx512", "avx2"),
          "avx-vnni": ("avx2",), "avx512": ("avx2",), "avx2": (), "sse4": ()}
CAP = "oneDNN cap"  # the method of every emulated row made before the method was recorded (left out of the hash)


def cpu_class(cpu: dict | None = None) -> str:
    """The int8-kernel class of a CPU (`env.cpu_info()` by default, or the class this process emulates): amx,
    avx512-vnni, avx-vnni, avx512, avx2."""
    if cpu is None and emulated_class():
        return emulated_class()
    flags = (cpu or cpu_info()).get("flags", {})
    return next((name for name, needs in CPU_CLASSES if all(flags.get(f) for f in needs)), "baseline")


def emulated_class() -> str | None:
    return os.environ.get(ISA_ENV) or None


def below(host: str) -> tuple[str, ...]:
    """The classes under `host`: what a CPU of it can emulate, by oneDNN's cap or by qemu (`QEMU_CPU`)."""
    names = [name for name, _ in CPU_CLASSES]
    lower = names[names.index(host) + 1:] if host in names else []
    return (*CAPPED.get(host, ()), *(c for c in QEMU_CPU if c in lower and c not in CAPPED.get(host, ())))


def emulable(host: str | None = None) -> tuple[str, ...]:
    """The classes this machine can emulate (`host`: its class): qemu's only where qemu-user is installed (ARM's
    where `make arm` built the aarch64 environment)."""
    host = host or cpu_class(cpu_info())
    return tuple(c for c in below(host) if c in CAPPED.get(host, ()) or emulation.available(c))


def emulate(isa: str, check: bool = False) -> str | None:
    """Run this process (and the workers it starts) as CPU class `isa`: 'native', this CPU's own class, or one
    below it. Call before any model work: oneDNN reads its cap once. `check`: start qemu once to see it is that class
    (`emulation.probe`, a second). Returns the emulated class, or None."""
    if not _emulable(isa):
        return None
    if check and isa in QEMU_CPU and emulation.available(isa):
        emulation.probe(isa)
    if isa in ONEDNN_ISA:
        os.environ["ONEDNN_MAX_CPU_ISA"] = ONEDNN_ISA[isa]
    os.environ[ISA_ENV] = isa
    return isa


@contextlib.contextmanager
def emulating(isa: str):
    """This process as class `isa` for the duration (the Python API's `isa`): qemu's runtimes run as that CPU; oneDNN's
    cap only where ONEDNN_MAX_CPU_ISA named the class before PyTorch started (oneDNN reads it once), else the
    backends it emulates are not measured (`backends.emulation`)."""
    previous = os.environ.get(ISA_ENV)
    if _emulable(isa):
        os.environ[ISA_ENV] = isa
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ISA_ENV, None)
        else:
            os.environ[ISA_ENV] = previous


def _emulable(isa: str) -> bool:
    """False for 'native' and this CPU's own class, True for a class this machine can emulate, else one line why."""
    host = cpu_class(cpu_info())
    if isa in ("native", host):
        return False
    known = [name for name, _ in CPU_CLASSES]
    if isa not in known:
        raise UserError(f"--isa {isa!r} is not a CPU class: choose native or one of {', '.join(known)}")
    if isa not in below(host):
        lower = ", ".join(emulable(host)) or "none"
        raise UserError(f"--isa {isa} is not below this CPU's class ({host}): a CPU runs only instructions it has "
                        f"(and qemu emulates no AVX-512 or VNNI CPU); classes it can emulate: {lower}")
    if isa not in emulable(host) and isa not in aarch64.CLASSES:  # ARM rows say "not measured: ... make arm"
        raise UserError(f"--isa {isa} is emulated by qemu-user, which is not installed: {INSTALL}")
    return True


def versions() -> dict:
    """The library versions in an identity: those that make the numbers (`env.versioned_libraries`)."""
    found = library_versions()
    return {name: found.get(name) for name in versioned_libraries()}


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """sha256 (16 hex digits) of the decoded uint8 pixels and the labels: the same images, whatever the path."""
    digest = hashlib.sha256(np.ascontiguousarray(images.numpy()).tobytes())
    digest.update(np.ascontiguousarray(labels.numpy().astype(np.int64)).tobytes())
    return digest.hexdigest()[:16]


def config_hash(record: dict) -> str:
    """Hash of a config's record (`QuantConfig.record`: the fields it sets, no descriptions)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def environment_id(identity: dict) -> str:
    """The part of an identity that is the machine and its libraries: 'avx2, onnxruntime 1.32.0, torch ...'."""
    cpu = identity["cpu_class"] + (" (emulated)" if identity.get("emulated") else "")
    return ", ".join([cpu, *(f"{k} {v}" for k, v in sorted(identity["versions"].items()))])


def make_identity(model_name: str, weights_sha256: str, dataset: dict, config: dict, recipe: str,
                  calibration: dict | None, emulation: str | None = None) -> dict:
    """The identity of one result row; `dataset` and `calibration` carry their fingerprints, `recipe` the hash
    version of the backend's code (`backends.recipe`), `emulation` how the emulated class runs its kernels
    (`backends.emulation`: None where it is not measured)."""
    return {"model": model_name, "model_weights_sha256": weights_sha256,
            "dataset": {k: dataset[k] for k in ("fingerprint", "n_images")},
            "calibration_pool": calibration["pool_fingerprint"] if calibration else None,
            "calibration": [calibration["calibration_n"], calibration["calibration_seed"]] if calibration else None,
            "calibration_sample": calibration["calibration_images_sha256"] if calibration else None,
            "config": config_hash(config), "recipe": recipe, "cpu_class": cpu_class(), "versions": versions(),
            **({"emulated": True, "emulation": emulation} if emulated_class() else {})}


def identity_hash(identity: dict) -> str:
    """sha256 (12 hex digits) of the identity; the method of rows made by oneDNN's cap is left out, as rows made
    before it was recorded have none (their keys stay)."""
    hashed = {k: v for k, v in identity.items() if (k, v) != ("emulation", CAP)}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:12]


def emulation_of(identity: dict) -> str | None:
    """How a row's class was emulated: its `emulation`, oneDNN's cap for emulated rows made before it was recorded,
    None for native rows."""
    return identity.get("emulation", CAP) if identity.get("emulated") else None


def legacy_identity(entry: dict) -> dict:
    """What a schema-1 row tells of its identity: its CPU class, versions and weights (no data fingerprint)."""
    env = entry.get("environment") or {}
    return {"legacy": True, "cpu_class": cpu_class(env.get("cpu") or {}),
            "versions": {k: (env.get("versions") or {}).get(k) for k in versioned_libraries()},
            "model_weights_sha256": entry.get("model_weights_sha256")}


def differences(stored: dict, wanted: dict) -> list[str]:
    """The identity fields in which a stored row differs from the wanted one, in words, in `FIELD_WORDS` order."""
    out = []
    for field, words in FIELD_WORDS.items():
        if field in stored and stored[field] != wanted.get(field):
            value = stored[field]
            if field == "versions":
                value = ", ".join(f"{k} {v}" for k, v in value.items() if wanted[field].get(k) != v)
            out.append(f"{words} ({value})" if isinstance(value, str) and len(value) < 40 else words)
    return out or ([LEGACY] if stored.get("legacy") else [])


def mismatch(stored: dict, wanted: dict) -> str | None:
    """The first identity field in which a stored row differs from the wanted one, in words; None if equal."""
    return next(iter(differences(stored, wanted)), None)
