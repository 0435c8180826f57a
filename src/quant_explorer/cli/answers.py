"""What `quantize` and `sweep` say of a row: one line per row, and `quantize`'s answer for a person (FP32 and
quantized accuracy in the runtimes they ship in, the delta with its interval, size, the saved artifact, the time)."""

from __future__ import annotations

from dataclasses import dataclass

from ..bench_entry import LoadRecord
from ..errors import first_line
from ..row import Row
from .app import console


def row_line(row: Row) -> str:
    if row.not_applicable is not None:
        return f"{row.config_name}: not applicable ({row.not_applicable})"
    if row.error is not None:
        return f"{row.config_name}: [red]failed[/red] {first_line(row.error)}"
    delta = f" ({row.delta_pp:+.2f} pp)" if row.delta_pp is not None else ""
    reference = row.reference.accuracy if row.reference else None
    simulated = f"; float reference {100 * reference:.2f}%" if reference is not None else ""
    return (f"{row.config_name}: {100 * row.accuracy:.2f}% ({row.correct}/{row.n_images}) in "
            f"{_where(row)}{delta}{simulated}, {row.size_bytes / 1024:.0f} KiB"
            + (f", {row.seconds:.1f} s" if row.seconds is not None else ""))


@dataclass
class ShippedLoad(LoadRecord):
    """How to load the artifact as the stored bench of its row timed it at batch 1, with the median it took."""

    latency_ms_b1_median: float | None = None
    latency_ms_b1_spread: float | None = None


@dataclass
class QuantizeAnswer:
    """What `quantize` tells a person (`quantize_answer`): the row and FP32's, each in the runtime it ships in, the
    delta's interval, the saved artifact, how to load it, the command's wall time. `print_answer` shows it;
    `to_json` is `quantize --json`."""

    row: Row
    fp32: Row | None
    seconds: float
    interval: dict | None = None  # `stats.paired_delta` with seeds, level, over, accuracy_mean; ci_pp None: why not
    artifact: str | None = None  # the saved model, shown relative
    results_file: str | None = None
    load: ShippedLoad | None = None  # None: not timed yet, `measure` times it
    measure: str | None = None

    def to_json(self) -> dict:
        row, fp32 = self.row, self.fp32
        answer = {"model": row.model, "config": row.config_name, "seconds": self.seconds}
        if row.accuracy is None:
            return {**answer, "error": row.error, "not_applicable": row.not_applicable, "row": row.to_dict()}
        return {**answer, "runtime": row.runtime, "accuracy": row.accuracy, "correct": row.correct,
                "n_images": row.n_images, **_class_of(row),
                "fp32": fp32 and {"accuracy": fp32.accuracy, "correct": fp32.correct, "runtime": fp32.runtime,
                                  "size_bytes": fp32.size_bytes, **_class_of(fp32)},
                "delta_pp": row.delta_pp, "interval": self.interval, "size_bytes": row.size_bytes,
                "float_reference_accuracy": row.reference.accuracy if row.reference else None,
                "artifact": self.artifact, "results_file": self.results_file,
                "load": self.load.to_dict() if self.load else {"code": None, "measure": self.measure},
                "warnings": row.warnings or [], "row": row.to_dict()}


def quantize_answer(row: Row, fp32: Row | None, stored: dict[str, Row], labels, seconds: float) -> QuantizeAnswer:
    """What `quantize` tells a person: FP32 and quantized accuracy in the runtime each ships in, the delta with its
    interval (over this seed's test images, or pooled over every stored seed of the same recipe), size, the saved
    artifact, how to load it, the command's wall time."""
    from ..analysis.rows import recipe_identity
    from ..keys import is_finished
    from ..paths import results_file
    from ..report.answer import artifact_path, shown_path
    from ..results import decode_classes
    from ..stats import ALPHA, correct, level_text, paired_delta

    answer = QuantizeAnswer(row, fp32, round(seconds, 1))
    if row.accuracy is None:
        return answer
    seeds = {}
    if fp32 is not None and row.predictions is not None:
        same = recipe_identity(row) if row.identity is not None else None
        for other in [row, *stored.values()]:
            if (other.model, other.config_name) == (row.model, row.config_name) and other.seed not in seeds \
                    and is_finished(other) and (other is row or recipe_identity(other) == same):
                seeds[other.seed] = other
    if seeds:
        ordered = [seeds[s] for s in sorted(seeds, key=lambda s: (s is None, s))]
        matrix = correct([decode_classes(e.predictions) for e in ordered], labels)
        reference = correct([decode_classes(fp32.predictions)], labels)
        interval = {**paired_delta(matrix, reference), "seeds": len(ordered), "level": level_text(),
                    "over": "test images and calibration seeds" if len(ordered) > 1 else
                    "test images (one calibration seed)", "accuracy_mean": float(matrix.mean())}
        if interval["se_pp"] == 0 and interval["mean_pp"] == 0:  # no image to measure the noise by: no interval
            n = len(labels)
            interval["ci_pp"] = None
            interval["no_interval"] = (
                f"no interval: FP32 and the quantized model disagree on none of the {n:,} test images, too few to "
                f"bound the difference (up to ±{100 * (1 - ALPHA ** (1 / n)):.2g} pp would go unseen at "
                f"{level_text()})")
        answer.interval = interval
    answer.artifact, answer.results_file = artifact_path(row)[0], shown_path(results_file())
    answer.load = shipped_load(row, stored)
    answer.measure = None if answer.load else f"quant-explorer bench --model {row.model} --configs {row.config_name}"
    return answer


def shipped_load(row: Row, stored: dict[str, Row]) -> ShippedLoad | None:
    """How to load the artifact in the runtime it ships in, with the setting the stored bench of this very row
    (same identity) found fastest at batch 1; None where none is stored."""
    bench = row.bench or next((r.bench for r in stored.values()
                               if r.bench and r.identity_hash and r.identity_hash == row.identity_hash), None)
    if bench and bench.load and bench.load.code:
        return ShippedLoad(**{k: getattr(bench.load, k) for k in LoadRecord.stored_fields()},
                           latency_ms_b1_median=bench.latency_ms_b1_median,
                           latency_ms_b1_spread=bench.latency_ms_b1_spread)
    return None


def _class_of(row: Row) -> dict:
    """The CPU class a row was scored as, and how it was emulated (None: natively)."""
    from ..identity import emulation_of

    identity = row.identity or {}
    return {"cpu_class": identity.get("cpu_class"), "emulation": emulation_of(identity)}


def _where(row: Row) -> str:
    """'onnxruntime', or 'onnxruntime as avx2, emulated (qemu Haswell-v4)'."""
    where = _class_of(row)
    return row.runtime + (f" as {where['cpu_class']}, emulated ({where['emulation']})" if where["emulation"] else "")


def print_answer(a: QuantizeAnswer) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..analysis.rows import size_vs_fp32

    row, fp32, i = a.row, a.fp32, a.interval
    if row.accuracy is None:
        return console.print(row_line(row) + f" ({a.seconds:.1f} s)", soft_wrap=True)
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a long path folds onto the next line, never cut
    if fp32:
        table.add_row("FP32", f"{100 * fp32.accuracy:.2f}% ({fp32.correct}/{row.n_images}) in {_where(fp32)}")
    reference = row.reference.accuracy if row.reference else None
    table.add_row("quantized", f"{100 * row.accuracy:.2f}% ({row.correct}/{row.n_images}) in {_where(row)}"
                  + (f"; float reference {100 * reference:.2f}%" if reference is not None else ""))
    if i and i["ci_pp"] is None:
        table.add_row("Δ vs FP32", f"{i['mean_pp']:+.2f} pp; {i['no_interval']}")
    elif i:
        ci = f"[{i['ci_pp'][0]:+.2f}, {i['ci_pp'][1]:+.2f}] {i['level']} interval"
        table.add_row("Δ vs FP32", f"{i['mean_pp']:+.2f} pp {ci} over this seed's test images" if i["seeds"] == 1 else
                      f"{row.delta_pp:+.2f} pp this seed; {i['mean_pp']:+.2f} pp {ci} over the {i['seeds']} "
                      f"stored seeds (mean accuracy {100 * i['accuracy_mean']:.2f}%)")
    elif row.delta_pp is not None:
        table.add_row("Δ vs FP32", f"{row.delta_pp:+.2f} pp")
    smaller = f" ({size_vs_fp32(row.size_bytes, fp32.size_bytes)})" if fp32 else ""
    table.add_row("size", f"{row.size_bytes / 1024:,.0f} KiB{smaller}")
    table.add_row("saved", a.artifact or "—")
    if a.load:
        load = a.load
        spread = (f", run-to-run spread {load.latency_ms_b1_spread:.2g} ms"
                  if load.latency_ms_b1_spread is not None else "")
        table.add_row("load", f"in {load.runtime} with {load.setting}, the fastest at batch 1 in the stored "
                      f"bench ({load.latency_ms_b1_median:.3g} ms{spread}):")
        table.add_row("", Text(load.code))  # as is: no rich markup
    elif a.measure:
        table.add_row("load", f"not timed here yet: `{a.measure}` measures the fastest setting and says how to "
                      "load the artifact with it")
    table.add_row("took", f"{a.seconds:.1f} s")
    console.print(f"[bold]{row.model} / {row.config_name}[/bold]", soft_wrap=True)
    console.print(table)
