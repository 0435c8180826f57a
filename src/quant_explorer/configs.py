"""Every quantization recipe as a named, declarative record, in one registry.

A config is data only. Each backend declares the configs it offers and what it takes (`Capabilities`) in its own
module (`backends/`); registering the backend adds both here, where a config is checked as it is made. Look configs
up through `backends` (`get_config`, `select_configs`), which registers every backend first; `register_config` adds
one of a backend's own (a test's, a user's), refusing a name already taken. Names are systematic so a user can read
the recipe off them: <backend>_<act>_..., each backend's grammar in its module's docstring, with act u8 = uint8
asymmetric, s8 = int8 symmetric, s8asym = int8 asymmetric activations (`ACTIVATIONS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .registry import Registry

REFERENCE = "fp32_baseline"  # the config every delta is measured against
CALIBRATION_N = 256  # calibration images per static config: a stratified draw from the training split
DEFAULT_SEEDS = 5  # calibration draws per static config: one draw moves a recipe by up to ~2 points
MAX_SEED = 2**31 - 1  # the largest calibration seed any flag takes (a 32-bit signed integer, as every RNG takes)
DESCRIPTIVE = ("description", "default")  # words and sweep membership: they change no number
# the activations token of a config name -> (dtype, symmetric)
ACTIVATIONS = {"u8": ("uint8", False), "s8": ("int8", True), "s8asym": ("int8", False)}
GRANULARITIES = ("per_tensor", "per_channel")


@dataclass(frozen=True)
class Capabilities:
    """What a backend takes in a config, declared with the backend and registered here with it (`backends.register`),
    so that a config is checked as it is made."""

    name: str  # the backend's
    calibrations: tuple[str, ...] = ()  # the calibration methods (or activation observers) it implements
    formats: tuple[str, ...] = ()  # the ONNX formats it writes; none: its configs set no format
    calibrated: bool = True  # quantized activations take calibration data (False: dynamic, ranges per batch)


# Every registered backend's (`backends.register` adds them, `backends.unregister` takes them away).
CAPABILITIES: Registry[Capabilities] = Registry("backend", lambda r: f"known: {', '.join(r)}")


@dataclass(frozen=True)
class QuantConfig:
    name: str
    backend: str
    description: str
    activation_dtype: str | None = None  # "uint8" | "int8"; None: weights only or FP32
    symmetric_activations: bool = False
    weight_dtype: str | None = None  # "int8"
    granularity: str | None = None  # weights: "per_tensor" | "per_channel"
    calibration: str | None = None  # the calibration method or activation observer (`Capabilities.calibrations`)
    format: str | None = None  # the ONNX format written (`Capabilities.formats`): "qdq" | "qoperator"
    reduce_range: bool = False
    calibration_bins: int | None = None  # histogram calibrations: bins of the collected histogram
    quantized_bins: int | None = None  # entropy calibration: quantized bins the KL search compares
    percentile: float | None = None  # percentile calibration: the share of |x| the range keeps
    default: bool = False  # part of the default sweep

    def __post_init__(self) -> None:
        if self.granularity not in (None, *GRANULARITIES):
            raise ValueError(f"{self.name}: granularity {self.granularity!r}")
        takes = CAPABILITIES.lookup(self.backend)
        if self.calibration is not None and self.calibration not in takes.calibrations:
            raise ValueError(f"{self.name}: calibration {self.calibration!r} not in {self.backend}'s "
                             f"{takes.calibrations}")
        if self.format not in (takes.formats or (None,)):
            raise ValueError(f"{self.name}: format {self.format!r}: {self.backend} writes "
                             f"{' or '.join(takes.formats) or 'no format'}")

    @property
    def is_static(self) -> bool:
        """Static configs need calibration data; FP32 and dynamic ones do not."""
        return self.activation_dtype is not None and CAPABILITIES[self.backend].calibrated

    @property
    def u8s8(self) -> bool:
        """uint8 activations with int8 weights: the kernels that saturate on x86 CPUs without VNNI."""
        return self.activation_dtype == "uint8" and self.weight_dtype == "int8"

    def to_dict(self) -> dict:
        return asdict(self)

    def record(self) -> dict:
        """What the config sets that can change a number: fields away from their defaults, words left out. A new
        field with a default leaves every existing config's record (and so every stored row's identity) as it was."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in DESCRIPTIVE and getattr(self, f.name) != f.default}


# Every registered backend's configs, in registration order (`backends.register`); read them through `backends`.
CONFIGS: Registry[QuantConfig] = Registry("config", lambda r: f"`quant-explorer configs` lists all {len(r)}")
register_config, unregister_config = CONFIGS.register, CONFIGS.unregister

