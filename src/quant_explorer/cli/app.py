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

from ..configs import CALIBRATION_N, DEFAULT_SEEDS
from ..errors import UserError

app = typer.Typer(help="What 8-bit post-training quantization costs a CIFAR-10 classifier, where, and which recipe "
                       "to ship.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Find, check and download CIFAR-10.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="CIFAR-10 directory (python batches or train/test image folders); "
                       "default $QUANT_EXPLORER_DATA, then ~/.cache/quant-explorer/cifar10.")
ModelOpt = typer.Option("resnet8", "--model", "-m", help="Registered model name (see `models`) or a path to an "
                        ".onnx classifier.")
WeightsOpt = typer.Option(None, "--weights", help="Weights file (.pt for our models, .h5 for resnet8-mlperf).")
InputScale = typer.Option(None, "--input-scale", help="Imported ONNX models: raw255 (0-255 floats) or unit (0-1).")
MeanOpt = typer.Option(None, "--mean", help="Imported ONNX models: per-channel mean after scaling, e.g. 0.49,0.48,0.45.")
StdOpt = typer.Option(None, "--std", help="Imported ONNX models: per-channel std after scaling.")
CalibN = typer.Option(CALIBRATION_N, "--calibration-n", help="Calibration images, a stratified sample of the "
                      "training split.")
SeedOpt = typer.Option(0, "--seed", min=0, help="Seed of the calibration sample (same seed, same images).")
SeedsOpt = typer.Option(DEFAULT_SEEDS, "--seeds", min=1, max=100, help="Calibration samples per static config (seeds "
                        "FIRST..FIRST+N-1): one draw moves a recipe by up to ~2 points, so every summary pools several.")
EnvironmentOpt = typer.Option(None, "--environment", help="Show this environment's results (a part of its id, e.g. "
                              "avx512-vnni); default: this machine's, else the most recent.")
DatasetOpt = typer.Option(None, "--dataset", help="Show results on this evaluation set (fingerprint or part of its "
                          "name); default: the environment's most recent.")
ConfigsOpt = typer.Option(None, "--configs", "-c", help="Config names or globs (repeatable or comma-separated); "
                          "default: the default sweep.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def main() -> None:
    """Console entry point: a UserError is one red line on stderr and exit code 2, never a traceback."""
    from rich.markup import escape
    from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer vendors its own click

    try:
        # Without standalone mode, click returns a command's `typer.Exit(code)` as the value instead of raising it.
        code = app(standalone_mode=False, prog_name="quant-explorer")
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


class _Terminated(BaseException):
    """SIGTERM, raised where the work is, so it stops like Ctrl-C does."""


@contextlib.contextmanager
def interruptible(progress: Callable[[], str]):
    """Ctrl-C (exit 130) or SIGTERM (exit 143) during long work: one line saying what was saved, and how to resume.
    Rows are saved as they finish, so nothing finished is lost."""
    def terminate(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except (KeyboardInterrupt, _Terminated) as e:
        err_console.print(f"interrupted: {progress()}; rerun the same command to resume", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(143 if isinstance(e, _Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
