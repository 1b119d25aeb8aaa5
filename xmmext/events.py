"""Finding, reading and validating EPIC event lists (simulated, PPS or SAS-made).

Every later step reads events through :func:`read_events`, which checks the file is
FITS, has an EVENTS table with the needed columns and the header keywords the pipeline
relies on, and fails with exit 2 and one line naming the file and what is missing.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .errors import DataError, UsageError
from .instrument import INSTRUME_TO_CAMERA
from .layout import ObsPaths

# PPS product names, e.g. P0693760101PNS003PIEVLI0000.FTZ, P0693760101M1S001MIEVLI0000.FIT.gz
PPS_RE = re.compile(r"^P(?P<obsid>\d{10})(?P<cam>M1|M2|PN)(?P<exp>[SU]\d{3})(?:PI|MI)EVLI0000"
                    r"\.(?:FIT|FTZ|FITS)(?:\.GZ)?$", re.IGNORECASE)
# emchain/epchain outputs, e.g. 0693760101_EMOS1_S001_ImagingEvts.ds
SAS_RE = re.compile(r"^(?P<obsid>\d{10})_(?P<inst>EMOS1|EMOS2|EPN)_(?P<exp>[SU]\d{3})_ImagingEvts\.ds$",
                    re.IGNORECASE)
_PPS_CAM = {"M1": "mos1", "M2": "mos2", "PN": "pn"}

REQUIRED_COLUMNS = ("TIME", "X", "Y", "PI", "PATTERN", "FLAG", "CCDNR")
REQUIRED_KEYWORDS = ("INSTRUME", "TSTART", "TSTOP")


@dataclass
class EventList:
    """An event list in memory: the EVENTS header, chosen columns and per-CCD GTIs."""
    path: Path
    camera: str
    primary: fits.Header
    header: fits.Header
    columns: dict
    gtis: dict = field(default_factory=dict)      # CCD number -> (n, 2) START/STOP
    gti_headers: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def key(self, name: str, default=None):
        """A header keyword from EVENTS, else the primary header."""
        if name in self.header:
            return self.header[name]
        return self.primary.get(name, default)

    @property
    def tstart(self) -> float:
        return float(self.key("TSTART"))

    @property
    def tstop(self) -> float:
        return float(self.key("TSTOP"))


def camera_of_file(path: Path) -> str | None:
    """Camera name from a file name we recognise (simulated, PPS or emchain)."""
    name = path.name
    m = PPS_RE.match(name)
    if m:
        return _PPS_CAM[m.group("cam").upper()]
    m = SAS_RE.match(name)
    if m:
        return INSTRUME_TO_CAMERA[m.group("inst").upper()]
    for cam in ("mos1", "mos2", "pn"):
        if name.lower() in (f"{cam}_evt.fits", f"{cam}_evt.fits.gz"):
            return cam
    return None


def find_event_files(paths: ObsPaths) -> dict[str, list[Path]]:
    """Input event lists per camera in data/<OBSID>/event/ (exit 2 if the folder is missing)."""
    folder = paths.event_dir
    if not folder.is_dir():
        raise UsageError("no event folder for this observation (expected simulated <cam>_evt.fits "
                         "or PPS P<OBSID><cam>S###{PI,MI}EVLI0000.FIT[.gz])", folder)
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        cam = camera_of_file(p)
        if cam and p.is_file():
            found.setdefault(cam, []).append(p)
    return found


def choose_exposure(files: list[Path]) -> tuple[Path, str]:
    """With several exposures of one camera, use the longest; say which and why."""
    if len(files) == 1:
        return files[0], "single exposure"
    spans = []
    for f in files:
        h = read_header(f)
        spans.append((float(h.get("TSTOP", 0)) - float(h.get("TSTART", 0)), f))
    spans.sort(key=lambda s: -s[0])
    best = spans[0][1]
    others = ", ".join(f.name for _, f in spans[1:])
    return best, f"longest of {len(files)} exposures ({spans[0][0]:.0f} s); not used: {others}"


def _open(path: Path, memmap: bool = True) -> fits.HDUList:
    path = Path(path)
    if not path.exists():
        raise UsageError("event list not found", path)
    try:
        gz = path.suffix.lower() in (".gz", ".ftz") or _is_gzip(path)
        if gz:
            return fits.open(gzip.open(path), memmap=False)
        return fits.open(path, memmap=memmap)
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as exc:
        raise UsageError(f"not a readable FITS file: {exc}", path) from None


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_header(path: Path) -> fits.Header:
    """The EVENTS header (exit 2 if there is none)."""
    with _open(path) as hdul:
        if "EVENTS" not in hdul:
            raise UsageError("no EVENTS extension (not an event list)", path)
        return hdul["EVENTS"].header.copy()


def read_events(path: str | Path, columns: list[str] | None = None,
                required: tuple[str, ...] = REQUIRED_COLUMNS) -> EventList:
    """Read an event list; ``columns`` limits what is loaded (default: all).

    Raises UsageError (exit 2) naming the file when it is not FITS, has no EVENTS
    table, lacks a required column or keyword, or its INSTRUME is not EPIC.
    DataError (exit 4) if it holds no events at all.
    """
    path = Path(path)
    with _open(path) as hdul:
        if "EVENTS" not in hdul:
            raise UsageError("no EVENTS extension (not an event list)", path)
        ev = hdul["EVENTS"]
        names = [n.upper() for n in ev.columns.names]
        missing = [c for c in required if c not in names]
        if missing:
            raise UsageError(f"event list has no {', '.join(missing)} column", path)
        hdr = ev.header
        primary = hdul[0].header.copy()
        miss_kw = [k for k in REQUIRED_KEYWORDS if k not in hdr and k not in primary]
        if miss_kw:
            raise UsageError(f"event list header lacks {', '.join(miss_kw)}", path)
        instrume = str(hdr.get("INSTRUME", primary.get("INSTRUME", ""))).strip().upper()
        if instrume not in INSTRUME_TO_CAMERA:
            raise UsageError(f"INSTRUME {instrume!r} is not an EPIC camera (EMOS1, EMOS2, EPN)", path)
        want = names if columns is None else [c.upper() for c in columns]
        absent = [c for c in want if c not in names]
        if absent:
            raise UsageError(f"event list has no {', '.join(absent)} column", path)
        try:
            data = ev.data
            cols = {c: np.array(data[c]) for c in want}
        except (TypeError, ValueError, OSError) as exc:
            raise UsageError(f"event table cannot be read: {exc}", path) from None
        gtis, gti_headers = {}, {}
        for h in hdul[1:]:
            m = re.match(r"^STDGTI(\d\d)$", h.name or "")
            if m:
                ccd = int(h.header.get("CCDID", m.group(1)))
                gtis[ccd] = np.column_stack([np.asarray(h.data["START"], float),
                                             np.asarray(h.data["STOP"], float)]) \
                    if h.data is not None and len(h.data) else np.zeros((0, 2))
                gti_headers[ccd] = h.header.copy()
        out = EventList(path=path, camera=INSTRUME_TO_CAMERA[instrume], primary=primary,
                        header=hdr.copy(), columns=cols, gtis=gtis, gti_headers=gti_headers)
    if out.n == 0 and want:
        raise DataError("event list holds no events", path)
    return out
