"""Third-party noise kept off the user's terminal while the Python API works, as the CLI keeps it off its own.

The libraries (torch, and each backend's: `env.libraries`) talk on three channels: Python warnings, their Python
loggers, and C++ code writing to file descriptor 2 (c10's `[W ...]` lines, which no Python setting reaches once torch
is imported).
`quiet()` closes all three for the duration of one call and restores them afterwards; what the project itself
writes to `sys.stderr` (a `warning:` line, `progress=True`) still reaches the caller's stderr.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings

from .env import libraries

THIRD_PARTY_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning)


@contextlib.contextmanager
def quiet():
    """Within: third-party Python warnings ignored, their loggers at ERROR, and file descriptor 2 sent to
    /dev/null while `sys.stderr` still writes where it did (`_descriptor_2_muted`)."""
    loggers = [logging.getLogger(name) for name in libraries()]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), _descriptor_2_muted():
        for category in THIRD_PARTY_WARNINGS:
            warnings.filterwarnings("ignore", category=category)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextlib.contextmanager
def _descriptor_2_muted():
    """File descriptor 2 on /dev/null; `sys.stderr`, where it writes to descriptor 2 itself, on a copy of what
    descriptor 2 was. A `sys.stderr` of its own (a notebook's, a test's capture) is left as it is."""
    try:
        original = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing to mute
        yield
        return
    try:
        own_descriptor = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        own_descriptor = False
    python_stderr = sys.stderr
    if own_descriptor:
        python_stderr.flush()
        sys.stderr = open(os.dup(original), "w", buffering=1,  # noqa: SIM115  (closed below)
                          encoding=python_stderr.encoding or "utf-8", errors="backslashreplace")
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            if own_descriptor:
                sys.stderr.close()
                sys.stderr = python_stderr
            os.dup2(original, 2)
            os.close(original)


def quietly(function):
    """`function` run within `quiet()`: what the API's entry points are wrapped in."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with quiet():
            return function(*args, **kwargs)

    return wrapper
