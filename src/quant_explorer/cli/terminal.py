"""Output that survives odd terminals: a stdout that cannot encode "Δ" (PYTHONIOENCODING=ascii, a Latin-1 console)
gets ASCII words instead of a UnicodeEncodeError half-way through a table, a file name that is not valid UTF-8 is
printed escaped, and a stdout closed before or while the command writes is one line on stderr, exit non-zero."""

from __future__ import annotations

import codecs
import os
import sys
from typing import Callable

HANDLER = "quant_explorer.words"
# What a symbol of ours becomes where the terminal cannot show it; anything else is escaped (\u2026, \xe9).
WORDS = {"Δ": "delta", "±": "+/-", "—": "-", "–": "-", "−": "-", "◀": "<", "→": "->", "×": "x", "α": "alpha",
         "…": "...", "≤": "<=", "≥": ">=", "·": ".", "•": "*", "‘": "'", "’": "'", "“": '"', "”": '"', "━": "-",
         "─": "-", "│": "|"}


def _ascii(char: str) -> str:
    if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte of a file name that is not UTF-8 (os.fsdecode's surrogate escape)
        return f"\\x{ord(char) - 0xDC00:02x}"
    return WORDS.get(char) or char.encode("ascii", "backslashreplace").decode("ascii")


def _words(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(_ascii(c) for c in error.object[error.start:error.end]), error.end


codecs.register_error(HANDLER, _words)


def degrade_unencodable() -> Callable[[], None]:
    """Have stdout and stderr write what their encoding cannot hold as ASCII words (`WORDS`); returns how to undo it
    (tests call `main()` in-process)."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) != HANDLER:
            changed.append((stream, stream.errors))
            stream.reconfigure(errors=HANDLER)

    def restore() -> None:
        for stream, errors in changed:
            try:
                stream.reconfigure(errors=errors)
            except (OSError, ValueError):  # closed meanwhile
                pass

    return restore


def closed_stdout_error() -> str:
    return ("[red]error:[/red] standard output is closed (`>&-`): nothing this command prints could be shown; "
            "redirect it to a file or to /dev/null instead")


def stdout_broken() -> bool:
    """Whether stdout is a pipe that broke (and not some other pipe the command wrote to): typer says so by wrapping
    it (PacifyFlushWrapper, before its silent exit 1), or flushing it fails."""
    from typer._click.utils import PacifyFlushWrapper

    if isinstance(sys.stdout, PacifyFlushWrapper):
        return True
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        return True
    except OSError:
        return False
    return False


def cut_short(err_console) -> None:
    """Stdout was closed while the command wrote to it: say so on stderr, and send what is left to /dev/null so the
    interpreter's last flush does not fail a second time."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    except OSError:
        pass
    err_console.print("[red]error:[/red] standard output was closed before everything was written (Broken pipe): "
                      "what was shown is incomplete", highlight=False, soft_wrap=True)
