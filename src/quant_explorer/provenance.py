"""Files made once and reused (the FP32 export and its preprocessed form, quantized models, compiled packages,
decoded images, labels) carry a record of what they were made from and of their own bytes, written beside them
after them (`NAME.record.json`). A file is reused only when its record proves it: made from what it is read for,
and its bytes unchanged since. Anything else is said in one line and made again: an artifact is set aside (renamed,
never deleted: it may be what someone wants to inspect), a cache entry (derived from the user's data alone, made
again identically) is replaced. `reuse_or_build` is the one way an artifact is reused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from .errors import warn
from .files import file_sha256, locked, write_text_atomic

RECORD_SUFFIX = ".record.json"
SET_ASIDE = ".set-aside-"
MISSING = "is missing"
UNRECORDED = "has no record of what it was made from (an older quant-explorer made it, or it was copied in)"


def record_of(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + RECORD_SUFFIX)


def is_bookkeeping(path: Path) -> bool:
    """A record, a lock or a set-aside file: never the artifact itself."""
    name = Path(path).name
    return name.endswith((RECORD_SUFFIX, ".lock")) or SET_ASIDE in name


def _plain(made_from: dict) -> dict:
    """As the record stores it (JSON: tuples become lists), so that equal things compare equal."""
    return json.loads(json.dumps(made_from))


def why_not(path: Path, made_from: dict) -> str | None:
    """Why the file at `path` may not be reused for `made_from`, in a phrase completing "FILE ..."; None when its
    record proves it; `MISSING` when there is no file."""
    path = Path(path)
    if not path.exists():
        return MISSING
    if not path.is_file():
        return "is not a file"
    try:
        record = json.loads(record_of(path).read_text())
    except FileNotFoundError:
        return UNRECORDED
    except (OSError, ValueError):
        return f"has an unreadable record ({record_of(path).name})"
    if not isinstance(record, dict) or record.get("made_from") != _plain(made_from):
        return "was made from something else than what it is read for (its record says otherwise)"
    size, recorded = path.stat().st_size, record.get("bytes")
    if recorded != size:
        said = f"{recorded:,}" if isinstance(recorded, int) else "nothing"
        return f"is damaged: {size:,} bytes where its record says {said}"
    if record.get("sha256") != file_sha256(path):
        return "is damaged: its checksum differs from its record's"
    return None


def write_record(path: Path, made_from: dict) -> None:
    """Record what `path` (written whole already) was made from, its size and its checksum; atomically."""
    path = Path(path)
    record = {"made_from": _plain(made_from), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    write_text_atomic(record_of(path), json.dumps(record, indent=1) + "\n")


def set_aside(path: Path) -> Path:
    """Rename `path` (and its record) to `NAME.set-aside-TIME`, a name nothing reads; returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}{SET_ASIDE}{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}{SET_ASIDE}{stamp}-{n}")
    os.replace(path, aside)
    if record_of(path).exists():
        os.replace(record_of(path), record_of(aside))
    return aside


def proven(path: Path, made_from: dict, what: str, cache: bool = False) -> bool:
    """Whether `path` may be reused for `made_from`. When it may not, and a file is there, say so in one line and
    move it out of the way: set aside (an artifact), or left to be replaced (a `cache` entry; silently where only
    its record is missing, as an older version wrote them)."""
    why = why_not(path, made_from)
    if why is None:
        return True
    if why == MISSING:
        return False
    if not cache:
        aside = set_aside(path)
        warn(f"{what} {path} {why}: set aside as {aside.name}; making it again")
    elif why != UNRECORDED:
        warn(f"{what} {path} {why}: making it again")
    return False


def reuse_or_build(path: Path, made_from: dict, build: Callable[[Path], object], what: str) -> Path:
    """`path` where its record proves it was made from `made_from`; else `build(path)` writes it (whole or not at
    all: `files.atomic_path`), then its record. Under a lock on `path`, so that parallel workers make it once and
    the others reuse it. `what` names it in messages ("quantized model")."""
    path = Path(path)
    with locked(path, tell=False):
        if not proven(path, made_from, what):
            build(path)
            write_record(path, made_from)
    return path
