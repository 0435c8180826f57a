import pytest

from quant_explorer.backends import BACKENDS
from quant_explorer.configs import CAPABILITIES, CONFIGS, QuantConfig, get_config, register_config, select_configs
from quant_explorer.errors import UserError
from quant_explorer.results import load_results, save_entries

USER_NAMES = ("fp32_baseline", "dynamic_int8", "static_int8_per_tensor", "static_int8_per_channel")


def test_the_names_users_know_exist_and_every_backend_named_is_registered():
    assert all(name in CONFIGS for name in USER_NAMES)
    assert {c.backend for c in CONFIGS.values()} == set(BACKENDS)
    assert all(backend.capabilities is CAPABILITIES[name] for name, backend in BACKENDS.items())


def test_a_config_name_cannot_be_registered_twice():
    taken = CONFIGS["ort_u8_minmax_qdq_per_channel"]
    with pytest.raises(ValueError, match="already registered"):
        register_config(QuantConfig(taken.name, "pt2e", "another recipe under a taken name"))
    assert CONFIGS[taken.name] is taken


def test_every_config_round_trips_through_the_results_file(tmp_path):
    """A row stores its config record; reading the file back gives the same config, every field."""
    path = tmp_path / "full_results.json"
    save_entries(path, {name: {"config": c.to_dict()} for name, c in CONFIGS.items()})
    stored = load_results(path)["entries"]
    assert {name: QuantConfig(**e["config"]) for name, e in stored.items()} == CONFIGS


def test_names_read_off_the_recipe():
    ort = [c for c in CONFIGS.values() if c.format is not None]
    assert len(ort) == 3 * 4 * 2 * 2 * 2  # activation x calibration x format x granularity x reduce_range
    for c in ort:
        assert f"_{c.calibration}_" in c.name and f"_{c.format}_" in c.name and c.granularity in c.name
        assert c.name.endswith("_rr") == c.reduce_range
    assert {(c.activation_dtype, c.symmetric_activations) for c in ort} == {("uint8", False), ("int8", True),
                                                                           ("int8", False)}


@pytest.mark.parametrize("fields, message", [
    ({"granularity": "per_row"}, "granularity"),
    ({"calibration": "entropy"}, "calibration"),  # an ORT method on a torch backend
    ({"format": "qdq"}, "format 'qdq': pt2e writes no format"),
])
def test_an_inconsistent_record_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        QuantConfig("bad", "pt2e", "bad", **fields)


@pytest.mark.parametrize("backend, fields, message", [
    ("ort", {"calibration": "minmax"}, "format None: ort writes qdq or qoperator"),
    ("eager_static", {"calibration": "histogram"}, "not in eager_static's"),  # its qconfig observes MinMax only
    ("fp32", {"calibration": "minmax"}, "not in fp32's"),
])
def test_a_config_is_checked_against_its_backends_capabilities(backend, fields, message):
    with pytest.raises(ValueError, match=message):
        QuantConfig("bad", backend, "bad", **fields)


def test_a_config_for_an_unknown_backend_is_refused_by_name():
    with pytest.raises(UserError, match="unknown backend 'prt2e': did you mean pt2e"):
        QuantConfig("bad", "prt2e", "bad")


def test_calibration_follows_the_backend_not_the_dtype():
    """A backend that computes activation ranges per batch takes no calibration data, whatever the config says."""
    static = QuantConfig("s", "eager_static", "s", activation_dtype="uint8", weight_dtype="int8")
    dynamic = QuantConfig("d", "eager_dynamic", "d", activation_dtype="uint8", weight_dtype="int8")
    assert static.is_static and not dynamic.is_static
    assert {c.backend for c in CONFIGS.values() if c.is_static} == {"ort", "pt2e", "eager_static"}


def test_selection_by_glob_default_all_and_unknown_names():
    assert {c.name for c in select_configs(["ort_u8_minmax_qdq_*"])} == {
        "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_tensor_rr",
        "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel_rr"}
    defaults = select_configs()
    assert defaults[0].name == "fp32_baseline" and all(c.default for c in defaults)
    assert len(select_configs(all_configs=True)) == len(CONFIGS)
    with pytest.raises(UserError, match="did you mean pt2e_u8_per_channel_minmax"):
        get_config("pt2e_u8_per_chanel_minmax")
