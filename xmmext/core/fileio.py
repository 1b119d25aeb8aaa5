"""Atomic writes (whether a step is up to date: :mod:`xmmext.steps.base`).

Every output goes to a temporary name in the destination folder and is renamed into
place (``os.replace`` is atomic on POSIX), so an interrupted run never leaves a half
file behind and a re-run can trust what it finds.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from xmmext.core.errors import UsageError

__all__ = ["PART_TAG", "write_error", "atomic_path", "observation_lock", "read_record", "read_json", "write_json",
           "write_text", "write_fits", "save_figure", "remove_stale_parts"]

PART_TAG = "xmmext-"        # marks this program's temporary files (.<name>.xmmext-XXXX.part)


# errors of writing that are the user's disk, not our code: exit 2 naming the folder
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def write_error(exc: OSError, dest: Path) -> UsageError | None:
    """The one-line error for a failed write caused by the disk (full, quota, file-size
    limit, read-only, no permission), or None for anything else."""
    short_write = exc.errno is None and "requested and" in str(exc) and "written" in str(exc)   # astropy
    if exc.errno in _NO_SPACE or short_write:
        return UsageError(f"no space left to write {dest.name} (disk full, quota or file-size limit)", dest.parent)
    if exc.errno in _NOT_WRITABLE:
        return UsageError(f"cannot write {dest.name}: {exc.strerror}", dest.parent)
    return None


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    A write that fails because of the disk becomes a UsageError (exit 2) naming the
    folder; the temporary file is removed in every case."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder: {exc.strerror}", dest.parent) from None
    if not os.access(dest.parent, os.W_OK):
        raise UsageError("output folder is not writable", dest.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{PART_TAG}", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise (write_error(exc, dest) or exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)     # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        mapped = write_error(exc, dest)
        if mapped is None:
            raise
        raise mapped from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def observation_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``/.xmmext.lock while a run works on an observation: a second run on
    the same observation is refused with a clear message instead of both writing the
    same files. The lock (``flock``) goes away with the process, even when killed; at the
    end of the run the file is removed too (while still held, so no other run can take a
    lock on a file that is about to disappear: a run checks that the file it locked is
    still the one on disk)."""
    import fcntl
    folder = Path(folder)
    lock = folder / ".xmmext.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a+")
    except OSError as exc:
        raise (write_error(exc, lock) or UsageError(f"cannot create the lock file: {exc.strerror}", folder)) from None
    held = False
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = _same_file(fh, lock)
        except BlockingIOError:
            pass
        if not held:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise UsageError(f"another xmmext run is working on this observation (pid {holder}); "
                             "wait for it to finish", folder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        if held:
            lock.unlink(missing_ok=True)
        fh.close()


def _same_file(fh, path: Path) -> bool:
    """Whether the open file ``fh`` is still the file at ``path`` (not removed meanwhile)."""
    try:
        return os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def read_record(path: str | os.PathLike) -> dict:
    """A step's JSON record, or {} when it is absent or unreadable (then the step is not
    up to date, and a report shows the section as empty)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON file another step wrote; exit 2 saying what to redo when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} not found", path) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{what} is not readable JSON ({type(exc).__name__}); re-run the step that "
                         "writes it (with --force)", path) from None


def write_json(dest: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically. A number that is not finite is
    written as null (bare NaN/Infinity tokens are not JSON; other tools refuse them)."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return dest


def _finite(obj):
    import math
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):             # numpy scalars and arrays
        return _finite(obj.tolist())
    return obj


def write_text(dest: str | os.PathLike, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_fits(dest: str | os.PathLike, hdulist, checksum: bool = True) -> Path:
    """Write an astropy HDUList atomically (with checksums, as SAS products have).

    ``checksum=False`` gives byte-identical files for identical content (astropy puts
    the write time in the CHECKSUM comment).
    """
    with atomic_path(dest) as tmp:
        hdulist.writeto(tmp, overwrite=True, checksum=checksum)
    return Path(dest)


def save_figure(dest: str | os.PathLike, fig, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (format from the destination suffix)."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, format=dest.suffix.lstrip(".") or "png", bbox_inches="tight")
    return dest


def remove_stale_parts(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed run of this program left in ``folder`` (only
    ours: ``.<name>.xmmext-*.part``; other programs' ``*.part`` files are left alone);
    return how many were removed."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f".*.{PART_TAG}*.part"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _json_default(obj):
    """What json cannot write itself once :func:`_finite` has turned numpy values into
    Python ones: paths."""
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
