"""What a stored result depends on, so it is reused only where it would come out the same.

A result's identity is a flat record of everything that can change its numbers: the model's weights, the
evaluation set (a fingerprint of its decoded pixels and labels), the calibration pool and sample, the full
config record, the CPU's integer-kernel class and the versions of the libraries that quantize and run it.
Its hash is part of the row's key; rows whose identities differ live side by side in one results file.

The CPU class is what changes int8 numerics. MLAS (ORT) and oneDNN (PyTorch) pick their u8s8 kernels by
ISA: without VNNI they multiply with vpmaddubsw, whose int16 pair sums saturate (about 3 points lost on
ResNet8), with AVX-VNNI or AVX512-VNNI they use vpdpbusd (exact int32 sums), with AMX tile instructions.
Each of those is its own class; two CPUs of one class give the same predictions.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from .env import cpu_info, library_versions

VERSIONED = ("onnxruntime", "torch", "torchao")  # the libraries whose kernels and passes make the numbers
# (class, the flags it needs): the first that the CPU has all flags of is its class
CPU_CLASSES = (("amx", ("amx_int8",)), ("avx512-vnni", ("avx512_vnni",)), ("avx-vnni", ("avx_vnni",)),
               ("avx512", ("avx512bw",)), ("avx2", ("avx2",)))
# identity field -> how a mismatch is said ("computed on another CPU class (avx2)"), in the order they are told
FIELD_WORDS = {"cpu_class": "on another CPU class", "versions": "with other library versions",
               "model_weights_sha256": "with other weights of the model", "dataset": "on another evaluation set",
               "calibration_pool": "calibrated from another training split", "config": "with another config record",
               "preprocessing": "with other input preprocessing"}
LEGACY = "by an older quant-explorer (no identity or per-image predictions)"


def cpu_class(cpu: dict | None = None) -> str:
    """The int8-kernel class of a CPU (`env.cpu_info()` by default): amx, avx512-vnni, avx-vnni, avx512, avx2."""
    flags = (cpu or cpu_info()).get("flags", {})
    return next((name for name, needs in CPU_CLASSES if all(flags.get(f) for f in needs)), "baseline")


def versions() -> dict:
    """The library versions in an identity (`VERSIONED`)."""
    found = library_versions()
    return {name: found.get(name) for name in VERSIONED}


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """sha256 (16 hex digits) of the decoded uint8 pixels and the labels: the same images, whatever the path."""
    digest = hashlib.sha256(np.ascontiguousarray(images.numpy()).tobytes())
    digest.update(np.ascontiguousarray(labels.numpy().astype(np.int64)).tobytes())
    return digest.hexdigest()[:16]


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def environment_id(identity: dict) -> str:
    """The part of an identity that is the machine and its libraries: 'avx2, onnxruntime 1.32.0, torch ...'."""
    return ", ".join([identity["cpu_class"], *(f"{k} {v}" for k, v in sorted(identity["versions"].items()))])


def make_identity(model_name: str, weights_sha256: str, dataset: dict, config: dict,
                  calibration: dict | None) -> dict:
    """The identity of one result row; `dataset` and `calibration` carry their fingerprints."""
    return {"model": model_name, "model_weights_sha256": weights_sha256,
            "dataset": {k: dataset[k] for k in ("fingerprint", "n_images")},
            "calibration_pool": calibration["pool_fingerprint"] if calibration else None,
            "calibration": [calibration["calibration_n"], calibration["calibration_seed"]] if calibration else None,
            "config": config_hash(config), "cpu_class": cpu_class(), "versions": versions()}


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def legacy_identity(entry: dict) -> dict:
    """What a schema-1 row tells of its identity: its CPU class, versions and weights (no data fingerprint)."""
    env = entry.get("environment") or {}
    return {"legacy": True, "cpu_class": cpu_class(env.get("cpu") or {}),
            "versions": {k: (env.get("versions") or {}).get(k) for k in VERSIONED},
            "model_weights_sha256": entry.get("model_weights_sha256")}


def mismatch(stored: dict, wanted: dict) -> str | None:
    """The first identity field in which a stored row differs from the wanted one, in words; None if equal."""
    for field, words in FIELD_WORDS.items():
        if field in stored and stored[field] != wanted.get(field):
            value = stored[field]
            if field == "versions":
                value = ", ".join(f"{k} {v}" for k, v in value.items() if wanted[field].get(k) != v)
            return f"{words} ({value})" if isinstance(value, str) and len(value) < 40 else words
    return LEGACY if stored.get("legacy") else None
