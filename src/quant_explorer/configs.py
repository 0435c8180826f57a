"""Every quantization recipe as a named, declarative record, in one registry.

A config is data only; the backend registry (`backends.get_backend(config.backend)`) holds the code that applies
it, and `CAPABILITIES` what each backend takes, so a config is checked when it is made without importing any
backend. `register_config` adds one (a test's own, or a user's), refusing a name already taken.
Names are systematic so a user can read the recipe off them:
  ort_<act>_<calibration>_<format>_<granularity>[_rr]   e.g. ort_u8_minmax_qdq_per_channel_rr
  pt2e_<act>_<granularity>_<observer>[_rr]              e.g. pt2e_u8_per_channel_histogram
with act u8 = uint8 asymmetric, s8 = int8 symmetric, s8asym = int8 asymmetric activations.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, fields

from .registry import Registry

REFERENCE = "fp32_baseline"  # the config every delta is measured against
CALIBRATION_N = 256  # calibration images per static config: a stratified draw from the training split
DEFAULT_SEEDS = 5  # calibration draws per static config: one draw moves a recipe by up to ~2 points
MAX_SEED = 2**31 - 1  # the largest calibration seed any flag takes (a 32-bit signed integer, as every RNG takes)
ORT_CALIBRATIONS = ("minmax", "entropy", "percentile", "distribution")
ORT_FORMATS = ("qdq", "qoperator")
CALIBRATION_NOTES = {"distribution": " (symmetric ranges, whatever the activations: see backends.ort)",
                     "entropy": " (KL search over 2048 histogram bins, 128 quantized bins)",
                     "percentile": " (99.999th percentile of 2048 histogram bins)"}
# ORT's histogram calibrations, as configs record them. Entropy with ORT's default 128/128 bins leaves the KL
# search one candidate threshold, the full range, so it returned MinMax's ranges; TensorRT's 2048 histogram bins
# over 128 quantized bins give it 15 candidates per tensor. Percentile: ORT's defaults, written down.
HISTOGRAMS = {"entropy": {"calibration_bins": 2048, "quantized_bins": 128},
              "percentile": {"calibration_bins": 2048, "percentile": 99.999}}
DESCRIPTIVE = ("description", "default")  # words and sweep membership: they change no number
TORCH_OBSERVERS = ("minmax", "moving_average_minmax", "histogram")
ACTIVATIONS = {"u8": ("uint8", False), "s8": ("int8", True), "s8asym": ("int8", False)}
OBSERVER_TOKENS = {"minmax": "minmax", "movavg": "moving_average_minmax", "histogram": "histogram"}
GRANULARITIES = ("per_tensor", "per_channel")


@dataclass(frozen=True)
class Capabilities:
    """What a backend takes in a config. Declared here, where configs are checked as they are made, so that
    listing them imports no backend (torch, onnxruntime); each `Backend` record carries its backend's."""

    name: str  # the backend's
    calibrations: tuple[str, ...] = ()  # the calibration methods (or activation observers) it implements
    formats: tuple[str, ...] = ()  # the ONNX formats it writes; none: its configs set no format
    calibrated: bool = True  # quantized activations take calibration data (False: dynamic, ranges per batch)


# The built-in backends'; `backends.register` adds those of a backend declared elsewhere (a test's, a user's).
CAPABILITIES: Registry[Capabilities] = Registry("backend", lambda r: f"known: {', '.join(r)}")
for _capabilities in (
    Capabilities("fp32"),
    Capabilities("ort", calibrations=ORT_CALIBRATIONS, formats=ORT_FORMATS),
    Capabilities("pt2e", calibrations=TORCH_OBSERVERS),
    Capabilities("eager_static", calibrations=("minmax",)),  # backends.eager.qconfig: MinMax activations
    Capabilities("eager_dynamic", calibrated=False),
):
    CAPABILITIES.register(_capabilities)


@dataclass(frozen=True)
class QuantConfig:
    name: str
    backend: str
    description: str
    activation_dtype: str | None = None  # "uint8" | "int8"; None: weights only or FP32
    symmetric_activations: bool = False
    weight_dtype: str | None = None  # "int8"
    granularity: str | None = None  # weights: "per_tensor" | "per_channel"
    calibration: str | None = None  # ORT calibration method, or torch activation observer
    format: str | None = None  # ORT: "qdq" | "qoperator"
    reduce_range: bool = False
    calibration_bins: int | None = None  # ORT histogram calibrations: bins of the collected histogram
    quantized_bins: int | None = None  # ORT entropy: quantized bins the KL search compares
    percentile: float | None = None  # ORT percentile: the share of |x| the range keeps
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


def _ort_configs() -> list[QuantConfig]:
    defaults = {
        "ort_s8_minmax_qdq_per_channel", "ort_s8_minmax_qoperator_per_channel",
        "ort_s8asym_minmax_qdq_per_channel", "ort_s8asym_minmax_qdq_per_tensor",
        "ort_s8asym_minmax_qoperator_per_channel", "ort_s8asym_entropy_qdq_per_channel",
        "ort_s8asym_percentile_qdq_per_channel", "ort_s8asym_distribution_qdq_per_channel",
        "ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel_rr",
        "ort_u8_minmax_qoperator_per_channel", "ort_u8_minmax_qoperator_per_channel_rr",
    }
    out = []
    for act, (dtype, symmetric) in ACTIVATIONS.items():
        for calibration in ORT_CALIBRATIONS:
            for fmt in ORT_FORMATS:
                for granularity in GRANULARITIES:
                    for rr in (False, True):
                        name = f"ort_{act}_{calibration}_{fmt}_{granularity}" + ("_rr" if rr else "")
                        out.append(QuantConfig(
                            name, "ort",
                            f"ONNX Runtime quantize_static: {dtype} {'symmetric' if symmetric else 'asymmetric'} "
                            f"activations, int8 {granularity.replace('_', '-')} weights, {calibration} "
                            f"calibration{CALIBRATION_NOTES.get(calibration, '')}, {fmt.upper()}"
                            + (", reduce_range" if rr else ""),
                            activation_dtype=dtype, symmetric_activations=symmetric, weight_dtype="int8",
                            granularity=granularity, calibration=calibration, format=fmt, reduce_range=rr,
                            **HISTOGRAMS.get(calibration, {}), default=name in defaults))
    return out


def _pt2e_configs() -> list[QuantConfig]:
    defaults = {"pt2e_u8_per_channel_histogram", "pt2e_u8_per_channel_minmax", "pt2e_u8_per_tensor_minmax",
                "pt2e_u8_per_channel_movavg", "pt2e_u8_per_channel_minmax_rr"}
    out = []
    for act, (dtype, symmetric) in ACTIVATIONS.items():
        for granularity in GRANULARITIES:
            for token, observer in OBSERVER_TOKENS.items():
                # reduce_range (7-bit uint8 activations, X86InductorQuantizer's remedy for CPUs without VNNI)
                for rr in (False, True) if act == "u8" else (False,):
                    name = f"pt2e_{act}_{granularity}_{token}" + ("_rr" if rr else "")
                    out.append(QuantConfig(
                        name, "pt2e",
                        f"PT2E (torch.export + torchao): {dtype} {'symmetric' if symmetric else 'asymmetric'} "
                        f"activations ({observer} observer), int8 {granularity.replace('_', '-')} weights"
                        + (", reduce_range (7-bit activations)" if rr else ""),
                        activation_dtype=dtype, symmetric_activations=symmetric, weight_dtype="int8",
                        granularity=granularity, calibration=observer, reduce_range=rr, default=name in defaults))
    return out


CONFIGS: Registry[QuantConfig] = Registry("config", lambda r: f"`quant-explorer configs` lists all {len(r)}")
register_config, unregister_config = CONFIGS.register, CONFIGS.unregister

for _config in (
    QuantConfig(REFERENCE, "fp32", "no quantization: the reference every delta is computed against", default=True),
    QuantConfig("dynamic_int8", "eager_dynamic",
                "torch quantize_dynamic on nn.Linear only: a control that barely touches a conv net",
                weight_dtype="int8", granularity="per_tensor", default=True),
    QuantConfig("static_int8_per_tensor", "eager_static",
                "eager static PTQ: fused Conv-BN-ReLU, MinMax activations, per-tensor int8 weights",
                activation_dtype="uint8", weight_dtype="int8", granularity="per_tensor", calibration="minmax",
                default=True),
    QuantConfig("static_int8_per_channel", "eager_static",
                "eager static PTQ: fused Conv-BN-ReLU, MinMax activations, per-channel int8 weights",
                activation_dtype="uint8", weight_dtype="int8", granularity="per_channel", calibration="minmax",
                default=True),
    *_pt2e_configs(),
    *_ort_configs(),
):
    register_config(_config)


def get_config(name: str) -> QuantConfig:
    return CONFIGS.lookup(name)


def select_configs(patterns: list[str] | None = None, all_configs: bool = False) -> list[QuantConfig]:
    """Configs by name or glob (`ort_s8_*`), else the full grid with `all_configs`, else the default sweep."""
    if patterns:
        chosen: dict[str, QuantConfig] = {}
        for pattern in patterns:
            matches = [c for n, c in CONFIGS.items() if fnmatch.fnmatchcase(n, pattern)]
            for c in matches or [get_config(pattern)]:
                chosen[c.name] = c
        return list(chosen.values())
    return [c for c in CONFIGS.values() if all_configs or c.default]
