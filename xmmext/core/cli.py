"""Command-line plumbing shared by every entry point.

``run_main`` is the single place that turns exceptions into the one-line
``error: <what> (<file>)`` message and the exit codes of DESIGN.md; tracebacks only
with ``--debug``.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Callable, Sequence

from xmmext.core.errors import EXIT_USAGE, XmmextError

__all__ = ["Parser", "base_parser", "LIBRARIES", "quiet_library", "setup_logging", "log_to_file",
           "say_warnings_again", "run_main"]

log = logging.getLogger("xmmext")


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def base_parser(prog: str, description: str) -> Parser:
    """A parser with the options every program shares (--workdir, --debug, --quiet, --version)."""
    from xmmext.core.version import __version__
    p = Parser(prog=prog, description=description)
    p.add_argument("--version", action="version", version=f"xmmext {__version__}")
    p.add_argument("--workdir", help="work directory holding data/ and results/ "
                   "(default: $XMMEXT_WORKDIR or the current directory)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return p


_LOG_FILE_HANDLER: logging.Handler | None = None
LIBRARIES = ("sherpa",)          # their messages go to the log file only


def quiet_library(name: str) -> None:
    """Send a library's log messages to the step's log file only (not the console)."""
    lib = logging.getLogger(name)
    for h in list(lib.handlers):
        lib.removeHandler(h)
    lib.propagate = False
    if _LOG_FILE_HANDLER is not None:
        lib.addHandler(_LOG_FILE_HANDLER)
    else:
        lib.addHandler(logging.NullHandler())


def setup_logging(debug: bool = False, quiet: bool = False, logfile=None) -> None:
    """Console logging for this program's messages, plus an optional per-step log file
    that also receives the libraries' chatter."""
    global _LOG_FILE_HANDLER
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger("xmmext")
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(_OnceFilter())
    root.addHandler(console)
    _LOG_FILE_HANDLER = None
    if logfile is not None:
        _attach_file(_file_handler(logfile))
    root.propagate = False
    for name in LIBRARIES:
        if name in sys.modules:
            quiet_library(name)


class _OnceFilter(logging.Filter):
    """A warning said once on the console per program run (e.g. a camera without data is
    skipped by every step: the log files keep each occurrence)."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


def say_warnings_again() -> None:
    """Start a new "once" for console warnings (each observation of a list says its own)."""
    for h in logging.getLogger("xmmext").handlers:
        for f in h.filters:
            if isinstance(f, _OnceFilter):
                f.seen.clear()


def _file_handler(logfile) -> logging.Handler:
    from pathlib import Path
    try:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(logfile)
    except OSError as exc:
        raise XmmextError(f"cannot write the log file: {exc.strerror}", Path(logfile).parent) from None
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return fh


def _attach_file(fh: logging.Handler | None) -> None:
    """Make ``fh`` the one log file of this program's and the quiet libraries' messages."""
    global _LOG_FILE_HANDLER
    for name in ("xmmext",) + LIBRARIES:
        lg = logging.getLogger(name)
        if _LOG_FILE_HANDLER is not None:
            lg.removeHandler(_LOG_FILE_HANDLER)
        if fh is not None:
            lg.addHandler(fh)
    if _LOG_FILE_HANDLER is not None and _LOG_FILE_HANDLER is not fh:
        _LOG_FILE_HANDLER.flush()
    _LOG_FILE_HANDLER = fh


@contextlib.contextmanager
def log_to_file(logfile):
    """Within the block, this program's messages and the libraries' chatter go to
    ``logfile`` (one log per step of a run: results/<OBSID>/logs/<step>.log) instead of
    the program's own log file, if any."""
    previous = _LOG_FILE_HANDLER
    fh = _file_handler(logfile)
    _attach_file(fh)
    try:
        yield
    finally:
        _attach_file(None)
        fh.close()
        if previous is not None:
            _attach_file(previous)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; map exceptions to one-line errors and DESIGN.md exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        return int(main(args) or 0)
    except XmmextError as exc:
        if debug:
            raise
        sys.stderr.write(exc.one_line() + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except OSError as exc:        # a write the disk refused, wherever it happened: exit 2
        from pathlib import Path
        from xmmext.core.fileio import write_error
        mapped = write_error(exc, Path(exc.filename or "."))
        if mapped is None or debug:
            if debug:
                raise
            sys.stderr.write(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)\n")
            return 1
        sys.stderr.write(mapped.one_line() + "\n")
        return mapped.exit_code
    except Exception as exc:  # an unexpected failure: still one line without --debug
        if debug:
            raise
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)\n")
        return 1
