"""Atomic writes and up-to-date checks.

Every output goes to a temporary name in the destination folder and is renamed into
place (``os.replace`` is atomic on POSIX), so an interrupted run never leaves a half
file behind and a re-run can trust what it finds.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UsageError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder: {exc.strerror}", dest.parent) from None
    if not os.access(dest.parent, os.W_OK):
        raise UsageError("output folder is not writable", dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)     # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(dest: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically (run-time 'up_to_date' markers are not written)."""
    text = json.dumps(_strip_markers(obj), indent=2, sort_keys=False, default=_json_default) + "\n"
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return dest


def _strip_markers(obj):
    if isinstance(obj, dict):
        return {k: _strip_markers(v) for k, v in obj.items() if k != "up_to_date"}
    if isinstance(obj, list):
        return [_strip_markers(v) for v in obj]
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


def is_up_to_date(outputs: list[Path], inputs: list[Path]) -> bool:
    """True when every output exists and is newer than every existing input."""
    if not outputs or not all(Path(o).exists() for o in outputs):
        return False
    newest_in = max((Path(i).stat().st_mtime for i in inputs if Path(i).exists()), default=0.0)
    oldest_out = min(Path(o).stat().st_mtime for o in outputs)
    return oldest_out >= newest_in


def remove_stale_parts(folder: str | os.PathLike) -> int:
    """Delete ``.*.part`` leftovers of a killed run; return how many were removed."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.part"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _json_default(obj):
    import numpy as np
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
