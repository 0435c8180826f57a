"""A backend registered from this file alone — an FP32 pass-through "fake quantizer" — runs through sweep,
summary, bench and report: adding a backend touches one module, its own."""

import json

import pytest
import torch
from typer.testing import CliRunner

from quant_explorer.backends import Backend, QuantizedModel, RuntimeBuild, register, unregister
from quant_explorer.bench import BenchSettings, bench_and_record
from quant_explorer.configs import (
    CAPABILITIES,
    Capabilities,
    QuantConfig,
    get_config,
    register_config,
    unregister_config,
)
from quant_explorer.data import EvalData
from quant_explorer.errors import UserError
from quant_explorer.models import load_model
from quant_explorer.paths import artifacts_dir, results_file
from quant_explorer.report import build
from quant_explorer.results import load_results
from quant_explorer.runtimes import Runtime, torch_runner
from quant_explorer.sweep import run_sweep

PASSTHROUGH = Runtime("passthrough", "the toy backend's eager FP32 module", baseline="torch")


def fake_quantize(model, config, calibration, workdir):
    """Reads every calibration batch (so a static config's seeds are exercised), changes nothing."""
    seen = sum(len(batch) for batch in calibration.batches())
    path = workdir / "model.pt"
    torch.save(model.module.state_dict(), path)
    runtimes = {PASSTHROUGH.name: RuntimeBuild(lambda _: torch_runner(model.module))}
    return QuantizedModel(path, PASSTHROUGH.name, runtimes, checks={"calibration_images_seen": seen})


@pytest.fixture
def toy():
    register(Backend("toy", "FP32 pass-through, for tests", fake_quantize, (PASSTHROUGH,), color="tab:red",
                     capabilities=Capabilities("toy", calibrations=("minmax",))))
    config = register_config(QuantConfig("toy_passthrough", "toy", "the FP32 model, unchanged",
                                         activation_dtype="uint8", weight_dtype="int8", calibration="minmax"))
    yield config
    unregister_config(config.name)
    unregister("toy")


def test_a_backend_registered_here_runs_through_sweep_summary_bench_and_report(toy, tiny_env):
    from quant_explorer.cli import app

    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    fp32 = get_config("fp32_baseline")
    rows = {key: row for key, row, _ in run_sweep([model], [fp32, toy], data, 20, [0, 1], results_file())}
    toy_rows = [r for r in rows.values() if r.config_name == toy.name]
    assert len(toy_rows) == 2 and all(r.error is None for r in toy_rows)  # one row per calibration seed
    assert all(r.checks["calibration_images_seen"] == 20 and r.runtime == "passthrough" for r in toy_rows)
    assert all(r.agreement_with_fp32 >= 0.9 for r in toy_rows)  # eager torch vs the ORT reference

    result = CliRunner().invoke(app, ["summary", "--json"])
    assert result.exit_code == 0, result.output
    record = next(r for r in json.loads(result.output)["rows"] if r["config"] == toy.name)
    assert record["seeds"] == [0, 1] and record["delta_pp_ci"][0] <= 0 <= record["delta_pp_ci"][1]

    settings = BenchSettings(threads=1, runs=2, batch_runs=1, rounds=1, warmup=1, batch=4, compile=False)
    document = bench_and_record(model, [toy], data, 20, 0, settings, results_file(),
                                results_file().with_name("bench_resnet8.json"))
    entry = next(e for e in document.entries.values() if e.config_name == toy.name)
    assert entry.runtime == "passthrough" and entry.runtimes["passthrough"].baseline == "fp32_baseline/torch"
    assert entry.speedup_vs_fp32_b256 > 0
    assert "bench" in next(r for k, r in load_results(results_file())["entries"].items()
                           if r.get("config_name") == toy.name and "|seed=0|" in k)

    written = build(results_file().parent, artifacts_dir() / "report")
    assert toy.name in written["html"].read_text() and toy.name in written["markdown"].read_text()


def test_a_backend_brings_its_capabilities_and_takes_them_away(toy):
    """Registered here, the toy backend's capabilities check its configs; a conflicting declaration is refused."""
    with pytest.raises(ValueError, match="not in toy's"):
        QuantConfig("toy_histogram", "toy", "an observer the toy backend does not declare", calibration="histogram")
    with pytest.raises(ValueError, match="declares other capabilities"):
        register(Backend("ort", "ORT that takes no format", fake_quantize, (PASSTHROUGH,),
                         capabilities=Capabilities("ort")))
    unregister("toy")
    assert "toy" not in CAPABILITIES
    with pytest.raises(UserError, match="unknown backend 'toy'"):
        QuantConfig("toy_again", "toy", "a config of a backend no longer registered")
