"""Writing files so that a reader sees the old file or the new one, never half, and a full or read-only disk is one
line naming the path and the fix, with no temporary file left behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError
from .paths import ARTIFACTS_ENV


def cannot_write(path: Path, error: OSError) -> UserError:
    """The one message for a write the filesystem refused: which path, why, and what to do."""
    why = error.strerror or str(error)
    fix = {28: "free some space there", 30: "it is on a read-only filesystem: pick a writable place"}.get(
        error.errno, "make it writable")
    return UserError(f"cannot write to {path} ({why}); {fix}, or set ${ARTIFACTS_ENV} (results, models, reports) "
                     f"or $QUANT_EXPLORER_CACHE (decoded data) to a writable directory")


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; renamed over `path` when the block succeeds, removed
    when it fails. `suffix` keeps the extension a writer insists on (ONNX, .pt2); an OSError becomes `cannot_write`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix or path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise cannot_write(path.parent, e) from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results and models are meant to be shared
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
