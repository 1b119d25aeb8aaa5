"""Finding, reading and validating EPIC event lists (simulated, PPS or SAS-made).

Every later step reads events through :func:`read_events`, which checks the file is
FITS, has an EVENTS table with the needed columns and the header keywords the pipeline
relies on, and fails with exit 2 and one line naming the file and what is missing.
"""
from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

import xmmext.events.gti as G
from xmmext.core.errors import DataError, UsageError
from xmmext.instrument import INSTRUME_TO_CAMERA
from xmmext.core.paths import ObsPaths

__all__ = ["PPS_RE", "SAS_RE", "REQUIRED_COLUMNS", "REQUIRED_KEYWORDS", "EventList", "camera_of_file",
           "EventFileInfo", "FITS_SUFFIXES", "identify_event_list", "find_event_files", "exposures_to_use",
           "choose_exposure", "open_fits", "read_header", "read_events", "filter_gtis", "is_prefiltered"]

log = logging.getLogger("xmmext.events.reader")

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
    """An event list in memory: the EVENTS header, chosen columns and per-CCD good time.

    ``gtis`` is the good time of each CCD: its STDGTInn intersected with every filter GTI
    table the file says was applied (SAS's flare GTIs ``GTI000n6`` and the like)."""
    path: Path
    camera: str
    primary: fits.Header
    header: fits.Header
    columns: dict
    gtis: dict = field(default_factory=dict)      # CCD number -> (n, 2) START/STOP
    gti_headers: dict = field(default_factory=dict)
    std_gtis: dict = field(default_factory=dict)  # the STDGTInn tables as they are in the file
    filter_gti_names: list = field(default_factory=list)   # GTI filter tables applied (e.g. GTI00006)

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
    """Camera from a file name we recognise (simulated, PPS or emchain); None otherwise.

    Only a hint for messages: event lists are recognised by their headers
    (:func:`identify_event_list`), whatever their names."""
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


@dataclass(frozen=True)
class EventFileInfo:
    """What the header of an event list says: camera, mode, exposure identifier."""
    path: Path
    camera: str
    datamode: str
    submode: str
    expidstr: str
    span_s: float
    tstart: float = 0.0
    filter: str = ""
    sky_frame: tuple = ()          # REFXCRVL, REFYCRVL, PA_PNT: the sky X/Y frame the events are in

    def mergeable_with(self, other: "EventFileInfo") -> bool:
        """Same readout mode, filter and sky frame: the exposures share footprint and responses."""
        return (self.submode, self.filter, self.sky_frame) == (other.submode, other.filter, other.sky_frame)


FITS_SUFFIXES = (".fits", ".fit", ".fts", ".ftz", ".gz", ".ds", ".evt", ".evts")


def identify_event_list(path: Path) -> EventFileInfo | None:
    """An EPIC event list's identity from its header (INSTRUME, DATAMODE, SUBMODE);
    None when the file has no EVENTS table of an EPIC camera. A file named like FITS
    that does not open as FITS is an error (exit 2), not something to skip silently."""
    try:
        with open_fits(path) as hdul:
            if "EVENTS" not in hdul:
                return None
            h, p = hdul["EVENTS"].header, hdul[0].header
    except UsageError:
        if Path(path).suffix.lower() in FITS_SUFFIXES or camera_of_file(Path(path)):
            raise
        return None

    def key(k, default=""):
        return h.get(k, p.get(k, default))
    cam = INSTRUME_TO_CAMERA.get(str(key("INSTRUME")).strip().upper())
    if cam is None:
        return None
    try:
        span = float(key("TSTOP", 0)) - float(key("TSTART", 0))
    except (TypeError, ValueError):
        span = 0.0
    expid = str(key("EXPIDSTR", "") or str(key("EXP_ID", ""))[-4:]).strip()

    def number(k):
        try:
            return round(float(key(k, "nan")), 5)
        except (TypeError, ValueError):
            return None
    return EventFileInfo(Path(path), cam, str(key("DATAMODE", "IMAGING")).strip().upper(),
                         str(key("SUBMODE", "")).strip(), expid, span, number("TSTART") or 0.0,
                         str(key("FILTER", "")).strip().upper(),
                         (number("REFXCRVL"), number("REFYCRVL"), number("PA_PNT")))


def find_event_files(paths: ObsPaths) -> dict[str, list[Path]]:
    """Imaging event lists per camera in data/<OBSID>/event/, recognised by their headers
    (any name: PPS, emchain/epchain, ``*clean*``, plain or gzip); exit 2 if no folder."""
    folder = paths.event_dir
    if not folder.is_dir():
        raise UsageError("no event folder for this observation (put the EPIC event lists, any names, "
                         "plain or .gz/.FTZ, in this folder)", folder)
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        info = identify_event_list(p)
        if info is None:
            continue
        if info.datamode != "IMAGING":
            log.warning("%s: %s mode list (%s) is not used: only imaging data are analysed",
                        p.name, info.datamode, info.camera)
            continue
        found.setdefault(info.camera, []).append(p)
    return found


def exposures_to_use(files: list[Path]) -> tuple[list[Path], str]:
    """The exposures of one camera to use together, in time order, and why.

    Exposures in the same readout mode, filter and sky frame are merged by step 1 (events
    with their own good time and live time; the same footprint and responses); of the
    groups, the one with the most time is used and the others are named. Two lists covering
    the same time (e.g. a PPS list and an emchain list of one exposure) are one exposure:
    the longer is kept."""
    infos = [identify_event_list(f) for f in files]
    infos = [i for i in infos if i is not None]
    if len(infos) <= 1:
        return [infos[0].path if infos else files[0]], "single exposure"
    groups: list[list[EventFileInfo]] = []
    for info in sorted(infos, key=lambda i: -i.span_s):
        g = next((g for g in groups if g[0].mergeable_with(info)), None)
        if g is None:
            groups.append([info])
        elif not any(_overlap(info, o) for o in g):
            g.append(info)
    best = max(groups, key=lambda g: sum(i.span_s for i in g))
    best.sort(key=lambda i: i.tstart)
    left = [i.path.name for i in infos if all(i.path != b.path for b in best)]
    what = ", ".join(f"{i.expidstr or i.path.name} ({i.span_s:.0f} s)" for i in best)
    why = (f"{len(best)} exposures merged: {what}" if len(best) > 1 else
           f"longest of {len(infos)} exposures {what} used alone")
    if left:
        why += f"; not used (another mode/filter, or the same time again): {', '.join(left)}"
    return [i.path for i in best], why


def _overlap(a: EventFileInfo, b: EventFileInfo) -> bool:
    return a.tstart < b.tstart + b.span_s and b.tstart < a.tstart + a.span_s


def choose_exposure(files: list[Path]) -> tuple[Path, str]:
    """With several exposures of one camera, use the longest; say which and why.

    Exposures are not merged: each has its own GTIs, dead time and (for different
    submodes) its own CCD footprint, so a merged list needs per-exposure exposure maps
    and responses, which this pipeline does not build yet."""
    if len(files) == 1:
        return files[0], "single exposure"
    spans = []
    for f in files:
        info = identify_event_list(f)
        spans.append((info.span_s if info else 0.0, f, info))
    spans.sort(key=lambda s: -s[0])
    best, info = spans[0][1], spans[0][2]
    others = ", ".join(f.name for _, f, _ in spans[1:])
    what = f" {info.expidstr} {info.submode}".rstrip() if info else ""
    return best, (f"longest of {len(files)} exposures{what} ({spans[0][0]:.0f} s) used alone; "
                  f"not merged (separate exposures need their own exposure maps): {others}")


def open_fits(path: Path, memmap: bool = True) -> fits.HDUList:
    """Open a FITS file, plain or gzip-compressed (.gz, .FTZ); exit 2 when it is not FITS."""
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
    with open_fits(path) as hdul:
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
    with open_fits(path) as hdul:
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
        text = [c for c, v in cols.items() if not np.issubdtype(v.dtype, np.number)]
        if text:
            raise UsageError(f"event list column {', '.join(text)} holds text, not numbers", path)
        gtis, gti_headers = {}, {}
        for h in hdul[1:]:
            m = re.match(r"^STDGTI(\d\d)$", h.name or "")
            if m:
                ccd = int(h.header.get("CCDID", m.group(1)))
                gtis[ccd] = _gti_array(h)
                gti_headers[ccd] = h.header.copy()
        filters = filter_gtis(hdul, hdr)
        good = {c: _apply_filters(g, filters, c) for c, g in gtis.items()}
        out = EventList(path=path, camera=INSTRUME_TO_CAMERA[instrume], primary=primary,
                        header=hdr.copy(), columns=cols, gtis=good, gti_headers=gti_headers,
                        std_gtis=gtis, filter_gti_names=sorted({n for lst in filters.values() for n, _ in lst}))
    if out.n == 0 and want:
        raise DataError("event list holds no events", path)
    return out


def _gti_array(hdu) -> np.ndarray:
    if hdu.data is None or not len(hdu.data):
        return np.zeros((0, 2))
    return np.column_stack([np.asarray(hdu.data["START"], float), np.asarray(hdu.data["STOP"], float)])


def filter_gtis(hdul: fits.HDUList, events_header: fits.Header) -> dict[int, list]:
    """GTI tables other than STDGTInn that filtered the events: {CCD (0 = all): [(name, gti)]}.

    SAS records them in the data-subspace keywords of EVENTS (``DSREFn = ':GTI00006'`` for
    the TIME column, ``kDSVAL1`` = CCD of block k); without those, any GTI table in the
    file applies, to the CCD of its ``CCDID`` keyword or to all CCDs."""
    tables = {}
    for h in hdul[1:]:
        name = (h.name or "").upper()
        if not isinstance(h, fits.BinTableHDU) or re.match(r"^STDGTI\d\d$", name):
            continue
        cols = [c.upper() for c in h.columns.names]
        is_gti = str(h.header.get("HDUCLAS1", "")).strip().upper() == "GTI" or name.startswith("GTI")
        if is_gti and "START" in cols and "STOP" in cols:
            tables[name] = h
    out: dict[int, list] = {}
    refs = _dss_time_tables(events_header)
    for name, h in tables.items():
        if refs:
            ccds = refs.get(name)
            if ccds is None:
                continue                 # a GTI table in the file that did not filter these events
        else:
            ccds = {int(h.header["CCDID"])} if "CCDID" in h.header else {0}
        for c in ccds:
            out.setdefault(c, []).append((name, G.normalise(_gti_array(h))))
    return out


def _dss_time_tables(header: fits.Header) -> dict[str, set[int]]:
    """{GTI table name: CCDs} from the SAS data-subspace keywords (empty when there are none)."""
    types = {}
    for k in header:
        m = re.match(r"^DSTYP(\d+)$", k)
        if m:
            types[int(m.group(1))] = str(header[k]).strip().upper()
    time_idx = [i for i, t in types.items() if t == "TIME"]
    ccd_idx = [i for i, t in types.items() if t == "CCDNR"]
    out: dict[str, set[int]] = {}
    for k in header:
        m = re.match(r"^(\d*)DSREF(\d+)$", k)
        if not m or int(m.group(2)) not in time_idx:
            continue
        block = m.group(1)
        ref = str(header[k]).strip().lstrip(":").split("[")[0].upper()
        ccd = 0
        if ccd_idx:
            val = header.get(f"{block}DSVAL{ccd_idx[0]}")
            try:
                ccd = int(str(val).strip()) if val is not None else 0
            except ValueError:
                ccd = 0
        out.setdefault(ref, set()).add(ccd)
    return out


def _apply_filters(gti: np.ndarray, filters: dict[int, list], ccd: int) -> np.ndarray:
    g = G.normalise(gti)
    for _, f in filters.get(0, []) + filters.get(ccd, []):
        g = G.intersect(g, f)
    return g


def is_prefiltered(ev: EventList) -> tuple[bool, list[str]]:
    """Whether a list was already screened (a SAS-cleaned list) and the evidence for it:
    GTI filter tables present, no out-of-FOV (corner) events, only FLAG==0 events."""
    from xmmext.instrument import OUT_OF_FOV_FLAG
    evidence = []
    if ev.filter_gti_names:
        evidence.append("GTI filter tables " + ", ".join(ev.filter_gti_names))
    flag = ev.columns.get("FLAG")
    no_corner = flag is not None and not np.any(np.asarray(flag, np.int64) & OUT_OF_FOV_FLAG)
    if no_corner:
        evidence.append("no out-of-FOV (corner) events")
    if flag is not None and not np.any(flag):
        evidence.append("FLAG==0 for every event")
    return bool(ev.filter_gti_names) or (no_corner and flag is not None and not np.any(flag)), evidence
