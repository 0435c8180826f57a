"""The whole job behind `make run`, as one call that reports its progress: an answer first, then the evidence.

1. first answer: every shipped model's default configs on the first calibration draw, then pareto.md and the
   report (a pick per model, with intervals over test images only), unless every row was stored already;
2. every seed: the other calibration draws (the first is reused), so intervals cover the draw too;
3. studies: the report's calibration-size and per-layer studies, one per worker (they reuse the sweep's rows);
4. speed: each shipped model's bench (reused when the same rows were timed alike on this CPU);
5. CPU classes: avx2, where this CPU is above it, so the answer speaks for the CPUs without VNNI that int8 loses
   most on: each model's confidence-set members (FP32 beside them) on the first calibration draw, swept in a fresh
   process per model (`sweep_as`: oneDNN reads its cap once per process; ONNX Runtime and the eager engine run under
   qemu). `make classes` adds the other seeds, every config and every other class this CPU can emulate;
6. report: pareto.md and the report again, from everything.

Every phase reuses what is stored and current, so a rerun with nothing changed only checks. Rows run in a pool
of worker processes (one per core, one thread each): compiling is single-threaded, so two workers finish the
sweep sooner than one process with two threads. Phases report `Step`s to a callback; the CLI draws them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

PHASES = ("first answer", "every seed", "studies", "speed", "CPU classes", "report")
# `make run`'s bench: 100 batch-1 and 10 batch-256 runs per target over 10 interleaved rounds (the bench command
# times 200 and 20 over 20): the medians move by less than the noise between runs, and each model's bench takes
# about half the time (measured: the rounds' settling pauses and batch-256 runs were two thirds of it).
BENCH = {"runs": 100, "batch_runs": 10, "rounds": 10}
# The emulated classes `make run` answers for: avx2, where u8s8 kernels saturate (the class int8 loses most on, and
# still most of the x86 fleet). The AVX-512 classes, sse4, ARM and every config beyond the confidence sets are
# `make classes`'s: a fresh clone's `make run` with four classes, every config, took 77 minutes on a busy AMX machine.
# An emulated row does not depend on the host's class, so a fresh clone reuses the committed avx2 rows on any CPU.
CLASSES = ("avx2",)


@dataclass(frozen=True)
class Step:
    """Where the job is: a phase (one of PHASES), how many of its steps are done out of how many, what just
    finished. `total` 0: a phase with nothing to count (writing the report)."""

    phase: str
    done: int
    total: int
    note: str = ""


@dataclass
class Job:
    """What `run_job` runs: loaded models, configs, the data, the calibration seeds, the studies, the bench settings
    and the lower CPU classes to sweep. `Job.default` is `make run`'s."""

    models: list  # LoadedModel
    configs: list  # QuantConfig
    data: object  # EvalData
    seeds: list[int]
    studies: tuple = ()
    bench: object = None  # BenchSettings; None: no speed phase
    classes: tuple[str, ...] = ()  # emulated classes: each model's confidence-set members are swept there
    calibration_n: int = 256
    data_dir: Path | None = None  # where the data came from, for the emulated child processes and the report
    workers: int | None = None

    @classmethod
    def default(cls, data_dir: Path | None = None, seeds: int | None = None, workers: int | None = None,
                classes: bool = True) -> "Job":
        """Every shipped model, the default configs and seeds, the report's studies, benches as BENCH says,
        and avx2 where this CPU can emulate it (`CLASSES`)."""
        from .backends import select_configs
        from .bench import BenchSettings
        from .configs import CALIBRATION_N, DEFAULT_SEEDS
        from .identity import emulable
        from .models import SHIPPED
        from .paths import results_file
        from .preflight import load_models, prepare
        from .studies import STUDIES

        seed_list = list(range(seeds or DEFAULT_SEEDS))
        data = prepare(data_dir, [results_file()], CALIBRATION_N, seed_list, SHIPPED)
        return cls(load_models(list(SHIPPED), data=data), select_configs(), data, seed_list, tuple(STUDIES),
                   BenchSettings(**BENCH), tuple(c for c in CLASSES if c in emulable()) if classes else (),
                   CALIBRATION_N, data_dir, workers)


@dataclass
class JobResult:
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds
    first_answer_seconds: float | None = None  # from the start of the job to the first report written
    computed: dict[str, int] = field(default_factory=dict)  # phase -> rows/studies/benches computed (not reused)
    failed: list[str] = field(default_factory=list)  # one line per row or study that failed
    written: dict[str, Path] = field(default_factory=dict)  # the report's files


def run_job(job: Job, on_step: Callable[[Step], None] = lambda step: None,
            notify: Callable[[str], None] = lambda line: None) -> JobResult:
    """Run every phase in order (see the module's docstring); `notify` gets one-line notices (why stored rows are
    not reused)."""
    from .bench import bench_and_record
    from .data import resolve_data_dir
    from .executors import LocalExecutor, ProcessExecutor
    from .paths import artifacts_dir, bench_file, results_file
    from .report import build
    from .studies import run_studies
    from .sweep import run_sweep

    started, result = time.perf_counter(), JobResult()
    executor = LocalExecutor() if job.workers == 1 else ProcessExecutor(job.workers)  # one: no pool to start

    def sweep(phase: str, draws: list[int]) -> None:
        total = len(job.models) * sum(len(draws) if c.is_static else 1 for c in job.configs)
        on_step(Step(phase, 0, total))
        rows = run_sweep(job.models, job.configs, job.data, job.calibration_n, draws, results_file(),
                         executor=executor, notify=notify)
        for done, (key, row, skipped) in enumerate(rows, 1):
            _count(result, phase, row.error, skipped, key)
            on_step(Step(phase, done, total, key.rsplit("|", 1)[0]))

    def report(phase: str) -> None:
        on_step(Step(phase, 0, 0, "writing pareto.md and the report"))
        result.written = build(results_file().parent, artifacts_dir() / "report",
                               data_dir=resolve_data_dir(job.data_dir))

    def studies() -> None:
        loaded = {m.name: m for m in job.models}
        chosen = [s for s in job.studies if s.model in loaded]
        finished = []  # which studies run shows as the step's note, on the one progress line
        on_step(Step("studies", 0, len(chosen)))
        entries = run_studies(chosen, loaded, job.data, results_file().parent, executor=executor,
                              log=lambda line: on_step(Step("studies", len(finished), len(chosen), line)))
        for study, entry, skipped in entries:
            finished.append(study)
            what = f"{study.kind}: {study.model} / {study.config}"
            _count(result, "studies", entry.error, skipped, what)
            on_step(Step("studies", len(finished), len(chosen), what))

    def speed() -> None:
        for done, model in enumerate(job.models):
            on_step(Step("speed", done, len(job.models), f"timing {model.name}"))
            document = bench_and_record(model, job.configs, job.data, job.calibration_n, job.seeds[0], job.bench,
                                        results_file(), bench_file(model.name))
            result.failed += [f"bench {model.name}: {line}" for line in document.failures()]
            if not document.reused:
                result.computed["speed"] = result.computed.get("speed", 0) + 1
        on_step(Step("speed", len(job.models), len(job.models)))

    def classes() -> None:
        plan = _members(job) if job.classes else {}
        for isa in job.classes:
            _emulated_sweep(isa, job, plan, on_step, result)

    def first_answer() -> None:
        sweep("first answer", job.seeds[:1])
        if result.computed.get("first answer"):  # else the stored report already answers, and the last one redraws
            report("first answer")

    for phase, work in (("first answer", first_answer),
                        ("every seed", lambda: sweep("every seed", job.seeds)), ("studies", studies),
                        ("speed", speed if job.bench else None), ("CPU classes", classes),
                        ("report", lambda: report("report"))):
        if work is None:
            continue
        t0 = time.perf_counter()
        work()
        result.seconds[phase] = round(time.perf_counter() - t0, 1)
        if phase == "first answer":
            result.first_answer_seconds = round(time.perf_counter() - started, 1)
    result.seconds["total"] = round(time.perf_counter() - started, 1)
    return result


def _count(result: JobResult, phase: str, error: str | None, skipped: bool, what: str) -> None:
    """Count a row or study computed in `phase`, or its `error` among the failures."""
    if error is not None:
        result.failed.append(f"{what}: {error}")
    elif not skipped:
        result.computed[phase] = result.computed.get(phase, 0) + 1


def _members(job: Job) -> dict[str, list[str]]:
    """Each model's configs in the confidence set for the best of this machine's view (identical recipes included:
    they may part ways on another class), as far as the job sweeps them."""
    from .analysis.summary import load_view
    from .data import resolve_data_dir
    from .paths import results_file
    from .results import Results

    view = load_view(Results.load(results_file()), dataset=job.data.test.fingerprint,
                     data_dir=resolve_data_dir(job.data_dir))
    names = {c.name for c in job.configs}
    return {m.name: [c for c in getattr(view.choices.get(m.name), "best_set_with_identical", None) or [] if c in names]
            for m in job.models}


def _emulated_sweep(isa: str, job: Job, plan: dict[str, list[str]], on_step: Callable[[Step], None],
                    result: JobResult) -> None:
    """Each model's configs of `plan` (with FP32) as CPU class `isa` on the first calibration draw (an emulated row
    costs 20-70 s of CPU: every seed of every member is `make classes`'s), swept in a fresh process per model
    (`sweep_as`), whose rows come back as they finish."""
    from .configs import REFERENCE
    from .executors import TaskFailed, in_fresh_process

    total = sum(1 + len(names) for names in plan.values() if names)  # FP32 and each member, the first seed
    phase, done = f"CPU classes ({isa}, emulated)", 0
    on_step(Step(phase, 0, total))
    for model in job.models:
        if not plan.get(model.name):
            continue
        source = (str(model.weights_path), None) if model.is_imported else (model.name, model.weights_path)
        try:
            for key, error, skipped in in_fresh_process(sweep_as, isa, *source, [REFERENCE, *plan[model.name]],
                                                        job.seeds[:1], job.calibration_n, job.data_dir, job.workers):
                done += 1
                _count(result, "CPU classes", error, skipped, f"{key.rsplit('|', 1)[0]} as {isa}")
                on_step(Step(phase, min(done, total), total, key.rsplit("|", 1)[0]))
        except TaskFailed as e:
            result.failed.append(f"{model.name} as {isa}: {e}")


def sweep_as(isa: str, model: str, weights: Path | None, configs: list[str], seeds: list[int], calibration_n: int,
             data_dir: Path | None, workers: int | None) -> Iterator[tuple[str, str | None, bool]]:
    """`configs` on `model` (a name, or an .onnx path) as CPU class `isa`, emulated: (key, error, skipped) per row as
    it finishes. For a fresh process (`executors.in_fresh_process`): oneDNN reads its cap once, so the class is set
    before any model work, and the sweep's workers inherit it."""
    from .identity import emulate

    emulate(isa, check=True)
    from .backends import select_configs
    from .executors import ProcessExecutor
    from .paths import results_file
    from .preflight import load_models, prepare
    from .sweep import run_sweep

    data = prepare(data_dir, [results_file()], calibration_n, seeds, [model])
    rows = run_sweep(load_models([model], weights, data=data), select_configs(configs), data, calibration_n, seeds,
                     results_file(), executor=ProcessExecutor(workers))
    for key, row, skipped in rows:
        yield key, row.error, skipped
