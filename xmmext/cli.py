"""Command-line plumbing shared by every entry point.

``run_main`` is the single place that turns exceptions into the one-line
``error: <what> (<file>)`` message and the exit codes of DESIGN.md; tracebacks only
with ``--debug``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from .errors import EXIT_USAGE, XmmextError

log = logging.getLogger("xmmext")


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def base_parser(prog: str, description: str) -> Parser:
    """A parser with the options every step shares (--workdir, --debug, --quiet)."""
    p = Parser(prog=prog, description=description)
    p.add_argument("--workdir", help="work directory holding data/ and results/ "
                   "(default: $XMMEXT_WORKDIR or the current directory)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return p


def setup_logging(debug: bool = False, quiet: bool = False, logfile=None) -> None:
    """Console logging (plus an optional per-step log file)."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger("xmmext")
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    if logfile is not None:
        from pathlib import Path
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(logfile)
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    root.propagate = False


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
    except Exception as exc:  # an unexpected failure: still one line without --debug
        if debug:
            raise
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)\n")
        return 1
