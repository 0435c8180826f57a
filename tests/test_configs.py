"""The configs every registered backend offers, in one registry: checked against what their backend takes as they are
made, names a user reads the recipe off. The tests loop over the registry: a backend added is tested here as it is."""

from dataclasses import replace

import pytest

from quant_explorer.backends import BACKENDS, CONFIGS, get_config, select_configs
from quant_explorer.configs import CAPABILITIES, QuantConfig, register_config
from quant_explorer.errors import UserError
from quant_explorer.results import load_results, save_entries

USER_NAMES = ("fp32_baseline", "dynamic_int8", "static_int8_per_tensor", "static_int8_per_channel")  # the README's
METHODS = {m for b in BACKENDS.values() for m in b.capabilities.calibrations}
FORMATS = {f for b in BACKENDS.values() for f in b.capabilities.formats}


def test_the_names_users_know_exist_and_each_backend_brings_its_configs_and_capabilities():
    assert all(name in CONFIGS for name in USER_NAMES)
    assert set(BACKENDS) == set(CAPABILITIES) == {c.backend for c in CONFIGS.values()}
    for name, backend in BACKENDS.items():
        assert backend.capabilities is CAPABILITIES[name]
        assert list(backend.configs()) == [c for c in CONFIGS.values() if c.backend == name]


def test_a_config_name_cannot_be_registered_twice():
    taken = select_configs()[-1]
    with pytest.raises(ValueError, match="already registered"):
        register_config(replace(taken, description="another recipe under a taken name", reduce_range=True))
    assert CONFIGS[taken.name] is taken


def test_every_config_round_trips_through_the_results_file(tmp_path):
    """A row stores its config record; reading the file back gives the same config, every field."""
    path = tmp_path / "full_results.json"
    save_entries(path, {name: {"config": c.to_dict()} for name, c in CONFIGS.items()})
    stored = load_results(path)["entries"]
    assert {name: QuantConfig(**e["config"]) for name, e in stored.items()} == CONFIGS


def test_names_read_off_the_recipe():
    onnx = [c for c in CONFIGS.values() if c.format is not None]
    assert len(onnx) == 3 * 4 * 2 * 2 * 2  # activation x calibration x format x granularity x reduce_range
    for c in onnx:
        assert f"_{c.calibration}_" in c.name and f"_{c.format}_" in c.name and c.granularity in c.name
        assert c.name.endswith("_rr") == c.reduce_range
    assert {(c.activation_dtype, c.symmetric_activations) for c in onnx} == {("uint8", False), ("int8", True),
                                                                            ("int8", False)}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_config_is_checked_against_its_backends_capabilities(backend):
    """A calibration or format another backend takes and this one does not, an unknown granularity, and (for a
    backend that writes formats) no format: each refused as the config is made."""
    takes = BACKENDS[backend].capabilities
    fmt = (takes.formats or (None,))[0]
    with pytest.raises(ValueError, match="granularity"):
        QuantConfig("bad", backend, "bad", granularity="per_row", format=fmt)
    for method in sorted(METHODS - set(takes.calibrations)):
        with pytest.raises(ValueError, match=f"calibration {method!r} not in {backend}'s"):
            QuantConfig("bad", backend, "bad", calibration=method, format=fmt)
    for other in sorted(FORMATS - set(takes.formats)) + ([None] if takes.formats else []):
        with pytest.raises(ValueError, match=f"format {other!r}: {backend} writes"):
            QuantConfig("bad", backend, "bad", format=other)


def test_a_config_for_an_unknown_backend_is_refused_by_name():
    name = list(BACKENDS)[-1]
    with pytest.raises(UserError, match=f"unknown backend '{name}x': did you mean {name}"):
        QuantConfig("bad", f"{name}x", "bad")


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_calibration_follows_the_backend_not_the_dtype(backend):
    """A backend that computes activation ranges per batch takes no calibration data, whatever the config says."""
    takes = BACKENDS[backend].capabilities
    config = QuantConfig("q", backend, "q", activation_dtype="uint8", weight_dtype="int8",
                         format=(takes.formats or (None,))[0])
    assert config.is_static == takes.calibrated
    assert all(c.is_static == (takes.calibrated and c.activation_dtype is not None)
               for c in CONFIGS.values() if c.backend == backend)


def test_selection_by_glob_default_all_and_unknown_names():
    assert {c.name for c in select_configs(["ort_u8_minmax_qdq_*"])} == {
        "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_tensor_rr",
        "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel_rr"}
    defaults = select_configs()
    assert defaults[0].name == "fp32_baseline" and all(c.default for c in defaults)
    assert len(select_configs(all_configs=True)) == len(CONFIGS)
    with pytest.raises(UserError, match="did you mean pt2e_u8_per_channel_minmax"):
        get_config("pt2e_u8_per_chanel_minmax")
