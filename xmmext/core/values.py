"""Parsers for option values on the command line: every number is finite and in range
before it reaches a step (a bad value is exit 2 with the option's name)."""
from __future__ import annotations

import argparse
import math

from xmmext.core.errors import UsageError as _UsageError
from xmmext.core.paths import CAMERAS, parse_cameras

__all__ = ["UsageError", "finite_float", "positive_float", "non_negative_float", "non_negative_int",
           "positive_int", "cameras", "radius", "camera_file", "per_camera", "parameter_value", "check",
           "camera_tuple"]


class UsageError(_UsageError, argparse.ArgumentTypeError):
    """A bad option value: argparse names the option in its one-line message (exit 2);
    outside argparse it is an ordinary UsageError."""


def finite_float(text: str) -> float:
    """A finite number (NaN and inf are refused)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise UsageError(f"not a finite number: {text!r}")
    return v


def positive_float(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        raise UsageError(f"must be positive, got {text!r}")
    return v


def non_negative_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise UsageError(f"must be >= 0, got {text!r}")
    return v


def _whole_number(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"not a whole number: {text!r}") from None
    if v < minimum:
        raise UsageError(f"must be >= {minimum}, got {text!r}")
    return v


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def cameras(text: str) -> tuple:
    """'mos1,pn' -> ('mos1', 'pn') in canonical order."""
    try:
        return tuple(parse_cameras(text))
    except _UsageError as exc:
        raise UsageError(exc.message) from None


def radius(text: str) -> float | None:
    """A radius in arcmin, or 'auto' (None)."""
    if str(text).strip().lower() == "auto":
        return None
    return positive_float(text)


def camera_file(text: str) -> tuple[str, str]:
    """'pn=file.rmf' -> ('pn', 'file.rmf')."""
    cam, sep, name = str(text).partition("=")
    cam = cam.strip().lower()
    if not sep or cam not in CAMERAS or not name:
        raise UsageError(f"takes CAMERA=FILE with CAMERA one of {', '.join(CAMERAS)}, got {text!r}")
    return cam, name


def per_camera(pairs: list | dict | None) -> dict | None:
    """[('pn', 'f'), ...] (repeated CAMERA=FILE options) -> {'pn': 'f', ...}."""
    if not pairs:
        return None
    if isinstance(pairs, dict):
        return dict(pairs)
    return {cam: name for cam, name in pairs}


def parameter_value(text: str) -> tuple[str, float]:
    """'apec.Abundanc=0.3' -> ('apec.Abundanc', 0.3)."""
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip():
        raise UsageError(f"takes component.par=value, got {text!r}")
    return name.strip(), finite_float(value)


def check(opts, name: str, parser) -> None:
    """Validate an Options field with a value parser; the error names the option."""
    value = getattr(opts, name)
    try:
        parser(value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value))
    except _UsageError as exc:
        raise _UsageError(f"--{name.replace('_', '-')}: {exc.message}") from None


def camera_tuple(value) -> tuple:
    """Cameras given as 'mos1,pn' or a sequence -> canonical tuple."""
    return cameras(value if isinstance(value, str) else ",".join(value))
