"""full_results.json: schema-versioned, validated whole on read, written atomically under a file lock, never
silently overwritten.

Layout: {"schema_version": 2, "datasets": {fingerprint: dataset}, "entries": {key: entry}}, with
key = model|config[|n=<calibration n>|seed=<seed>][|<identity hash>] (`identity.py`): rows measured on other
data, CPUs or library versions have other keys and stay beside each other. A dataset record holds the
evaluation set's name, size and classes; its labels are cached apart (`paths.labels_dir`, never committed: they
are the data's own), so each row's stored per-image predictions can be scored and paired again where the data
has been seen once.
Version-1 files (no identities, no predictions) are migrated on read: their rows keep their keys, marked
`"schema": 1`, and are never reused. Each save re-reads the file under the lock and merges, so two sweeps
writing at once keep both's entries. Readers get the rows typed (`Results`, `row.Row`); the study and bench files
share the layout and are read as plain entries (`load_results`).
"""

from __future__ import annotations

import base64
import json
import signal
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError
from .files import cannot_write, locked, write_target, write_text_atomic
from .paths import labels_dir
from .row import Row

SCHEMA_VERSION = 2
MIGRATES = {1}  # older schema versions read (and rewritten) as this one
SCORED_ROW_FIELDS = ("model", "n_images", "confusion_matrix", "per_class_accuracy")  # beside config_name, accuracy


def entry_key(model: str, config: str, calibration_n: int | None = None, seed: int | None = None,
              identity_hash: str | None = None) -> str:
    parts = [model, config, *((f"n={calibration_n}", f"seed={seed}") if calibration_n is not None else ())]
    return "|".join([*parts, *((identity_hash,) if identity_hash else ())])


def encode_classes(values: np.ndarray) -> str:
    """Class ids (< 256) as base64 of one byte each: 1,017 predictions take 1.4 kB."""
    return base64.b64encode(np.asarray(values, dtype=np.uint8).tobytes()).decode()


def decode_classes(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.int64)


def _labels_cache(fingerprint: str, n_images: int) -> tuple[Path, dict]:
    """Where an evaluation set's labels are cached, and what its record must say it was made from."""
    return labels_dir() / f"{fingerprint}.txt", {"fingerprint": fingerprint, "n_images": int(n_images)}


def save_labels(fingerprint: str, labels: np.ndarray) -> None:
    """Cache an evaluation set's labels under its fingerprint, with its record (`provenance`); a cache entry that does
    not prove itself (damaged, or of an older version) is written again."""
    from .provenance import proven, write_record

    path, made_from = _labels_cache(fingerprint, len(labels))
    if not proven(path, made_from, "labels cache", cache=True):
        write_text_atomic(path, encode_classes(labels) + "\n")
        write_record(path, made_from)


def load_labels(fingerprint: str, n_images: int) -> tuple[np.ndarray | None, str | None]:
    """The cached labels of an evaluation set of `n_images` and, unless its record proves them, why not (a phrase
    naming the cache entry): None and no reason where this machine has not seen the set; None and the damage where
    the entry is damaged; the labels and the reason where only a record is missing (an older version's entry: the
    caller checks them against the stored scores). `save_labels` writes a damaged or unproven entry again."""
    from .provenance import MISSING, UNRECORDED, why_not

    path, made_from = _labels_cache(fingerprint, n_images)
    why = why_not(path, made_from)
    if why == MISSING:
        return None, None
    if why not in (None, UNRECORDED):
        return None, f"the labels cache {path} {why}"
    try:
        labels = decode_classes(path.read_text().strip())
    except (OSError, ValueError) as e:  # binascii.Error is a ValueError
        return None, f"the labels cache {path} is damaged ({type(e).__name__}: {e})"
    if len(labels) != n_images:
        return None, f"the labels cache {path} is damaged: {len(labels)} labels for {n_images} images"
    return labels, (None if why is None else f"the labels cache {path} {why}")


def _move_aside_hint(path: Path) -> str:
    return f"move it aside (e.g. `mv {path} {path}.bak`) and rerun"


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json's object_pairs_hook: a key given twice would lose one of its values on the next save."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _shape_problem(data: dict) -> str | None:
    """What makes a results document unusable, in a phrase; None when every part has the shape readers expect."""
    if not isinstance(data.get("datasets", {}), dict):
        return f"its \"datasets\" is a {type(data['datasets']).__name__}, not an object"
    for key, entry in data["entries"].items():
        if not isinstance(entry, dict):
            return f"entry {key!r} is a {type(entry).__name__}, not an object"
        if "config_name" in entry and "accuracy" in entry:  # a scored row: what summary, compare and report read
            missing = [f for f in SCORED_ROW_FIELDS if f not in entry]
            if missing:
                return f"entry {key!r} lacks {', '.join(missing)}"
    return None


def load_results(path: Path) -> dict:
    """The results file's contents, read completely and validated; a missing file is empty, anything else that
    cannot be read whole (not JSON, a duplicated key, an unknown schema, an entry of another shape, a directory)
    is a UserError, and the file is never written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"results file {path} is a directory; {_move_aside_hint(path)}")
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "datasets": {}, "entries": {}}
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as e:
        raise UserError(f"results file {path} has the key {e.args[0]!r} twice, so one of its values would be lost; "
                        f"keep one and rerun, or {_move_aside_hint(path)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"results file {path} is not valid JSON ({e}); {_move_aside_hint(path)}") from None
    except OSError as e:
        raise UserError(f"cannot read results file {path} ({e.strerror}); make it readable or "
                        f"{_move_aside_hint(path)}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in (SCHEMA_VERSION, *MIGRATES) or not isinstance(data.get("entries"), dict):
        raise UserError(f"results file {path} has schema version {version!r}, this quant-explorer writes "
                        f"{SCHEMA_VERSION}; {_move_aside_hint(path)}")
    problem = _shape_problem(data)
    if problem:
        raise UserError(f"results file {path} is damaged: {problem}; {_move_aside_hint(path)}")
    if version != SCHEMA_VERSION:
        data = {"schema_version": SCHEMA_VERSION, "datasets": {},
                "entries": {k: {**e, "schema": version} for k, e in data["entries"].items()}}
    data.setdefault("datasets", {})
    return data


def write_json_atomic(path: Path, data) -> None:
    """Write beside the file, fsync, rename (`files.atomic_path`): a reader sees old or new, never half."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def check_writable(path: Path) -> None:
    """Fail before hours of work, not after: the results file must be readable and valid, a writable file (or none
    yet), and its folder writable."""
    load_results(path)
    write_target(path)
    with locked(path):
        try:
            tempfile.TemporaryFile(dir=Path(path).parent).close()
        except OSError as e:
            raise cannot_write(Path(path).parent, e) from None


def _finished(entry: dict) -> bool:
    """A stored entry that holds an answer: scored, or a config that does not apply (no error)."""
    return entry.get("error") is None and (entry.get("accuracy") is not None or entry.get("not_applicable") is not None)


_SAVED: dict[Path, list[str]] = {}  # results file -> the keys this process wrote into it, in order


def saved_here() -> dict[Path, list[str]]:
    """The keys this process wrote, per file: what an interrupted command really saved."""
    return {path: list(keys) for path, keys in _SAVED.items()}


@contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait while a file is replaced and the save is counted (`saved_here`), then arrive: an
    interrupted command says exactly what it saved. Only the main thread handles signals (elsewhere: as is)."""
    held = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or any(signal.getsignal(s) is None for s in held):
        yield  # a handler installed outside Python could not be put back
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in pending[:1]:
            signal.raise_signal(signum)


def save_entries(path: Path, entries: dict[str, dict], datasets: dict[str, dict] | None = None) -> list[str]:
    """Merge `entries` (and the dataset records they are scored on) into the results file atomically, under the lock.
    A row computed again under its key (so of the same identity) keeps the speed its bench measured on it; a failed
    one never replaces a stored answer (scored or not applicable): returns the keys kept so, for the caller to say."""
    with locked(path):
        data = load_results(path)
        data["datasets"].update(datasets or {})
        kept, written = [], []
        for key, entry in entries.items():
            stored = data["entries"].get(key, {})
            if entry.get("error") is not None and _finished(stored):
                kept.append(key)
                continue
            data["entries"][key] = {**entry, "bench": stored["bench"]} if "bench" in stored and "bench" not in entry \
                else entry
            written.append(key)
        data["entries"] = dict(sorted(data["entries"].items()))
        with _signals_held():
            write_json_atomic(path, data)
            _SAVED.setdefault(Path(path), []).extend(written)
    return kept


def save_rows(path: Path, rows: dict[str, Row], datasets: dict[str, dict] | None = None) -> list[str]:
    """`save_entries` for typed rows: the one way rows are written. Returns the keys whose stored answer was kept
    instead of a failed row."""
    return save_entries(path, {k: row.to_dict() for k, row in rows.items()}, datasets)


def update_rows(path: Path, change: Callable[[dict[str, Row]], dict[str, Row]]) -> dict[str, Row]:
    """Under the lock: read the stored rows, let `change(rows)` return those to write back ({key: Row}), merge them
    in, write atomically; rows not returned stay byte for byte as they were. Returns what was written."""
    with locked(path):
        data = load_results(path)
        changed = change({k: Row.from_dict(e) for k, e in data["entries"].items()})
        data["entries"].update({k: row.to_dict() for k, row in changed.items()})
        with _signals_held():
            write_json_atomic(path, data)
            _SAVED.setdefault(Path(path), []).extend(changed)
    return changed


@dataclass
class Results:
    """full_results.json as typed rows: what every reader of it gets (`Results.load`)."""

    rows: dict[str, Row]  # by key (`entry_key`)
    datasets: dict[str, dict]  # by fingerprint: name, n_images, classes

    @classmethod
    def of(cls, document: dict) -> Results:
        """From a results document (`load_results`); its non-row entries become rows of `extra` fields only."""
        return cls({k: Row.from_dict(e) for k, e in document["entries"].items()}, document.get("datasets", {}))

    @classmethod
    def load(cls, path: Path) -> Results:
        return cls.of(load_results(path))
