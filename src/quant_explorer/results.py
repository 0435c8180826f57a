"""full_results.json: schema-versioned, written atomically under a file lock, never silently overwritten.

Layout: {"schema_version": 2, "datasets": {fingerprint: dataset}, "entries": {key: entry}}, with
key = model|config[|n=<calibration n>|seed=<seed>][|<identity hash>] (`identity.py`): rows measured on other
data, CPUs or library versions have other keys and stay beside each other. A dataset record holds the
evaluation set's name, size and classes; its labels are cached apart (`paths.labels_dir`, never committed: they
are the data's own), so each row's stored per-image predictions can be scored and paired again where the data
has been seen once.
Version-1 files (no identities, no predictions) are migrated on read: their rows keep their keys, marked
`"schema": 1`, and are never reused. Each save re-reads the file under the lock and merges, so two sweeps
writing at once keep both's entries.
"""

from __future__ import annotations

import base64
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from .errors import UserError
from .files import cannot_write, write_text_atomic
from .paths import labels_dir

SCHEMA_VERSION = 2
MIGRATES = {1}  # older schema versions read (and rewritten) as this one


def entry_key(model: str, config: str, calibration_n: int | None = None, seed: int | None = None,
              identity_hash: str | None = None) -> str:
    parts = [model, config, *((f"n={calibration_n}", f"seed={seed}") if calibration_n is not None else ())]
    return "|".join([*parts, *((identity_hash,) if identity_hash else ())])


def encode_classes(values: np.ndarray) -> str:
    """Class ids (< 256) as base64 of one byte each: 1,017 predictions take 1.4 kB."""
    return base64.b64encode(np.asarray(values, dtype=np.uint8).tobytes()).decode()


def decode_classes(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.int64)


def save_labels(fingerprint: str, labels: np.ndarray) -> None:
    """Cache an evaluation set's labels under its fingerprint (once)."""
    path = labels_dir() / f"{fingerprint}.txt"
    if not path.exists():
        write_text_atomic(path, encode_classes(labels) + "\n")


def load_labels(fingerprint: str) -> np.ndarray | None:
    """The cached labels of an evaluation set, or None where this machine has not seen it."""
    path = labels_dir() / f"{fingerprint}.txt"
    return decode_classes(path.read_text().strip()) if path.is_file() else None


def _move_aside_hint(path: Path) -> str:
    return f"move it aside (e.g. `mv {path} {path}.bak`) and rerun"


def load_results(path: Path) -> dict:
    """The results file's contents; a missing file is empty, a broken one is a UserError (never overwritten)."""
    path = Path(path)
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "datasets": {}, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"results file {path} is not valid JSON ({e}); {_move_aside_hint(path)}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in (SCHEMA_VERSION, *MIGRATES) or not isinstance(data.get("entries"), dict):
        raise UserError(f"results file {path} has schema version {version!r}, this quant-explorer writes "
                        f"{SCHEMA_VERSION}; {_move_aside_hint(path)}")
    if version != SCHEMA_VERSION:
        data = {"schema_version": SCHEMA_VERSION, "datasets": {},
                "entries": {k: {**e, "schema": version} for k, e in data["entries"].items()}}
    data.setdefault("datasets", {})
    return data


def write_json_atomic(path: Path, data) -> None:
    """Write beside the file, fsync, rename (`files.atomic_path`): a reader sees old or new, never half."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


@contextmanager
def locked(path: Path):
    """Hold `path`.lock; a folder that cannot hold it (read-only, not a directory) is a UserError."""
    folder, lock = Path(path).parent, FileLock(f"{path}.lock", timeout=600)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise UserError(f"{path} has been locked by another quant-explorer run for 10 minutes; wait for it to "
                        f"finish, or delete {lock.lock_file} if no run is active") from None
    except OSError as e:
        raise cannot_write(folder, e) from None
    try:
        yield
    finally:
        lock.release()


def check_writable(path: Path) -> None:
    """Fail before hours of work, not after: the results file must be readable and its folder writable."""
    load_results(path)
    with locked(path):
        try:
            tempfile.TemporaryFile(dir=Path(path).parent).close()
        except OSError as e:
            raise cannot_write(Path(path).parent, e) from None


def save_entries(path: Path, entries: dict[str, dict], datasets: dict[str, dict] | None = None) -> None:
    """Merge `entries` (and the dataset records they are scored on) into the results file atomically, under the lock."""
    with locked(path):
        data = load_results(path)
        data["datasets"].update(datasets or {})
        data["entries"].update(entries)
        data["entries"] = dict(sorted(data["entries"].items()))
        write_json_atomic(path, data)
