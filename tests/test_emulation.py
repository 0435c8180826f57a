"""Lower classes under qemu-user: each backend emulated by the method that reaches its kernels, keyed by it, refused
in one line where it cannot be, and an emulated AVX2 row equal, image for image, to what an AVX2 CPU measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from quant_explorer import aarch64, emulation, identity
from quant_explorer.backends import Calibration, get_config, quantize
from quant_explorer.backends import emulation as method_of
from quant_explorer.errors import NotApplicable, UserError

from .conftest import SUBSET
from .test_isa import AVX512_VNNI_HOST, COMMITTED

QEMU = emulation.qemu_path()
needs_qemu = pytest.mark.skipif(QEMU is None, reason=f"qemu-user is not installed ({emulation.INSTALL})")


@pytest.fixture
def host(monkeypatch):
    """An AVX-512 VNNI host with qemu-user (without the aarch64 environment), whatever this machine is; the emulation
    variables restored afterwards."""
    monkeypatch.setattr(identity, "cpu_info", lambda: AVX512_VNNI_HOST)
    monkeypatch.setattr(emulation, "qemu_path", lambda: "/usr/bin/qemu-x86_64")
    monkeypatch.setattr(aarch64, "ready", lambda: None)  # ARM's environment (`make arm`): tests/test_aarch64.py
    for name in (identity.ISA_ENV, "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def _identity(isa_method: str | None) -> dict:
    return identity.make_identity("m", "w", {"fingerprint": "f", "n_images": 1}, {}, "ort v1", None, isa_method)


def test_each_backend_is_emulated_by_the_method_that_reaches_its_kernels(host):
    identity.emulate("avx2")
    assert {b: method_of(b) for b in ("ort", "eager_static", "fp32", "pt2e")} == {
        "ort": "qemu Haswell-v4", "eager_static": "qemu Haswell-v4", "fp32": "oneDNN cap", "pt2e": "oneDNN cap"}
    identity.emulate("avx512")  # qemu emulates no AVX-512 CPU
    assert {b: method_of(b) for b in ("ort", "eager_static", "fp32", "pt2e")} == {
        "ort": None, "eager_static": None, "fp32": "oneDNN cap", "pt2e": "oneDNN cap"}
    identity.emulate("sse4")  # oneDNN's cap has no SSE4 level
    assert (method_of("ort"), method_of("fp32"), method_of("pt2e")) == ("qemu Nehalem", "qemu Nehalem", None)
    host.setattr(emulation, "qemu_path", lambda: None)
    identity.emulate("avx2")
    assert (method_of("ort"), method_of("fp32")) == (None, "oneDNN cap")  # FP32 still has its capped runtime
    host.delenv("ONEDNN_MAX_CPU_ISA")  # the API's emulation: oneDNN's cap not set before PyTorch started
    host.setattr(emulation, "qemu_path", lambda: "/usr/bin/qemu-x86_64")
    with identity.emulating("avx2"):
        assert (method_of("pt2e"), method_of("fp32")) == (None, "qemu Haswell-v4")
    assert identity.emulated_class() == "avx2"  # as it was before


def test_rows_carry_the_method_and_capped_rows_keep_the_keys_they_had(host):
    host.setenv(identity.ISA_ENV, "avx2")
    capped, qemu, unmeasured = _identity("oneDNN cap"), _identity("qemu Haswell-v4"), _identity(None)
    before = {k: v for k, v in capped.items() if k != "emulation"}  # a row stored before the method was recorded
    assert capped["emulation"] == "oneDNN cap" and identity.identity_hash(capped) == identity.identity_hash(before)
    assert len({identity.identity_hash(i) for i in (capped, qemu, unmeasured)}) == 3
    assert [identity.emulation_of(i) for i in (before, qemu, unmeasured)] == ["oneDNN cap", "qemu Haswell-v4", None]
    assert identity.differences(qemu, capped) == ["by another emulation method (qemu Haswell-v4)"]


@pytest.mark.parametrize("isa,qemu,words", [
    ("avx2", False, "not measured: qemu-user is not installed (apt-get install qemu-user)"),
    ("avx512", True, "not measured on avx512: onnxruntime, onnx2torch pick their int8 kernels by CPUID with no "
                     "runtime cap, and qemu emulates no AVX-512 or VNNI CPU")])
def test_a_runtime_no_method_reaches_is_not_measured_and_says_why(host, tmp_path, isa, qemu, words):
    from quant_explorer.data import load_split

    from .conftest import random_model, write_image_folder

    images = load_split(write_image_folder(tmp_path / "data", n_train=20, n_test=10), "train")
    model = random_model("cifar_cnn", images.images)
    host.setenv(identity.ISA_ENV, isa)
    if not qemu:
        host.setattr(emulation, "qemu_path", lambda: None)
    with pytest.raises(NotApplicable, match=words.replace("(", r"\(").replace(")", r"\)")):
        quantize(model, get_config("ort_u8_minmax_qdq_per_channel"), Calibration(images, model.preprocessing, 0),
                 tmp_path)


def test_the_classes_this_cpu_emulates_and_a_qemu_class_refused_without_qemu(host):
    assert identity.emulable() == ("avx512", "avx2", "sse4")
    assert identity.emulate("sse4") == "sse4" and "ONEDNN_MAX_CPU_ISA" not in os.environ  # qemu only: no cap
    host.delenv(identity.ISA_ENV)
    host.setattr(emulation, "qemu_path", lambda: None)
    assert identity.emulable() == ("avx512", "avx2")
    with pytest.raises(UserError, match=r"--isa sse4 is emulated by qemu-user, which is not installed: apt-get"):
        identity.emulate("sse4")


@pytest.mark.process
@needs_qemu
def test_an_emulated_process_that_is_not_the_class_it_claims_is_refused(monkeypatch):
    """Checked by CPUID as the process's own libraries read it (numpy's detection), not /proc/cpuinfo (the host's)."""
    monkeypatch.setitem(emulation.QEMU_CPU, "avx2", "SandyBridge")  # AVX without AVX2: an SSE4-class CPU to numpy
    with pytest.raises(emulation.EmulationError, match=r"^qemu-x86_64 -cpu SandyBridge runs as sse4 \(numpy's CPUID "
                                                       r"detection\), not avx2: its rows would not be that class's"):
        emulation.probe("avx2")


def _stored_native(model: str, config: str, seed: int) -> dict | None:
    """The committed row an AVX2 machine measured natively (identity of an older quant-explorer: no recipe)."""
    for row in json.loads(COMMITTED.read_text())["entries"].values():
        ident = row.get("identity") or {}
        if ((row.get("model"), row.get("config_name"), ident.get("cpu_class"), ident.get("emulated")) ==
                (model, config, "avx2", None) and (row.get("calibration") or {}).get("calibration_seed") == seed):
            return row
    return None


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.shared_data
def test_emulated_avx2_reproduces_the_stored_native_avx2_row_image_for_image(tmp_path):
    """`quantize --isa avx2` on a VNNI or AMX CPU gives the predictions the AVX2 CPU stored (822 of 1,017 right):
    calibrated natively, evaluated by ONNX Runtime under qemu as a Haswell. On an AVX2 CPU it is the native run."""
    host = identity.cpu_class(identity.cpu_info())
    if host != "avx2" and ("avx2" not in identity.below(host) or QEMU is None):
        pytest.skip(f"this CPU ({host}) cannot run avx2's kernels here (qemu-user: {QEMU or 'not installed'})")
    stored = _stored_native("resnet8", "ort_u8_minmax_qdq_per_channel", 0)
    if stored is None:
        pytest.skip("no native avx2 row of it is committed")
    env = {**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(tmp_path), "QUANT_EXPLORER_DATA": str(SUBSET)}
    run = subprocess.run([sys.executable, "-m", "quant_explorer", "quantize", "--model", "resnet8", "--config",
                          "ort_u8_minmax_qdq_per_channel", "--seed", "0", "--isa", "avx2", "--json"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout)
    assert (answer["cpu_class"], answer["runtime"]) == ("avx2", "onnxruntime")
    assert answer["emulation"] == (None if host == "avx2" else "qemu Haswell-v4")
    assert answer["fp32"]["emulation"] == (None if host == "avx2" else "oneDNN cap")  # FP32: the same on every class
    assert answer["row"]["predictions"] == stored["predictions"] and answer["correct"] == stored["correct"]


@pytest.mark.process
@pytest.mark.slow
@needs_qemu
def test_the_python_api_explores_as_an_emulated_class_and_picks_for_it(tmp_path):
    """`explore(..., isa="avx2")` on a user's module: FP32 and ONNX Runtime scored under qemu as a Haswell, PT2E not
    measured (oneDNN's cap was not set before PyTorch started in this process), the view that of avx2 (emulated);
    `deploy=["avx2"]` explores both and makes the pick hold on avx2."""
    import quant_explorer as qe

    from .test_api import blobs, trained

    if "avx2" not in identity.below(identity.cpu_class(identity.cpu_info())):
        pytest.skip("this CPU is not above avx2")
    train, test = blobs(120, 0), blobs(60, 1)
    result = qe.explore(trained(train), calibration=train, evaluation=test, seeds=1, calibration_n=60,
                        configs=["ort_u8_minmax_qdq_per_channel", "pt2e_u8_per_channel_minmax"],
                        artifacts_dir=tmp_path, isa="avx2")
    assert result.view.environment.startswith("avx2 (emulated), ")
    rows = {r["config"]: r for r in result.rows}
    assert rows["fp32_baseline"]["runtime"] == rows["ort_u8_minmax_qdq_per_channel"]["runtime"] == "onnxruntime"
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in rows["pt2e_u8_per_channel_minmax"]["not_applicable"]
    assert identity.emulated_class() is None  # only for the call
    # deploy=["avx2"]: explored here too (the avx2 rows above are reused), and the pick holds on avx2 where measured
    deployed = qe.explore(trained(train), calibration=train, evaluation=test, seeds=1, calibration_n=60,
                          configs=["ort_u8_minmax_qdq_per_channel", "pt2e_u8_per_channel_minmax"],
                          artifacts_dir=tmp_path, deploy=["avx2"])
    assert not deployed.view.environment.startswith("avx2") and deployed.pick is not None
    assert deployed.view.choices[deployed.model].deploy.classes == ["avx2 (emulated)"]
