"""Reading and writing OGIP type-I spectra the way XSPEC and sherpa interpret them.

:func:`read_pha` resolves what a fitting program needs from a PHA file: counts (or
rate x exposure), EXPOSURE, BACKSCAL/AREASCAL as keyword or per-channel column,
GROUPING/QUALITY, and the RESPFILE/ANCRFILE/BACKFILE names resolved relative to the
spectrum's folder. Works on SAS products and on this pipeline's. :func:`xmmext.instrument.pi_spectrum`
bins event PI into the channels such a file holds; :func:`pha_hdulist` writes one in
SAS's layout (GTIs and the region extension included).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

import xmmext.instrument as ins
from xmmext.core.errors import UsageError
from xmmext.sky.extraction_region import ExtractionRegion

__all__ = ["Spectrum", "read_pha", "Response", "read_rmf", "read_arf", "check_response", "pha_hdulist"]


@dataclass
class Spectrum:
    path: Path
    channel: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: float | np.ndarray
    areascal: float | np.ndarray
    grouping: np.ndarray | None
    quality: np.ndarray | None
    header: fits.Header
    files: dict = field(default_factory=dict)     # RESPFILE/ANCRFILE/BACKFILE -> Path or None

    @property
    def instrument(self) -> str:
        return str(self.header.get("INSTRUME", "")).strip()


def _scalar_or_column(hdu, name: str, default: float):
    if name in hdu.columns.names:
        return np.asarray(hdu.data[name], float)
    return float(hdu.header.get(name, default))


def read_pha(path: str | Path) -> Spectrum:
    """Read an OGIP type-I PHA file (exit 2 with a one-line reason when it is not one)."""
    path = Path(path)
    try:
        hdul = fits.open(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"spectrum does not open as FITS: {exc}", path) from None
    with hdul:
        if "SPECTRUM" in hdul:
            hdu = hdul["SPECTRUM"]
        else:
            cand = [h for h in hdul[1:] if str(h.header.get("HDUCLAS1", "")).upper() == "SPECTRUM"]
            if not cand:
                raise UsageError("no SPECTRUM extension (not an OGIP PHA file)", path)
            hdu = cand[0]
        names = hdu.columns.names
        if "CHANNEL" not in names or not ({"COUNTS", "RATE"} & set(names)):
            raise UsageError("SPECTRUM has no CHANNEL and COUNTS/RATE columns", path)
        exposure = float(hdu.header.get("EXPOSURE", 0.0))
        if "COUNTS" in names:
            counts = np.asarray(hdu.data["COUNTS"], float)
        else:
            counts = np.asarray(hdu.data["RATE"], float) * exposure
        files = {}
        for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
            v = str(hdu.header.get(key, "none")).strip()
            files[key] = None if v.lower() in ("", "none") else (path.parent / v)
        return Spectrum(path=path, channel=np.asarray(hdu.data["CHANNEL"], int), counts=counts,
                        exposure=exposure, backscal=_scalar_or_column(hdu, "BACKSCAL", 1.0),
                        areascal=_scalar_or_column(hdu, "AREASCAL", 1.0),
                        grouping=np.asarray(hdu.data["GROUPING"], int) if "GROUPING" in names else None,
                        quality=np.asarray(hdu.data["QUALITY"], int) if "QUALITY" in names else None,
                        header=hdu.header.copy(), files=files)


@dataclass
class Response:
    """An RMF as a dense (energy x channel) matrix, with its energy grid and EBOUNDS."""
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    matrix: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    first_channel: int


def read_rmf(path: str | Path) -> Response:
    """Read an OGIP RMF (MATRIX or SPECRESP MATRIX + EBOUNDS) into a dense matrix."""
    path = Path(path)
    try:
        with fits.open(path) as h:
            mext = "MATRIX" if "MATRIX" in h else "SPECRESP MATRIX"
            m, eb = h[mext], h["EBOUNDS"]
            nchan = len(eb.data)
            fmin = int(m.header.get("TLMIN4", eb.data["CHANNEL"][0]))
            lo, hi = np.asarray(m.data["ENERG_LO"], float), np.asarray(m.data["ENERG_HI"], float)
            dense = np.zeros((len(lo), nchan))
            for i, row in enumerate(m.data):
                fch, nch, vals = np.atleast_1d(row["F_CHAN"]), np.atleast_1d(row["N_CHAN"]), np.asarray(row["MATRIX"], float)
                k = 0
                for f0, n0 in zip(fch, nch):
                    dense[i, int(f0) - fmin:int(f0) - fmin + int(n0)] = vals[k:k + int(n0)]
                    k += int(n0)
            return Response(lo, hi, dense, np.asarray(eb.data["E_MIN"], float), np.asarray(eb.data["E_MAX"], float), fmin)
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"not a readable OGIP RMF: {exc}", path) from None


def read_arf(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ENERG_LO, ENERG_HI, SPECRESP) of an OGIP ARF."""
    path = Path(path)
    try:
        with fits.open(path) as h:
            d = h["SPECRESP"].data
            return (np.asarray(d["ENERG_LO"], float), np.asarray(d["ENERG_HI"], float),
                    np.asarray(d["SPECRESP"], float))
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"not a readable OGIP ARF: {exc}", path) from None


def check_response(path: str | Path, kind: str) -> Path:
    """``path`` must be an OGIP RMF (``kind='RMF'``: MATRIX or SPECRESP MATRIX, and
    EBOUNDS) or ARF (``'ARF'``: SPECRESP); exit 2 saying what it is not."""
    path = Path(path)
    try:
        with fits.open(path) as h:
            names = {x.name for x in h}
    except (OSError, ValueError, TypeError):
        raise UsageError(f"not a FITS file, so not an {kind}", path) from None
    if kind == "RMF" and not ({"MATRIX", "SPECRESP MATRIX"} & names and "EBOUNDS" in names):
        raise UsageError("not an RMF (no MATRIX and EBOUNDS extensions)", path)
    if kind == "ARF" and "SPECRESP" not in names:
        raise UsageError("not an ARF (no SPECRESP extension)", path)
    return path


# --- writing spectra ---------------------------------------------------------------------------------
def pha_hdulist(counts: np.ndarray, cam: ins.Camera, meta: dict, exposure: float, backscal_value: float,
                region: ExtractionRegion, gtis: dict, files: dict, grouping=None, quality=None,
                hduclas2: str = "TOTAL") -> fits.HDUList:
    """OGIP type-I PHA in the SAS layout (SPECTRUM + GTI per CCD + REG)."""
    cols = [fits.Column("CHANNEL", "I", array=np.arange(cam.n_channels, dtype=np.int16)),
            fits.Column("COUNTS", "J", unit="count", array=counts.astype(np.int32))]
    vector_backscal = np.ndim(backscal_value) > 0
    if vector_backscal:        # OGIP allows BACKSCAL as a column (per-channel scaling)
        cols.append(fits.Column("BACKSCAL", "D", array=np.asarray(backscal_value, float)))
    if grouping is not None:
        cols += [fits.Column("GROUPING", "I", array=grouping), fits.Column("QUALITY", "I", array=quality)]
    spec = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = spec.header
    for k, v in (("TELESCOP", "XMM"), ("INSTRUME", cam.instrume), ("FILTER", meta.get("filter", "Medium")),
                 ("OBS_ID", meta.get("obsid", "")), ("DATE-OBS", meta.get("date_obs", "")),
                 ("RA_PNT", meta["ra_pnt"]), ("DEC_PNT", meta["dec_pnt"]), ("PA_PNT", meta["pa_pnt"]),
                 ("HDUCLASS", "OGIP"), ("HDUCLAS1", "SPECTRUM"), ("HDUCLAS2", hduclas2), ("HDUCLAS3", "COUNT"),
                 ("HDUVERS", "1.2.1"), ("CHANTYPE", "PI"), ("DETCHANS", cam.n_channels),
                 ("TLMIN1", 0), ("TLMAX1", cam.n_channels - 1), ("POISSERR", True), ("SYS_ERR", 0),
                 ("AREASCAL", 1.0), ("CORRSCAL", 1.0), ("SPECDELT", int(ins.CHANNEL_EV)), ("SPECPIX", 0),
                 ("SPECVAL", 2.0)):
        h[k] = v
    h["EXPOSURE"] = (exposure, "[s] exposure of the extraction region")
    if not vector_backscal:
        h["BACKSCAL"] = (backscal_value, "region area on the detector, sky pixels^2")
    h["SLCTEXPR"] = region.evselect_expression()
    if grouping is None:
        h["QUALITY"] = 0
        h["GROUPING"] = 0
    for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
        h[key] = files.get(key, "none")
    h["CORRFILE"] = "none"
    hdus = [fits.PrimaryHDU(), spec]
    for c, g in sorted(gtis.items()):
        from xmmext.events.gti import gti_hdu
        hdus.append(gti_hdu(g, f"GTI{c - 1:03d}01", ccd=c))
    hdus.append(_region_hdu(region))
    return fits.HDUList(hdus)


def _region_hdu(region: ExtractionRegion) -> fits.BinTableHDU:
    shapes, xs, ys, rs = [], [], [], []
    main = "ANNULUS" if region.is_annulus else "CIRCLE"
    if region.shape is not None:       # another shape: its kind, and the circle that holds it
        main = type(region.shape).__name__.replace("PixelRegion", "").upper()
    shapes.append(main)
    xs.append(region.x)
    ys.append(region.y)
    rs.append([region.r_in if region.is_annulus else region.r_out, region.r_out])
    for ex, ey, er in region.relevant_exclusions():
        shapes.append("!CIRCLE")
        xs.append(ex)
        ys.append(ey)
        rs.append([er, er])
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("SHAPE", "16A", array=np.array(shapes)),
        fits.Column("X", "E", array=np.array(xs)), fits.Column("Y", "E", array=np.array(ys)),
        fits.Column("R", "2E", array=np.array(rs)),
        fits.Column("COMPONENT", "B", array=np.ones(len(shapes), np.uint8)),
    ], name="REG00101")
    h = hdu.header
    h["HDUCLASS"], h["HDUCLAS1"], h["HDUCLAS2"] = "ASC", "REGION", "STANDARD"
    h["MTYPE1"], h["MFORM1"] = "pos", "X,Y"
    return hdu
