"""Lower CPU classes emulated on a higher one by oneDNN's cap: refused above the host, keyed apart from native rows,
and equal to what a CPU of that class measures natively (qemu's side: test_emulation.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quant_explorer import identity
from quant_explorer.errors import UserError

from .conftest import SUBSET

AVX512_VNNI_HOST = {"flags": {"avx2": True, "avx512bw": True, "avx512_vnni": True}}
COMMITTED = Path(__file__).resolve().parents[1] / "artifacts" / "results" / "full_results.json"


@pytest.fixture
def host(monkeypatch):
    """An AVX-512 VNNI host, whatever this machine is; the emulation variables restored afterwards."""
    monkeypatch.setattr(identity, "cpu_info", lambda: AVX512_VNNI_HOST)
    for name in (identity.ISA_ENV, "ONEDNN_MAX_CPU_ISA"):  # recorded, so what `emulate` sets is undone afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_classes_below_the_host_are_emulated_and_keyed_apart(host):
    native = identity.make_identity("m", "w", {"fingerprint": "f", "n_images": 1}, {}, "ort v1", None)
    assert identity.emulate("native") is None and identity.emulate("avx512-vnni") is None  # its own class: native
    assert identity.emulate("avx2") == "avx2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    emulated = identity.make_identity("m", "w", {"fingerprint": "f", "n_images": 1}, {}, "ort v1", None)
    assert (native["cpu_class"], "emulated" in native) == ("avx512-vnni", False)
    assert (emulated["cpu_class"], emulated["emulated"]) == ("avx2", True)
    assert identity.identity_hash(native) != identity.identity_hash(emulated)
    assert identity.environment_id(emulated).startswith("avx2 (emulated), ")


@pytest.mark.parametrize("isa,words", [("amx", "not below this CPU's class (avx512-vnni)"),
                                       ("avx9", "not a CPU class")])
def test_a_class_above_the_host_or_unknown_is_refused_in_one_line(host, isa, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        identity.emulate(isa)
    assert identity.ISA_ENV not in os.environ


def _native(model: str, config: str, seed: int, isa: str) -> list[int]:
    """Correct counts that CPUs of class `isa` measured natively for this row, as committed (the row's own accuracy
    where it was scored in Inductor, else what its bench scored there)."""
    found = []
    for row in json.loads(COMMITTED.read_text())["entries"].values():
        ident = row.get("identity", {})
        if (row.get("model"), row.get("config_name"), ident.get("cpu_class"), ident.get("emulated")) != \
                (model, config, isa, None) or (row.get("calibration") or {}).get("calibration_seed") != seed:
            continue
        inductor = row["correct"] if row.get("runtime") == "inductor" else \
            row.get("bench", {}).get("runtimes", {}).get("inductor", {}).get("correct")
        found += [inductor] if inductor is not None else []
    return found


# One row scored as an AVX2 CPU, in a process of its own (oneDNN reads its cap once per process), as `--isa avx2`
# does before any model work; without the cross-checks (an AOTInductor compile): the shipped Inductor run is compared.
EMULATED_ROW = """
import json, sys
from quant_explorer import identity
identity.emulate("avx2")
from quant_explorer.configs import CALIBRATION_N
from quant_explorer.backends import get_config
from quant_explorer.data import EvalData
from quant_explorer.keys import make_calibration
from quant_explorer.experiment import run_config
from quant_explorer.models import load_model
model, data = load_model(sys.argv[1]), EvalData.load(sys.argv[2])
row, _ = run_config(model, get_config(sys.argv[3]), data, make_calibration(model, data, CALIBRATION_N, 0), None,
                    with_cross_checks=False)
print(json.dumps({field: getattr(row, field) for field in ("identity", "runtime", "correct", "error")}))
"""


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.shared_data
def test_emulated_avx2_scores_what_an_avx2_cpu_measured(tmp_path):
    if "avx2" not in identity.CAPPED.get(identity.cpu_class(identity.cpu_info()), ()):
        pytest.skip(f"this CPU ({identity.cpu_class(identity.cpu_info())}) cannot emulate avx2")
    native = _native("cifar_cnn", "pt2e_u8_per_channel_histogram", 0, "avx2")
    if not native:
        pytest.skip("no native avx2 measurement of this row is committed")
    env = {**os.environ, "QUANT_EXPLORER_ARTIFACTS": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", EMULATED_ROW, "cifar_cnn", str(SUBSET),
                          "pt2e_u8_per_channel_histogram"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    row = json.loads(run.stdout.splitlines()[-1])
    assert row["error"] is None and row["runtime"] == "inductor"
    assert row["identity"]["emulated"] and row["identity"]["cpu_class"] == "avx2"
    assert set(native) == {row["correct"]}  # image for image what the AVX2 machine measured (783/1,017 committed)


@pytest.mark.process
def test_a_ray_cluster_cannot_be_asked_to_emulate_a_class():
    """Its workers would not inherit the oneDNN cap: refused in one line before any work."""
    if not identity.emulable():
        pytest.skip("this CPU emulates no lower class")
    below = identity.emulable()[0]
    run = subprocess.run([sys.executable, "-c", "from quant_explorer.cli import main; main()", "sweep", "--isa", below,
                          "--executor", "ray"], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != identity.ISA_ENV})
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: --isa emulates a CPU class in this machine's processes only: use --executor local or processes with it"]
