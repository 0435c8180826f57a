"""`quant-explorer run`: the whole job (`make run`) under one progress display."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import DataDir, JsonOpt, SeedsOpt, app, bar, console, err_console, interruptible, print_json, saved_words


def _saved() -> str:
    """What an interrupted job says it saved: this process's rows, and that nothing finished is lost."""
    return ", ".join(filter(None, [saved_words(), "every finished row, study and bench is saved"]))


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


@app.command()
def run(data_dir: Optional[Path] = DataDir, seeds: int = SeedsOpt,
        workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Worker processes for the "
                                              "sweeps (one thread each); default: one per CPU."),
        classes: bool = typer.Option(True, "--classes/--no-classes", help="Also score each model's confidence-set "
                                     "members as an avx2 CPU, emulated, where this CPU is above it (every runtime: "
                                     "ONNX Runtime and the eager engine under qemu, PT2E by oneDNN's cap); `make "
                                     "classes` adds every config and class."),
        as_json: bool = JsonOpt) -> None:
    """Everything the report shows, first answer first: the default sweep on one calibration draw and the report
    (minutes), then every seed, the studies, each shipped model's speed, avx2 (emulated) and the report
    again. Reuses every stored result that is current, so a rerun with nothing changed only checks.

    Exit code 1 if any row, study or class failed (the rest still ran and were saved), 2 for bad input.
    """
    from ..paths import artifacts_dir
    from ..pipeline import PHASES, Job, Step, run_job

    progress = bar(disable=as_json)
    phase_task = progress.add_task("starting: loading torch, the data and the models", total=None)
    shown = {"phase": None}

    def on_step(step: Step) -> None:
        number = next((i for i, p in enumerate(PHASES, 1) if step.phase.startswith(p)), "?")
        if step.phase != shown["phase"]:
            shown["phase"] = step.phase
            progress.reset(phase_task, total=step.total or None)
            if not err_console.is_terminal and not as_json:  # a log: one line per phase instead of the live bar
                err_console.print(f"{number}/{len(PHASES)} {step.phase}: {step.total or ''} ...", highlight=False)
        progress.update(phase_task, completed=step.done,
                        description=f"[bold]{number}/{len(PHASES)} {step.phase}[/bold] {step.note[:48]}")
        if step.phase == "every seed" and step.done == 0 and not as_json:
            progress.console.print(f"first answer written: {artifacts_dir() / 'report' / 'index.html'} "
                                   "(`quant-explorer summary` prints it); now every seed, the studies, speed")

    notify = (lambda line: None) if as_json else (lambda line: progress.console.print(f"[yellow]{line}[/yellow]"))
    with interruptible(_saved), progress:
        result = run_job(Job.default(data_dir, seeds, workers, classes), on_step, notify)
    if as_json:
        print_json({"seconds": result.seconds, "first_answer_seconds": result.first_answer_seconds,
                    "computed": result.computed, "failed": result.failed,
                    "written": {k: str(v) for k, v in result.written.items()}})
    else:
        console.print(f"first answer after {_minutes(result.first_answer_seconds)}, everything after "
                      f"{_minutes(result.seconds['total'])}; per phase: "
                      + ", ".join(f"{p} {_minutes(s)}" for p, s in result.seconds.items() if p != "total"))
        console.print("computed (not reused): " + (", ".join(f"{p} {n}" for p, n in result.computed.items())
                                                  or "nothing: every result was current"))
        for path in result.written.values():
            console.print(f"wrote {path}")
    if result.failed:
        for line in result.failed[:10]:
            err_console.print(f"[red]failed:[/red] {line}", soft_wrap=True)
        err_console.print(f"[red]error:[/red] {len(result.failed)} failed (saved with their error; rerun to retry)")
        raise typer.Exit(1)
