"""full_results.json: schema-versioned, written atomically under a file lock, never silently overwritten.

Layout: {"schema_version": 1, "entries": {key: entry}}, key = model|config[|n=<calibration n>|seed=<seed>].
Each save re-reads the file under the lock and merges, so two sweeps writing at once keep both's entries.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from filelock import FileLock

from .errors import UserError

SCHEMA_VERSION = 1


def entry_key(model: str, config: str, calibration_n: int | None = None, seed: int | None = None) -> str:
    return f"{model}|{config}" if calibration_n is None else f"{model}|{config}|n={calibration_n}|seed={seed}"


def _move_aside_hint(path: Path) -> str:
    return f"move it aside (e.g. `mv {path} {path}.bak`) and rerun"


def load_results(path: Path) -> dict:
    """The results file's contents; a missing file is empty, a broken one is a UserError (never overwritten)."""
    path = Path(path)
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"results file {path} is not valid JSON ({e}); {_move_aside_hint(path)}") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION or "entries" not in data:
        version = data.get("schema_version") if isinstance(data, dict) else None
        raise UserError(f"results file {path} has schema version {version!r}, this quant-explorer writes "
                        f"{SCHEMA_VERSION}; {_move_aside_hint(path)}")
    return data


def write_json_atomic(path: Path, data) -> None:
    """Write to a temporary file in the same directory, fsync, rename: a reader sees old or new, never half."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write to {path.parent} ({e.strerror}); choose a writable --artifacts directory") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; a results file is meant to be shared
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lock(path: Path) -> FileLock:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {Path(path).parent} ({e.strerror}); choose a writable --artifacts "
                        "directory") from None
    return FileLock(f"{path}.lock", timeout=600)


def check_writable(path: Path) -> None:
    """Fail before hours of work, not after: the results file must be readable and its folder writable."""
    load_results(path)
    with _lock(path):
        pass


def save_entries(path: Path, entries: dict[str, dict]) -> None:
    """Merge `entries` into the results file atomically, under the lock."""
    with _lock(path):
        data = load_results(path)
        data["entries"].update(entries)
        data["entries"] = dict(sorted(data["entries"].items()))
        write_json_atomic(path, data)
