"""The exceptions with a meaning for the user (bad input: one line, exit 2; a config that does not apply), and
the one way an error or an unknown name is put in one line."""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """Bad input the user can fix: shown as one line naming the problem and the fix, no traceback."""


class NotApplicable(Exception):
    """This config cannot apply to this model (e.g. eager static on an imported ONNX graph); says why."""


def first_line(text: str | Exception) -> str:
    """The first non-empty line of a message or an exception's text ('' when there is none)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def one_line(error: Exception) -> str:
    """`Type: first line of its message`: how a failure is recorded in a row or shown in a table."""
    return f"{type(error).__name__}: {first_line(error)}".rstrip(": ")


def did_you_mean(name: str, known: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """'did you mean a, b? ' for the known names close to `name`, else ''."""
    close = difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)
    return f"did you mean {', '.join(close)}? " if close else ""


def warn(message: str) -> None:
    """One `warning:` line on stderr, never on stdout (which may be --json): a problem the run survives."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)
