"""The Typer app, the options every command shares, and how the CLI speaks: one line per error (exit 2 for bad
input, 1 for failed work, 130/143 when interrupted), tables at their natural width, JSON on request."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from typing import Callable

import typer
from rich.console import Console
from rich.table import Table

from ..configs import CALIBRATION_N, DEFAULT_SEEDS, MAX_SEED
from ..errors import UserError
from ..quiet import THIRD_PARTY_WARNINGS

app = typer.Typer(help="What 8-bit post-training quantization costs a CIFAR-10 classifier, where, and which recipe "
                       "to ship.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Find, check and download CIFAR-10.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)
# Help lists a flag without a value type (typer writes `--json <bool>`, as if it took one).
_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)
# Commands that load torch or ONNX Runtime: third-party log noise is turned off for them (unless --verbose).
COMPUTES = {"run", "quantize", "sweep", "bench", "evaluate", "train", "calib-sensitivity", "layer-sensitivity",
            "analyze"}


def quiet_third_party(loads_runtimes: bool) -> None:
    """Silence torch's and ONNX Runtime's warnings and log lines at their source: Python warnings (here and, by
    PYTHONWARNINGS, in worker processes), torch's loggers (Python and C++), and ORT's logger. Our own warnings
    are printed by the commands themselves (a row's `warnings`), never through these channels."""
    import os
    import warnings

    for category in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", ",".join(f"ignore::{c.__name__}" for c in THIRD_PARTY_WARNINGS))
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_LOGS", "-all")  # torch's Python loggers at ERROR; never "" (torch fails on it)
    if loads_runtimes:  # importing ORT costs half a second: only for the commands that run it anyway
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"quant-explorer {version('quant-explorer')}")
        raise typer.Exit()


@app.callback()
def _global_options(ctx: typer.Context,
                    verbose: bool = typer.Option(False, "--verbose", help="Show the third-party warnings and logs "
                                                 "(torch, ONNX Runtime) that are hidden by default."),
                    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    if not verbose:
        # The subcommand's own arguments are not parsed yet: `--help` is looked for on the command line.
        quiet_third_party(ctx.invoked_subcommand in COMPUTES and "--help" not in sys.argv[1:])


DataDir = typer.Option(None, "--data-dir", help="CIFAR-10 directory (python batches or train/test image folders); "
                       "default $QUANT_EXPLORER_DATA, then ~/.cache/quant-explorer/cifar10.")
ModelOpt = typer.Option("resnet8", "--model", "-m", help="Registered model name (see `models`) or a path to an "
                        ".onnx classifier.")
WeightsOpt = typer.Option(None, "--weights", help="Weights file (.pt for our models, .h5 for resnet8-mlperf).")
InputScale = typer.Option(None, "--input-scale", help="Imported ONNX models: raw255 (0-255 floats) or unit (0-1).")
MeanOpt = typer.Option(None, "--mean", help="Imported ONNX models: per-channel mean after scaling, "
                       "e.g. 0.49,0.48,0.45.")
StdOpt = typer.Option(None, "--std", help="Imported ONNX models: per-channel std after scaling.")
CalibN = typer.Option(CALIBRATION_N, "--calibration-n", help="Calibration images, a stratified sample of the "
                      "training split.")
SeedOpt = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the calibration sample (same seed, same "
                       "images).")
SeedsOpt = typer.Option(DEFAULT_SEEDS, "--seeds", min=1, max=100, help="Calibration samples per static config (seeds "
                        "FIRST..FIRST+N-1): one draw moves a recipe by up to ~2 points, so every summary pools "
                        "several.")
EnvironmentOpt = typer.Option(None, "--environment", help="Show this environment's results (a part of its id, e.g. "
                              "avx512-vnni); default: this machine's, else the most recent.")
DatasetOpt = typer.Option(None, "--dataset", help="Show results on this evaluation set (fingerprint or part of its "
                          "name); default: the environment's most recent.")
ConfigsOpt = typer.Option(None, "--configs", "-c", help="Config names or globs (repeatable or comma-separated); "
                          "default: the default sweep.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def _emulate(isa: str) -> str:
    from ..identity import emulate

    emulate(isa, check=True)  # before any model work: oneDNN reads its cap once per process
    return isa


IsaOpt = typer.Option("native", "--isa", callback=_emulate, help="Score as this CPU class: native, or a class below "
                      "this CPU's (avx2, sse4; avx512, avx-vnni, avx512-vnni below AMX), emulated: ONNX Runtime, the "
                      "eager x86 engine and FP32 run their evaluation under qemu-user as that CPU (avx2, sse4), PT2E "
                      "by capping oneDNN's kernels (ONEDNN_MAX_CPU_ISA); what neither can emulate gives 'not "
                      "measured' rows. Emulated rows are keyed apart from native ones and never timed.")


def main() -> None:
    """Console entry point: a UserError is one red line on stderr and exit code 2, never a traceback. Output that
    the terminal cannot encode degrades to ASCII words (`terminal.py`); a closed stdout is one line on stderr."""
    from .terminal import closed_stdout_error, cut_short, degrade_unencodable, stdout_broken

    if sys.stdout is None:  # started with fd 1 closed (`>&-`): what it prints would be lost, or land in a file it opens
        err_console.print(closed_stdout_error(), highlight=False, soft_wrap=True)
        sys.exit(2)
    restore = degrade_unencodable()
    try:
        _main()
    except (BrokenPipeError, SystemExit):  # stdout closed while writing (`| head -1`; typer turns it into a silent
        if not stdout_broken():           # exit 1): the output is incomplete, and says so
            raise
        cut_short(err_console)
        sys.exit(1)
    finally:
        restore()


def _main() -> None:
    from rich.markup import escape
    from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer vendors its own click

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        # Without standalone mode, click returns a command's `typer.Exit(code)` as the value instead of raising it.
        code = app(standalone_mode=False, prog_name="quant-explorer")
    except Interrupted as e:  # outside `interruptible`: say what this run saved (a row of `quantize`...), if anything
        saved = saved_words()
        err_console.print(f"interrupted: {saved} (files are written whole or not at all); rerun the same command"
                          + (" to resume" if saved else "") if saved else
                          "interrupted: nothing saved (files are written whole or not at all); rerun the same command",
                          highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except UserError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except NoArgsIsHelpError as e:
        e.show()
        sys.exit(e.exit_code)
    except ClickException as e:  # a bad option or value: one line too, not click's usage block
        ctx = getattr(e, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx else ""
        message = " ".join(e.format_message().split()).rstrip(".")  # one line, whatever the parser wrote
        err_console.print(f"[red]error:[/red] {escape(message + hint)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


def print_table(table: Table, text_width: int | None = None) -> None:
    """Print a table at its natural width, never cutting a cell (config names above all): a narrower terminal
    wraps the lines instead. `text_width`: the last column is prose, wrapped within that many characters."""
    from rich.measure import Measurement

    for column in table.columns:
        column.no_wrap = True
    if text_width:
        table.columns[-1].no_wrap, table.columns[-1].max_width = False, text_width
    width = Measurement.get(console, console.options.update(width=10_000), table).maximum
    saved = console.width
    console.width = max(saved, width)
    try:
        console.print(table)
    finally:
        console.width = saved


BAR_RESERVED = 42  # columns kept for the bar (10 at least), done/total, elapsed, "ETA" and the time left


def bar(disable: bool = False, console: Console | None = None):
    """The progress display of long work, on stderr: what is running, a bar, done of total, elapsed, ETA. On a
    narrow terminal the label is cut short (ending in "…"), never the counts or the ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    console = console or err_console
    label = Column(no_wrap=True, overflow="ellipsis", max_width=max(console.width - BAR_RESERVED, 12))
    return Progress(TextColumn("{task.description}", table_column=label),
                    BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10, max_width=40)),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=True, disable=disable)


def print_json(data) -> None:
    print(json.dumps(data, indent=2))


def quiet_or(as_json: bool) -> Callable[[str], None]:
    """Progress lines go to stderr, except under --json, whose output is the JSON alone."""
    return (lambda _: None) if as_json else err_console.print


def patterns(config_names: list[str] | None) -> list[str]:
    """--configs values split on commas; given but empty (`--configs ''`) is an error, not the default sweep."""
    out = [p.strip() for item in config_names or [] for p in item.split(",") if p.strip()]
    if config_names and not out:
        raise UserError("--configs selects no config: give names or globs, e.g. --configs 'ort_*,pt2e_*'")
    return out


def interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "—"


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised where the work is. Not a KeyboardInterrupt, which click turns into a silent
    exit 130."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _interrupt(signum, frame):
    raise Interrupted(signum)


def saved_words() -> str:
    """What this process saved, as an interrupted line says it: '3 rows saved to artifacts/results/...json'; ''."""
    from ..results import saved_here

    parts = [f"{len(keys)} row{'s' if len(keys) != 1 else ''} saved to {path}" for path, keys in saved_here().items()
             if keys]
    return ", ".join(parts)


@contextlib.contextmanager
def interruptible(progress: Callable[[], str]):
    """Ctrl-C (exit 130) or SIGTERM (exit 143) during long work: one line saying what was saved, and how to resume.
    Rows are saved as they finish, so nothing finished is lost."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except (KeyboardInterrupt, Interrupted) as e:
        err_console.print(f"interrupted: {progress()}; rerun the same command to resume", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(getattr(e, "exit_code", 130)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
