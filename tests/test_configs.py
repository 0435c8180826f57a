import pytest

from quant_explorer.configs import CONFIGS, QuantConfig, select_configs

USER_NAMES = ("fp32_baseline", "dynamic_int8", "static_int8_per_tensor", "static_int8_per_channel")


def test_the_names_users_know_exist_and_names_are_unique():
    assert all(name in CONFIGS for name in USER_NAMES)
    assert all(name == config.name for name, config in CONFIGS.items())
    assert len({c.backend for c in CONFIGS.values()}) == 5


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_every_config_round_trips_and_reads_off_its_name(config):
    assert QuantConfig(**config.to_dict()) == config
    if config.backend == "ort":
        assert f"_{config.calibration}_" in config.name and f"_{config.format}_" in config.name
        assert config.name.endswith("_rr") == config.reduce_range
    if config.backend in ("ort", "pt2e"):
        assert config.granularity in config.name


def test_ort_grid_is_complete():
    ort = [c for c in CONFIGS.values() if c.backend == "ort"]
    assert len(ort) == 3 * 4 * 2 * 2 * 2
    assert {(c.activation_dtype, c.symmetric_activations) for c in ort} == {("uint8", False), ("int8", True),
                                                                           ("int8", False)}


def test_selection_by_glob_default_and_all():
    assert {c.name for c in select_configs(["ort_u8_minmax_qdq_*"])} == {
        "ort_u8_minmax_qdq_per_tensor", "ort_u8_minmax_qdq_per_tensor_rr",
        "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel_rr"}
    defaults = select_configs()
    assert defaults[0].name == "fp32_baseline" and all(c.default for c in defaults)
    assert len(select_configs(all_configs=True)) == len(CONFIGS)
