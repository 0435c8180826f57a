"""Writing files so that a reader sees the old file or the new one, never half, and a full or read-only disk is one
line naming the path and the fix, with no temporary file left behind.

A temporary file's name says which process writes it (`.NAME.XXXX.tmp-HOST-PID.EXT`), so the next run can remove
those a killed run left (`remove_leftovers`) without touching a live writer's; temporary folders (`scratch_dir`, where
ONNX Runtime's calibration works) are named alike, under the artifacts or cache directory, never the system's. A
file that several processes update (a results file, an artifact made once and shared) is changed under its lock
(`locked`), which says who holds it to whoever waits."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError, warn
from .paths import ARTIFACTS_ENV

HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]  # a shared disk's other machines keep theirs
LEFTOVER = re.compile(r"^\..*\.tmp-([0-9a-f]{8})-(\d+)(\.[^.]*)?$")
LOCK_TIMEOUT_ENV = "QUANT_EXPLORER_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 600
MAX_LOCK_TIMEOUT = 86_400  # a day: a save holds the lock for a second, so no run waits that long for a live one


def cannot_write(path: Path, error: OSError) -> UserError:
    """The one message for a write the filesystem refused: which path, why, and what to do; `reason` keeps the
    filesystem's word for why, for callers that only warn."""
    why = error.strerror or str(error)
    fix = {28: "free some space there", 30: "it is on a read-only filesystem: pick a writable place"}.get(
        error.errno, "make it writable")
    refused = UserError(f"cannot write to {path} ({why}); {fix}, or set ${ARTIFACTS_ENV} (results, models, reports) "
                        f"or $QUANT_EXPLORER_CACHE (decoded data) to a writable directory")
    refused.reason = why
    return refused


def write_target(path: Path) -> Path:
    """The file a write to `path` replaces: a symlink's target (the link itself stays), refused in one line when it
    is a directory or a read-only file (its mode is the owner's word, never changed behind their back)."""
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # not there yet (a folder in the way is told when it is made)
        return target
    except OSError as e:  # a symlink loop, a folder we may not enter
        raise cannot_write(path, e) from None
    if stat.S_ISDIR(mode):
        raise cannot_write(target, OSError(errno.EISDIR, "it is a directory, where a file should be; move it aside"))
    if not mode & 0o222:
        raise cannot_write(target, OSError(errno.EACCES, f"the file is read-only, mode {stat.S_IMODE(mode):o}"))
    return target


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; renamed over `path` when the block succeeds, removed
    when it fails. `suffix` keeps the extension a writer insists on (ONNX, .pt2); an OSError becomes `cannot_write`.
    A symlink is written through to its target; the replaced file keeps its mode."""
    path = write_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp-{HOST}-{os.getpid()}{suffix or path.suffix}",
                                    dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise cannot_write(path.parent, e) from None
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes it 0600; results and models are meant to be shared
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """UTF-8 whatever the locale; a file name that is not valid UTF-8 (a surrogate escape) is written escaped."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def scratch_dir(folder: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder under `folder`, named as `remove_leftovers` knows it, removed afterwards; while it is
    open, Python's `tempfile` (ONNX Runtime's `ort.quant.*` and `pre.quant.*` folders) works in it too, so a run
    killed there (SIGKILL) leaves nothing in the system's temporary directory, and the next start removes it."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f".{prefix}.", suffix=f".tmp-{HOST}-{os.getpid()}", dir=folder))
    except OSError as e:
        raise cannot_write(Path(folder), e) from None
    previous, tempfile.tempdir = tempfile.tempdir, str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(folder: Path) -> int:
    """Remove the temporary files and folders that runs killed mid-write (SIGKILL, power loss) left under `folder`:
    those of this machine whose process is gone. Returns how many."""
    found = [path for path in Path(folder).rglob(".*.tmp-*")
             if (match := LEFTOVER.match(path.name)) and match[1] == HOST and not _alive(int(match[2]))]
    removed = 0
    for path in found:  # a folder's own leftovers went with it
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def lock_timeout() -> float:
    """How long a run waits for another's lock: $QUANT_EXPLORER_LOCK_TIMEOUT seconds, default 10 minutes."""
    text = os.environ.get(LOCK_TIMEOUT_ENV) or str(DEFAULT_LOCK_TIMEOUT)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= MAX_LOCK_TIMEOUT:  # NaN and inf too: a wait must end
        raise UserError(f"${LOCK_TIMEOUT_ENV} must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT:,}, got {text!r}")
    return seconds


def _holder(lock: Path) -> str:
    """Who holds `lock`, as its holder wrote it there: pid, host, command and since when."""
    try:
        return lock.read_text().strip() or "another quant-explorer run"
    except OSError:
        return "another quant-explorer run"


@contextmanager
def locked(path: Path, tell: bool = True):
    """Hold `path`.lock (an exclusive flock; the holder writes who it is into it). A wait says who holds it (unless
    not `tell`: a worker waiting for another to build a shared artifact), and gives up after `lock_timeout()` in one
    line; a folder or lock file that cannot hold it is a UserError."""
    target = Path(path).resolve()  # one lock per file, however it is named (symlinks)
    folder, lock = target.parent, Path(f"{target}.lock")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise UserError(f"lock file {lock} is a directory; remove it (`rmdir {lock}`) and rerun") from None
    except OSError as e:
        raise cannot_write(folder, e) from None
    try:
        started, timeout, told = time.monotonic(), lock_timeout(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise UserError(f"{path} is locked by {_holder(lock)}; gave up after waiting {waited:.0f} s: "
                                    f"rerun when it finishes, raise ${LOCK_TIMEOUT_ENV} (seconds), or delete {lock} "
                                    f"if no run is active") from None
                if tell and not told and waited >= 1:
                    warn(f"waiting for {path}, locked by {_holder(lock)} (up to {timeout:.0f} s)")
                    told = True
                time.sleep(0.05)
        try:  # who holds it, for those who wait; a full disk costs only that
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[1:3]) or 'python'}), "
                          f"since {time.strftime('%H:%M:%S')}\n".encode(errors="backslashreplace"), 0)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the flock
