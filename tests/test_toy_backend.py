"""A backend registered from this file alone — an FP32 pass-through "fake quantizer" that brings its own runtime (a
runner defined here, in which the FP32 reference runs too), its configs and the libraries that make its numbers —
runs through sweep, summary, bench and report like any other: adding a backend touches its own module (and the one
line that registers it), nothing else."""

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from quant_explorer.backends import (
    BACKENDS,
    CONFIGS,
    Backend,
    QuantizedModel,
    Runtime,
    RuntimeBuild,
    get_backend,
    get_config,
    register,
    unregister,
)
from quant_explorer.bench import BenchSettings, bench_and_record
from quant_explorer.configs import CAPABILITIES, Capabilities, QuantConfig
from quant_explorer.data import EvalData
from quant_explorer.errors import UserError
from quant_explorer.identity import versions
from quant_explorer.models import load_model
from quant_explorer.paths import artifacts_dir, results_file
from quant_explorer.report import build
from quant_explorer.results import load_results
from quant_explorer.sweep import run_sweep


def toy_runner(module: torch.nn.Module):
    """The toy runtime: the module called under no_grad, batch in, logits out."""

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def fp32_in_toy(model, workdir):
    return None if model.module is None else RuntimeBuild(lambda _: toy_runner(model.module))


TOY_RUNTIME = Runtime("toyrt", "the toy backend's runner", baseline="toyrt", fp32=fp32_in_toy,
                      load="runner = toy_runner(torch.load({artifact!r}))  # {threads} thread(s)")


def fake_quantize(model, config, calibration, workdir):
    """Reads every calibration batch (so a static config's seeds are exercised), changes nothing."""
    seen = sum(len(batch) for batch in calibration.batches())
    path = workdir / "model.pt"
    torch.save(model.module.state_dict(), path)
    runtimes = {TOY_RUNTIME.name: RuntimeBuild(lambda _: toy_runner(model.module))}
    return QuantizedModel(path, TOY_RUNTIME.name, runtimes, checks={"calibration_images_seen": seen})


def configs():
    return [QuantConfig("toy_passthrough", "toy", "the FP32 model, unchanged", activation_dtype="uint8",
                        weight_dtype="int8", calibration="minmax")]


TOY = Backend("toy", "FP32 pass-through, for tests", fake_quantize, (TOY_RUNTIME,), color="tab:red",
              capabilities=Capabilities("toy", calibrations=("minmax",)), configs=configs, libraries=("pytest",))


@pytest.fixture
def toy():
    register(TOY)
    yield get_config("toy_passthrough")
    unregister("toy")


def test_a_backend_registered_here_runs_through_sweep_summary_bench_and_report(toy, tiny_env):
    from quant_explorer.cli import app

    model = load_model("resnet8", tiny_env / "resnet8.pt")
    data = EvalData.load(tiny_env / "data")
    fp32 = get_config("fp32_baseline")
    rows = {key: row for key, row, _ in run_sweep([model], [fp32, toy], data, 20, [0, 1], results_file())}
    toy_rows = [r for r in rows.values() if r.config_name == toy.name]
    assert len(toy_rows) == 2 and all(r.error is None for r in toy_rows)  # one row per calibration seed
    assert all(r.checks["calibration_images_seen"] == 20 and r.runtime == "toyrt" for r in toy_rows)
    assert all(r.agreement_with_fp32 >= 0.9 for r in toy_rows)  # its runner vs the FP32 reference in ONNX Runtime
    assert all(r.identity["versions"]["pytest"] == pytest.__version__ for r in rows.values())  # its libraries

    result = CliRunner().invoke(app, ["summary", "--json"])
    assert result.exit_code == 0, result.output
    record = next(r for r in json.loads(result.output)["rows"] if r["config"] == toy.name)
    assert record["seeds"] == [0, 1] and record["delta_pp_ci"][0] <= 0 <= record["delta_pp_ci"][1]

    settings = BenchSettings(threads=1, runs=2, batch_runs=1, rounds=1, warmup=1, batch=4, compile=False)
    document = bench_and_record(model, [toy], data, 20, 0, settings, results_file(),
                                results_file().with_name("bench_resnet8.json"))
    entry = next(e for e in document.entries.values() if e.config_name == toy.name)
    assert entry.runtime == "toyrt" and entry.runtimes["toyrt"].baseline == "fp32_baseline/toyrt"
    assert entry.speedup_vs_fp32_b256 > 0 and "toy_runner(torch.load(" in entry.load.code
    reference = next(e for e in document.entries.values() if e.config_name == fp32.name)
    assert reference.runtimes["toyrt"].latency_ms_b1_median is not None  # FP32 timed in the toy's runtime too
    assert "bench" in next(r for k, r in load_results(results_file())["entries"].items()
                           if r.get("config_name") == toy.name and "|seed=0|" in k)

    written = build(results_file().parent, artifacts_dir() / "report")
    assert toy.name in written["html"].read_text() and toy.name in written["markdown"].read_text()


def test_a_backend_brings_what_it_declares_and_takes_it_away(toy):
    """Registered here, the toy backend's capabilities check its configs, its runtime is one FP32 runs in and its
    libraries are in every identity; a taken name (its own, or one of its configs') is refused, leaving nothing of
    it registered; unregistered, all of it is gone."""
    def fp32_runtimes():
        return [r.name for r in get_backend("fp32").runtimes]

    with pytest.raises(ValueError, match="not in toy's"):
        QuantConfig("toy_histogram", "toy", "an observer the toy backend does not declare", calibration="histogram")
    assert "toyrt" in fp32_runtimes() and "pytest" in versions()
    taken = next(iter(BACKENDS))
    with pytest.raises(ValueError, match=f"backend '{taken}' is already registered"):
        register(replace(TOY, name=taken, capabilities=Capabilities(taken)))
    with pytest.raises(ValueError, match="config 'toy_passthrough' is already registered"):
        register(replace(TOY, name="toy2", capabilities=Capabilities("toy2", calibrations=("minmax",)),
                         configs=lambda: [replace(c, backend="toy2") for c in configs()]))
    assert "toy2" not in CAPABILITIES and "toy2" not in BACKENDS
    unregister("toy")
    assert "toy" not in CAPABILITIES and "toy_passthrough" not in CONFIGS
    assert "toyrt" not in fp32_runtimes() and "pytest" not in versions()
    with pytest.raises(UserError, match="unknown backend 'toy'"):
        QuantConfig("toy_again", "toy", "a config of a backend no longer registered")
