"""What one stored row says about itself: where and on what it was measured (its environment and evaluation set),
the recipe it stands for (its identity without the calibration draw); and of a view's record, whether it is
quantized and how fast and how large it is against FP32.

Every step of the view (`summary.load_view`) and every study reads rows through these, so rows of different
machines, data or recipes are told apart the same way everywhere.
"""

from __future__ import annotations

from ..bench_entry import BenchEntry
from ..configs import REFERENCE
from ..identity import cpu_class, environment_id, legacy_identity, versions
from ..row import Row

SEED_FIELDS = ("calibration_sample",)  # identity fields that are the calibration draw (besides the seed itself)


def _identity(row: Row) -> dict:
    """The row's identity; a schema-1 row's, as far as it tells (`identity.legacy_identity`)."""
    return row.identity if row.identity is not None else legacy_identity(row.to_dict())


def row_environment(row: Row) -> str:
    return environment_id(_identity(row))


def row_dataset(row: Row) -> str:
    """The evaluation set's fingerprint; schema-1 rows, which have none, go by name and size."""
    if row.identity is not None:
        return row.identity["dataset"]["fingerprint"]
    return f"{row.dataset} ({row.n_images} images)"


def this_environment() -> str:
    return environment_id({"cpu_class": cpu_class(), "versions": versions()})


def is_current(row: Row) -> bool:
    """Measured by this quant-explorer: per-image predictions (what every tie and pick needs) of the runtime users
    ship, under an identity that names its recipe version. Older rows scored some configs in their float reference
    (PT2E in eager PyTorch, eager static on qnnpack): they are shown, never the basis of a set or a pick."""
    return row.predictions is not None and "recipe" in (row.identity or {})


def recipe_identity(row: Row) -> dict:
    """The row's identity without its calibration draw: rows that share it are seeds of one recipe."""
    identity = dict(row.identity) if row.identity is not None else {**_identity(row), "config": row.config_name}
    for name in SEED_FIELDS:
        identity.pop(name, None)
    calibration = identity.get("calibration")
    if isinstance(calibration, (list, tuple)):
        identity["calibration"] = calibration[:1]  # [n, seed, ...]: the size is the recipe, the rest the draw
    elif isinstance(calibration, dict):
        identity["calibration"] = calibration.get("calibration_n", calibration.get("n"))
    return identity


def is_quantized(row: Row) -> bool:
    """A row (or a view's record, `View.rows`) of a quantized config, not the FP32 reference."""
    return row.config_name != REFERENCE


def speedup(row: Row, batch: int) -> tuple[float | None, str]:
    """A config's speed ratio at batch 1 (latency) or 256 (throughput) and what it is against: the fastest FP32
    runtime where the bench recorded it, else FP32 in the same runtime."""
    bench = row.bench or BenchEntry()
    # against the fastest FP32 runtime, that runtime's name, and the older ratio against FP32 in one runtime
    fastest, name, same = ((bench.latency_speedup_vs_fastest_fp32_b1, bench.fastest_fp32_b1,
                            bench.latency_speedup_vs_fp32_b1) if batch == 1 else
                           (bench.speedup_vs_fastest_fp32_b256, bench.fastest_fp32_b256, bench.speedup_vs_fp32_b256))
    if isinstance(fastest, (int, float)):
        return fastest, f"the fastest FP32 ({name or 'its runtime'})"
    if isinstance(same, (int, float)):
        return same, f"FP32 in {bench.runtime or 'the same runtime'}"
    return None, ""


def size_vs_fp32(size: int, fp32_size: int) -> str:
    """'3.6x smaller than FP32', '1.2x larger than FP32', '4% smaller than FP32' (within 10%: a ratio would read
    1.0x), 'the size of FP32': never "1.0x smaller" of a file that is larger."""
    if size == fp32_size:
        return "the size of FP32"
    if fp32_size >= 1.1 * size:
        return f"{fp32_size / size:.1f}x smaller than FP32"
    if size >= 1.1 * fp32_size:
        return f"{size / fp32_size:.1f}x larger than FP32"
    return f"{abs(size - fp32_size) / fp32_size:.0%} {'smaller' if size < fp32_size else 'larger'} than FP32"
