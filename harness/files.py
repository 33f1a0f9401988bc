"""Writing files the user keeps: atomically (temp file, fsync, rename, fsync the folder), keeping the file's
mode, and under a lock when several harness runs may update one record."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
from pathlib import Path

from harness.errors import HarnessError


PROJECT_FOLDERS = ("results", "targets")


def project_root(start: Path | None = None) -> Path:
    """The project a command works in, found as git and pytest find theirs: the nearest folder at or above `start`
    holding results/ or targets/, else the repository root, else `start` (a new project)."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if any((folder / name).is_dir() for name in PROJECT_FOLDERS) or (folder / ".git").exists():
            return folder
    return start


def check_first_record_place(results_dir: Path) -> None:
    """A first record inside another results folder would never be gated against that folder's record: refused."""
    results_dir = Path(results_dir).resolve()
    outer = next((p for p in results_dir.parents if p.name == "results" and any(p.glob("*.csv"))), None)
    if outer is not None:
        raise HarnessError(f"refusing to start a new record in {results_dir}: it lies inside the results folder {outer}, "
                           f"whose records this run would not be gated against; run from the project folder "
                           f"{outer.parent} or pass --results-dir {outer}")


NAME_RULE = "letters, digits and _ - . + only, starting with a letter, digit or _, at most 64 characters"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}", re.ASCII)


def check_name(kind: str, name, where: str) -> str:
    """A model, variant or target name is an identifier: it labels rows and becomes part of file names."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HarnessError(f"{where}: {kind} name {str(name)!r} is refused: a name is {NAME_RULE}")
    return name


def path_under(folder: Path, *parts: str) -> Path:
    """folder/parts, refused unless it stays strictly inside folder (a part holding '/' or '..' must not climb out)."""
    folder = Path(folder)
    path = folder.joinpath(*parts)
    inside, top = path.resolve(), folder.resolve()
    if inside == top or top not in inside.parents or len(Path(*parts).parts) != len(parts):
        raise HarnessError(f"{path} would not be a plain entry of {folder}: {', '.join(map(repr, parts))} must not "
                           f"hold '/' or '..'; names are {NAME_RULE}")
    return path


def writable_folder(path: str | Path, option: str) -> Path:
    """A folder the run will write into, checked before any work: it may not exist yet, but must be creatable."""
    folder = Path(path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if existing == folder and not folder.is_dir():
        raise HarnessError(f"{option} {folder} is a file, not a folder: pass a folder (it is created if missing)")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise HarnessError(f"{option} {folder}: {existing} cannot be written to; pass a folder you can write to")
    return folder


USER_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def disk_error(error: OSError, path: Path, elsewhere: str) -> HarnessError | OSError:
    """The user's disk, not a bug: one line with the path and where to point instead; other OS errors unchanged."""
    if error.errno not in USER_DISK_ERRORS:
        return error
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return HarnessError(f"no space left on the disk holding {path} ({error.strerror}): free space there, or "
                            f"{elsewhere}; files already written (the record) were left as they were")
    if error.errno == errno.EFBIG:
        return HarnessError(f"a file under {path} hit this process's file-size limit ({error.strerror}; ulimit -f): "
                            f"raise the limit, or {elsewhere}")
    return HarnessError(f"cannot write {path} ({error.strerror}): {elsewhere}")


def write_text_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a part; the new file keeps the old one's mode."""
    path = Path(path)
    try:
        _write_text_atomic(path, text)
    except OSError as e:
        raise disk_error(e, path, "pass --results-dir a folder on a disk with room") from e


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _mode_for(path: Path) -> int:
    """The existing file's permissions, or what a plain open() would give a new one (0666 less the umask)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable: a crash right after it must not bring the old file back."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, on_wait=None):
    """Hold an exclusive lock on `path` (a lock file beside it) for a read-merge-replace; others wait their turn."""
    path = Path(path)
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise HarnessError(f"cannot write beside {path} ({e.strerror}): pass --results-dir a folder you can write to") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait(f"waiting for another harness run that is writing {path}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; the lock file stays (removing it would race the next writer)
