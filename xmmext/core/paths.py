"""OBSID/name validation and the on-disk layout (DESIGN.md "On-disk layout").

Validation happens before any path is built, so user text never reaches the file
system or a subprocess unchecked.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from xmmext.core.errors import UsageError

__all__ = ["CAMERAS", "validate_obsid", "validate_name", "parse_cameras", "resolve_workdir", "ObsPaths",
           "multi_dir"]

CAMERAS = ("mos1", "mos2", "pn")
_OBSID_RE = re.compile(r"[0-9]{10}")           # used with fullmatch: no trailing newline passes
_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


def validate_obsid(obsid: str) -> str:
    """Return ``obsid`` if it is exactly 10 digits, else raise UsageError."""
    if not isinstance(obsid, str) or not _OBSID_RE.fullmatch(obsid):
        raise UsageError(f"OBSID must be exactly 10 digits, got {obsid!r}")
    return obsid


def validate_name(name: str) -> str:
    """Return a source/run name if it matches ``[A-Za-z0-9_.+-]{1,64}``."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"name must match [A-Za-z0-9_.+-]{{1,64}}, got {name!r}")
    return name


def parse_cameras(text: str | None) -> list[str]:
    """Parse ``mos1,mos2,pn`` (any subset, any order) into a list in canonical order."""
    if text is None or text == "":
        return list(CAMERAS)
    asked = [c.strip().lower() for c in text.split(",") if c.strip()]
    bad = [c for c in asked if c not in CAMERAS]
    if bad or not asked:
        raise UsageError(f"unknown camera(s) {bad or text!r}; choose from {','.join(CAMERAS)}")
    return [c for c in CAMERAS if c in asked]


def resolve_workdir(workdir: str | os.PathLike | None = None) -> Path:
    """--workdir, else $XMMEXT_WORKDIR, else the current directory."""
    chosen = workdir or os.environ.get("XMMEXT_WORKDIR") or os.getcwd()
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class ObsPaths:
    """Every path one observation uses, relative to a work directory."""

    workdir: Path
    obsid: str

    @classmethod
    def of(cls, obsid: str, workdir: str | os.PathLike | None = None) -> "ObsPaths":
        return cls(resolve_workdir(workdir), validate_obsid(obsid))

    @property
    def data(self) -> Path:
        return self.workdir / "data" / self.obsid

    @property
    def odf(self) -> Path:
        return self.data / "ODF"

    @property
    def event_dir(self) -> Path:
        return self.data / "event"

    @property
    def truth(self) -> Path:
        return self.data / "truth.json"

    @property
    def results(self) -> Path:
        return self.workdir / "results" / self.obsid

    @property
    def events(self) -> Path:
        return self.results / "events"

    @property
    def regions(self) -> Path:
        return self.results / "regions"

    @property
    def spectra(self) -> Path:
        return self.results / "spectra"

    @property
    def fit(self) -> Path:
        return self.results / "fit"

    @property
    def logs(self) -> Path:
        return self.results / "logs"

    def clean_events(self, cam: str) -> Path:
        return self.events / f"{cam}_clean_evt.fits"


def multi_dir(name: str, workdir: str | os.PathLike | None = None) -> Path:
    """results/multi/<name>/ for the multi-observation step."""
    return resolve_workdir(workdir) / "results" / "multi" / validate_name(name)
