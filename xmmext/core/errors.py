"""Exit codes of ../shared/DESIGN.md and the exceptions that carry them.

Every failure a user can cause or meet is raised as one of these; the command-line
wrapper (:mod:`xmmext.core.cli`) turns it into a single ``error: <what> (<file>)`` line.
"""
from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_USAGE", "EXIT_DEPENDENCY", "EXIT_DATA", "XmmextError", "UsageError", "DependencyError",
           "DataError"]

EXIT_OK = 0
EXIT_USAGE = 2        # bad input or usage
EXIT_DEPENDENCY = 3   # a needed tool or data file is missing (SAS, AtomDB, ...)
EXIT_DATA = 4         # the data cannot give a result (no events, empty GTI, ...)


class XmmextError(Exception):
    """Base error: a message, the file it concerns (optional) and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, path: object | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        return f"error: {text} ({self.path})" if self.path else f"error: {text}"


class UsageError(XmmextError):
    """Bad argument, malformed input file, invalid OBSID/name (exit 2)."""
    exit_code = EXIT_USAGE


class DependencyError(XmmextError):
    """Missing software or data files (exit 3)."""
    exit_code = EXIT_DEPENDENCY


class DataError(XmmextError):
    """The data cannot give a result (exit 4)."""
    exit_code = EXIT_DATA
